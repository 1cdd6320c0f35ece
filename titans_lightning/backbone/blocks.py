"""Llama-style blocks; the token mixer is chosen by the variant.

Shape legend: B batch, T new tokens, D model width.

``TitansBlock`` is the one unit that FSDP wraps and activation checkpointing recomputes
(``TitansBackbone.block_class``). A block is ``x + mixer(x)`` then ``x + MLP(norm(x))``; each mixer
owns its pre-norms and residual adds, because MAL stacks two residual sub-layers (memory, then
attention) where the others have one.

Every mixer has the same interface::

    mixer(x, ctx, state) -> (x, state)     # x: (B, T, D) residual stream, ctx: StreamContext
    mixer.initial_state(batch, like)       # state at the start of a stream

States are immutable values with ``detach()``; a stream fed in pieces gives the same result as one
call.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from .attention import Attention, KVCache, RMSNorm, SwiGLU
from .config import TitansConfig


@dataclass(frozen=True)
class StreamContext:
    """Where the new tokens sit in the stream.

    positions: (T,) absolute positions of the new tokens (RoPE, window, chunk and segment
    boundaries all count from the start of the stream); valid: (B, T) bool, True = real token.
    """

    positions: Tensor
    valid: Tensor

    @property
    def start(self) -> int:
        """Absolute position of the first new token."""
        return int(self.positions[0]) if self.positions.numel() else 0


class AttentionMixer(nn.Module):
    """Transformer++ (``window=None``, full causal) or sliding-window attention: ``x + Attn(norm(x))``.

    Parameters: 4 * D^2 + (P + 1) * D. State: a KVCache, growing for full attention and
    exactly ``window - 1`` slots for a sliding window.
    """

    def __init__(self, cfg: TitansConfig, window: int | None) -> None:
        super().__init__()
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg.dim, cfg.heads, cfg.persistent_tokens, window, cfg.rope_base, cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)

    def initial_state(self, batch: int, like: Tensor) -> KVCache:
        return self.attn.empty_cache(batch, like)

    def forward(self, x: Tensor, ctx: StreamContext, state: KVCache) -> tuple[Tensor, KVCache]:
        y, state = self.attn(self.norm(x), ctx.positions, ctx.valid, state)
        return x + self.drop(y), state


def build_mixer(cfg: TitansConfig) -> nn.Module:
    """The token mixer of one block for ``cfg.variant``."""
    if cfg.variant == "transformer":
        return AttentionMixer(cfg, window=None)
    if cfg.variant == "swa":
        return AttentionMixer(cfg, window=cfg.window)
    raise NotImplementedError(f"variant {cfg.variant!r} lands with the memory layer (issue 3)")


class TitansBlock(nn.Module):
    """One Llama-style block: the variant's token mixer, then ``x + SwiGLU(RMSNorm(x))``.

    Parameters: mixer + 3 * D * mlp_hidden + D (see each mixer for its count).
    """

    def __init__(self, cfg: TitansConfig) -> None:
        super().__init__()
        self.mixer = build_mixer(cfg)
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = SwiGLU(cfg.dim, cfg.mlp_hidden, cfg.dropout)

    def initial_state(self, batch: int, like: Tensor):
        """Mixer state at the start of a stream for ``batch`` sequences (dtype/device of ``like``)."""
        return self.mixer.initial_state(batch, like)

    def forward(self, x: Tensor, ctx: StreamContext, state) -> tuple[Tensor, object]:
        """x (B, T, D) -> (B, T, D) and the mixer's next state."""
        x, state = self.mixer(x, ctx, state)
        return x + self.mlp(self.norm(x)), state
