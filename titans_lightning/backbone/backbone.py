"""The Titans backbone: (B, T, D) embeddings in, (B, T, D) hidden states out, state in and out.

No embedding and no head: each domain brings its own. The state makes the backbone a stream
processor: feeding a stream in pieces of any length, down to one token, gives the same hidden
states as one call, and for every variant but the transformer the state has a bounded size.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor, nn

from .attention import Attention, RMSNorm, SwiGLU
from .blocks import StreamContext, TitansBlock
from .config import TitansConfig


@dataclass(frozen=True)
class TitansState:
    """Streaming state of a backbone: tokens consumed so far and one mixer state per block.

    An immutable value: keeping an old state is a valid snapshot to resume from.
    """

    position: int
    blocks: tuple

    def detach(self) -> TitansState:
        """Cut the autograd graph (truncated backpropagation through time across batches)."""
        return TitansState(self.position, tuple(s.detach() for s in self.blocks))

    def numel(self) -> int:
        """Elements held by every tensor of the state (constant over a stream but for the transformer)."""
        return sum(t.numel() for t in _tensors(self.blocks))


def _tensors(obj: Any):
    """Every tensor inside nested dataclasses, tuples, lists and dicts (but fields marked as parameters)."""
    if isinstance(obj, Tensor):
        yield obj
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            if not f.metadata.get("parameters"):  # a reference to the model's parameters is not state
                yield from _tensors(getattr(obj, f.name))
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


class TitansBackbone(nn.Module):
    """``depth`` TitansBlocks and a final RMSNorm (docs/method.md section 3).

    Parameters, with D = dim, F = mlp_hidden, P = persistent_tokens, N = depth:
    every block has an MLP (3 D F) and two RMSNorm scales (2 D); the mixer adds
    4 D^2 + P D for attention (all but lmm) and the neural memory's own count for
    mac/mag/mal/lmm (about 5 D^2 + 3 d e d H, see ``NeuralMemory``), plus the final norm D.
    ``num_parameters()`` at the named sizes:

    ========  ===========  ===========  ===========  ===========  ===========  ===========
    size      mac          mag          mal          lmm          transformer  swa
    ========  ===========  ===========  ===========  ===========  ===========  ===========
    debug     42,828       42,828       42,764       34,380       26,912       26,912
    small     5,095,984    5,095,984    5,094,960    4,028,976    3,229,952    3,229,952
    base      126,740,400  126,740,400  126,731,184  97,230,768   86,133,504   86,133,504
    ========  ===========  ===========  ===========  ===========  ===========  ===========
    """

    block_class = TitansBlock
    """The unit FSDP wraps and activation checkpointing recomputes."""

    def __init__(self, config: TitansConfig) -> None:
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList(TitansBlock(config) for _ in range(config.depth))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 style init of the attention and MLP matrices: N(0, 0.02), and the projections
        that write into the residual stream scaled by 1 / sqrt(2 depth) so the stream's variance
        does not grow with depth. The memory keeps its own init (``NeuralMemory.reset_parameters``)."""
        std = 0.02
        for module in self.modules():
            if isinstance(module, Attention):
                nn.init.normal_(module.qkv.weight, std=std)
                nn.init.normal_(module.out.weight, std=std / math.sqrt(2 * self.config.depth))
            elif isinstance(module, SwiGLU):
                nn.init.normal_(module.gate_up.weight, std=std)
                nn.init.normal_(module.down.weight, std=std / math.sqrt(2 * self.config.depth))

    @property
    def dim(self) -> int:
        return self.config.dim

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def initial_state(self, batch: int, like: Tensor) -> TitansState:
        """State at the start of a stream of ``batch`` sequences (dtype/device of ``like``)."""
        return TitansState(0, tuple(b.initial_state(batch, like) for b in self.blocks))

    def forward(self, x: Tensor, state: Optional[TitansState] = None,
                mask: Optional[Tensor] = None) -> tuple[Tensor, TitansState]:
        """Run T new tokens of B streams.

        Args:
            x: (B, T, D) input embeddings.
            state: the state returned by the previous call of the same streams; None = start.
            mask: (B, T) bool, True = real token. A padded token is never attended to and leaves
                the memory unchanged; its own output is finite but meaningless.

        Returns:
            h: (B, T, D) hidden states after the final norm; the next ``state``.
        """
        B, T, _ = x.shape
        if state is None:
            # Each block makes its own start state inside its forward, where a sharded (FSDP)
            # block has its parameters gathered: M_0 read here would still be a shard.
            state = TitansState(0, (None,) * len(self.blocks))
        padded = mask is not None
        if mask is None:
            mask = torch.ones(B, T, dtype=torch.bool, device=x.device)
        elif mask.shape != (B, T) or mask.dtype != torch.bool:
            raise ValueError(f"mask: expected a bool tensor of shape {(B, T)}, got {mask.dtype} {tuple(mask.shape)}")
        positions = torch.arange(state.position, state.position + T, device=x.device)
        ctx = StreamContext(state.position, positions, mask, padded)
        new_states = []
        for block, block_state in zip(self.blocks, state.blocks):
            x, block_state = block(x, ctx, block_state)
            new_states.append(block_state)
        return self.norm(x), TitansState(state.position + T, tuple(new_states))
