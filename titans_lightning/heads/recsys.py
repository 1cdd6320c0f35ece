"""Next-item recommendation head and ranking arithmetic (pure torch, no Lightning).

Shape legend: B users, T history positions, D model width, N items (ids 1..N; id 0 is padding,
so score tables have N + 1 columns and column 0 is always -inf), P scored positions, M negatives.

Ranking convention (used by every metric here, full and sampled alike): the rank of the target
is the number of candidates scored at least as high as the target, the target included. Ties
count against the target: it ranks last among the items it ties with, so a model earns nothing
by scoring items alike, whatever their ids or their place among the candidates (a constant
scorer ranks every target last: HR@K = NDCG@K = 0 for K below the number of candidates, MRR =
1 / that number). An excluded target (seen, with ``exclude_seen``) has rank +inf, a miss at
every K.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class NextItemHead(nn.Module):
    """Item embedding table shared between input and scoring (tied weights).

    Args:
        num_items: N; the table has N + 1 rows, row 0 (padding) fixed at zero.
        dim: D, the backbone width.
        dropout: dropout on the input embeddings (training only).
        bias: add a learned per-item score bias (an item's prior popularity), so the shared
            embedding need not encode popularity in its geometry.

    Parameters: (N + 1) * D, plus N + 1 with ``bias``.
    """

    def __init__(self, num_items: int, dim: int, dropout: float = 0.0, bias: bool = False) -> None:
        super().__init__()
        if num_items < 1:
            raise ValueError(f"NextItemHead: expected num_items >= 1, got {num_items}")
        self.num_items = num_items
        self.embedding = nn.Embedding(num_items + 1, dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.bias = nn.Parameter(torch.zeros(num_items + 1)) if bias else None
        with torch.no_grad():  # GPT-2's 0.02: tied logits h . e start small (h is RMS-normalised)
            self.embedding.weight.normal_(0.0, 0.02)
            self.embedding.weight[0].zero_()

    def embed(self, items: Tensor) -> Tensor:
        """(B, T) item ids -> (B, T, D) input embeddings."""
        return self.dropout(self.embedding(items))

    def scores(self, hidden: Tensor) -> Tensor:
        """(..., D) hidden states -> (..., N + 1) scores of every item; column 0 (padding) is -inf."""
        weight = self.embedding.weight
        bias = self.bias if self.bias is not None else weight.new_zeros(weight.shape[0])
        # padding's -inf goes into the (N + 1,) bias, added inside the product: one pass over the
        # (..., N + 1) table (a separate add and fill each cost as much as the product on CPU)
        bias = bias.index_fill(0, torch.zeros(1, dtype=torch.long, device=bias.device), float("-inf"))
        flat = torch.addmm(bias.to(hidden.dtype), hidden.reshape(-1, hidden.shape[-1]), weight.t().to(hidden.dtype))
        return flat.view(*hidden.shape[:-1], weight.shape[0])

    def sampled_logits(self, hidden: Tensor, targets: Tensor, negatives: Tensor) -> Tensor:
        """Logits of the target and M shared negatives (sampled softmax; the target is class 0).

        Args:
            hidden: (P, D); targets: (P,) item ids; negatives: (M,) item ids drawn uniformly
                (a uniform proposal needs no log-Q correction: it shifts every logit equally).
        Returns:
            (P, 1 + M); a negative equal to the row's target (an accidental hit) is -inf.
        """
        weight = self.embedding.weight
        positive = (hidden * weight[targets]).sum(-1, keepdim=True)
        negative = hidden @ weight[negatives].t()
        if self.bias is not None:
            positive, negative = positive + self.bias[targets, None], negative + self.bias[negatives]
        negative = negative.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
        return torch.cat((positive, negative), -1)


def exclude_items(scores: Tensor, items: Tensor) -> Tensor:
    """Scores (B, N + 1) with the items (B, S) set to -inf (0 entries are padding, already -inf)."""
    return scores.scatter(-1, items, float("-inf"))


def target_ranks(scores: Tensor, target: Tensor) -> Tensor:
    """(B, C) scores, (B,) target column -> (B,) float ranks (1 = best; +inf for a -inf target).

    rank = the number of columns scored at least as high as the target's (its own included):
    ties count against the target, whichever columns they sit in (see the module docstring).
    NaN scores count as -inf: a diverged model must score misses, not the perfect ranks that
    NaN comparisons would give.
    """
    scores = torch.where(scores.isnan(), float("-inf"), scores)
    rows = torch.arange(scores.shape[0], device=scores.device)
    own = scores[rows, target][:, None]
    ranks = (scores >= own).sum(-1).to(torch.float64)
    return ranks.masked_fill(own[:, 0] == float("-inf"), math.inf)


def sample_negatives(seen: Tensor, target: Tensor, num_items: int, count: int, generator: torch.Generator) -> Tensor:
    """(B, M) items per user drawn uniformly without replacement among those neither seen nor the target.

    Args:
        seen: (B, S) item ids (0 = padding); target: (B,); count: M.
    """
    keys = torch.rand(seen.shape[0], num_items + 1, generator=generator, device="cpu").to(seen.device)
    keys = keys.scatter(-1, seen, 2.0).scatter(-1, target[:, None], 2.0)
    keys[:, 0] = 2.0
    available = int((keys < 2.0).sum(-1).min())
    if available < count:
        raise ValueError(f"sampled evaluation: a user has only {available} unseen items, fewer than "
                         f"the {count} negatives asked for")
    return keys.topk(count, dim=-1, largest=False).indices


def sampled_ranks(scores: Tensor, target: Tensor, negatives: Tensor) -> Tensor:
    """(B,) ranks of the target among itself and its (B, M) negatives (1 = best; M + 1 = last).

    The target sits in candidate column 0, but ties still count against it (``target_ranks``):
    a negative scored like the target ranks above it, so a constant scorer ranks it M + 1.
    """
    candidates = torch.cat((target[:, None], negatives), -1)
    return target_ranks(scores.gather(-1, candidates), torch.zeros_like(target))


def hit_rate(ranks: Tensor, k: int) -> Tensor:
    """(B,) ranks -> (B,) 1.0 where the target is in the top k (HR@k, recall@k with one target)."""
    return (ranks <= k).to(torch.float64)


def ndcg(ranks: Tensor, k: int) -> Tensor:
    """(B,) ranks -> (B,) NDCG@k with one relevant item: 1 / log2(1 + rank) if rank <= k, else 0."""
    gain = 1.0 / torch.log2(1.0 + ranks)  # 0 for an infinite rank
    return torch.where(ranks <= k, gain, torch.zeros_like(gain))


def reciprocal_rank(ranks: Tensor) -> Tensor:
    """(B,) ranks -> (B,) 1 / rank (0 for +inf); its mean is MRR over the full ranking."""
    return 1.0 / ranks


def cross_entropy_full(head: NextItemHead, hidden: Tensor, targets: Tensor) -> Tensor:
    """Mean full-softmax cross-entropy of (P, D) hidden states against (P,) target ids."""
    return F.cross_entropy(head.scores(hidden).float(), targets)


def cross_entropy_sampled(head: NextItemHead, hidden: Tensor, targets: Tensor, count: int,
                          generator: torch.Generator | None = None) -> Tensor:
    """Mean sampled-softmax cross-entropy with ``count`` uniform negatives shared by the P positions."""
    negatives = torch.randint(1, head.num_items + 1, (count,), generator=generator, device=targets.device)
    logits = head.sampled_logits(hidden, targets, negatives).float()
    return F.cross_entropy(logits, torch.zeros_like(targets))
