"""The chunk grid: where a call's tokens sit among the chunks at absolute stream positions.

Shape legend: B = independent memories, T = tokens in the call, C = chunks, b = chunk_size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .state import FastWeightState


def to_grid(x: Tensor, offset: int, chunks: int, chunk_size: int, fill: float) -> Tensor:
    """(B, T, ...) -> (B, C, b, ...): place the call at its absolute offset inside the grid."""
    after = chunks * chunk_size - offset - x.shape[1]
    if offset or after:  # an aligned call (the usual training batch) needs no copy
        x = F.pad(x, [0, 0] * (x.dim() - 2) + [offset, after], value=fill)
    return x.reshape(x.shape[0], chunks, chunk_size, *x.shape[2:])


@dataclass
class Grid:
    """Where a call sits on the chunk grid: `offset` tokens into its first of `chunks` chunks
    of `size`, and the first chunk's gradient reference when the stream resumes mid-chunk."""

    offset: int
    chunks: int
    size: int
    ref: tuple

    @classmethod
    def plan(cls, state: FastWeightState, tokens: int, chunk_size: int) -> Grid:
        offset = state.position % chunk_size
        chunks = -(-(offset + tokens) // chunk_size)
        ref = tuple(state.ref_weights) if offset else ()
        if chunks == 1:  # the call stays inside one chunk (decoding): its own width, no identity pad
            return cls(0, 1, tokens, ref)
        return cls(offset, chunks, chunk_size, ref)

    def __call__(self, x: Tensor, fill: float = 0.0) -> Tensor:
        """(B, T, ...) -> (B, C, b, ...) on this grid."""
        return to_grid(x, self.offset, self.chunks, self.size, fill)

    def ungrid(self, ys: list[Tensor], tokens: int) -> Tensor:
        """Per-chunk outputs (B, b, ...) -> (B, T, ...) of the call's own tokens."""
        return torch.stack(ys, dim=1).flatten(1, 2)[:, self.offset : self.offset + tokens]
