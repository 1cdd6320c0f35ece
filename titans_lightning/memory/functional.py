"""The fast path of the neural memory: chunked, parallel inside each chunk (TITANS.md 1.1).

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
eta = 1 and u = 0, which leaves weights and momentum exactly unchanged (TITANS.md pitfall 4).
The call is laid on a grid of whole chunks at absolute positions; grid cells before the stream's
position or after its end are such identity tokens, so streams cut anywhere continue exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .chunk import ChunkStep
from .mlp import get_activation
from .state import FastWeightState

_LOG_FLOOR = 1e-30  # log(0) -> log(1e-30): finite gradients, products still underflow to 0


@dataclass
class ChunkGates:
    """Decay/momentum coefficients of every chunk, computed for all chunks at once.

    Attributes (each (B, C, ...)):
        beta, f: (B, C, b) coefficients of the chunk-start weights and momentum in W_t.
        G: (B, C, b, b) lower-triangular mixing of the per-token gradients into W_t.
        momentum_end: (B, C) m_b; momentum_mix: (B, C, b) theta_s m_b / m_s, for S at chunk end.
    """

    beta: Tensor
    f: Tensor
    G: Tensor
    momentum_end: Tensor
    momentum_mix: Tensor


def segment_sum(x: Tensor) -> Tensor:
    """(..., b) -> (..., b, b): out[t, s] = sum_{j=s+1..t} x_j for s <= t, -inf above.

    Summing masked copies (not differencing a cumsum) keeps it exact in log space.
    """
    b = x.shape[-1]
    x = x[..., :, None].expand(*x.shape, b)  # [..., j, s] = x_j
    below = torch.ones(b, b, dtype=torch.bool, device=x.device).tril(-1)
    out = torch.cumsum(x.masked_fill(~below, 0), dim=-2)
    keep = torch.ones(b, b, dtype=torch.bool, device=x.device).tril()
    return out.masked_fill(~keep, float("-inf"))


def chunk_gates(lr: Tensor, momentum: Tensor, decay: Tensor, write: Tensor) -> ChunkGates:
    """Log-space cumulative products of every chunk (fp32 or fp64, never bf16).

    Args:
        lr, momentum, decay, write: (B, C, b) theta, eta, alpha and u on the chunk grid.
    """
    log_keep = torch.log(torch.clamp_min(1 - decay, _LOG_FLOOR))
    log_eta = torch.log(torch.clamp_min(momentum, _LOG_FLOOR))
    decay_ts = torch.exp(segment_sum(log_keep))  # (B,C,b,b): beta_t / beta_r
    momentum_rs = torch.exp(segment_sum(log_eta))  # (B,C,b,b): m_r / m_s
    beta = torch.exp(torch.cumsum(log_keep, dim=-1))
    m = torch.exp(torch.cumsum(log_eta, dim=-1))
    f = (decay_ts @ (write * m)[..., None]).squeeze(-1)
    G = (decay_ts * write[..., None, :]) @ momentum_rs * lr[..., None, :]
    return ChunkGates(beta, f, G, m[..., -1], momentum_rs[..., -1, :] * lr)


def _to_grid(x: Tensor, offset: int, chunks: int, chunk_size: int, fill: float) -> Tensor:
    """(B, T, ...) -> (B, C, b, ...): place the call at its absolute offset inside the grid."""
    after = chunks * chunk_size - offset - x.shape[1]
    if offset or after:  # an aligned call (the usual training batch) needs no copy
        x = F.pad(x, [0, 0] * (x.dim() - 2) + [offset, after], value=fill)
    return x.reshape(x.shape[0], chunks, chunk_size, *x.shape[2:])


def _compute_dtype(x: Tensor) -> torch.dtype:
    """float64 stays float64; everything else (bf16, fp16, fp32) runs in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def neural_memory(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lr: Tensor,
    momentum: Tensor,
    decay: Tensor,
    weights: Sequence[Tensor],
    chunk_size: int = 16,
    activation: str = "gelu",
    state: Optional[FastWeightState] = None,
    mask: Optional[Tensor] = None,
    output_norm: bool = False,
) -> tuple[Tensor, FastWeightState]:
    """Store every token into the memory and retrieve after each store (TITANS.md 1.1).

    Args:
        q, k: (B, T, i_1) queries and keys; v: (B, T, o_L) values.
        lr, momentum, decay: (B, T) theta, eta, alpha, already in their final ranges.
        weights: initial memory weights M_0, per layer (B, o_l, i_l); ignored when `state` is given.
        chunk_size: b; gradients of a chunk are taken at its start weights. Chunks sit at
            absolute stream positions (0, b, 2b, ...), whatever the cuts between calls.
        activation: "gelu", "silu" or "relu", between layers.
        state: the state returned by the previous call of the same stream, or None.
        mask: (B, T) bool, True = real token; a masked token leaves the state unchanged.
        output_norm: M ends with a parameter-free LayerNorm, M(x) = LN(W_L s(... W_1 x)) (the
            NeurIPS form's normalisation): the inner loss is then bounded and invariant to the
            last layer's scale, which keeps the inner optimisation stable.
    Returns:
        y: (B, T, o_L) with y_t = M_{W_t}(q_t); the new state (float32, or float64 for float64
        inputs, also under autocast).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dtype = _compute_dtype(q)
    with torch.autocast(q.device.type, enabled=False):
        q, k, v, lr, momentum, decay = (x.to(dtype) for x in (q, k, v, lr, momentum, decay))
        if state is None:
            state = FastWeightState.initial([w.to(dtype) for w in weights])
        if q.shape[1] == 0:
            return q.new_zeros(*q.shape[:2], v.shape[-1]), state
        write = torch.ones_like(lr) if mask is None else mask.to(dtype)
        lr, decay = lr * write, decay * write
        momentum = torch.where(write > 0, momentum, torch.ones_like(momentum))
        get_activation(activation)  # fail early on an unknown name
        y, new_state = _run_chunks(q, k, v, lr, momentum, decay, write, state, chunk_size, activation, output_norm)
    return y, new_state


def _run_chunks(q, k, v, lr, momentum, decay, write, state, chunk_size, activation, output_norm):
    """Lay the call on the chunk grid, precompute all gates, then step chunk by chunk.

    Weights and momentum travel as one (N, o, 2i) tensor `[W | S]` per layer (see `chunk.py`);
    the returned state holds views of its halves.
    """
    offset = state.position % chunk_size
    T = q.shape[1]
    chunks = -(-(offset + T) // chunk_size)
    # resuming mid-chunk: the first chunk's gradients are taken at the stored chunk-start weights
    ref = tuple(state.ref_weights) if offset else ()
    if chunks == 1:  # the call stays inside one chunk (decoding): its own width, no identity pad
        offset, chunk_size = 0, T
    grid = lambda x, fill=0.0: _to_grid(x, offset, chunks, chunk_size, fill)  # noqa: E731
    gates = chunk_gates(grid(2 * lr), grid(momentum, 1.0), grid(decay), grid(write))  # 2: d||e||^2/de
    # unbind once: indexing [:, c] in the loop would make autograd zero-fill a whole grid per chunk
    qs, ks, vs = (grid(x).unbind(1) for x in (q, k, v))
    beta, f, G, m_end, m_mix = (x.unbind(1) for x in (gates.beta, gates.f, gates.G, gates.momentum_end, gates.momentum_mix))
    WS = [torch.cat([w, s], dim=-1) for w, s in zip(state.weights, state.momentum)]
    L, ys = len(WS), []
    for c in range(chunks):
        start_W = [ws[..., : ws.shape[-1] // 2] for ws in WS]
        y, *WS = ChunkStep.apply(activation, L, output_norm, qs[c], ks[c], vs[c], beta[c], f[c], G[c], m_end[c], m_mix[c], *WS, *ref)
        ys.append(y)
        ref_out = ref or tuple(start_W)
        ref = ()
    y = torch.stack(ys, dim=1).flatten(1, 2)[:, offset : offset + T]
    halves = [(ws[..., : ws.shape[-1] // 2], ws[..., ws.shape[-1] // 2 :]) for ws in WS]
    new_state = FastWeightState(tuple(h[0] for h in halves), tuple(h[1] for h in halves), ref_out, state.position + T)
    return y, new_state
