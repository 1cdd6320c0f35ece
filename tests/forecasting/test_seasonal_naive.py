"""The seasonal-naive baseline: its forecast and quantiles against hand computations, and its
metrics through the same harness as the learned models (MASE 0 on a purely seasonal series, the
textbook ratio on a random walk)."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from lightning.pytorch import Trainer

from datamodules.timeseries import TimeSeriesDataModule
from datamodules.timeseries.windows import ratio_borders
from titans_lightning.tasks.forecast_baselines import SeasonalNaiveTask, seasonal_naive, seasonal_naive_quantiles

LEVELS = (0.1, 0.5, 0.9)


def test_forecast_repeats_the_last_value_at_the_same_phase_also_beyond_one_season():
    """L = 5, m = 3, H = 7, lookback values 1..5 at times t-4..t: step h is y[t + h - 3 ceil(h / 3)],
    i.e. y[t-2], y[t-1], y[t], then again y[t-2], ... (3, 4, 5, 3, 4, 5, 3)."""
    x = torch.arange(1.0, 6.0).view(1, 5, 1)
    forecast = seasonal_naive(x, horizon=7, season=3)
    assert forecast.view(-1).tolist() == [3.0, 4.0, 5.0, 3.0, 4.0, 5.0, 3.0]
    # the formula of the module docstring, element by element, on two channels
    x = torch.randn(2, 10, 2)
    forecast = seasonal_naive(x, horizon=9, season=4)
    for h in range(1, 10):
        torch.testing.assert_close(forecast[:, h - 1], x[:, 9 + h - 4 * math.ceil(h / 4)])


def test_season_one_is_the_naive_forecast_and_a_short_lookback_is_refused():
    x = torch.randn(3, 6, 2)
    torch.testing.assert_close(seasonal_naive(x, 4, 1), x[:, -1:].expand(-1, 4, -1))
    with pytest.raises(ValueError, match="lookback \\(6 rows\\) must cover one season \\(12 rows\\)"):
        seasonal_naive(x, 4, 12)
    task = SeasonalNaiveTask(season=12, data_sizes={"channels": 1, "covariates": 0, "lookback": 6, "horizon": 4})
    with pytest.raises(ValueError, match="lookback 6 is shorter than the season 12"):
        task.configure_model()


def test_quantiles_are_the_centred_residual_quantiles_widened_by_seasons_ahead():
    """L = 6, m = 2: residuals x[j] - x[j - 2] = (2, 0, 4, 1); their 0.1 / 0.5 / 0.9 quantiles
    (linear interpolation) are 0.3, 1.5, 3.4, so the offsets are -1.2, 0, 1.9, times sqrt(k)."""
    x = torch.tensor([1.0, 5.0, 3.0, 5.0, 7.0, 6.0]).view(1, 6, 1)
    quantiles = seasonal_naive_quantiles(x, horizon=5, season=2, levels=LEVELS)
    assert quantiles.shape == (1, 5, 1, 3)
    point = torch.tensor([7.0, 6.0, 7.0, 6.0, 7.0])
    torch.testing.assert_close(quantiles[0, :, 0, 1], point)  # the median is the point forecast
    k = torch.tensor([1.0, 1.0, 2.0, 2.0, 3.0])
    torch.testing.assert_close(quantiles[0, :, 0, 0], point - 1.2 * k.sqrt())
    torch.testing.assert_close(quantiles[0, :, 0, 2], point + 1.9 * k.sqrt())
    # a lookback of exactly one season has no residual: every level is the point forecast
    flat = seasonal_naive_quantiles(x[:, :2], horizon=3, season=2, levels=LEVELS)
    torch.testing.assert_close(flat, seasonal_naive(x[:, :2], 3, 2).unsqueeze(-1).expand(-1, -1, -1, 3))


def monthly_panel(path: Path, series: dict[str, np.ndarray]) -> Path:
    """A long table ``unique_id, ds, y`` of monthly series starting in January 2000."""
    frames = [pl.DataFrame({"unique_id": [name] * len(y),
                            "ds": [date(2000 + k // 12, k % 12 + 1, 1) for k in range(len(y))], "y": y})
              for name, y in series.items()]
    pl.concat(frames).write_csv(path)
    return path


def fit_and_test(path: Path, season: int, quantiles=None, lookback: int = 24, horizon: int = 6) -> dict[str, float]:
    """``Trainer.fit`` (one batch, no optimizer step) then ``Trainer.test``: the logged test metrics."""
    data = TimeSeriesDataModule(path=str(path), date_column="ds", id_column="unique_id", target="y",
                                lookback=lookback, horizon=horizon, batch_size=64)
    task = SeasonalNaiveTask(season=season, quantiles=quantiles, data_sizes=data.data_sizes)
    trainer = Trainer(max_epochs=1, limit_train_batches=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(task, datamodule=data)
    return {k: float(v) for k, v in trainer.test(task, datamodule=data, verbose=False)[0].items()}


def test_a_purely_seasonal_series_has_mase_zero_and_full_quantile_accuracy(tmp_path):
    """Whole numbers repeated every 12 months: every window's residuals are exactly zero."""
    year = np.array([3, 5, 4, 8, 9, 12, 11, 10, 7, 6, 4, 2], dtype=float)
    seasonal = {"A": 100 + 10 * np.tile(year, 10), "B": 5 + np.tile(year[::-1], 8)}
    scores = fit_and_test(monthly_panel(tmp_path / "seasonal.csv", seasonal), season=12, quantiles=list(LEVELS))
    assert scores["test/mase"] == pytest.approx(0.0, abs=1e-5)
    assert scores["test/mse"] == pytest.approx(0.0, abs=1e-9)
    assert scores["test/smape"] == pytest.approx(0.0, abs=1e-6)
    assert scores["test/quantile_loss"] == pytest.approx(0.0, abs=1e-6)
    assert scores["test/coverage"] == 1.0  # zero residuals: a zero-width interval holds the target


def hand_mase(series: dict[str, np.ndarray], lookback: int, horizon: int, season: int) -> float:
    """Mean over every test window, step and series of |y - yhat| / the in-sample seasonal-naive
    MAE of the series' training rows, in the data's own units (Hyndman and Koehler 2006)."""
    errors = []
    for y in series.values():
        borders = ratio_borders(len(y), lookback, (0.7, 0.1, 0.2))
        train_end = borders["train"][1]
        scale = np.abs(y[season:train_end] - y[:train_end - season]).mean()
        first, end = borders["test"]
        for start in range(first, end - lookback - horizon + 1):
            origin = start + lookback - 1
            for h in range(1, horizon + 1):
                forecast = y[origin + h - season * math.ceil(h / season)]
                errors.append(abs(y[origin + h] - forecast) / scale)
    return float(np.mean(errors))


@pytest.mark.parametrize("season", [1, 12], ids=["naive", "seasonal"])
def test_mase_of_a_random_walk_matches_a_hand_computation(tmp_path, season):
    """Two random walks of different lengths and scales (the scale of each is its own): the
    harness's ``test/mase`` equals the ratio computed in original units by hand."""
    rng = np.random.default_rng(0)
    walks = {"A": 50 + np.cumsum(rng.normal(size=150)), "B": 1000 + 30 * np.cumsum(rng.normal(size=110))}
    scores = fit_and_test(monthly_panel(tmp_path / "walks.csv", walks), season=season)
    assert scores["test/mase"] == pytest.approx(hand_mase(walks, 24, 6, season), rel=1e-4)
