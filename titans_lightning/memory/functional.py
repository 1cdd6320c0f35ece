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

import threading
from collections.abc import Callable, Sequence
from typing import Optional, Union

import torch
from torch import Tensor

from .channel import run_channel_chunks
from .chunk import chunk_step
from .gates import chunk_gates
from .grid import Grid
from .mlp import get_activation
from .precision import autocast_off
from .shared_start import shared_start_chunk
from .state import FastWeightState
from .triton_step import select_step


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
    backend: str = "auto",
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
        backend: "auto", "torch" or "triton": which chunk step runs (`triton_step.select_step`).
            "torch" runs `step`; "triton" runs the Triton kernels (`triton_step.py`: depth 2, gelu,
            one decay per token, float32 compute; CUDA tensors, or CPU under TRITON_INTERPRET=1)
            and raises a ValueError naming what it cannot run; "auto" takes them for CUDA tensors
            when triton imports, the config is covered and `step` is the default, else torch.
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
        step = select_step(backend, step, q.device, len(state.weights), activation, per_channel, dtype)
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
    recording), the chunks before the last run in segments of K, each one `titans::chunk_segment`
    op (`_run_segments`): backward holds one WS per segment plus one segment's chunk states,
    instead of every chunk's, and recomputes each segment's forward once.
    """
    T = q.shape[1]
    grid = Grid.plan(state, T, chunk_size)
    gates = chunk_gates(grid(2 * lr), grid(momentum, 1.0), grid(decays[0]), grid(write))  # 2: d||e||^2/de
    # per chunk: q, k, v (N, C, b, i/o), beta, f (N, C, b), G (N, C, b, b), m_end (N, C), m_mix (N, C, b)
    grids = (grid(q), grid(k), grid(v), gates.beta, gates.f, gates.G, gates.momentum_end, gates.momentum_mix)
    L, last = len(state.weights), grid.chunks - 1  # the last chunk runs alone: its start is the next call's reference
    segmented = checkpoint_segment > 0 and torch.is_grad_enabled() and last > 0
    # eager only: a compiled step keeps its one graph (and the Triton step its kernels) for every chunk
    if state.shared and state.position == 0 and step is chunk_step and not segmented:
        return _run_chunks_from_shared(grids, state, grid, T, activation, output_norm, step)
    WS, ref = [torch.cat([w, s], dim=-1) for w, s in zip(state.weights, state.momentum)], grid.ref
    if segmented:
        ys, WS, last_chunk = _run_segments(grids, WS, ref, checkpoint_segment, step, activation, output_norm)
        ref = ()
    else:
        # unbind once: indexing [:, c] in the loop would make autograd zero-fill a whole grid per chunk
        chunks, ys = [x.unbind(1) for x in grids], []
        for c in range(last):
            y, *WS = step(activation, L, output_norm, *(x[c] for x in chunks), *WS, *ref)
            ys.append(y)
            ref = ()
        last_chunk = [x[last] for x in chunks]
    y, *WS_last = step(activation, L, output_norm, *last_chunk, *WS, *ref)
    ys.append(y)
    # the last chunk's gradient reference, for a stream that continues mid-chunk
    ref_out = ref or tuple(ws[..., : ws.shape[-1] // 2] for ws in WS)
    halves = [(ws[..., : ws.shape[-1] // 2], ws[..., ws.shape[-1] // 2 :]) for ws in WS_last]
    W, S = tuple(h[0] for h in halves), tuple(h[1] for h in halves)
    return grid.ungrid(ys, T), FastWeightState(W, S, ref_out, state.position + T)


def _run_chunks_from_shared(grids, state: FastWeightState, grid: Grid, T: int, activation: str, output_norm: bool,
                            step: Callable[..., tuple[Tensor, ...]]):
    """``_run_chunks`` (the eager step, no segments) for a state still at its initial weights: the
    first chunk takes one product per head (``shared_start.py``), the others ``step``."""
    L, dtype = len(state.weights), state.weights[0].dtype
    chunks = [x.unbind(1) for x in grids]
    y, *WS = shared_start_chunk(activation, L, output_norm, *(x[0] for x in chunks),
                                [w.to(dtype) for w in state.shared])
    ys, start = [y], state.weights  # start: the weights the last chunk began from
    for c in range(1, grid.chunks):
        start = tuple(ws[..., : ws.shape[-1] // 2] for ws in WS)
        y, *WS = step(activation, L, output_norm, *(x[c] for x in chunks), *WS)
        ys.append(y)
    W, S = tuple(ws[..., : ws.shape[-1] // 2] for ws in WS), tuple(ws[..., ws.shape[-1] // 2 :] for ws in WS)
    return grid.ungrid(ys, T), FastWeightState(W, S, tuple(start), state.position + T)


def _run_segments(grids, WS, ref, segment, step, activation, output_norm):
    """Chunks 0..C-2 as `titans::chunk_segment` ops of `segment` chunks each.

    grids: the per-chunk inputs (N, C, ...) of `_run_chunks`; WS, ref: the chunk-start WS and
    first-chunk reference per layer. Returns the outputs y (N, b, o_L) of chunks 0..C-2, the WS of
    chunk C-1's start, and chunk C-1's inputs. Each input is split once into (N, K, ...) views,
    so autograd assembles its gradient with one concatenation, not one zero-filled grid per segment.
    """
    last = grids[0].shape[1] - 1
    sizes = [segment] * (last // segment) + ([last % segment] if last % segment else []) + [1]
    pieces = [x.split(sizes, dim=1) for x in grids]
    name, ys = _step_name(step), []
    for i in range(len(sizes) - 1):
        y, WS = torch.ops.titans.chunk_segment(name, activation, output_norm, *(p[i] for p in pieces),
                                               list(WS), list(ref))
        ys.extend(y.unbind(1))
        ref = ()
    return ys, WS, [p[-1][:, 0] for p in pieces]


# Chunk steps by name: a custom op takes no Python callable, so `titans::chunk_segment` receives
# the name of the step (the eager `chunk_step`, the compiled one, a test's wrapper) and looks it
# up here. A step is registered on its first checkpointed use and kept (a handful per process).
_CHUNK_STEPS: dict[str, Callable[..., tuple[Tensor, ...]]] = {}


def _step_name(step: Callable[..., tuple[Tensor, ...]]) -> str:
    """The registry name of `step`: qualified name and id (the registry keeps the step alive, so
    the id is never reused for another object)."""
    name = f"{getattr(step, '__qualname__', type(step).__name__)}@{id(step):x}"
    _CHUNK_STEPS.setdefault(name, step)
    return name


def _segment_steps(step: str, activation: str, output_norm: bool, chunks, WS, R):
    """Run the K chunks of a segment: chunks = (q, k, v, beta, f, G, m_end, m_mix), each (N, K, ...);
    WS per layer (N, o_l, 2i_l); R the first chunk's reference (or empty). -> K outputs y
    (N, b, o_L) and the segment-end WS'."""
    fn, L, ys = _CHUNK_STEPS[step], len(WS), []
    per_chunk = [x.unbind(1) for x in chunks]
    for c in range(chunks[0].shape[1]):
        y, *WS = fn(activation, L, output_norm, *(x[c] for x in per_chunk), *WS, *R)
        ys.append(y)
        R = ()
    return ys, WS


class _SegmentOutputs:
    """The outputs of the `chunk_segment` ops of one checkpointed forward, in call order, handed
    back in the same order when the checkpoint recomputes that forward: the segments' outputs
    are kept and their chunks are not rerun. `keep_segment_outputs` makes its two contexts."""

    def __init__(self) -> None:
        self.outputs: list[Optional[tuple[Tensor, list[Tensor]]]] = []
        self.replaying, self.next = False, 0

    def record(self, out: tuple[Tensor, list[Tensor]]) -> None:
        # detached aliases (as selective checkpointing stores them): no hold on the forward's graph
        self.outputs.append((out[0].detach(), [ws.detach() for ws in out[1]]))

    def replay(self) -> tuple[Tensor, list[Tensor]]:
        if self.next >= len(self.outputs) or self.outputs[self.next] is None:
            raise RuntimeError("a checkpointed memory segment was recomputed twice or out of order (backward "
                               "through a checkpointed block once per forward)")
        out, self.outputs[self.next] = self.outputs[self.next], None  # freed once handed back
        self.next += 1
        return out


class _Active:
    """A context that makes `cache` the one the `chunk_segment` ops of this thread record into
    (forward) or replay from (recompute); re-enterable, and restores the outer one on exit."""

    def __init__(self, cache: _SegmentOutputs, replaying: bool) -> None:
        self.cache, self.replaying, self.outer = cache, replaying, []

    def __enter__(self) -> None:
        self.outer.append(getattr(_SEGMENT_OUTPUTS, "active", None))
        self.cache.replaying, self.cache.next = self.replaying, 0
        _SEGMENT_OUTPUTS.active = self.cache

    def __exit__(self, *exc) -> None:
        _SEGMENT_OUTPUTS.active = self.outer.pop()


_SEGMENT_OUTPUTS = threading.local()  # .active: the _SegmentOutputs in use on this thread, if any


def keep_segment_outputs() -> tuple[_Active, _Active]:
    """A ``context_fn`` for non-reentrant ``torch.utils.checkpoint`` (or its composable form):
    the (forward, recompute) contexts under which the region's `chunk_segment` ops keep their
    outputs (y (N, K, b, o_L) and the segment-end WS') and hand them back in the recompute.

    What ``create_selective_checkpoint_contexts`` does with a policy that saves this op, without
    its dispatch mode, which costs Python time on every other op of the region as well.
    Threads: the recompute may run on an autograd worker thread; each context sets the cache of
    the thread that enters it.
    """
    cache = _SegmentOutputs()
    return _Active(cache, replaying=False), _Active(cache, replaying=True)


@torch.library.custom_op("titans::chunk_segment", mutates_args=())
def chunk_segment(step: str, activation: str, output_norm: bool, q: Tensor, k: Tensor, v: Tensor, beta: Tensor,
                  f: Tensor, G: Tensor, m_end: Tensor, m_mix: Tensor, WS: list[Tensor],
                  R: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """K chunks of the memory as one op, recorded by nothing: -> y (N, K, b, o_L), WS' per layer.

    q, k (N, K, b, i_0), v (N, K, b, o_L), beta, f (N, K, b), G (N, K, b, b), m_end (N, K),
    m_mix (N, K, b): the segment's chunks; WS: chunk-start [W | S] per layer (N, o_l, 2i_l);
    R: the first chunk's gradient reference per layer (N, o_l, i_l), or [] (= the W half of WS);
    step: a `_CHUNK_STEPS` name. Its backward (`_chunk_segment_backward`) reruns the chunks from
    the saved inputs. One op, not `torch.utils.checkpoint`, so that a block's activation
    checkpointing can keep its outputs (`keep_segment_outputs`, or a selective-checkpointing
    policy; see `parallelize.checkpoint_blocks`): the block's recompute then skips the
    recurrence, which the segment's own backward reruns anyway.
    """
    cache = getattr(_SEGMENT_OUTPUTS, "active", None)
    if cache is not None and cache.replaying:
        return cache.replay()
    with torch.no_grad():
        ys, new_WS = _segment_steps(step, activation, output_norm, (q, k, v, beta, f, G, m_end, m_mix), WS, R)
    out = torch.stack(ys, 1), new_WS
    if cache is not None:
        cache.record(out)
    return out


@chunk_segment.register_fake
def _chunk_segment_fake(step, activation, output_norm, q, k, v, beta, f, G, m_end, m_mix, WS, R):
    """Shapes only (the meta device, torch.compile's fake tensors)."""
    return q.new_empty(*q.shape[:3], v.shape[-1]), [torch.empty_like(ws) for ws in WS]


def _chunk_segment_setup(ctx, inputs, output):
    """Keep the inputs only, as saved tensors: an enclosing checkpoint may drop and recompute them."""
    step, activation, output_norm, *tensors, WS, R = inputs
    ctx.step, ctx.activation, ctx.output_norm, ctx.L, ctx.R = step, activation, output_norm, len(WS), len(R)
    ctx.save_for_backward(*tensors, *WS, *R)


def _chunk_segment_backward(ctx, dy, dWS):
    """Rerun the segment with autograd from the saved inputs, then backpropagate dy
    (N, K, b, o_L) and dWS (per layer (N, o_l, 2i_l)) through it; None grads are skipped."""
    saved = ctx.saved_tensors
    needs = [*ctx.needs_input_grad[3:11], *ctx.needs_input_grad[11], *ctx.needs_input_grad[12]]
    inputs = [x.detach().requires_grad_(need) for x, need in zip(saved, needs)]
    chunks, WS, R = inputs[:8], inputs[8 : 8 + ctx.L], inputs[8 + ctx.L :]
    with torch.enable_grad(), autocast_off(saved[0].device):
        ys, new_WS = _segment_steps(ctx.step, ctx.activation, ctx.output_norm, chunks, WS, R)
    dys = [None] * len(ys) if dy is None else dy.unbind(1)
    pairs = [(out, g) for out, g in zip([*ys, *new_WS], [*dys, *dWS]) if g is not None]
    wanted = [x for x in inputs if x.requires_grad]
    grads = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs], allow_unused=True)
                 if pairs else [None] * len(wanted))
    grads = [next(grads) if x.requires_grad else None for x in inputs]
    return (None, None, None, *grads[:8], grads[8 : 8 + ctx.L], grads[8 + ctx.L :])


chunk_segment.register_autograd(_chunk_segment_backward, setup_context=_chunk_segment_setup)
