"""Ranking arithmetic: a hand-computed example, torchmetrics' retrieval metrics, ties,
exclusion, sampled negatives, sampled softmax, and the metric objects in a collection."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics import MetricCollection
from torchmetrics.retrieval import RetrievalHitRate, RetrievalMRR, RetrievalNormalizedDCG

from titans_lightning.heads.recsys import (
    NextItemHead,
    cross_entropy_full,
    exclude_items,
    hit_rate,
    ndcg,
    reciprocal_rank,
    sample_negatives,
    sampled_ranks,
    target_ranks,
)
from titans_lightning.tasks.recsys import PopularityTask, RankingMetric

INF = float("-inf")


def test_hand_computed_example():
    # items 1..5 (column 0 = padding); user 0's target scores 3rd, user 1's 1st, user 2's 5th
    scores = torch.tensor([[INF, 0.9, 0.1, 0.5, 0.7, 0.2],
                           [INF, 0.3, 0.8, 0.1, 0.0, 0.2],
                           [INF, 0.5, 0.4, 0.3, 0.2, 0.1]])
    ranks = target_ranks(scores, torch.tensor([3, 2, 5]))
    assert ranks.tolist() == [3.0, 1.0, 5.0]
    assert hit_rate(ranks, 3).mean().item() == pytest.approx(2 / 3)
    assert hit_rate(ranks, 1).mean().item() == pytest.approx(1 / 3)
    assert ndcg(ranks, 3).mean().item() == pytest.approx((1 / math.log2(4) + 1) / 3)
    assert ndcg(ranks, 5).mean().item() == pytest.approx((1 / math.log2(4) + 1 + 1 / math.log2(6)) / 3)
    assert reciprocal_rank(ranks).mean().item() == pytest.approx((1 / 3 + 1 + 1 / 5) / 3)


@pytest.mark.parametrize("k", [1, 5, 20], ids=["k1", "k5", "k20"])
def test_agrees_with_torchmetrics_retrieval_metrics(k):
    generator = torch.Generator().manual_seed(k)
    users, items = 37, 50
    # positive scores: torchmetrics' MRR (1.9) counts a relevant item only if its score is > 0
    scores = 0.01 + torch.rand(users, items + 1, generator=generator)
    scores[:, 0] = INF
    target = torch.randint(1, items + 1, (users,), generator=generator)
    ranks = target_ranks(scores, target)
    # torchmetrics: one query per user over the N real items, the target the one relevant item
    preds, relevant = scores[:, 1:].flatten(), torch.zeros(users, items, dtype=torch.bool)
    relevant[torch.arange(users), target - 1] = True
    indexes = torch.arange(users).repeat_interleave(items)
    reference = {"hr": RetrievalHitRate(top_k=k), "ndcg": RetrievalNormalizedDCG(top_k=k), "mrr": RetrievalMRR()}
    expected = {name: m(preds, relevant.flatten(), indexes=indexes).item() for name, m in reference.items()}
    assert hit_rate(ranks, k).mean().item() == pytest.approx(expected["hr"], abs=1e-6)
    assert ndcg(ranks, k).mean().item() == pytest.approx(expected["ndcg"], abs=1e-6)
    assert reciprocal_rank(ranks).mean().item() == pytest.approx(expected["mrr"], abs=1e-6)


def test_ties_count_against_the_target_wherever_it_sits():
    scores = torch.zeros(3, 101)
    scores[:, 0] = INF
    assert target_ranks(scores, torch.tensor([1, 50, 100])).tolist() == [100.0] * 3  # last of the 100 items
    tie = torch.tensor([[INF, 0.5, 0.5, 0.9, 0.1]])
    assert target_ranks(tie, torch.tensor([1])).item() == 3.0 == target_ranks(tie, torch.tensor([2])).item()
    # sampled: the target sits in candidate column 0 and still ranks below the negatives it ties with
    target, negatives = torch.tensor([1]), torch.tensor([[2, 3, 4]])
    assert sampled_ranks(tie, target, negatives).item() == 3.0


def test_nan_scores_are_misses_not_hits():
    scores = torch.tensor([[INF, float("nan"), float("nan"), float("nan")], [INF, 0.1, float("nan"), 0.3]])
    assert target_ranks(scores, torch.tensor([2, 1])).tolist() == [math.inf, 2.0]


def test_excluded_items_and_an_excluded_target():
    scores = torch.tensor([[INF, 0.9, 0.8, 0.7, 0.6]] * 2)
    seen = torch.tensor([[1, 2, 0], [3, 0, 0]])  # 0 = padding of the seen list
    excluded = exclude_items(scores, seen)
    ranks = target_ranks(excluded, torch.tensor([3, 3]))
    assert ranks[0].item() == 1.0  # items 1 and 2 no longer rank above it
    assert ranks[1].item() == math.inf  # a repeated target is a miss everywhere
    assert hit_rate(ranks, 4)[1] == 0 and ndcg(ranks, 4)[1] == 0 and reciprocal_rank(ranks)[1] == 0


def test_sampled_negatives_are_distinct_unseen_and_not_the_target():
    seen = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    target = torch.tensor([4, 6])
    negatives = sample_negatives(seen, target, num_items=12, count=6, generator=torch.Generator().manual_seed(0))
    for row, (s, t) in enumerate(zip(seen, target)):
        chosen = set(negatives[row].tolist())
        assert len(chosen) == 6 and not chosen & (set(s.tolist()) | {t.item(), 0})
    with pytest.raises(ValueError, match="fewer than the 10 negatives"):
        sample_negatives(seen, target, num_items=12, count=10, generator=torch.Generator())
    scores = torch.arange(13.0)[None].repeat(2, 1)  # higher id, higher score
    ranks = sampled_ranks(scores, target, negatives)
    assert ranks.tolist() == [1 + (negatives[i] > target[i]).sum().item() for i in range(2)]


@pytest.mark.parametrize("bias", [False, True], ids=["tied", "tied-with-item-bias"])
def test_sampled_softmax_over_every_item_equals_the_full_softmax(bias):
    head = NextItemHead(num_items=9, dim=4, bias=bias)
    if bias:
        torch.nn.init.normal_(head.bias)
    hidden, targets = torch.randn(6, 4), torch.tensor([1, 2, 3, 9, 9, 5])
    every_item = torch.arange(1, 10)  # each row's own target is masked out of its negatives
    logits = head.sampled_logits(hidden, targets, every_item)
    sampled = torch.nn.functional.cross_entropy(logits, torch.zeros_like(targets))
    assert sampled.item() == pytest.approx(cross_entropy_full(head, hidden, targets).item(), rel=1e-5)


def test_metric_objects_in_one_collection_stay_separate():
    # A MetricCollection merges metrics whose states look alike after the first batch; HR@1 and
    # HR@5 start equal here (every rank is 1 or above 5) and must still diverge later.
    collection = MetricCollection({"hr@1": RankingMetric("hr", 1), "hr@5": RankingMetric("hr", 5),
                                   "ndcg@5": RankingMetric("ndcg", 5), "mrr": RankingMetric("mrr")})
    collection.update(torch.tensor([1.0, 9.0]))
    collection.update(torch.tensor([3.0, math.inf]))
    values = {k: v.item() for k, v in collection.compute().items()}
    assert values["hr@1"] == pytest.approx(1 / 4) and values["hr@5"] == pytest.approx(2 / 4)
    assert values["ndcg@5"] == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert values["mrr"] == pytest.approx((1 + 1 / 9 + 1 / 3) / 4)


CONSTANT_SCORER = [  # (eval_negatives, C: the candidates each target is ranked among)
    pytest.param(None, 300, id="full-ranking"),
    pytest.param(100, 101, id="sampled-100-negatives"),
]


@pytest.mark.parametrize("eval_negatives,candidates", CONSTANT_SCORER)
def test_a_constant_scorer_ranks_every_target_last(eval_negatives, candidates):
    """Chance (a random scorer) would score HR@10 = 10 / C and MRR = (1 + 1/2 + ... + 1/C) / C;
    with ties counted against the target a constant scorer scores the floor: every target ranks
    C, so HR@K = NDCG@K = 0 for K < C and MRR = 1 / C, in both modes. Targets with the smallest
    ids are included: breaking ties by id or by candidate column would make them hits."""
    task = PopularityTask(ks=[10, 20], exclude_seen=False, eval_negatives=eval_negatives,
                          data_sizes={"num_items": 300})
    task.configure_model()  # no training: every count is 0, every item scores log(1 + 0) = 0
    users = 64
    items = torch.randint(1, 301, (users, 5), generator=torch.Generator().manual_seed(0))
    batch = {"items": items, "mask": items != 0, "lengths": torch.full((users,), 5), "user": torch.arange(users),
             "seen": items, "target": torch.cat((torch.arange(1, 11), torch.arange(200, 200 + users - 10)))}
    _, ranks = task.compute_loss(batch)
    assert ranks.tolist() == [float(candidates)] * users
    metrics = MetricCollection(task.build_metrics())
    metrics.update(ranks)
    prefix = "" if eval_negatives is None else f"sampled{eval_negatives}_"
    values = {name.removeprefix(prefix): value.item() for name, value in metrics.compute().items()}
    assert values == {"hr@10": 0.0, "ndcg@10": 0.0, "hr@20": 0.0, "ndcg@20": 0.0,
                      "mrr": pytest.approx(1 / candidates)}
