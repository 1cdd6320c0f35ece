"""Forecast metrics against hand computations: pinball loss, CRPS approximation, interval
coverage, MASE (with its seasonal-naive scale per series) and sMAPE."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch
from torchmetrics import MetricCollection

from datamodules.timeseries import TimeSeriesDataModule
from datamodules.timeseries.scaling import seasonal_naive_mae
from titans_lightning.tasks.forecast_metrics import (
    build_forecast_metrics,
    interval_coverage,
    metric_inputs,
    pinball_loss,
)
from titans_lightning.tasks.forecasting import DLinearTask, ForecastingTask

from .conftest import SERIES, panel_frame

LEVELS = (0.1, 0.5, 0.9)
Z90 = 1.2815515655446004  # the 0.9 quantile of N(0, 1)


def compute(point, target, original, scale, quantiles=None) -> dict[str, float]:
    metrics = MetricCollection(build_forecast_metrics(quantiles is not None), compute_groups=False)
    inputs = metric_inputs(point, target, original, scale, quantiles, LEVELS if quantiles is not None else None)
    for name, metric in metrics.items(keep_base=True):
        metric.update(*inputs[name])
    return {k: float(v) for k, v in metrics.compute().items()}


def test_pinball_loss_by_hand():
    """Target 2.5 against quantiles (1, 2, 3): errors 1.5, 0.5, -0.5 -> 0.15, 0.25, 0.05; target 0:
    errors -1, -2, -3 -> 0.9, 1.0, 0.3."""
    forecast = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    loss = pinball_loss(forecast, torch.tensor([2.5, 0.0]), LEVELS)
    torch.testing.assert_close(loss, torch.tensor([[0.15, 0.25, 0.05], [0.9, 1.0, 0.3]]))
    quantiles = forecast.view(1, 2, 1, 3)
    target = torch.tensor([2.5, 0.0]).view(1, 2, 1)
    scores = compute(quantiles[..., 1], target, (quantiles[..., 1], target), torch.ones(1, 1, 1), quantiles)
    assert scores["quantile_loss"] == pytest.approx(2.65 / 6)
    assert scores["crps"] == pytest.approx(2 * 2.65 / 6)
    assert scores["coverage"] == pytest.approx(0.5)


def test_coverage_and_crps_of_a_known_distribution():
    """Targets ~ N(0, 1) and the true 0.1/0.5/0.9 quantiles: the interval covers 0.8 of them, and
    the true quantiles score better than too narrow or too wide ones."""
    torch.manual_seed(0)
    target = torch.randn(50_000)
    true = torch.tensor([-Z90, 0.0, Z90]).expand(len(target), 3)
    assert float(interval_coverage(true, target).mean()) == pytest.approx(0.8, abs=0.01)
    losses = {width: float(pinball_loss(width * true, target, LEVELS).mean()) for width in (0.5, 1.0, 2.0)}
    assert losses[1.0] < losses[0.5] and losses[1.0] < losses[2.0]


def test_seasonal_naive_scale_by_hand():
    values = np.array([[1.0, 4.0], [3.0, 4.0], [2.0, 4.0], [5.0, 4.0]])
    np.testing.assert_allclose(seasonal_naive_mae(values, 1), [2.0, 1.0])  # (2 + 1 + 3) / 3; constant -> 1
    np.testing.assert_allclose(seasonal_naive_mae(values, 2), [1.5, 1.0])  # (1 + 2) / 2
    np.testing.assert_allclose(seasonal_naive_mae(values, 4), [1.0, 1.0])  # no pair 4 rows apart


def test_mase_and_smape_by_hand():
    """Two windows (H 2, C 1) of two series with naive scales 2 and 1.5: scaled errors 1/2, 3/2,
    3/1.5, 0 -> MASE 1. sMAPE of (2, 2, 0, 2) against (1, 2, 0, 4): (2/3 + 0 + 0 + 4/6) / 4."""
    point = torch.tensor([[[1.0], [3.0]], [[3.0], [0.0]]])
    target = torch.zeros(2, 2, 1)
    scale = torch.tensor([2.0, 1.5]).view(2, 1, 1)
    original = torch.tensor([2.0, 2.0, 0.0, 2.0]).view(2, 2, 1), torch.tensor([1.0, 2.0, 0.0, 4.0]).view(2, 2, 1)
    scores = compute(point, target, original, scale)
    assert scores["mase"] == pytest.approx(1.0)
    assert scores["smape"] == pytest.approx((2 / 3 + 4 / 6) / 4)
    assert scores["mae"] == pytest.approx(7 / 4) and scores["mse"] == pytest.approx(19 / 4)


def test_naive_scale_is_per_series_on_its_training_rows(make_panel):
    """On the standardised scale, s = (raw seasonal-naive MAE of the training rows) / (their std)."""
    dm = TimeSeriesDataModule(path=str(make_panel()), date_column="ds", id_column="unique_id", target="y",
                              lookback=16, horizon=4)
    dm.setup("fit")
    frame = panel_frame()
    for s, name in enumerate(("A", "B")):
        train = frame.filter(pl.col("unique_id") == name)["y"].to_numpy()[:int(0.7 * SERIES[name]["rows"])]
        expected = np.abs(train[24:] - train[:-24]).mean() / train.std()
        assert dm.naive_scale(24)[s, 0] == pytest.approx(expected, rel=1e-4)


def test_the_task_scales_each_window_by_its_series(make_panel):
    """``update_metrics`` of a task on a panel: MASE from the DataModule's scale of each window's
    series (season = the task's season), sMAPE in original units, by hand."""
    dm = TimeSeriesDataModule(path=str(make_panel()), date_column="ds", id_column="unique_id", target="y",
                              lookback=16, horizon=4)
    dm.setup("fit")
    task = DLinearTask(season=24, data_sizes=dm.data_sizes)
    task.configure_model()
    task._trainer = SimpleNamespace(datamodule=dm)
    dataset = dm.datasets["val"]
    batch = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        _, outputs = task.compute_loss(batch)
    task.update_metrics(task.metrics["val"], outputs, batch)
    logged = {k: float(v) for k, v in task.metrics["val"].compute().items()}
    scale = torch.from_numpy(dm.naive_scale(24))[batch["series"]].unsqueeze(1)
    point, original = dm.inverse_transform(outputs, batch["series"]), dm.inverse_transform(batch["y"], batch["series"])
    assert logged["val/mase"] == pytest.approx(float(((outputs - batch["y"]).abs() / scale).mean()), rel=1e-5)
    smape = (2 * (point - original).abs() / (point.abs() + original.abs())).mean()
    assert logged["val/smape"] == pytest.approx(float(smape), rel=1e-5)
    assert logged["val/mae_original"] == pytest.approx(float((point - original).abs().mean()), rel=1e-5)


@pytest.mark.parametrize("task, season", [
    pytest.param(lambda: ForecastingTask(cycle=24), 24, id="cycle"),
    pytest.param(lambda: ForecastingTask(cycle=24, season=168), 168, id="season-wins"),
    pytest.param(lambda: DLinearTask(), 1, id="naive"),
])
def test_mase_season(task, season):
    assert task().season == season
