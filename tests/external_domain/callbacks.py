"""Callbacks of the external domain: a figure through the FigureLogger hook, a sharding report."""

from __future__ import annotations

import json
import os

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from matplotlib.figure import Figure
from torch.distributed.tensor import DTensor

from titans_lightning.callbacks import FigureLogger, run_directory


class PredictionFigure(FigureLogger):
    """Target and prediction of the first channel of the first validation sequence."""

    def make_figures(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Figure]:
        x, y = trainer.datamodule.datasets["val"].tensors
        with torch.no_grad():
            _, prediction = pl_module((x[:1], y[:1]))
        figure = Figure(figsize=(4, 2))
        axes = figure.add_subplot()
        axes.plot(y[0, :, 0].numpy(), label="target")
        axes.plot(prediction[0, :, 0].float().numpy(), label="prediction")
        axes.legend()
        return {"val/prediction": figure}


class ShardReport(Callback):
    """Writes ``<run dir>/shards-rank<r>.json``: for every parameter, whether it is a DTensor,
    its placements and its local and global element counts (read by the FSDP test)."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.run_dir = run_directory(trainer)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Before any forward: FSDP keeps the root's parameters gathered after an eval forward.
        report = {}
        for name, p in pl_module.named_parameters():
            is_dtensor = isinstance(p, DTensor)
            local = p.to_local() if is_dtensor else p
            report[name] = {"dtensor": is_dtensor, "placements": str(p.placements) if is_dtensor else "",
                            "local": local.numel(), "global": p.numel()}
        os.makedirs(self.run_dir, exist_ok=True)
        with open(os.path.join(self.run_dir, f"shards-rank{trainer.global_rank}.json"), "w") as f:
            json.dump(report, f, indent=1)


class ResumeProbe(Callback):
    """Saves what a run starts training from, ``<run dir>/resume-probe.pt``: global step, and the
    optimizer and LR-scheduler states after any checkpoint was restored (read by the resume test)."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.run_dir = run_directory(trainer)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        probe = {"global_step": trainer.global_step,
                 "optimizer": trainer.optimizers[0].state_dict(),
                 "lr_scheduler": trainer.lr_scheduler_configs[0].scheduler.state_dict()}
        torch.save(probe, os.path.join(self.run_dir, "resume-probe.pt"))
