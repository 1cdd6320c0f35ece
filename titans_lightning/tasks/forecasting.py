"""Time-series forecasting tasks: the Titans forecaster and a DLinear baseline, with their
forecast plots and a prediction writer.

Both tasks read the batches of ``datamodules.timeseries`` (``x`` (B, L, C), ``y`` (B, H, C),
``covariates`` (B, L, K), ``start`` (B,), and when the data has them ``future`` (B, H, F) known
over the horizon and ``series`` (B,) the series number of each window of a long table) and learn
by MSE on the standardised scale, or with ``quantiles`` by the pinball loss averaged over the
levels (the forecast is then (B, H, C, Q), its median the point forecast). Metrics:
``mse`` / ``mae`` on the standardised scale (the numbers the literature reports),
``mse_original`` / ``mae_original`` in the data's own units (through the DataModule's
``inverse_transform``, each window by its series' scaler), ``mase`` and ``smape``, and with
quantiles ``quantile_loss``, ``crps`` and ``coverage`` (definitions in ``forecast_metrics.py``).
The best checkpoint has the lowest ``val/mse``.

Shape legend: B windows, L lookback, H horizon, C target channels, K covariates, F known-future
features, Q quantile levels.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection

from titans_lightning.backbone import TitansConfig
from titans_lightning.callbacks import FigureLogger, TableWriter
from titans_lightning.heads.forecasting import DLinear, ForecastingHead
from titans_lightning.tasks.base import Task, TitansTask
from titans_lightning.tasks.forecast_metrics import (
    build_forecast_metrics,
    check_quantiles,
    metric_inputs,
    pinball_loss,
)
from titans_lightning.tasks.schedules import AdamW, WarmupCosine


class _Forecaster(Task):
    """What every forecaster shares, on the task harness: loss, metrics, prediction; subclasses
    write ``forecast`` (and their layers, or take a backbone from ``TitansTask``) and call
    ``set_forecast_options`` in their ``__init__``."""

    monitor = "val/mse"
    monitor_mode = "min"
    quantiles: Optional[tuple[float, ...]] = None
    season_option: Optional[int] = None

    def set_forecast_options(self, quantiles: Optional[Sequence[float]], season: Optional[int]) -> None:
        """Check and keep the quantile levels (sorted) and the MASE season."""
        if season is not None and season < 1:
            raise ValueError(f"{type(self).__name__}: season must be >= 1 (rows), got {season}")
        self.quantiles, self.season_option = check_quantiles(quantiles), season
        self._naive_scale: Optional[tuple[int, Tensor]] = None

    @property
    def season(self) -> int:
        """The MASE season m: ``season`` if given, else the model's ``cycle`` if any, else 1."""
        return self.season_option or getattr(self, "cycle", 0) or 1

    @abc.abstractmethod
    def forecast(self, batch: dict[str, Tensor]) -> Tensor:
        """A batch's ``x`` (B, L, C), ``covariates`` (B, L, K), ``start`` (B,) and ``future``
        (B, H, F) if any (standardised) -> forecast (B, H, C), or (B, H, C, Q) with quantiles,
        standardised."""

    def point(self, prediction: Tensor) -> Tensor:
        """The point forecast (B, H, C) of a forecast: itself, or the median of its quantiles."""
        return prediction if self.quantiles is None else prediction[..., self.quantiles.index(0.5)]

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        prediction = self.forecast(batch)
        if self.quantiles is None:
            return F.mse_loss(prediction.float(), batch["y"]), prediction
        return pinball_loss(prediction.float(), batch["y"], self.quantiles).mean(), prediction

    def build_metrics(self) -> dict[str, Metric]:
        return build_forecast_metrics(self.quantiles is not None)

    def update_metrics(self, metrics: MetricCollection, outputs: Tensor, batch: dict[str, Tensor]) -> None:
        # Every element of every window counts once: the mean over windows x H x C of the
        # literature (torchmetrics sums, then divides by the total count).
        target, series = batch["y"], batch.get("series")
        point = self.point(outputs.float())
        original = self.to_original(point, series), self.to_original(target, series)
        quantiles = outputs.float() if self.quantiles is not None else None
        inputs = metric_inputs(point, target, original, self.naive_scale(series, target), quantiles, self.quantiles)
        for name, metric in metrics.items(keep_base=True):
            metric.update(*inputs[name])

    def _data(self) -> Any:
        """The trainer's DataModule, or None."""
        return getattr(self._trainer, "datamodule", None) if self._trainer is not None else None

    def to_original(self, values: Tensor, series: Optional[Tensor] = None) -> Tensor:
        """(B, ..., C) standardised values in the data's units, by the DataModule's scaler of each
        window's series (unchanged when there is no DataModule with ``inverse_transform``)."""
        inverse = getattr(self._data(), "inverse_transform", None)
        if inverse is None:
            return values
        return inverse(values) if series is None else inverse(values, series)

    def naive_scale(self, series: Optional[Tensor], like: Tensor) -> Tensor:
        """The MASE denominator of each window's series (B or 1, 1, C), from the DataModule's
        ``naive_scale(season)`` (computed once); ones without such a DataModule."""
        naive = getattr(self._data(), "naive_scale", None)
        if naive is None:
            return like.new_ones(1, 1, like.shape[-1])
        if self._naive_scale is None or self._naive_scale[0] != id(self._data()):
            self._naive_scale = id(self._data()), torch.as_tensor(naive(self.season), dtype=torch.float32)
        scale = self._naive_scale[1].to(like.device)
        return (scale[series] if series is not None else scale[:1]).unsqueeze(1)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """``{"forecast": (B, H, C) standardised point forecast, "start": (B,) first row of each
        window}``, with ``"series"`` (B,) for a long table and ``"quantiles"`` (B, H, C, Q)."""
        prediction = self.forecast(batch).float()
        out = {"forecast": self.point(prediction), "start": batch["start"]}
        if "series" in batch:
            out["series"] = batch["series"]
        if self.quantiles is not None:
            out["quantiles"] = prediction
        return out


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
        quantiles: quantile levels to forecast, e.g. ``[0.1, 0.5, 0.9]`` (0.5 required: the
            median is the point forecast), learnt by the pinball loss; None = a point forecast
            learnt by MSE.
        season: the season (rows) of the MASE scale; None = ``cycle``, or 1 without a cycle.
        optimizer, lr_scheduler, data_sizes: as ``TitansTask`` (``data_sizes`` is linked:
            ``channels``, ``covariates``, ``lookback``, ``horizon``, and ``future`` (the
            known-future features) when the data has them).
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
        quantiles: Optional[list[float]] = None,
        season: Optional[int] = None,
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
        self.set_forecast_options(quantiles, season)

    def build_head(self) -> nn.Module:
        s = self.data_sizes
        return ForecastingHead(s["channels"], s.get("covariates", 0), s["lookback"], s["horizon"],
                               self.backbone_config.dim, self.patch_len, self.stride, self.revin, self.dropout,
                               self.cycle, self.linear_skip, len(self.quantiles or ()), s.get("future", 0))

    def forecast(self, batch: dict[str, Tensor]) -> Tensor:
        tokens, context = self.head.encode(batch["x"], batch["covariates"], batch["start"], batch.get("future"))
        hidden, _ = self.backbone(tokens)
        return self.head.decode(hidden, context)


class DLinearTask(_Forecaster):
    """The DLinear baseline (``titans_lightning.heads.forecasting.DLinear``) trained, evaluated
    and predicted exactly like the Titans forecaster. It has no backbone: it stands on the task
    harness, and its one layer is the DLinear head (``self.head``).

    Args:
        kernel: moving-average window of the trend (odd). individual: one linear pair per channel.
        revin: per-window normalisation (off in the original DLinear).
        quantiles: as ``ForecastingTask`` (None = the point forecast, MSE).
        season: the season (rows) of the MASE scale; None = 1 (the naive forecast).
        optimizer, lr_scheduler, data_sizes: as ``Task`` (``data_sizes`` as ``ForecastingTask``).
    """

    def __init__(
        self,
        kernel: int = 25,
        individual: bool = False,
        revin: bool = False,
        quantiles: Optional[list[float]] = None,
        season: Optional[int] = None,
        optimizer: OptimizerCallable = AdamW,
        lr_scheduler: Optional[LRSchedulerCallable] = WarmupCosine,
        data_sizes: Optional[dict[str, int]] = None,
    ) -> None:
        super().__init__(optimizer, lr_scheduler, data_sizes)
        self.kernel, self.individual, self.use_revin = kernel, individual, revin
        self.head: Optional[nn.Module] = None
        self.set_forecast_options(quantiles, season)

    def configure_models(self) -> None:
        s = self.data_sizes
        self.head = DLinear(s["channels"], s.get("covariates", 0), s["lookback"], s["horizon"],
                            self.kernel, self.individual, self.use_revin, len(self.quantiles or ()),
                            s.get("future", 0))

    def forecast(self, batch: dict[str, Tensor]) -> Tensor:
        return self.head(batch["x"], batch["covariates"], batch.get("future"))


class ForecastFigure(FigureLogger):
    """After a validation, plots lookback, truth and forecast of a few validation windows, in
    original units against their timestamps (``val/forecast``: PNG in the run folder and W&B);
    with quantiles, the band between the lowest and highest quantile around the median; with many
    series, each window's series id beside the channel.

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
            prediction = pl_module.forecast({k: v.to(pl_module.device) for k, v in batch.items()}).float().cpu()
        names = datamodule.target_names
        if self.channel is not None and self.channel not in names:
            raise ValueError(f"ForecastFigure: channel {self.channel!r} is not a target; targets: {names}")
        c = names.index(self.channel) if self.channel is not None else len(names) - 1
        series, levels = batch.get("series"), getattr(pl_module, "quantiles", None)
        history, truth = in_units(datamodule, batch["x"], series), in_units(datamodule, batch["y"], series)
        forecast = in_units(datamodule, pl_module.point(prediction), series)
        band = in_units(datamodule, prediction.movedim(-1, 1), series) if levels else None  # (B, Q, H, C)
        figure = Figure(figsize=(8, 2.2 * len(picks)), layout="constrained")
        for row, start in enumerate(batch["start"].tolist()):
            axes = figure.add_subplot(len(picks), 1, row + 1)
            number = int(series[row]) if series is not None else None
            times = datamodule.target_times(start, number)
            axes.plot(datamodule.input_times(start, number), history[row, :, c].numpy(), color="gray", label="lookback")
            axes.plot(times, truth[row, :, c].numpy(), color="black", label="truth")
            axes.plot(times, forecast[row, :, c].numpy(), color="tab:red", label="forecast")
            if band is not None:
                axes.fill_between(times, band[row, 0, :, c].numpy(), band[row, -1, :, c].numpy(), color="tab:red",
                                  alpha=0.2, label=f"{levels[0]:g}-{levels[-1]:g} quantiles")
            label = names[c] if number is None else f"{names[c]} ({datamodule.series_names[number]})"
            axes.set_ylabel(label)
        figure.axes[0].legend(loc="upper left", fontsize="small")
        return {"val/forecast": figure}


def in_units(datamodule: Any, values: Any, series: Optional[Tensor] = None) -> Any:
    """(B, ..., C) standardised values in the data's units, by each window's series' scaler."""
    return datamodule.inverse_transform(values) if series is None else datamodule.inverse_transform(values, series)


class ForecastWriter(TableWriter):
    """Writes ``titans predict`` forecasts in original units with their timestamps.

    One row per window and forecast step: for a long table first the id column (the window's
    series id), then ``origin`` (time of the window's last input), ``<date column>`` (the
    forecast time), ``step`` (1..H), then one column per target (the point forecast: the median
    with quantiles), each followed, with quantiles, by one column per level (``OT_q0.1``). CSV
    or Parquet by the file's suffix.

    Args:
        output: the file; None = ``<run folder>/forecasts.csv``. Under several processes each
            rank writes its own windows to ``<stem>-rank<r><suffix>``.
    """

    default_name = "forecasts.csv"

    def make_frame(self, trainer: Trainer, predictions: Sequence[Any]) -> pl.DataFrame:
        return forecast_frame(trainer.datamodule, predictions, getattr(trainer.lightning_module, "quantiles", None))


def forecast_frame(datamodule: Any, predictions: Sequence[dict[str, Tensor]],
                   levels: Optional[Sequence[float]] = None) -> pl.DataFrame:
    """The long table of ``ForecastWriter`` from ``predict_step`` outputs (see there); ``levels``
    names the quantile columns of predictions that have ``"quantiles"``."""
    def gather(key: str) -> Optional[Tensor]:
        return torch.cat([p[key] for p in predictions]).cpu() if key in predictions[0] else None

    forecast, series, quantiles = gather("forecast"), gather("series"), gather("quantiles")
    windows, horizon, channels = forecast.shape
    starts = gather("start").tolist()
    numbers = series.tolist() if series is not None else [None] * windows
    values = in_units(datamodule, forecast.numpy(), series).reshape(-1, channels)
    columns = {}
    if series is not None:
        columns[datamodule.id_column] = [datamodule.series_names[s] for s in numbers for _ in range(horizon)]
    columns["origin"] = [datamodule.origin_time(t, s) for t, s in zip(starts, numbers) for _ in range(horizon)]
    columns[datamodule.date_column] = [x for t, s in zip(starts, numbers) for x in datamodule.target_times(t, s)]
    columns["step"] = list(range(1, horizon + 1)) * windows
    if quantiles is not None and levels is None:
        raise ValueError("forecast_frame: the predictions have quantiles; pass their levels")
    if quantiles is not None:  # (N, Q, H, C) in units -> (N H, C, Q)
        quantiles = np.moveaxis(in_units(datamodule, quantiles.movedim(-1, 1).numpy(), series), 1, -1)
        quantiles = quantiles.reshape(-1, channels, len(levels))
    for j, name in enumerate(datamodule.target_names):
        columns[name] = values[:, j]
        for k, level in enumerate(levels if quantiles is not None else ()):
            columns[f"{name}_q{level:g}"] = quantiles[:, j, k]
    return pl.DataFrame(columns)


__all__ = ["DLinearTask", "ForecastFigure", "ForecastWriter", "ForecastingTask", "forecast_frame"]
