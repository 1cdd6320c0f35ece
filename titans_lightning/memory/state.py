"""The recurrent state of the neural memory: fast weights, momentum, chunk-start weights, position.

A state is an immutable value: every call returns a new one, so keeping an old state object is a
valid snapshot (MAC retrieves with the memory as it was before a segment).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class FastWeightState:
    """State of `neural_memory` after `position` tokens of a stream.

    Attributes:
        weights: current memory weights `W_t`, per layer (N, o_l, i_l), N = batch (x heads).
        momentum: current surprise momentum `S_t`, same shapes as `weights`.
        ref_weights: weights at the start of the current chunk (`W_ref`): every gradient of the
            chunk is taken there, so a stream cut mid-chunk needs them to continue exactly.
        position: number of tokens consumed; chunk boundaries sit at multiples of chunk_size.
        shared: for a state still at its initial weights, those weights per head, (H, o_l, i_l)
            per layer (``weights`` being their copies per sequence): the first chunk then takes
            one product per head (``shared_start.py``). Empty for every other state.
    """

    weights: tuple[Tensor, ...]
    momentum: tuple[Tensor, ...]
    ref_weights: tuple[Tensor, ...]
    position: int = 0
    # the model's own parameters, not state: counted by no numel (metadata read by backbone._tensors)
    shared: tuple[Tensor, ...] = field(default=(), metadata={"parameters": True})

    @classmethod
    def initial(cls, weights: Sequence[Tensor]) -> FastWeightState:
        """The state before any token: `W = W_ref = M_0`, `S = 0`."""
        weights = tuple(weights)
        return cls(weights, tuple(torch.zeros_like(w) for w in weights), weights, 0)

    def detach(self) -> FastWeightState:
        """Cut the autograd graph (truncated backpropagation across batches)."""
        return FastWeightState(
            tuple(w.detach() for w in self.weights),
            tuple(s.detach() for s in self.momentum),
            tuple(r.detach() for r in self.ref_weights),
            self.position,
            tuple(w.detach() for w in self.shared),
        )

    def numel(self) -> int:
        """Number of elements held (constant however long the stream)."""
        tensors = self.weights + self.momentum + self.ref_weights
        return sum(t.numel() for t in tensors)
