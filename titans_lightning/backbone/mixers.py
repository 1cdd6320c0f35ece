"""Token mixers of the baselines and of MAG, MAL and LMM (docs/method.md section 3; MAC is in mac.py).

Shape legend: B batch, T new tokens, D model width, P persistent tokens, W window.

Each mixer takes the residual stream and returns it with its branch(es) added; the states are
immutable values with ``detach()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..memory import MemoryState, NeuralMemory
from .attention import Attention, KVCache, RMSNorm
from .config import TitansConfig


@dataclass(frozen=True)
class StreamContext:
    """Where the new tokens sit in the stream.

    start: absolute position of the first new token (a Python int: no device sync);
    positions: (T,) absolute positions of the new tokens (RoPE, window, chunk and segment
    boundaries all count from the start of the stream); valid: (B, T) bool, True = real token;
    padded: whether a mask was given (False lets full attention take the causal kernel).
    """

    start: int
    positions: Tensor
    valid: Tensor
    padded: bool = True

    @property
    def memory_mask(self) -> Tensor | None:
        """The mask to hand the memory: None when nothing is padded (its unmasked fast path)."""
        return self.valid if self.padded else None


def make_memory(cfg: TitansConfig) -> NeuralMemory:
    """The neural long-term memory of one block, sized by the config."""
    return NeuralMemory(cfg.dim, heads=cfg.memory_heads, chunk_size=cfg.chunk_size,
                        memory_depth=cfg.memory_depth, memory_expansion=cfg.memory_expansion,
                        activation=cfg.memory_activation, max_lr=cfg.memory_max_lr,
                        max_decay=cfg.memory_max_decay,
                        conv_kernel=cfg.memory_conv_kernel, residual_memory=cfg.memory_residual,
                        memory_norm=cfg.memory_norm, per_channel_decay=cfg.memory_per_channel_decay,
                        init_lr_bias=cfg.memory_init_lr_bias,
                        init_momentum_bias=cfg.memory_init_momentum_bias,
                        init_decay_bias=cfg.memory_init_decay_bias, backend=cfg.memory_backend)


def make_attention(cfg: TitansConfig, window: int | None) -> Attention:
    return Attention(cfg.dim, cfg.heads, cfg.persistent_tokens, window, cfg.rope_base, cfg.dropout)


class AttentionMixer(nn.Module):
    """Transformer++ (``window=None``, full causal) or sliding-window attention: ``x + Attn(norm(x))``.

    Parameters: 4 D^2 + (P + 1) D. State: a KVCache, growing for full attention and exactly
    ``window - 1`` slots for a sliding window.
    """

    def __init__(self, cfg: TitansConfig, window: int | None) -> None:
        super().__init__()
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = make_attention(cfg, window)
        self.drop = nn.Dropout(cfg.dropout)

    def initial_state(self, batch: int, like: Tensor) -> KVCache:
        return self.attn.empty_cache(batch, like)

    def forward(self, x: Tensor, ctx: StreamContext, state: KVCache) -> tuple[Tensor, KVCache]:
        y, state = self.attn(self.norm(x), ctx.positions, ctx.valid, state, ctx.padded)
        return x + self.drop(y), state


class LMMMixer(nn.Module):
    """LMM: the neural memory alone as the token mixer, ``x + M(norm(x))``.

    Parameters: the memory's (``NeuralMemory``) + D. State: a MemoryState (constant size).
    """

    def __init__(self, cfg: TitansConfig) -> None:
        super().__init__()
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.memory = make_memory(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def initial_state(self, batch: int, like: Tensor) -> MemoryState:
        return self.memory.initial_state(batch, like.device)

    def forward(self, x: Tensor, ctx: StreamContext, state: MemoryState) -> tuple[Tensor, MemoryState]:
        y, state = self.memory(self.norm(x), state, ctx.memory_mask)
        return x + self.drop(y), state


@dataclass(frozen=True)
class HybridState:
    """State of MAG and MAL: the memory's and the sliding window's."""

    memory: MemoryState
    attn: KVCache

    def detach(self) -> HybridState:
        return HybridState(self.memory.detach(), self.attn.detach())


class MAGMixer(nn.Module):
    """MAG (memory as gate): ``o = norm(SWA([persistent || x])) * s(norm(M(x)))``, ``x + o``.

    The sliding-window branch and the memory branch both read the normed input and run side by
    side over the whole call; ``s`` is ``cfg.gate`` (sigmoid or SiLU). Persistent tokens enter
    the attention only: in the memory branch they would only shift the learned initial weights.
    Parameters: attention (4 D^2 + P D) + memory + 3 D.
    """

    def __init__(self, cfg: TitansConfig) -> None:
        super().__init__()
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = make_attention(cfg, cfg.window)
        self.memory = make_memory(cfg)
        self.norm_attn = RMSNorm(cfg.dim, cfg.norm_eps, init=cfg.gated_output_init)
        self.norm_memory = RMSNorm(cfg.dim, cfg.norm_eps)
        self.gate = torch.sigmoid if cfg.gate == "sigmoid" else F.silu
        self.drop = nn.Dropout(cfg.dropout)

    def initial_state(self, batch: int, like: Tensor) -> HybridState:
        return HybridState(self.memory.initial_state(batch, like.device), self.attn.empty_cache(batch, like))

    def forward(self, x: Tensor, ctx: StreamContext, state: HybridState) -> tuple[Tensor, HybridState]:
        xn = self.norm(x)
        y, cache = self.attn(xn, ctx.positions, ctx.valid, state.attn)
        m, memory = self.memory(xn, state.memory, ctx.memory_mask)
        o = self.norm_attn(y) * self.gate(self.norm_memory(m))
        return x + self.drop(o), HybridState(memory, cache)


class MALMixer(nn.Module):
    """MAL (memory as layer): ``x + M(norm(x))`` then ``x + SWA(norm(x))``.

    Two residual sub-layers: the memory compresses the past, then a sliding window with the
    persistent tokens attends over the memory layer's output.
    Parameters: memory + attention (4 D^2 + P D) + 2 D.
    """

    def __init__(self, cfg: TitansConfig) -> None:
        super().__init__()
        self.norm_memory = RMSNorm(cfg.dim, cfg.norm_eps)
        self.memory = make_memory(cfg)
        self.norm_attn = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = make_attention(cfg, cfg.window)
        self.drop = nn.Dropout(cfg.dropout)

    def initial_state(self, batch: int, like: Tensor) -> HybridState:
        return HybridState(self.memory.initial_state(batch, like.device), self.attn.empty_cache(batch, like))

    def forward(self, x: Tensor, ctx: StreamContext, state: HybridState) -> tuple[Tensor, HybridState]:
        m, memory = self.memory(self.norm_memory(x), state.memory, ctx.memory_mask)
        x = x + self.drop(m)
        y, cache = self.attn(self.norm_attn(x), ctx.positions, ctx.valid, state.attn)
        return x + self.drop(y), HybridState(memory, cache)
