"""DNA heads: a nucleotide embedding shared by next-base prediction and sequence classification.

Shape legend: B batch, T tokens, D model width, V vocabulary (7: PAD CLS A C G T N), K classes.

Pure torch (no Lightning). Both heads keep their embedding under the same name (``embed``), so
a classifier can start from a pretrained model's backbone and embedding with a fresh output.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

Pooling = Literal["last", "mean", "max"]


class NucleotideEmbedding(nn.Module):
    """(B, T) int64 ids -> (B, T, D): a V x D table at N(0, 1/D), scaled by sqrt(D) so the
    embeddings have about unit RMS like the backbone's normalised stream."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.table = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.table.weight, std=1.0 / math.sqrt(dim))

    def forward(self, tokens: Tensor) -> Tensor:
        return self.table(tokens) * math.sqrt(self.table.embedding_dim)


class NucleotideLMHead(nn.Module):
    """Embedding in, next-base logits out (the output matrix is the embedding table, tied).

    Parameters: V D.
    """

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.embed = NucleotideEmbedding(vocab_size, dim)

    def logits(self, hidden: Tensor) -> Tensor:
        """(B, T, D) backbone output -> (B, T, V) logits of the next token."""
        return hidden @ self.embed.table.weight.t()


def pool(hidden: Tensor, mask: Tensor, mode: Pooling) -> Tensor:
    """(B, T, D) hidden states and (B, T) bool mask of real tokens -> (B, D).

    ``last``: the state at the last real token (the CLS token the data appends), the only one a
    causal backbone has run over the whole sequence. ``mean`` / ``max``: over real tokens only.
    """
    if mode == "last":
        last = mask.long().sum(dim=1).clamp_min(1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "mean":
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
    if mode == "max":
        return hidden.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
    raise ValueError(f"pooling: expected one of 'last', 'mean', 'max', got {mode!r}")


class SequenceClassifierHead(nn.Module):
    """Embedding (plus optional learned positions) in; pooled backbone states -> dropout ->
    linear -> (B, K) class logits.

    Parameters: V D + P D + D K + K, with P = ``positions``.

    ``positions`` > 0 adds a learned absolute position embedding (P x D, at N(0, 1/4)) for
    sequences of up to P tokens, CLS included. It is for labels that depend on where a motif
    sits in a fixed-length window (a splice site is at the centre of its 60 bp): neither a
    causal scan nor RoPE tells a token its absolute offset directly. It is not pretrained.
    """

    def __init__(self, vocab_size: int, dim: int, num_classes: int, pooling: Pooling = "last",
                 dropout: float = 0.0, positions: int = 0) -> None:
        super().__init__()
        if num_classes < 2 or positions < 0:
            raise ValueError(f"SequenceClassifierHead: expected at least 2 classes and positions >= 0, "
                             f"got {num_classes} and {positions}")
        self.pooling = pooling
        self.embed = NucleotideEmbedding(vocab_size, dim)
        self.positions = nn.Parameter(0.5 * torch.randn(positions, dim)) if positions else None
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(dim, num_classes)

    def inputs(self, tokens: Tensor) -> Tensor:
        """(B, T) ids -> (B, T, D) backbone inputs: embeddings, plus positions when enabled."""
        x = self.embed(tokens)
        if self.positions is None:
            return x
        if tokens.shape[1] > len(self.positions):
            raise ValueError(f"a batch of {tokens.shape[1]} tokens (CLS included) exceeds the "
                             f"{len(self.positions)} learned positions; raise `positions`")
        return x + self.positions[: tokens.shape[1]]

    def logits(self, hidden: Tensor, mask: Tensor) -> Tensor:
        """(B, T, D) backbone output and (B, T) mask -> (B, K) class logits."""
        return self.classifier(self.dropout(pool(hidden, mask, self.pooling)))
