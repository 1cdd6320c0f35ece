"""DNA tasks: next-nucleotide pretraining (bits per nucleotide) and sequence classification,
and the writer of ``titans predict`` (class probabilities, or bits per nucleotide, per sequence).

Shape legend: B batch, T tokens, D model width, V vocabulary, K classes.

Batch contracts (made by ``datamodules.dna``):
    pretraining     tokens (B, T+1) int64, mask (B, T+1) bool (False on padding)
    classification  tokens (B, T), mask (B, T), labels (B,); with the reverse-complement
                    test-time average also rc_tokens, rc_mask (evaluation batches only)
    prediction      as above without labels, plus index (B,) int64: each sequence's (or
                    window's sequence's) position in the prediction file
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

import polars as pl
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import AUROC, Accuracy, F1Score, MatthewsCorrCoef, MeanMetric, Metric, MetricCollection

from titans_lightning.backbone import TitansConfig
from titans_lightning.callbacks import TableWriter
from titans_lightning.heads.dna import NucleotideLMHead, Pooling, SequenceClassifierHead
from titans_lightning.tasks.base import TitansTask
from titans_lightning.tasks.schedules import AdamW, WarmupCosine
from titans_lightning.tasks.warm_start import load_weights


class DNAPretrainTask(TitansTask):
    """Next-nucleotide prediction on windows of a genome; the best checkpoint has the lowest
    ``val/bpn`` (bits per nucleotide: cross-entropy in bits, averaged over every scored base of
    the validation region; 2.0 is a uniform guess over A C G T)."""

    monitor = "val/bpn"
    monitor_mode = "min"

    def build_head(self) -> nn.Module:
        return NucleotideLMHead(self.data_sizes["vocab_size"], self.backbone_config.dim)

    def batch_shape(self, batch: dict[str, Tensor]) -> tuple[int, int]:
        return batch["tokens"].shape[0], batch["tokens"].shape[1] - 1

    def next_base_nats(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(B, T) cross-entropy in nats of each next base (0 where not scored) and the (B, T)
        bool mask of scored positions (a real base after a real base)."""
        tokens, mask = batch["tokens"], batch["mask"]
        hidden, _ = self.backbone(self.head.embed(tokens[:, :-1]), mask=mask[:, :-1])
        scored = mask[:, 1:] & mask[:, :-1]
        nats = F.cross_entropy(self.head.logits(hidden).float().transpose(1, 2), tokens[:, 1:], reduction="none")
        return nats * scored, scored

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Mean cross-entropy (nats) of every real next base; outputs: (N,) per-base nats."""
        nats, scored = self.next_base_nats(batch)
        nats = nats[scored]
        return nats.mean(), nats.detach()

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Per window: ``index`` (B,) of its sequence, ``bits`` (B,) summed over its scored
        bases, ``bases`` (B,) how many; :class:`DNAPredictionWriter` sums them per sequence."""
        nats, scored = self.next_base_nats(batch)
        return {"index": batch["index"], "bits": nats.sum(1) / math.log(2), "bases": scored.sum(1)}

    def build_metrics(self) -> dict[str, Metric]:
        return {"bpn": MeanMetric()}

    def update_metrics(self, metrics: MetricCollection, outputs: Tensor, batch: Any) -> None:
        # One value per base, so the epoch value weighs every base alike (not every batch).
        metrics["bpn"].update(outputs / math.log(2))


class DNAClassificationTask(TitansTask):
    """Backbone + pooling + linear head over the classes; accuracy, MCC, macro-F1 and AUROC.
    The best checkpoint has the highest ``val/mcc``.

    Args:
        backbone: the backbone configuration (must equal the pretrained one when ``pretrained``).
        pooling: ``last`` (the appended CLS token: the one state that has read the whole
            sequence under causal mixing), ``mean`` or ``max`` over real tokens.
        dropout: on the pooled vector, before the linear classifier.
        positions: learned absolute position embeddings for sequences of up to this many tokens
            (CLS included); 0 = none. For labels tied to a place in a fixed-length window.
        pretrained: a checkpoint of ``DNAPretrainTask`` (or of this task): its backbone weights,
            and with ``load_embedding`` its nucleotide embedding, are loaded into the new model;
            the classifier starts fresh. Loaded when the model is built; a resumed or tested
            checkpoint of this task then overwrites them with its own weights.
        load_embedding: also take the pretrained nucleotide embedding (the backbone was trained
            on its outputs); False keeps the backbone only.
    """

    monitor = "val/mcc"
    monitor_mode = "max"

    def __init__(self, backbone: TitansConfig, pooling: Pooling = "last", dropout: float = 0.0,
                 positions: int = 0, pretrained: Optional[str] = None, load_embedding: bool = True,
                 optimizer: OptimizerCallable = AdamW, lr_scheduler: Optional[LRSchedulerCallable] = WarmupCosine,
                 data_sizes: Optional[dict[str, int]] = None, activation_checkpointing: bool = False,
                 compile: bool = False) -> None:
        super().__init__(backbone, optimizer, lr_scheduler, data_sizes,
                         activation_checkpointing=activation_checkpointing, compile=compile)
        self.pooling, self.dropout, self.positions = pooling, dropout, positions
        self.pretrained, self.load_embedding = pretrained, load_embedding

    @property
    def num_classes(self) -> int:
        return self.data_sizes["num_classes"]

    def build_head(self) -> nn.Module:
        head = SequenceClassifierHead(self.data_sizes["vocab_size"], self.backbone_config.dim, self.num_classes,
                                      self.pooling, self.dropout, self.positions)
        # Here, not in configure_model: the backbone exists and nothing is sharded yet.
        if self.pretrained:
            load_weights(self.pretrained, self.backbone, {"head.embed.": head.embed} if self.load_embedding else {})
        return head

    def batch_shape(self, batch: dict[str, Tensor]) -> tuple[int, int]:
        return tuple(batch["tokens"].shape)

    def class_logits(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """(B, T) tokens and mask -> (B, K) logits."""
        hidden, _ = self.backbone(self.head.inputs(tokens), mask=mask)
        return self.head.logits(hidden, mask).float()

    def class_probs(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, K) class probabilities, averaged over both strands when the batch carries
        reverse complements (``rc_tokens``, ``rc_mask``)."""
        probs = self.class_logits(batch["tokens"], batch["mask"]).softmax(-1)
        if "rc_tokens" in batch:
            probs = (probs + self.class_logits(batch["rc_tokens"], batch["rc_mask"]).softmax(-1)) / 2
        return probs

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Cross-entropy; outputs (B, K) class probabilities (see ``class_probs``)."""
        if "rc_tokens" not in batch:
            logits = self.class_logits(batch["tokens"], batch["mask"])
            return F.cross_entropy(logits, batch["labels"]), logits.softmax(-1).detach()
        probs = self.class_probs(batch)
        return F.nll_loss(probs.clamp_min(1e-12).log(), batch["labels"]), probs.detach()

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """``index`` (B,) of each sequence in the prediction file and its ``probs`` (B, K)."""
        return {"index": batch["index"], "probs": self.class_probs(batch)}

    def build_metrics(self) -> dict[str, Metric]:
        k = self.num_classes
        return {"accuracy": Accuracy(task="multiclass", num_classes=k),
                "mcc": MatthewsCorrCoef(task="multiclass", num_classes=k),
                "macro_f1": F1Score(task="multiclass", num_classes=k, average="macro"),
                "auroc": AUROC(task="multiclass", num_classes=k)}

    def update_metrics(self, metrics: MetricCollection, outputs: Tensor, batch: Any) -> None:
        metrics.update(outputs, batch["labels"])


class DNAPredictionWriter(TableWriter):
    """Writes what ``titans predict`` computes on ``--data.predict_path``: one row per sequence,
    in file order, named by the DataModule's ``predict_ids`` (FASTA record names, or a CSV's
    ``id_column`` or row numbers). CSV or Parquet by the file's suffix.

    - Classification: ``id``, ``predicted`` (the most probable class), then ``prob_<class>`` per
      class in the DataModule's ``label_names`` order (both strands averaged with ``rc_average``).
    - Pretraining: ``id``, ``bases`` (the bases scored: all but the first), ``bits`` (their
      cross-entropy in bits, summed) and ``bpn`` (``bits / bases``; null for a one-base sequence).

    Args:
        output: the file; None = ``<run folder>/predictions.csv``. Under several processes each
            rank writes the sequences it saw to ``<stem>-rank<r><suffix>`` (a long sequence's
            windows may be spread over ranks: sum ``bits`` and ``bases`` over the files).
    """

    def make_frame(self, trainer: Trainer, predictions: Sequence[Any]) -> pl.DataFrame:
        datamodule = trainer.datamodule
        if "probs" in predictions[0]:
            return class_frame(predictions, datamodule.predict_ids, datamodule.label_names)
        return bits_frame(predictions, datamodule.predict_ids)


def class_frame(predictions: Sequence[dict[str, Tensor]], ids: Sequence[str],
                class_names: Sequence[str]) -> pl.DataFrame:
    """The classification table of :class:`DNAPredictionWriter` from ``predict_step`` outputs
    (``index`` (B,), ``probs`` (B, K) each), sorted into file order."""
    index = torch.cat([p["index"] for p in predictions]).cpu()
    order = index.argsort(stable=True)
    index, probs = index[order], torch.cat([p["probs"] for p in predictions]).float().cpu()[order]
    columns = {"id": [ids[i] for i in index.tolist()], "predicted": [class_names[k] for k in probs.argmax(1).tolist()]}
    columns.update({f"prob_{name}": probs[:, k].numpy() for k, name in enumerate(class_names)})
    return pl.DataFrame(columns)


def bits_frame(predictions: Sequence[dict[str, Tensor]], ids: Sequence[str]) -> pl.DataFrame:
    """The pretraining table of :class:`DNAPredictionWriter`: the windows' ``bits`` and
    ``bases`` summed per sequence (``index``), for the sequences seen, in file order."""
    index, bits, bases = (torch.cat([p[key] for p in predictions]).cpu() for key in ("index", "bits", "bases"))
    bits = torch.zeros(len(ids), dtype=torch.float64).index_add_(0, index, bits.double())
    bases = torch.zeros(len(ids), dtype=torch.long).index_add_(0, index, bases.long())
    seen = index.unique().tolist()  # sorted
    frame = pl.DataFrame({"id": [ids[i] for i in seen], "bases": bases[seen].numpy(), "bits": bits[seen].numpy()})
    return frame.with_columns(bpn=pl.when(pl.col("bases") > 0).then(pl.col("bits") / pl.col("bases")))
