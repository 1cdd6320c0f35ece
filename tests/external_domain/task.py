"""The delayed-copy task: a linear embedding in, the backbone, a linear read-out, MSE."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanSquaredError, Metric, MetricCollection

from titans_lightning.tasks import TitansTask


class CopyHead(nn.Module):
    """(B, T, C) features -> (B, T, D) embeddings, and (B, T, D) hidden states -> (B, T, C)."""

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.Linear(channels, dim)
        self.out = nn.Linear(dim, channels)


class DelayedCopyTask(TitansTask):
    """Regress ``y`` from ``x`` (see ``data.py``); the best checkpoint has the lowest ``val/mse``."""

    monitor = "val/mse"
    monitor_mode = "min"

    def build_head(self) -> nn.Module:
        return CopyHead(self.data_sizes["channels"], self.backbone_config.dim)

    def compute_loss(self, batch: Any) -> tuple[Tensor, Tensor]:
        x, y = batch
        hidden, _ = self.backbone(self.head.embed(x))
        prediction = self.head.out(hidden)
        return F.mse_loss(prediction, y), prediction

    def build_metrics(self) -> dict[str, Metric]:
        return {"mse": MeanSquaredError()}

    def update_metrics(self, metrics: MetricCollection, outputs: Tensor, batch: Any) -> None:
        metrics.update(outputs, batch[1])
