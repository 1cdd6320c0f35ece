"""Small callbacks shared by every domain: figures to W&B and PNG, training throughput (with
model FLOPs and MFU), the float32 matmul precision (TF32 on GPUs), a checkpoint whose
``last.ckpt`` is the last validated step.

A domain plots by subclassing :class:`FigureLogger` and writing ``make_figures``; a recipe adds
it under ``trainer.callbacks``. ``run_directory`` names the folder of a run (the one that holds
``checkpoints/`` and ``config.yaml``), the same on every rank.
"""

from __future__ import annotations

import abc
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, Optional

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from torch.utils.flop_counter import FlopCounterMode

from titans_lightning.flops import flop_counter_mode

if TYPE_CHECKING:  # matplotlib is imported only by runs that plot
    import polars as pl
    from matplotlib.figure import Figure


def run_directory(trainer: Trainer) -> str:
    """``<save_dir>/<name>/<version>`` of the first logger, where ``ModelCheckpoint`` puts
    ``checkpoints/`` (a W&B run: ``<save_dir>/<project>/<run id>``); ``default_root_dir`` with no
    logger. A collective call (rank 0's answer is broadcast): call it on every rank."""
    if not trainer.loggers:
        path = trainer.default_root_dir
    else:
        logger = trainer.loggers[0]
        version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
        path = os.path.join(logger.save_dir or trainer.default_root_dir, str(logger.name or ""), version)
    return trainer.strategy.broadcast(path)


class TableWriter(BasePredictionWriter, abc.ABC):
    """Writes what ``titans predict`` returned as one table, CSV or Parquet by the file's suffix.

    A domain subclasses it with ``default_name`` (the file in the run folder) and ``make_frame``
    (the predictions as a polars frame). Under several processes each rank writes the rows it
    saw to ``<stem>-rank<r><suffix>``. ``written`` is the path of the last file written.

    Args:
        output: the file; None = ``<run folder>/<default_name>``.
    """

    default_name = "predictions.csv"

    def __init__(self, output: Optional[str] = None) -> None:
        super().__init__(write_interval="epoch")
        self.output = output

    @abc.abstractmethod
    def make_frame(self, trainer: Trainer, predictions: Sequence[Any]) -> pl.DataFrame:
        """The table of the ``predict_step`` outputs of this rank."""

    def write_on_epoch_end(self, trainer: Trainer, pl_module: LightningModule, predictions: Sequence[Any],
                           batch_indices: Sequence[Any]) -> None:
        path = self.output or os.path.join(run_directory(trainer), self.default_name)
        if trainer.world_size > 1:
            stem, suffix = os.path.splitext(path)
            path = f"{stem}-rank{trainer.global_rank}{suffix}"
        frame = self.make_frame(trainer, predictions)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if path.endswith((".parquet", ".pq")):
            frame.write_parquet(path)
        else:
            frame.write_csv(path)
        self.written = path


class FigureLogger(Callback, abc.ABC):
    """Base callback for a domain's plots (forecasts, attention maps, memory statistics).

    After every ``every_n_evals``-th validation, every rank calls ``make_figures`` (so that it may
    run the model: under FSDP each forward needs all ranks); rank 0 saves each figure as
    ``<run dir>/figures/<name>-step<N>.png`` and logs it to every ``WandbLogger`` as an image
    under ``<name>``, the other ranks discard theirs. ``make_figures`` must therefore make the
    same model calls on every rank.
    Prefer ``matplotlib.figure.Figure()`` over ``pyplot``: it needs no display backend.
    """

    def __init__(self, every_n_evals: int = 1) -> None:
        if every_n_evals < 1:
            raise ValueError(f"{type(self).__name__}: every_n_evals must be >= 1, got {every_n_evals}")
        self.every_n_evals = every_n_evals
        self.evals = 0
        self.run_dir: Optional[str] = None

    @abc.abstractmethod
    def make_figures(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Figure]:
        """Figures by name (the W&B key and the PNG file stem; ``/`` is allowed)."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.run_dir = run_directory(trainer)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.evals += 1
        if (self.evals - 1) % self.every_n_evals:
            return
        for name, figure in self.make_figures(trainer, pl_module).items():
            if not trainer.is_global_zero:
                release(figure)
                continue
            path = self.save_png(name, figure, trainer.global_step)
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_image(key=name, images=[path], step=trainer.global_step)

    def save_png(self, name: str, figure: Figure, step: int) -> str:
        """Write ``figure`` under the run's ``figures/`` folder, release it, return the path."""
        folder = os.path.join(self.run_dir or ".", "figures")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{name.replace('/', '_')}-step{step}.png")
        figure.savefig(path, dpi=100)
        release(figure)
        return path


def release(figure: Figure) -> None:
    """Free a figure, also when it was made through pyplot (which keeps a reference)."""
    import matplotlib.pyplot as plt  # only to release figures made through pyplot

    plt.close(figure)


class Throughput(Callback):
    """Logs ``perf/samples_per_sec``, ``perf/tokens_per_sec`` and ``perf/flops_per_sec`` (all ranks
    together) every ``log_every_n_steps`` optimizer steps, over the wall-clock time since the
    previous log, and ``perf/mfu`` (model FLOPs utilisation) when ``peak_flops`` is given.

    Tokens are B * T of each batch as the task's ``batch_shape(batch)`` reports them (a ``Task``
    method). Model FLOPs are counted once, on the first training batch as it runs (forward and
    backward: matmuls and attention, ``titans_lightning/flops.py``), as FLOPs per token; with
    activation checkpointing the recomputed forward counts too. ``perf/mfu`` is the achieved
    FLOP/s per device over ``peak_flops``. On GPUs it synchronises once per window so the time is
    honest.

    Args:
        peak_flops: peak FLOP/s of one device at the training precision, from its data sheet
            (e.g. 989e12: an H100 SXM, bf16 dense); ``None``: MFU is not logged.
    """

    def __init__(self, peak_flops: Optional[float] = None) -> None:
        if peak_flops is not None and not peak_flops > 0:
            raise ValueError(f"Throughput: peak_flops must be > 0 FLOP/s, got {peak_flops!r}")
        self.peak_flops = peak_flops
        self.start: Optional[float] = None
        self.samples = 0
        self.tokens = 0
        self.counter: Optional[FlopCounterMode] = None  # active during the first training batch
        self.flops_per_token: Optional[float] = None

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self.start is None:
            self.start = time.perf_counter()
        if self.flops_per_token is None and self.counter is None:
            self.counter = flop_counter_mode()
            self.counter.__enter__()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        b, t = pl_module.batch_shape(batch)
        if self.counter is not None:
            self.flops_per_token = self.stop_counting() / max(b * t, 1)
        self.samples += b * trainer.world_size
        self.tokens += b * t * trainer.world_size
        if trainer.global_step % trainer.log_every_n_steps:
            return
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        pl_module.log("perf/samples_per_sec", self.samples / elapsed, batch_size=1)
        pl_module.log("perf/tokens_per_sec", self.tokens / elapsed, batch_size=1)
        flops_per_sec = self.flops_per_token * self.tokens / elapsed
        pl_module.log("perf/flops_per_sec", flops_per_sec, batch_size=1)
        if self.peak_flops is not None:
            pl_module.log("perf/mfu", flops_per_sec / trainer.world_size / self.peak_flops, batch_size=1)
        self.start, self.samples, self.tokens = time.perf_counter(), 0, 0

    def stop_counting(self) -> float:
        """Leave the FLOP counter; the FLOPs it counted."""
        counter, self.counter = self.counter, None
        counter.__exit__(None, None, None)
        return float(counter.get_total_flops())

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if self.counter is not None:  # never leave the counter on torch's dispatch stack
            self.stop_counting()


class MatmulPrecision(Callback):
    """Sets ``torch.set_float32_matmul_precision(precision)`` when the run is set up.

    ``"high"`` lets float32 matmuls use TF32 tensor cores on Ampere and newer NVIDIA GPUs (a
    10-bit mantissa for the products, float32 accumulation): several times the float32 throughput,
    a precision loss that mixed-precision training already accepts (convolutions follow
    ``torch.backends.cudnn.allow_tf32``, on by default). Lightning's Trainer has no such option (it
    only prints a hint at device setup, before this hook runs); ``recipes/trainer/gpu.yaml`` adds
    this callback. On CPU ``"high"`` changes nothing (no TF32 units; ``"medium"`` may let oneDNN use
    bf16). The setting is process-wide and stays after the run.

    Args:
        precision: ``"highest"`` (full float32), ``"high"`` (TF32) or ``"medium"`` (bf16 products).
    """

    def __init__(self, precision: Literal["highest", "high", "medium"] = "high") -> None:
        self.precision = precision

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        torch.set_float32_matmul_precision(self.precision)


class BestAndLastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is rewritten whenever a checkpoint is due, whether or
    not the monitored metric improved.

    Lightning 2.6 writes ``last.ckpt`` only when the same validation (or epoch end) also saved a
    top-k checkpoint: a run whose monitor did not improve at its final validation keeps a
    ``last.ckpt`` of an earlier step, and whatever starts from it (a second training stage,
    fine-tuning, ``--ckpt_path`` to resume) silently loses the steps after it. This class writes
    ``last.ckpt`` (``save_last`` on) where ``ModelCheckpoint`` considers saving, as Lightning did
    before: after every validation of a fit, or at every training epoch's end where
    ``ModelCheckpoint`` saves there (one validation per epoch, or none). The top-k checkpoints are
    kept as ``ModelCheckpoint`` keeps them. The default checkpoint of ``titans`` runs and the
    recipes' own checkpoints are this class.
    """

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_unless_saved(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_unless_saved(trainer)

    def _save_last_unless_saved(self, trainer: Trainer) -> None:
        """``last.ckpt`` of this step, unless a checkpoint of this step was written already."""
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
