"""Next-item recommendation: a Titans (or SASRec = transformer) backbone over a user's history,
scored against every item with the tied item embedding; the most-popular baseline; top-K writer.

Shape legend: B users (or training windows), T history positions, D model width, N items (ids
1..N, 0 = padding), P real (unpadded) training positions. Batches come from
``datamodules.recsys.InteractionDataModule`` (right-padded, ``mask`` True at real items).

Evaluation is by full ranking over all N items (HR@K, NDCG@K for every K in ``ks``, MRR over
the whole ranking), optionally excluding the items the user saw before the target (RecBole's
full-sort protocol). Sampled-negative evaluation (SASRec's 100 negatives) is a named option
whose metrics carry a ``sampled<M>_`` prefix so they cannot be mistaken for full-ranking ones.
In both, ties count against the target (``titans_lightning.heads.recsys``): a constant scorer
ranks every target last and scores HR@K = NDCG@K = 0.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from typing import Any, Literal, Optional

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection

from titans_lightning.backbone import TitansConfig
from titans_lightning.callbacks import run_directory
from titans_lightning.heads.recsys import (
    NextItemHead,
    cross_entropy_full,
    cross_entropy_sampled,
    exclude_items,
    hit_rate,
    ndcg,
    reciprocal_rank,
    sample_negatives,
    sampled_ranks,
    target_ranks,
)
from titans_lightning.tasks.base import Task, TitansTask
from titans_lightning.tasks.schedules import AdamW, WarmupCosine

RANK_FUNCTIONS = {"hr": hit_rate, "ndcg": ndcg}


class RankingMetric(Metric):
    """Mean over users of HR@k, NDCG@k (``kind`` "hr" / "ndcg") or the reciprocal rank ("mrr").

    ``update(ranks)`` takes (B,) float ranks from ``titans_lightning.heads.recsys.target_ranks``.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, kind: Literal["hr", "ndcg", "mrr"], k: Optional[int] = None) -> None:
        super().__init__()
        self.kind, self.k = kind, k
        # State names unique per metric: a MetricCollection merges metrics whose states are
        # named alike and happen to be equal after the first batch (its "compute groups").
        self.total_name, self.count_name = f"{kind}{k or ''}_total", f"{kind}{k or ''}_count"
        self.add_state(self.total_name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state(self.count_name, torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, ranks: Tensor) -> None:
        values = reciprocal_rank(ranks) if self.kind == "mrr" else RANK_FUNCTIONS[self.kind](ranks, self.k)
        setattr(self, self.total_name, getattr(self, self.total_name) + values.sum())
        setattr(self, self.count_name, getattr(self, self.count_name) + ranks.numel())

    def compute(self) -> Tensor:
        return (getattr(self, self.total_name) / getattr(self, self.count_name).clamp_min(1)).float()


def metric_prefix(eval_negatives: Optional[int]) -> str:
    """"" for full ranking, ``"sampled<M>_"`` for sampled-negative evaluation."""
    return "" if eval_negatives is None else f"sampled{eval_negatives}_"


class _Recommender(Task):
    """What every next-item recommender shares, on the task harness: evaluation by ranking (full
    or sampled), its metrics and checkpoint monitor, top-K prediction. Subclasses write
    ``item_scores`` (and ``training_loss``, or a ``training_step`` of their own) and call
    ``set_ranking`` in their ``__init__``."""

    monitor_mode = "max"

    def set_ranking(self, ks: Sequence[int], exclude_seen: bool, eval_negatives: Optional[int],
                    predict_top_k: int) -> None:
        """Check and keep the evaluation options (see :class:`NextItemTask`); the checkpoint
        monitor becomes ``val/[sampled<M>_]ndcg@<ks[0]>``."""
        ks = list(ks)
        if not ks or len(set(ks)) < len(ks) or any(not isinstance(k, int) or k < 1 for k in ks):
            raise ValueError(f"{type(self).__name__}.ks: expected distinct positive ints, got {ks}")
        if eval_negatives is not None and eval_negatives < 1:
            raise ValueError(f"{type(self).__name__}.eval_negatives: expected None or a positive int, "
                             f"got {eval_negatives}")
        if eval_negatives is not None and max(ks) > eval_negatives:
            raise ValueError(f"{type(self).__name__}: with eval_negatives={eval_negatives} every K must be at most "
                             f"{eval_negatives} (the target is ranked among {eval_negatives + 1} items), got ks={ks}")
        self.ks, self.exclude_seen, self.eval_negatives = ks, exclude_seen, eval_negatives
        self.predict_top_k = predict_top_k
        self.monitor = f"val/{metric_prefix(eval_negatives)}ndcg@{ks[0]}"
        self.negative_generator: Optional[torch.Generator] = None

    @property
    def num_items(self) -> int:
        if "num_items" not in self.data_sizes:
            raise ValueError(f"{type(self).__name__}: data_sizes has no 'num_items' (got {self.data_sizes}); "
                             f"it is linked from the DataModule's data_sizes")
        return self.data_sizes["num_items"]

    def build_metrics(self) -> dict[str, Metric]:
        prefix = metric_prefix(self.eval_negatives)
        metrics = {f"{prefix}{kind}@{k}": RankingMetric(kind, k) for k in self.ks for kind in ("hr", "ndcg")}
        return {**metrics, f"{prefix}mrr": RankingMetric("mrr")}

    @abc.abstractmethod
    def item_scores(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, N + 1) float32 scores of every item after each user's last real position."""

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        """The loss of a training batch (one with ``targets``)."""
        raise NotImplementedError(f"{type(self).__name__} has no training loss; it overrides training_step")

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Optional[Tensor]]:
        """Training batches: ``(loss, None)``; evaluation batches: ``(target loss, (B,) ranks)``."""
        if "targets" in batch:
            return self.training_loss(batch), None
        scores = self.item_scores(batch)
        return F.cross_entropy(scores, batch["target"]), self.ranks(scores, batch)

    # ---- ranking ----------------------------------------------------------------------------

    def ranks(self, scores: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """(B,) ranks of the targets: among all items, or among sampled negatives (named option)."""
        if self.exclude_seen:
            scores = exclude_items(scores, batch["seen"])
        if self.eval_negatives is None:
            return target_ranks(scores, batch["target"])
        if self.negative_generator is None:
            self.negative_generator = torch.Generator().manual_seed(0)
        negatives = sample_negatives(batch["seen"], batch["target"], self.num_items, self.eval_negatives,
                                     self.negative_generator)
        return sampled_ranks(scores, batch["target"], negatives)

    def on_validation_epoch_start(self) -> None:
        self.negative_generator = None  # the same negatives at every evaluation

    def on_test_epoch_start(self) -> None:
        self.negative_generator = None

    def update_metrics(self, metrics: MetricCollection, outputs: Tensor, batch: Any) -> None:
        metrics.update(outputs)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Top ``predict_top_k`` items per user: ``user`` (B,), ``items`` (B, K) ids, ``scores`` (B, K)."""
        scores = self.item_scores(batch)
        if self.exclude_seen:
            scores = exclude_items(scores, batch["seen"])
        top = scores.topk(min(self.predict_top_k, self.num_items), dim=-1)
        return {"user": batch["user"], "items": top.indices, "scores": top.values}


class NextItemTask(_Recommender, TitansTask):
    """Predict each user's next item from their history (SASRec with ``variant: transformer``).

    Args:
        backbone: the backbone; ``variant: transformer`` is SASRec (causal self-attention).
        ks: cut-offs of HR@K and NDCG@K (default 10, 20, 200, 500); the first selects the best
            checkpoint by ``val/ndcg@<ks[0]>``.
        exclude_seen: rank only items the user has not interacted with before the target
            (a repeated target then counts as a miss).
        sampled_softmax: train with this many uniform negatives shared per batch instead of the
            full softmax over all items (for catalogues too big for a full softmax).
        eval_negatives: evaluate by ranking the target among this many sampled unseen negatives
            (SASRec's protocol, e.g. 100) instead of all items. Named, never the default: sampled
            metrics overstate quality and change model orderings (Krichene & Rendle 2020).
        embedding_dropout: dropout on the input item embeddings.
        item_bias: add a learned per-item bias to the scores (see ``NextItemHead``).
        predict_top_k: recommendations per user returned by ``predict_step``.
        optimizer, lr_scheduler, data_sizes: as ``TitansTask`` (``data_sizes["num_items"]``).

    Logged: ``train/loss`` (cross-entropy), ``val|test/loss`` (full-softmax cross-entropy of the
    target), ``val|test/hr@K``, ``/ndcg@K``, ``/mrr``.
    """

    def __init__(
        self,
        backbone: TitansConfig,
        ks: Sequence[int] = (10, 20, 200, 500),
        exclude_seen: bool = True,
        sampled_softmax: Optional[int] = None,
        eval_negatives: Optional[int] = None,
        embedding_dropout: float = 0.0,
        item_bias: bool = False,
        predict_top_k: int = 10,
        optimizer: OptimizerCallable = AdamW,
        lr_scheduler: Optional[LRSchedulerCallable] = WarmupCosine,
        data_sizes: Optional[dict[str, int]] = None,
        activation_checkpointing: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__(backbone, optimizer, lr_scheduler, data_sizes,
                         activation_checkpointing=activation_checkpointing, compile=compile)
        self.set_ranking(ks, exclude_seen, eval_negatives, predict_top_k)
        if sampled_softmax is not None and sampled_softmax < 1:
            raise ValueError(f"{type(self).__name__}.sampled_softmax: expected None or a positive int, "
                             f"got {sampled_softmax}")
        self.sampled_softmax, self.embedding_dropout, self.item_bias = sampled_softmax, embedding_dropout, item_bias

    def build_head(self) -> nn.Module:
        return NextItemHead(self.num_items, self.backbone_config.dim, self.embedding_dropout, self.item_bias)

    # ---- forward passes ---------------------------------------------------------------------

    def hidden(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, T, D) backbone states over the right-padded histories (pads masked out)."""
        hidden, _ = self.backbone(self.head.embed(batch["items"]), mask=batch["mask"])
        return hidden

    def item_scores(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, N + 1) float32 scores of every item after each user's last real position."""
        hidden = self.hidden(batch)
        last = hidden[torch.arange(hidden.shape[0], device=hidden.device), batch["lengths"] - 1]
        with torch.autocast(hidden.device.type, enabled=False):  # bf16 scores would tie items
            return self.head.scores(last.float())

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        """Cross-entropy of every real position's next item (full or sampled softmax)."""
        mask = batch["mask"]
        hidden, targets = self.hidden(batch)[mask], batch["targets"][mask]
        if self.sampled_softmax is None:
            return cross_entropy_full(self.head, hidden, targets)
        return cross_entropy_sampled(self.head, hidden, targets, self.sampled_softmax)


class PopularityTask(_Recommender):
    """Most-popular baseline: every user gets the items most often seen as a training target.

    No backbone and no parameters: "training" counts how often each item is a next-item
    target in the training windows (every training interaction but each user's first); the
    counts live in a buffer saved with the checkpoint. Scores are ``log(1 + count)``, so
    ``val/loss`` is the cross-entropy of the add-one-smoothed popularity distribution.
    Run it for one epoch (``trainer.max_epochs: 1``): it takes no optimizer steps.

    Args: ``ks``, ``exclude_seen``, ``eval_negatives``, ``predict_top_k`` and ``data_sizes`` as
    ``NextItemTask``; it has no backbone and no training options (it stands on the task harness).
    """

    def __init__(
        self,
        ks: Sequence[int] = (10, 20, 200, 500),
        exclude_seen: bool = True,
        eval_negatives: Optional[int] = None,
        predict_top_k: int = 10,
        data_sizes: Optional[dict[str, int]] = None,
    ) -> None:
        super().__init__(lr_scheduler=None, data_sizes=data_sizes)
        self.set_ranking(ks, exclude_seen, eval_negatives, predict_top_k)
        # In __init__, not configure_models: the counts are state that a checkpoint restores.
        self.register_buffer("counts", torch.zeros(self.num_items + 1, dtype=torch.float64))
        self.register_buffer("pending", torch.zeros(self.num_items + 1, dtype=torch.float64), persistent=False)

    def configure_models(self) -> None:
        """No layers: the counts buffer is the whole model."""

    def configure_optimizers(self) -> None:
        return None

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        targets = batch["targets"][batch["mask"]]
        self.pending.index_add_(0, targets, torch.ones_like(targets, dtype=self.pending.dtype))

    def sync_counts(self) -> None:
        """Add the counts of the training steps since the last call, summed over data-parallel
        ranks (each counted its share of the windows). A collective: every rank calls it."""
        self.counts += self.trainer.strategy.reduce(self.pending, reduce_op="sum")
        self.pending.zero_()

    # evaluation within or after an epoch sees every window counted so far
    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self.sync_counts()

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.sync_counts()

    def on_train_epoch_end(self) -> None:
        self.sync_counts()

    def item_scores(self, batch: dict[str, Tensor]) -> Tensor:
        scores = torch.log1p(self.counts).float()
        scores[0] = float("-inf")
        return scores.expand(batch["items"].shape[0], -1)


class RecommendationWriter(BasePredictionWriter):
    """Writes ``titans predict`` recommendations: one row per (user, rank) with original ids.

    Columns: ``<user column>``, ``rank`` (1 = best), ``<item column>``, ``score``. The format
    follows the suffix of ``path`` (``.csv`` or ``.parquet``); ``path=None`` writes
    ``<run dir>/recommendations.csv``. Original ids come from the DataModule's ``vocabulary``.
    Under data parallelism each rank writes ``<stem>.rank<r><suffix>`` with its users.

    Args:
        path: output file.
        k: recommendations per user; sets the task's ``predict_top_k`` for this run (None: keep
            it). With ``--ckpt_path`` the model is rebuilt from the checkpoint's hyperparameters
            (a recipe's model values do not apply, command-line ones do): this sets k from the
            recipe's callbacks.
    """

    def __init__(self, path: Optional[str] = None, k: Optional[int] = None) -> None:
        super().__init__(write_interval="batch")
        if path is not None and os.path.splitext(path)[1].lower() not in (".csv", ".parquet"):
            raise ValueError(f"RecommendationWriter.path: expected a .csv or .parquet file, got {path!r}")
        if k is not None and k < 1:
            raise ValueError(f"RecommendationWriter.k: expected None or a positive int, got {k}")
        self.path, self.k = path, k
        self.parts: list[dict[str, np.ndarray]] = []

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.parts = []
        if self.k is not None:
            pl_module.predict_top_k = self.k

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: dict[str, Tensor],
                           batch_indices: Any, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        users, items, scores = (prediction[k].detach().cpu() for k in ("user", "items", "scores"))
        k = items.shape[1]
        keep = torch.isfinite(scores).flatten()  # a user who saw nearly everything has fewer
        self.parts.append({"user": users.repeat_interleave(k).numpy()[keep.numpy()],
                           "rank": torch.arange(1, k + 1).repeat(len(users)).numpy()[keep.numpy()],
                           "item": items.flatten().numpy()[keep.numpy()],
                           "score": scores.flatten().float().numpy()[keep.numpy()]})

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        users, items = trainer.datamodule.vocabulary
        parts = {key: np.concatenate([p[key] for p in self.parts]) if self.parts else np.zeros(0, np.int64)
                 for key in ("user", "rank", "item", "score")}
        frame = pl.DataFrame({users.name: users.gather(parts["user"]), "rank": parts["rank"],
                              items.name: items.gather(parts["item"] - 1), "score": parts["score"]})
        path = self.path or os.path.join(run_directory(trainer), "recommendations.csv")
        if trainer.world_size > 1:
            stem, suffix = os.path.splitext(path)
            path = f"{stem}.rank{trainer.global_rank}{suffix}"
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if path.lower().endswith(".parquet"):
            frame.write_parquet(path)
        else:
            frame.write_csv(path)
