"""Probabilistic forecasts (``--model.quantiles``): one output per level, the pinball loss, the
median as the point forecast, the quantile columns of ``forecasts.csv`` and the plotted band."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from datamodules.timeseries import TimeSeriesDataModule
from titans_lightning.backbone import TitansBackbone, TitansConfig
from titans_lightning.heads.forecasting import DLinear, ForecastingHead
from titans_lightning.tasks.forecasting import DLinearTask, ForecastFigure, ForecastingTask, forecast_frame

LEVELS = [0.1, 0.5, 0.9]
SIZES = {"channels": 2, "covariates": 1, "lookback": 24, "horizon": 6}
PANEL = dict(date_column="ds", id_column="unique_id", target="y", lookback=16, horizon=4)


@pytest.mark.parametrize("levels", [[0.1, 0.9], [0.1, 0.1, 0.5], [0.0, 0.5], [0.5, 1.5], []])
@pytest.mark.parametrize("task", [ForecastingTask, DLinearTask])
def test_quantiles_must_be_distinct_levels_with_the_median(task, levels):
    with pytest.raises(ValueError, match=f"quantiles {levels}.*include 0.5".replace("[", r"\[").replace("]", r"\]")):
        task(quantiles=levels, data_sizes=SIZES)


def test_levels_are_sorted_and_default_is_a_point_forecast():
    assert DLinearTask(quantiles=[0.9, 0.5, 0.1]).quantiles == (0.1, 0.5, 0.9)
    assert ForecastingTask().quantiles is None


def titans_run(quantiles: int):
    torch.manual_seed(0)
    backbone = TitansBackbone(TitansConfig(variant="lmm", size="debug"))
    head = ForecastingHead(2, 0, lookback=24, horizon=6, dim=32, patch_len=4, stride=2, cycle=4, linear_skip=True,
                           quantiles=quantiles).eval()

    def run(x):
        tokens, context = head.encode(x, x[..., :0], torch.zeros(x.shape[0], dtype=torch.long))
        return head.decode(backbone(tokens)[0], context)
    return run


@pytest.mark.parametrize("model", ["titans", "dlinear"])
def test_one_output_per_level_and_revin_equivariance(model):
    """(B, H, C, Q) with quantiles; with RevIN each level is scale and shift equivariant."""
    torch.manual_seed(0)
    run = titans_run(3) if model == "titans" else DLinear(2, 0, 24, 6, revin=True, quantiles=3).eval()
    x = torch.randn(4, 24, 2)
    call = (lambda v: run(v)) if model == "titans" else (lambda v: run(v, v[..., :0]))
    y = call(x)
    assert y.shape == (4, 6, 2, 3)
    torch.testing.assert_close(call(3.0 * x + 7.0), 3.0 * y + 7.0, rtol=1e-4, atol=1e-3)


def test_dlinear_levels_start_as_the_lookback_average():
    y = DLinear(2, 0, 24, 6, quantiles=3)(torch.full((1, 24, 2), 5.0), torch.zeros(1, 24, 0))
    torch.testing.assert_close(y, torch.full((1, 6, 2, 3), 5.0))


def test_loss_is_the_mean_pinball_loss_and_the_point_forecast_the_median():
    torch.manual_seed(0)
    task = DLinearTask(quantiles=LEVELS, data_sizes=SIZES)
    task.configure_model()
    batch = {"x": torch.randn(3, 24, 2), "covariates": torch.randn(3, 24, 1), "y": torch.randn(3, 6, 2),
             "start": torch.arange(3)}
    loss, prediction = task.compute_loss(batch)
    by_hand = torch.stack([torch.where(batch["y"] >= prediction[..., k], tau * (batch["y"] - prediction[..., k]),
                                       (1 - tau) * (prediction[..., k] - batch["y"])).mean()
                           for k, tau in enumerate(LEVELS)]).mean()
    torch.testing.assert_close(loss, by_hand)
    out = task.predict_step(batch, 0)
    torch.testing.assert_close(out["forecast"], prediction[..., 1].detach())
    assert out["quantiles"].shape == (3, 6, 2, 3)


def test_forecasts_csv_has_the_id_and_one_column_per_level(make_panel):
    """Standardised quantiles -1, 0, 1 become mean - std, mean, mean + std of each series."""
    dm = TimeSeriesDataModule(path=str(make_panel()), **PANEL)
    dm.setup("test")
    windows = [dm.datasets["test"][i] for i in (0, len(dm.datasets["test"]) - 1)]
    series = torch.stack([w["series"] for w in windows])
    assert series.tolist() == [0, 1]
    quantiles = torch.tensor([-1.0, 0.0, 1.0]).expand(2, 4, 1, 3)
    predictions = [{"forecast": quantiles[..., 1], "start": torch.stack([w["start"] for w in windows]),
                    "series": series, "quantiles": quantiles}]
    frame = forecast_frame(dm, predictions, LEVELS)
    assert frame.columns == ["unique_id", "origin", "ds", "step", "y", "y_q0.1", "y_q0.5", "y_q0.9"]
    assert frame["unique_id"].to_list() == ["A"] * 4 + ["B"] * 4
    for s, rows in ((0, slice(0, 4)), (1, slice(4, 8))):
        mean, std = dm.scalers.mean[s, 0], dm.scalers.std[s, 0]
        np.testing.assert_allclose(frame["y"][rows].to_numpy(), mean, rtol=1e-6)
        np.testing.assert_allclose(frame["y_q0.1"][rows].to_numpy(), mean - std, rtol=1e-5)
        np.testing.assert_allclose(frame["y_q0.9"][rows].to_numpy(), mean + std, rtol=1e-5)
        start = int(windows[s]["start"])
        assert frame["ds"][rows].to_list() == dm.target_times(start, s)
    np.testing.assert_array_equal(frame["y"].to_numpy(), frame["y_q0.5"].to_numpy())
    with pytest.raises(ValueError, match="pass their levels"):
        forecast_frame(dm, predictions)


def test_the_figure_draws_the_interval(make_panel):
    dm = TimeSeriesDataModule(path=str(make_panel()), **PANEL)
    dm.setup("fit")
    task = DLinearTask(quantiles=LEVELS, data_sizes=dm.data_sizes)
    task.configure_model()
    figure = ForecastFigure(windows=2).make_figures(SimpleNamespace(datamodule=dm), task)["val/forecast"]
    first, last = figure.axes
    assert len(first.collections) == 1  # the filled band between the 0.1 and 0.9 quantiles
    assert first.get_ylabel() == "y (A)" and last.get_ylabel() == "y (B)"
    assert "0.1-0.9 quantiles" in [t.get_text() for t in first.get_legend().get_texts()]
    point = DLinearTask(data_sizes=dm.data_sizes)
    point.configure_model()
    assert not ForecastFigure(windows=2).make_figures(SimpleNamespace(datamodule=dm), point)["val/forecast"] \
        .axes[0].collections
