"""MAC, memory as context (docs/method.md section 3).

Shape legend: B batch, T new tokens of one segment piece, D model width, C segment_len,
M long-term memory tokens visible in the segment, P persistent tokens, H heads, d head width.

For each segment S of C tokens (at absolute positions kC .. (k+1)C - 1):

    h = M*_prev(S)                       retrieval with the memory as it was before the segment
    y = Attn([persistent || h || S])     causal: token t sees h_i only once i's span has ended
    y_mem, M*_new = M(y)                 store y (chunked), retrieving after each store
                                         (or y + norm(x): ``mac_memory_input="residual"``)
    o = norm(y) * s(norm(y_mem))         gate with the updated memory (the paper's gating op, as in MAG)

h_i is computed from token i's own input, so letting token j < i see h_i would leak the future.
With ``memory_tokens`` m < C, the retrievals of C / m consecutive tokens are averaged into one
memory token, visible from the last token of its span on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..memory import MemoryState
from ..memory.state import FastWeightState
from .attention import KVCache, RMSNorm, causal_mask, sdpa_with_prefix
from .config import TitansConfig
from .mixers import StreamContext, make_attention, make_memory


@dataclass(frozen=True)
class MACState:
    """Streaming state of a MAC mixer; bounded by one segment.

    memory: after every token stored so far. segment_start: the memory's fast weights before
    the current segment (what its retrievals read). segment: keys/values of the segment's tokens
    so far (< C). memory_kv: keys/values of its completed memory tokens (< m). span, span_valid:
    (B, r, D) retrievals and (B, r) validity of the memory token being pooled (r < C / m).
    """

    memory: MemoryState
    segment_start: FastWeightState
    segment: KVCache
    memory_kv: KVCache
    span: Tensor
    span_valid: Tensor

    def detach(self) -> MACState:
        return MACState(self.memory.detach(), self.segment_start.detach(), self.segment.detach(),
                        self.memory_kv.detach(), self.span.detach(), self.span_valid)


class MACMixer(nn.Module):
    """MAC token mixer: ``x + y (x) M_new(y)`` with ``y = Attn([persistent || M_prev(x) || x])``.

    ``(x)`` is the paper's gating operation, the same as MAG's: both sides RMS-normalised with
    learned weights, the memory side through ``s = cfg.gate``. The bare product ``y * M_new(y)``
    multiplies two small branches at initialisation, so its gradients start small and it learned
    the slowest of all variants when we tried it.
    Attention is full and causal inside a segment, so a training call costs O(T C), not O(T^2).
    Parameters: attention (4 D^2 + P D) + memory (``NeuralMemory``) + 3 D.
    """

    def __init__(self, cfg: TitansConfig) -> None:
        super().__init__()
        self.segment_len, self.span = cfg.segment_len, cfg.segment_len // cfg.memory_tokens
        self.store_residual = cfg.mac_memory_input == "residual"
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = make_attention(cfg, window=None)
        self.memory = make_memory(cfg)
        self.norm_attn = RMSNorm(cfg.dim, cfg.norm_eps, init=cfg.gated_output_init)
        self.norm_memory = RMSNorm(cfg.dim, cfg.norm_eps)
        self.gate = torch.sigmoid if cfg.gate == "sigmoid" else F.silu
        self.drop = nn.Dropout(cfg.dropout)

    def combine(self, y: Tensor, y_mem: Tensor) -> Tensor:
        """The gating ``o = norm(y) * s(norm(y_mem))`` of attention output and memory retrieval."""
        return self.norm_attn(y) * self.gate(self.norm_memory(y_mem))

    def memory_input(self, y: Tensor, xn: Tensor) -> Tensor:
        """What the memory stores (B, T, D): the attention output y, or y + xn (``residual``)."""
        return y + xn if self.store_residual else y

    def initial_state(self, batch: int, like: Tensor) -> MACState:
        memory = self.memory.initial_state(batch, like.device)
        return self._next_segment(memory, like)

    def _next_segment(self, memory: MemoryState, like: Tensor) -> MACState:
        """State at a segment boundary: retrievals will read ``memory`` as it is now."""
        B = memory.conv.shape[0]
        empty = self.attn.empty_cache(B, like)
        span = like.new_zeros(B, 0, like.shape[-1])
        span_valid = torch.zeros(B, 0, dtype=torch.bool, device=like.device)
        return MACState(memory, memory.fast, empty, empty, span, span_valid)

    def forward(self, x: Tensor, ctx: StreamContext, state: MACState) -> tuple[Tensor, MACState]:
        """x (B, T, D) residual stream -> (B, T, D); the call is cut at segment boundaries."""
        xn, T, start = self.norm(x), x.shape[1], ctx.start
        outs, a = [], 0
        while a < T:
            b = min(T, a + self.segment_len - (start + a) % self.segment_len)
            ends_segment = (start + b) % self.segment_len == 0
            mask = ctx.memory_mask
            o, state = self._segment(xn[:, a:b], ctx.positions[a:b], ctx.valid[:, a:b],
                                     None if mask is None else mask[:, a:b], state, ends_segment)
            outs.append(o)
            a = b
        return x + self.drop(torch.cat(outs, 1)) if outs else x, state

    def _segment(self, xn: Tensor, positions: Tensor, valid: Tensor, mask: Tensor | None,
                 state: MACState, ends_segment: bool) -> tuple[Tensor, MACState]:
        """One piece (B, T, D) of one segment -> (B, T, D) and the next state.

        valid: (B, T) key validity for attention; mask: the same for the memory, or None.
        """
        read = replace(state.memory, fast=state.segment_start)
        h, read = self.memory.retrieve(xn, read, mask)
        memory = replace(state.memory, read_conv=read.read_conv)
        memory_kv, visible, span, span_valid = self._memory_tokens(h, valid, positions, state)
        q, k, v, prefix = self.attn.project(xn, positions)
        segment = state.segment.append(k, v, valid)
        allowed = torch.cat((visible, causal_mask(xn.shape[1], segment.valid)), -1)
        o = sdpa_with_prefix(q, torch.cat((memory_kv.k, segment.k), 2), torch.cat((memory_kv.v, segment.v), 2),
                             allowed, prefix, self.attn.dropout if self.training else 0.0)
        y = self.attn.merge(o)
        y_mem, memory = self.memory(self.memory_input(y, xn), memory, mask)
        o = self.combine(y, y_mem)
        if ends_segment:
            return o, self._next_segment(memory, xn)
        return o, MACState(memory, state.segment_start, segment, memory_kv, span, span_valid)

    def _memory_tokens(self, h: Tensor, valid: Tensor, positions: Tensor,
                       state: MACState) -> tuple[KVCache, Tensor, Tensor, Tensor]:
        """Pool retrievals h (B, T, D) into memory tokens and project them to keys/values.

        Returns the segment's memory-token cache (M tokens), the (B, 1, T, M) visibility of
        each token to each query, and the left-over retrievals of the unfinished span.
        """
        B, T, D = h.shape
        raw, raw_valid = torch.cat((state.span, h), 1), torch.cat((state.span_valid, valid), 1)
        done = raw.shape[1] // self.span * self.span
        n_new, carried = done // self.span, state.span.shape[1]
        if self.span == 1:
            pooled, pooled_valid = raw, raw_valid
        else:
            weight = raw_valid[:, :done].view(B, n_new, self.span).to(h.dtype)
            pooled = (raw[:, :done].view(B, n_new, self.span, D) * weight[..., None]).sum(2)
            pooled = pooled / weight.sum(2).clamp_min(1.0)[..., None]
            pooled_valid = weight.sum(2) > 0
        last = torch.arange(n_new, device=h.device) * self.span + self.span - 1 - carried  # index in the piece
        k, v = self.attn.project_kv(pooled, positions[last])
        tokens = state.memory_kv.append(k, v, pooled_valid)
        seen = torch.arange(T, device=h.device)[:, None] >= last[None, :]  # (T, n_new)
        old = seen.new_ones(T, state.memory_kv.length)
        visible = torch.cat((old, seen), 1) & tokens.valid[:, None, None, :]
        return tokens, visible, raw[:, done:], raw_valid[:, done:]
