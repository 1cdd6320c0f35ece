"""The task harness, and the Titans task on it: a backbone plus a domain head.

:class:`Task` holds what every LightningModule of the toolkit shares, once: optimiser groups and
schedule, logging keys, the metric collections, the checkpoint monitor, and the contract that
every step goes ``forward`` -> ``compute_loss``. A task writes ``configure_models()`` (its layers),
``compute_loss(batch)`` and, optionally, ``build_metrics()`` / ``update_metrics()``. A baseline
without a backbone (``DLinearTask``, ``PopularityTask``) subclasses it directly.

A Titans domain subclasses :class:`TitansTask`, which builds the backbone and applies sharding,
activation checkpointing and compilation from outside it, and writes ``build_head()`` (its input
embedding and output layer, pure torch, from ``titans_lightning.heads``) and ``compute_loss``.

Shape legend: B batch, T time steps, D model width (``backbone.dim``).
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar, Optional

from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection

from titans_lightning.backbone import TitansBackbone, TitansConfig
from titans_lightning.parallelize import checkpoint_blocks, compile_backbone, fully_shard_blocks
from titans_lightning.tasks.schedules import AdamW, WarmupCosine

EVAL_STAGES = ("val", "test")


def first_tensor(batch: Any) -> Optional[Tensor]:
    """The first tensor of a batch made of tensors, tuples, lists and dicts (in order), or None."""
    if isinstance(batch, Tensor):
        return batch
    items = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else ()
    for item in items:
        found = first_tensor(item)
        if found is not None:
            return found
    return None


class Task(LightningModule, abc.ABC):
    """The harness: optimisation, logging keys, metrics and checkpoint monitor of every task.

    Args:
        optimizer: called with the ``parameter_groups()`` (matrices decayed, vectors not).
        lr_scheduler: called with the optimizer, stepped every optimizer step; ``None`` = constant.
        data_sizes: sizes known from the data (``{"vocab_size": 256}``, ``{"num_items": ...}``);
            the CLI links them from ``TitansDataModule.data_sizes``, so recipes never repeat them.

    Every step calls ``self(batch)``: ``forward`` returns ``compute_loss(batch)``, ``(loss,
    outputs)``. Logged keys: ``train/loss``, ``train/lr``, ``val/loss``, ``val/<metric>`` (and
    ``test/...``). ``monitor`` / ``monitor_mode`` name the key that selects the best checkpoint;
    subclasses override them (e.g. ``"val/bpb"``, ``"min"``).
    """

    monitor: ClassVar[str] = "val/loss"
    monitor_mode: ClassVar[str] = "min"

    def __init__(
        self,
        optimizer: OptimizerCallable = AdamW,
        lr_scheduler: Optional[LRSchedulerCallable] = WarmupCosine,
        data_sizes: Optional[dict[str, int]] = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()  # the arguments of every __init__ up the subclass chain
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.data_sizes = dict(data_sizes or {})
        self.metrics: Optional[nn.ModuleDict] = None
        self.models_built = False

    # ---- what a task writes ---------------------------------------------------------------

    @abc.abstractmethod
    def configure_models(self) -> None:
        """Build the task's layers as attributes, sized from ``self.data_sizes`` (called once,
        by ``configure_model``, so that a sharding strategy can wrap them as they are made)."""

    @abc.abstractmethod
    def compute_loss(self, batch: Any) -> tuple[Tensor, Any]:
        """``(scalar loss, outputs)`` for one batch; ``outputs`` is handed to ``update_metrics``."""

    def build_metrics(self) -> dict[str, Metric]:
        """Evaluation metrics by name (logged as ``val/<name>``, ``test/<name>``); default none."""
        return {}

    def update_metrics(self, metrics: MetricCollection, outputs: Any, batch: Any) -> None:
        """Feed one evaluation batch to ``metrics`` (the collection of ``build_metrics``)."""

    def parallelize(self) -> None:
        """Shard, checkpoint or compile the built layers (after the metrics are built); default
        nothing, for a task too small to need it."""

    def batch_shape(self, batch: Any) -> tuple[int, int]:
        """``(B, T)`` of a batch: the first two dims of its first tensor (T = 1 for a 1-d tensor).
        Used as the logging batch size and by the throughput callback; override if the first
        tensor of a batch is not laid out (B, T, ...)."""
        first = first_tensor(batch)
        if first is None:
            raise ValueError(f"{type(self).__name__}.batch_shape: no tensor in the batch; override it")
        return first.shape[0], first.shape[1] if first.ndim > 1 else 1

    # ---- model construction ---------------------------------------------------------------

    def configure_model(self) -> None:
        """Build the layers (``configure_models``) and the metrics once, then ``parallelize``.

        Idempotent: Lightning calls it for every stage and ``load_from_checkpoint`` calls it too.
        """
        if self.models_built:
            return
        self.configure_models()
        per_stage = {stage: self.build_metrics() for stage in EVAL_STAGES}  # separate states per stage
        if any(per_stage.values()):
            # compute_groups=False: torchmetrics would otherwise merge, after the first update,
            # metrics whose states happen to look alike (a user's custom metrics included)
            self.metrics = nn.ModuleDict({stage: MetricCollection(metrics, prefix=f"{stage}/", compute_groups=False)
                                          for stage, metrics in per_stage.items()})
        self.parallelize()
        self.models_built = True

    def forward(self, batch: Any) -> tuple[Tensor, Any]:
        """``(loss, outputs)`` of ``compute_loss``. Every step goes through here so that a sharded
        root module gathers its parameters (FSDP hooks fire on ``forward`` only)."""
        return self.compute_loss(batch)

    # ---- steps ----------------------------------------------------------------------------

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss, _ = self(batch)
        # sync_dist: the logged value is the global-batch loss, comparable across world sizes.
        self.log("train/loss", loss, prog_bar=True, sync_dist=True, batch_size=self.batch_shape(batch)[0])
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=1)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _evaluate(self, batch: Any, stage: str) -> None:
        loss, outputs = self(batch)
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=True, batch_size=self.batch_shape(batch)[0])
        if self.metrics is not None:
            self.update_metrics(self.metrics[stage], outputs, batch)
            self.log_dict(self.metrics[stage], prog_bar=True)

    # ---- optimisation ---------------------------------------------------------------------

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Matrices (ndim >= 2: projections, embeddings, memory M_0) are decayed; vectors
        (norm gains, biases, scalar gates) are not, as decaying them only fights normalisation."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.ndim >= 2]},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
        return [g for g in groups if g["params"]]

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(self.parameter_groups())
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer)
        # A schedule that exposes an unset horizon (WarmupCosine(total_steps=None)) gets the trainer's.
        if getattr(scheduler, "total_steps", 0) is None:
            total = self.trainer.estimated_stepping_batches
            if math.isfinite(total):
                scheduler.total_steps = int(total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class TitansTask(Task):
    """A Titans backbone with a domain head, on the task harness.

    Args:
        backbone: the backbone configuration; on the command line its fields are options,
            e.g. ``--model.backbone.variant mac --model.backbone.size debug``.
        optimizer, lr_scheduler, data_sizes: see :class:`Task`.
        activation_checkpointing: recompute each block's activations in backward instead of
            keeping them, and keep only some of the memory's chunk states (recomputing the rest);
            gradients are unchanged. Applied from outside the model (``parallelize.py``).
        compile: ``torch.compile`` what pays off: the memory's chunk step (one graph, no graph
            breaks) and the blocks (``parallelize.py``). Results equal eager within float error.

    Logged keys and checkpoint monitor: as :class:`Task`.
    """

    def __init__(
        self,
        backbone: TitansConfig,
        optimizer: OptimizerCallable = AdamW,
        lr_scheduler: Optional[LRSchedulerCallable] = WarmupCosine,
        data_sizes: Optional[dict[str, int]] = None,
        activation_checkpointing: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__(optimizer, lr_scheduler, data_sizes)
        self.backbone_config = backbone
        self.activation_checkpointing, self.use_compile = activation_checkpointing, compile
        # Built in configure_model so that a sharding strategy can wrap them as they are made.
        self.backbone: Optional[TitansBackbone] = None
        self.head: Optional[nn.Module] = None

    @abc.abstractmethod
    def build_head(self) -> nn.Module:
        """The domain's own layers (input embedding, output projection), sized from
        ``self.backbone_config.dim`` and ``self.data_sizes``. Stored as ``self.head``."""

    def configure_models(self) -> None:
        """The backbone, then the head (which may read the built backbone, e.g. load weights into it)."""
        self.backbone = TitansBackbone(self.backbone_config)
        self.head = self.build_head()

    def parallelize(self) -> None:
        """Activation checkpointing, compilation, then FSDP over the blocks when the strategy gives
        a mesh: all from outside the model (``parallelize.py``)."""
        if self.activation_checkpointing:
            checkpoint_blocks(self.backbone.blocks)
        if self.use_compile:
            compile_backbone(self.backbone)
        if self.device_mesh is not None:
            fully_shard_blocks(self, self.backbone.blocks, self.device_mesh)
