"""Llama-style blocks; the token mixer is chosen by the variant.

Shape legend: B batch, T new tokens, D model width.

``TitansBlock`` is the one unit that FSDP wraps and activation checkpointing recomputes
(``TitansBackbone.block_class``). A block is ``x + mixer(x)`` then ``x + MLP(norm(x))``; each mixer
owns its pre-norms and residual adds, because MAL stacks two residual sub-layers (memory, then
attention) where the others have one.

Every mixer (``mixers.py``, ``mac.py``) has the same interface::

    mixer(x, ctx, state) -> (x, state)     # x: (B, T, D) residual stream, ctx: StreamContext
    mixer.initial_state(batch, like)       # state at the start of a stream

States are immutable values with ``detach()``; a stream fed in pieces gives the same result as one
call.
"""

from __future__ import annotations

from torch import Tensor, nn

from .attention import RMSNorm, SwiGLU
from .config import TitansConfig
from .mac import MACMixer
from .mixers import AttentionMixer, LMMMixer, MAGMixer, MALMixer, StreamContext


def build_mixer(cfg: TitansConfig) -> nn.Module:
    """The token mixer of one block for ``cfg.variant``."""
    if cfg.variant == "transformer":
        return AttentionMixer(cfg, window=None)
    if cfg.variant == "swa":
        return AttentionMixer(cfg, window=cfg.window)
    return {"mac": MACMixer, "mag": MAGMixer, "mal": MALMixer, "lmm": LMMMixer}[cfg.variant](cfg)


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

    def forward(self, x: Tensor, ctx: StreamContext, state=None) -> tuple[Tensor, object]:
        """x (B, T, D) -> (B, T, D) and the mixer's next state; ``state=None`` starts a stream.

        The start state is made here, inside the block's own forward: under FSDP that is where the
        block's parameters (the memory's M_0 among them) are gathered into whole tensors.
        """
        if state is None:
            state = self.mixer.initial_state(x.shape[0], x)
        x, state = self.mixer(x, ctx, state)
        return x + self.mlp(self.norm(x)), state
