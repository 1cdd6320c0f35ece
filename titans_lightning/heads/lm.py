"""Language-model head: token embedding in, logits out, and sampling through the streaming state.

Shape legend: B batch, T tokens, P prompt tokens, N new tokens, D model width, V vocabulary.

Pure torch (no Lightning). ``generate`` is the fast path: the prompt goes through the backbone once,
then each new token is one step of the backbone's streaming state. ``generate_by_recomputation``
beside it is the obvious reference (the whole sequence again for every new token); greedy decoding
must give the same tokens from both.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Optional

import torch
from torch import Tensor, nn

#: ``backbone(x, state) -> (h, state)``: a TitansBackbone, or anything streaming like it.
Backbone = Callable[..., tuple[Tensor, object]]


class LMHead(nn.Module):
    """Token embedding (V x D) and the output projection D -> V, optionally the same matrix.

    Parameters: V D (tied) or 2 V D. The embedding starts at N(0, 1/D) so embeddings have about
    unit RMS like the backbone's normalised stream; the untied output starts at N(0, 1/D) too,
    so initial logits are O(1) and the first loss is near ln V.
    """

    def __init__(self, vocab_size: int, dim: int, tie_weights: bool = True) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim)
        self.output = nn.Linear(dim, vocab_size, bias=False)
        nn.init.normal_(self.embedding.weight, std=1.0 / math.sqrt(dim))
        nn.init.normal_(self.output.weight, std=1.0 / math.sqrt(dim))
        self.tie_weights = tie_weights
        if tie_weights:
            self.output.weight = self.embedding.weight

    def embed(self, tokens: Tensor) -> Tensor:
        """(B, T) int64 -> (B, T, D); scaled by sqrt(D) so a tied N(0, 1/D) table has unit RMS."""
        return self.embedding(tokens) * math.sqrt(self.embedding.embedding_dim)

    def logits(self, hidden: Tensor) -> Tensor:
        """(B, T, D) backbone output -> (B, T, V) next-token logits."""
        return self.output(hidden)


def sample_next(logits: Tensor, temperature: float = 1.0, top_k: Optional[int] = None,
                generator: Optional[torch.Generator] = None) -> Tensor:
    """(B, V) logits -> (B,) token ids: greedy when ``temperature == 0``, else sampled from
    ``softmax(logits / temperature)`` restricted to the ``top_k`` most likely tokens."""
    if temperature < 0:
        raise ValueError(f"temperature: expected >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(head: LMHead, backbone: Backbone, prompt: Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: Optional[int] = None, generator: Optional[torch.Generator] = None) -> Tensor:
    """Continue ``prompt`` (B, P) by ``max_new_tokens`` tokens; returns (B, P + N).

    The prompt is read in one call; every later call feeds only the token just sampled, with the
    state the previous call returned, so no token is ever recomputed (per-token cost is constant
    for every variant with a bounded state).
    """
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise ValueError(f"generate: expected a (B, P) prompt with P >= 1, got shape {tuple(prompt.shape)}")
    hidden, state = backbone(head.embed(prompt))
    tokens = [prompt]
    for step in range(max_new_tokens):
        next_token = sample_next(head.logits(hidden[:, -1]), temperature, top_k, generator)[:, None]
        tokens.append(next_token)
        if step + 1 < max_new_tokens:
            hidden, state = backbone(head.embed(next_token), state)
    return torch.cat(tokens, dim=1)


@torch.no_grad()
def generate_by_recomputation(head: LMHead, backbone: Backbone, prompt: Tensor, max_new_tokens: int,
                              temperature: float = 1.0, top_k: Optional[int] = None,
                              generator: Optional[torch.Generator] = None) -> Tensor:
    """Reference for ``generate``: the whole sequence through a fresh backbone for every token."""
    tokens = prompt
    for _ in range(max_new_tokens):
        hidden, _ = backbone(head.embed(tokens))
        next_token = sample_next(head.logits(hidden[:, -1]), temperature, top_k, generator)[:, None]
        tokens = torch.cat([tokens, next_token], dim=1)
    return tokens
