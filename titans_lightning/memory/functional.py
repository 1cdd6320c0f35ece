"""The fast path of the neural memory: chunked, parallel inside each chunk (docs/method.md section 1.1).

Shape legend: B = independent memories (batch, or batch x heads), T = tokens in this call,
C = chunks on the grid, b = chunk_size, i/o = a memory layer's in/out width.

Per token (theta = lr, eta = momentum, alpha = decay; u = 1 for real tokens, 0 for masked ones):

    S_t = eta_t S_{t-1} - theta_t grad l(W_ref; k_t, v_t)        l = ||M(k_t) - v_t||^2
    W_t = (1 - alpha_t) W_{t-1} + u_t S_t                          y_t = M_{W_t}(q_t)

with `W_ref` the weights at the chunk's start. Inside a chunk this unrolls (relative to the
weights `W` and momentum `S` at the chunk's start, gradient of token s = delta_s h_s^T) to

    W_t = beta_t W + f_t S - sum_{s<=t} G_{t,s} delta_s h_s^T,
    beta_t = prod_{j<=t} (1 - alpha_j),  m_t = prod_{j<=t} eta_j,
    f_t = sum_{r<=t} (beta_t / beta_r) u_r m_r,
    G_{t,s} = theta_s sum_{r=s..t} (beta_t / beta_r) u_r (m_r / m_s),

so retrieval at every token's own weights is three matmuls per layer (the "dual form"), and the
only sequential step is from one chunk to the next. A masked token has theta = alpha = 0,
eta = 1 and u = 0, which leaves weights and momentum exactly unchanged (docs/method.md pitfall 4).
The call is laid on a grid of whole chunks at absolute positions; grid cells before the stream's
position or after its end are such identity tokens, so streams cut anywhere continue exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Optional, Union

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from .channel import run_channel_chunks
from .chunk import chunk_step
from .gates import chunk_gates
from .grid import Grid
from .mlp import get_activation
from .precision import autocast_off
from .state import FastWeightState


def _compute_dtype(x: Tensor) -> torch.dtype:
    """float64 stays float64; everything else (bf16, fp16, fp32) runs in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def neural_memory(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lr: Tensor,
    momentum: Tensor,
    decay: Union[Tensor, Sequence[Tensor]],
    weights: Sequence[Tensor],
    chunk_size: int = 16,
    activation: str = "gelu",
    state: Optional[FastWeightState] = None,
    mask: Optional[Tensor] = None,
    output_norm: bool = False,
    checkpoint_segment: int = 0,
    step: Callable[..., tuple[Tensor, ...]] = chunk_step,
) -> tuple[Tensor, FastWeightState]:
    """Store every token into the memory and retrieve after each store (docs/method.md section 1.1).

    Args:
        q, k: (B, T, i_1) queries and keys; v: (B, T, o_L) values.
        lr, momentum: (B, T) theta, eta, already in their final ranges.
        decay: (B, T) alpha, one per token; or per-channel alpha (the NeurIPS option): one
            (B, T, o_l) tensor per layer, row r of layer l's weights forgetting by alpha[..., r]
            (see `channel.py`; slower: its mixing is a b x b contraction per channel).
        weights: initial memory weights M_0, per layer (B, o_l, i_l); ignored when `state` is given.
        chunk_size: b; gradients of a chunk are taken at its start weights. Chunks sit at
            absolute stream positions (0, b, 2b, ...), whatever the cuts between calls.
        activation: "gelu", "silu" or "relu", between layers.
        state: the state returned by the previous call of the same stream, or None.
        mask: (B, T) bool, True = real token; a masked token leaves the state unchanged.
        output_norm: M ends with a parameter-free LayerNorm, M(x) = LN(W_L s(... W_1 x)) (the
            NeurIPS form's normalisation): the inner loss is then bounded and invariant to the
            last layer's scale, which keeps the inner optimisation stable.
        checkpoint_segment: K > 0 keeps one chunk state in K for backward and recomputes the
            others (activation checkpointing of the recurrence; exact). 0 keeps every chunk's.
            The per-channel path always recomputes chunk by chunk.
        step: the chunk step, called once per chunk with `chunk.chunk_step`'s arguments; the
            eager `chunk_step` by default, its compiled form from `parallelize.compile_memory`
            (the loop over chunks stays in Python: one small graph, not one per sequence).
            The per-channel path does not use it.
    Returns:
        y: (B, T, o_L) with y_t = M_{W_t}(q_t); the new state (float32, or float64 for float64
        inputs, also under autocast).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dtype = _compute_dtype(q)
    per_channel = not torch.is_tensor(decay)
    with autocast_off(q.device):
        q, k, v, lr, momentum = (x.to(dtype) for x in (q, k, v, lr, momentum))
        if state is None:
            state = FastWeightState.initial([w.to(dtype) for w in weights])
        decays = _check_decays(decay, state.weights, dtype) if per_channel else [decay.to(dtype)]
        if q.shape[1] == 0:
            return q.new_zeros(*q.shape[:2], v.shape[-1]), state
        write = torch.ones_like(lr) if mask is None else mask.to(dtype)
        lr = lr * write
        decays = [d * (write[..., None] if per_channel else write) for d in decays]
        momentum = torch.where(write > 0, momentum, torch.ones_like(momentum))
        get_activation(activation)  # fail early on an unknown name
        args = (q, k, v, lr, momentum, decays, write, state, chunk_size, activation, output_norm)
        y, new_state = run_channel_chunks(*args) if per_channel else _run_chunks(*args, checkpoint_segment, step)
    return y, new_state


def _check_decays(decay: Sequence[Tensor], weights: Sequence[Tensor], dtype) -> list[Tensor]:
    """Per-channel decays: one (B, T, o_l) tensor per layer, o_l = the layer's output rows."""
    if len(decay) != len(weights):
        raise ValueError(f"per-channel decay needs one tensor per memory layer ({len(weights)}), got {len(decay)}")
    for layer, (d, w) in enumerate(zip(decay, weights)):
        if d.dim() != 3 or d.shape[-1] != w.shape[1]:
            raise ValueError(f"per-channel decay of layer {layer} must be (B, T, {w.shape[1]}), got {tuple(d.shape)}")
    return [d.to(dtype) for d in decay]


def _run_chunks(q, k, v, lr, momentum, decays, write, state, chunk_size, activation, output_norm,
                checkpoint_segment=0, step=chunk_step):
    """Lay the call on the chunk grid, precompute all gates, then step chunk by chunk.

    Weights and momentum travel as one (N, o, 2i) tensor `[W | S]` per layer (see `chunk.py`);
    the returned state holds views of its halves. With `checkpoint_segment` = K > 0 (and autograd
    recording), the chunks before the last run in segments of K under non-reentrant
    checkpointing: backward holds one WS per segment plus one segment's chunk states, instead
    of every chunk's, and recomputes each segment's forward once.
    """
    T = q.shape[1]
    grid = Grid.plan(state, T, chunk_size)
    gates = chunk_gates(grid(2 * lr), grid(momentum, 1.0), grid(decays[0]), grid(write))  # 2: d||e||^2/de
    # unbind once: indexing [:, c] in the loop would make autograd zero-fill a whole grid per chunk
    qs, ks, vs = (grid(x).unbind(1) for x in (q, k, v))
    per_chunk = (gates.beta, gates.f, gates.G, gates.momentum_end, gates.momentum_mix)
    beta, f, G, m_end, m_mix = (x.unbind(1) for x in per_chunk)
    L = len(state.weights)

    def steps(first: int, last: int, ref: tuple, *WS: Tensor) -> tuple[Tensor, ...]:
        """Chunks first..last-1 from the chunk-start WS (and reference) -> (y of each..., WS')."""
        ys = []
        for c in range(first, last):
            y, *WS = step(activation, L, output_norm, qs[c], ks[c], vs[c], beta[c], f[c], G[c],
                          m_end[c], m_mix[c], *WS, *ref)
            ys.append(y)
            ref = ()
        return (*ys, *WS)

    WS, ref, ys = [torch.cat([w, s], dim=-1) for w, s in zip(state.weights, state.momentum)], grid.ref, []
    last = grid.chunks - 1  # the last chunk runs alone: its start is the next call's reference
    checkpointed = checkpoint_segment > 0 and torch.is_grad_enabled()
    run = partial(checkpoint, steps, use_reentrant=False) if checkpointed else steps
    segment = checkpoint_segment if checkpointed else max(last, 1)
    for first in range(0, last, segment):
        stop = min(first + segment, last)
        out = run(first, stop, ref, *WS)
        ys.extend(out[: stop - first])
        WS, ref = out[stop - first :], ()
    *y_last, = steps(last, last + 1, ref, *WS)
    ys.append(y_last[0])
    # the last chunk's gradient reference, for a stream that continues mid-chunk
    ref_out = ref or tuple(ws[..., : ws.shape[-1] // 2] for ws in WS)
    WS = y_last[1:]
    halves = [(ws[..., : ws.shape[-1] // 2], ws[..., ws.shape[-1] // 2 :]) for ws in WS]
    W, S = tuple(h[0] for h in halves), tuple(h[1] for h in halves)
    return grid.ungrid(ys, T), FastWeightState(W, S, ref_out, state.position + T)
