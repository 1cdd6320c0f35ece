"""Time-series forecasting tasks: the Titans forecaster and a DLinear baseline, with their
forecast plots and a prediction writer.

Both tasks read the batches of ``datamodules.timeseries`` (``x`` (B, L, C), ``y`` (B, H, C),
``covariates`` (B, L, K), ``start`` (B,)) and learn by MSE on the standardised scale. Metrics:
``mse`` / ``mae`` on the standardised scale (the numbers the literature reports) and
``mse_original`` / ``mae_original`` in the data's own units (through the DataModule's
``inverse_transform``). The best checkpoint has the lowest ``val/mse``.

Shape legend: B windows, L lookback, H horizon, C target channels, K covariates.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, Optional

import polars as pl
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, Metric, MetricCollection

from titans_lightning.backbone import TitansConfig
from titans_lightning.callbacks import FigureLogger, TableWriter
from titans_lightning.heads.forecasting import DLinear, ForecastingHead
from titans_lightning.tasks.base import Task, TitansTask
from titans_lightning.tasks.schedules import AdamW, WarmupCosine


class _Forecaster(Task):
    """What every forecaster shares, on the task harness: loss, metrics, prediction; subclasses
    write ``forecast`` (and their layers, or take a backbone from ``TitansTask``)."""

    monitor = "val/mse"
    monitor_mode = "min"

    @abc.abstractmethod
    def forecast(self, batch: dict[str, Tensor]) -> Tensor:
        """A batch's ``x`` (B, L, C), ``covariates`` (B, L, K) (standardised) and ``start`` (B,)
        -> forecast (B, H, C), standardised."""

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        prediction = self.forecast(batch)
        return F.mse_loss(prediction.float(), batch["y"]), prediction

    def build_metrics(self) -> dict[str, Metric]:
        return {"mse": MeanSquaredError(), "mae": MeanAbsoluteError(),
                "mse_original": MeanSquaredError(), "mae_original": MeanAbsoluteError()}

    def update_metrics(self, metrics: MetricCollection, outputs: Tensor, batch: dict[str, Tensor]) -> None:
        # Every element of every window counts once: the mean over windows x H x C of the
        # literature (torchmetrics sums, then divides by the total count).
        prediction, target = outputs.float(), batch["y"]
        original = self.to_original(prediction).reshape(-1), self.to_original(target).reshape(-1)
        prediction, target = prediction.reshape(-1), target.reshape(-1)
        for name, metric in metrics.items(keep_base=True):
            metric.update(*(original if name.endswith("_original") else (prediction, target)))

    def to_original(self, values: Tensor) -> Tensor:
        """(..., C) standardised values in the data's units, by the DataModule's scaler
        (unchanged when there is no DataModule with ``inverse_transform``)."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        inverse = getattr(datamodule, "inverse_transform", None)
        return inverse(values) if inverse is not None else values

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """``{"forecast": (B, H, C) standardised, "start": (B,) file row of each window}``."""
        return {"forecast": self.forecast(batch).float(), "start": batch["start"]}


class ForecastingTask(_Forecaster, TitansTask):
    """The Titans forecaster: RevIN, channel-independent patches (or points) as tokens, the
    backbone, a flatten head (``titans_lightning.heads.forecasting``).

    Args:
        backbone: the backbone; None = ``TitansConfig(variant="lmm")``, the memory alone as the
            mixer, as the paper's time-series model. Every variant is selectable
            (``--model.backbone.variant transformer`` is the attention baseline).
        patch_len, stride: time steps per token and between tokens; 1 and 1 = point embedding.
        revin: per-window normalisation (reversible instance normalisation).
        dropout: on token embeddings and before the head.
        cycle: period (rows) of a learned cycle removed from the inputs and added back to the
            forecast (CycleNet's residual cycle forecasting; 24 for a daily cycle of hourly
            data); 0 = none.
        linear_skip: add a linear lookback-to-horizon map to the head's output.
        optimizer, lr_scheduler, data_sizes: as ``TitansTask`` (``data_sizes`` is linked:
            ``channels``, ``covariates``, ``lookback``, ``horizon``).
    """

    def __init__(
        self,
        backbone: Optional[TitansConfig] = None,
        patch_len: int = 16,
        stride: int = 8,
        revin: bool = True,
        dropout: float = 0.0,
        cycle: int = 0,
        linear_skip: bool = False,
        optimizer: OptimizerCallable = AdamW,
        lr_scheduler: Optional[LRSchedulerCallable] = WarmupCosine,
        data_sizes: Optional[dict[str, int]] = None,
        activation_checkpointing: bool = False,
        compile: bool = False,
    ) -> None:
        backbone = backbone if backbone is not None else TitansConfig(variant="lmm")
        super().__init__(backbone, optimizer, lr_scheduler, data_sizes,
                         activation_checkpointing=activation_checkpointing, compile=compile)
        self.patch_len, self.stride, self.revin, self.dropout = patch_len, stride, revin, dropout
        self.cycle, self.linear_skip = cycle, linear_skip

    def build_head(self) -> nn.Module:
        s = self.data_sizes
        return ForecastingHead(s["channels"], s.get("covariates", 0), s["lookback"], s["horizon"],
                               self.backbone_config.dim, self.patch_len, self.stride, self.revin, self.dropout,
                               self.cycle, self.linear_skip)

    def forecast(self, batch: dict[str, Tensor]) -> Tensor:
        tokens, context = self.head.encode(batch["x"], batch["covariates"], batch["start"])
        hidden, _ = self.backbone(tokens)
        return self.head.decode(hidden, context)


class DLinearTask(_Forecaster):
    """The DLinear baseline (``titans_lightning.heads.forecasting.DLinear``) trained, evaluated
    and predicted exactly like the Titans forecaster. It has no backbone: it stands on the task
    harness, and its one layer is the DLinear head (``self.head``).

    Args:
        kernel: moving-average window of the trend (odd). individual: one linear pair per channel.
        revin: per-window normalisation (off in the original DLinear).
        optimizer, lr_scheduler, data_sizes: as ``Task`` (``data_sizes`` as ``ForecastingTask``).
    """

    def __init__(
        self,
        kernel: int = 25,
        individual: bool = False,
        revin: bool = False,
        optimizer: OptimizerCallable = AdamW,
        lr_scheduler: Optional[LRSchedulerCallable] = WarmupCosine,
        data_sizes: Optional[dict[str, int]] = None,
    ) -> None:
        super().__init__(optimizer, lr_scheduler, data_sizes)
        self.kernel, self.individual, self.use_revin = kernel, individual, revin
        self.head: Optional[nn.Module] = None

    def configure_models(self) -> None:
        s = self.data_sizes
        self.head = DLinear(s["channels"], s.get("covariates", 0), s["lookback"], s["horizon"],
                            self.kernel, self.individual, self.use_revin)

    def forecast(self, batch: dict[str, Tensor]) -> Tensor:
        return self.head(batch["x"], batch["covariates"])


class ForecastFigure(FigureLogger):
    """After a validation, plots lookback, truth and forecast of a few validation windows, in
    original units against their timestamps (``val/forecast``: PNG in the run folder and W&B).

    It calls the model on rank 0 only, on a handful of windows: fine on one device and under
    DDP; not for FSDP-sharded forecasters (a sharded forward is a collective).

    Args:
        windows: how many windows, spread evenly over the validation split.
        channel: the target column to plot; None = the last target (``OT`` on ETT).
        every_n_evals: plot after every n-th validation.
    """

    def __init__(self, windows: int = 3, channel: Optional[str] = None, every_n_evals: int = 1) -> None:
        super().__init__(every_n_evals)
        self.windows, self.channel = windows, channel

    def make_figures(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        from matplotlib.figure import Figure

        datamodule = trainer.datamodule
        dataset = datamodule.datasets["val"]
        picks = torch.linspace(0, len(dataset) - 1, self.windows).round().long().unique().tolist()
        batch = torch.utils.data.default_collate([dataset[i] for i in picks])
        with torch.no_grad():
            forecast = pl_module.forecast({k: v.to(pl_module.device) for k, v in batch.items()})
        names = datamodule.target_names
        if self.channel is not None and self.channel not in names:
            raise ValueError(f"ForecastFigure: channel {self.channel!r} is not a target; targets: {names}")
        c = names.index(self.channel) if self.channel is not None else len(names) - 1
        history, truth = datamodule.inverse_transform(batch["x"]), datamodule.inverse_transform(batch["y"])
        forecast = datamodule.inverse_transform(forecast.float().cpu())
        figure = Figure(figsize=(8, 2.2 * len(picks)), layout="constrained")
        for row, start in enumerate(batch["start"].tolist()):
            axes = figure.add_subplot(len(picks), 1, row + 1)
            times = datamodule.target_times(start)
            past = datamodule.table.times[start:start + datamodule.lookback].to_list()
            axes.plot(past, history[row, :, c].numpy(), color="gray", label="lookback")
            axes.plot(times, truth[row, :, c].numpy(), color="black", label="truth")
            axes.plot(times, forecast[row, :, c].numpy(), color="tab:red", label="forecast")
            axes.set_ylabel(names[c])
        figure.axes[0].legend(loc="upper left", fontsize="small")
        return {"val/forecast": figure}


class ForecastWriter(TableWriter):
    """Writes ``titans predict`` forecasts in original units with their timestamps.

    One row per window and forecast step: ``origin`` (time of the window's last input),
    ``<date column>`` (the forecast time), ``step`` (1..H), then one column per target. CSV or
    Parquet by the file's suffix.

    Args:
        output: the file; None = ``<run folder>/forecasts.csv``. Under several processes each
            rank writes its own windows to ``<stem>-rank<r><suffix>``.
    """

    default_name = "forecasts.csv"

    def make_frame(self, trainer: Trainer, predictions: Sequence[Any]) -> pl.DataFrame:
        return forecast_frame(trainer.datamodule, predictions)


def forecast_frame(datamodule: Any, predictions: Sequence[dict[str, Tensor]]) -> pl.DataFrame:
    """The long table of ``ForecastWriter`` from ``predict_step`` outputs (see there)."""
    forecast = torch.cat([p["forecast"] for p in predictions]).cpu()
    starts = torch.cat([p["start"] for p in predictions]).tolist()
    values = datamodule.inverse_transform(forecast.numpy()).reshape(-1, forecast.shape[-1])
    horizon = forecast.shape[1]
    origins = [datamodule.origin_time(s) for s in starts for _ in range(horizon)]
    times = [t for s in starts for t in datamodule.target_times(s)]
    columns = {"origin": origins, datamodule.date_column: times, "step": list(range(1, horizon + 1)) * len(starts)}
    columns.update({name: values[:, j] for j, name in enumerate(datamodule.target_names)})
    return pl.DataFrame(columns)


__all__ = ["DLinearTask", "ForecastFigure", "ForecastWriter", "ForecastingTask", "forecast_frame"]
