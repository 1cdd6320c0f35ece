"""Small callbacks shared by every domain: figures to W&B and PNG, training throughput.

A domain plots by subclassing :class:`FigureLogger` and writing ``make_figures``; a recipe adds
it under ``trainer.callbacks``. ``run_directory`` names the folder of a run (the one that holds
``checkpoints/`` and ``config.yaml``), the same on every rank.
"""

from __future__ import annotations

import abc
import os
import time
from typing import TYPE_CHECKING, Any, Optional

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger

if TYPE_CHECKING:  # matplotlib is imported only by runs that plot
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


class FigureLogger(Callback, abc.ABC):
    """Base callback for a domain's plots (forecasts, attention maps, memory statistics).

    After every ``every_n_evals``-th validation, rank 0 calls ``make_figures``; each figure is
    saved as ``<run dir>/figures/<name>-step<N>.png`` and logged to every ``WandbLogger`` as an
    image under ``<name>``. ``make_figures`` runs on rank 0 only, so it must not run collectives
    (under FSDP, plot what ``validation_step`` stored rather than calling the model).
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
        if (self.evals - 1) % self.every_n_evals or not trainer.is_global_zero:
            return
        for name, figure in self.make_figures(trainer, pl_module).items():
            path = self.save_png(name, figure, trainer.global_step)
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_image(key=name, images=[path], step=trainer.global_step)

    def save_png(self, name: str, figure: Figure, step: int) -> str:
        """Write ``figure`` under the run's ``figures/`` folder, release it, return the path."""
        import matplotlib.pyplot as plt  # only to release figures made through pyplot

        folder = os.path.join(self.run_dir or ".", "figures")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{name.replace('/', '_')}-step{step}.png")
        figure.savefig(path, dpi=100)
        plt.close(figure)
        return path


class Throughput(Callback):
    """Logs ``perf/samples_per_sec`` and ``perf/tokens_per_sec`` (all ranks together) every
    ``log_every_n_steps`` optimizer steps, over the wall-clock time since the previous log.

    Tokens are B * T of each batch as the task's ``batch_shape(batch)`` reports them (a
    ``TitansTask`` method). On GPUs it synchronises once per window so the time is honest.
    """

    def __init__(self) -> None:
        self.start: Optional[float] = None
        self.samples = 0
        self.tokens = 0

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self.start is None:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        b, t = pl_module.batch_shape(batch)
        self.samples += b * trainer.world_size
        self.tokens += b * t * trainer.world_size
        if trainer.global_step % trainer.log_every_n_steps:
            return
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        pl_module.log("perf/samples_per_sec", self.samples / elapsed, batch_size=1)
        pl_module.log("perf/tokens_per_sec", self.tokens / elapsed, batch_size=1)
        self.start, self.samples, self.tokens = time.perf_counter(), 0, 0
