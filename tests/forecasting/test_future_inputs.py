"""Known-future inputs: calendar features of the timestamps and future covariates reach the
batch over lookback and horizon, reach the model by ``data_sizes``, and move the forecast."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import polars as pl
import pytest
import torch

from datamodules.timeseries import TimeSeriesDataModule
from datamodules.timeseries.calendar import calendar_features
from titans_lightning.tasks.forecasting import DLinearTask, ForecastingTask

from .conftest import panel_frame

L, H = 16, 4
KNOWN = dict(date_column="ds", id_column="unique_id", target="y", covariates=["temp"],
             future_covariates=["promo"], calendar_features=True, lookback=L, horizon=H)


def test_calendar_features_by_hand():
    """Monday 4 January 2021, 06:00 and Sunday 31 October 2021, 18:30."""
    times = pl.Series([datetime(2021, 1, 4, 6), datetime(2021, 10, 31, 18, 30)])
    hour, weekday, month = 2 * math.pi * 18.5 / 24, 2 * math.pi * 6 / 7, 2 * math.pi * 9 / 12
    expected = [[1.0, 0.0, 0.0, 1.0, 0.0, 1.0],
                [f(phase) for phase in (hour, weekday, month) for f in (math.sin, math.cos)]]
    np.testing.assert_allclose(calendar_features(times), expected, atol=1e-6)


def test_integer_steps_have_no_calendar(tmp_path):
    path = tmp_path / "steps.csv"
    pl.DataFrame({"t": list(range(60)), "v": [float(k % 7) for k in range(60)]}).write_csv(path)
    dm = TimeSeriesDataModule(path=str(path), date_column="t", calendar_features=True, lookback=4, horizon=2)
    with pytest.raises(ValueError, match="integer steps have no calendar.*--data.calendar_features false"):
        dm.setup("fit")


def test_known_features_reach_the_batch_over_lookback_and_horizon(make_panel):
    dm = TimeSeriesDataModule(path=str(make_panel()), **KNOWN)
    assert dm.data_sizes == {"channels": 1, "covariates": 1 + 7, "lookback": L, "horizon": H, "future": 7}
    assert dm.future_names[:2] == ["promo", "hour_sin"]
    dm.setup("fit")
    frame = panel_frame()
    for index in (0, 30):  # a window of A and one of B
        item = dm.datasets["val"][len(dm.datasets["val"]) - 1 - index]
        s, start = int(item["series"]), int(item["start"])
        rows = frame.filter(pl.col("unique_id") == dm.series_names[s])
        promo, times = rows["promo"].to_numpy(), rows["ds"]
        train = promo[:dm.borders(s)["train"][1]]
        scaled = (promo - train.mean()) / train.std()
        assert item["covariates"].shape == (L, 8) and item["future"].shape == (H, 7)
        np.testing.assert_allclose(item["future"][:, 0], scaled[start + L:start + L + H], rtol=1e-5)
        np.testing.assert_allclose(item["covariates"][:, 1], scaled[start:start + L], rtol=1e-5)
        np.testing.assert_allclose(item["future"][:, 1:], calendar_features(times[start + L:start + L + H]), atol=1e-6)
        np.testing.assert_allclose(item["covariates"][:, 2:], calendar_features(times[start:start + L]), atol=1e-6)


def test_calendar_continues_past_the_end_of_each_series(make_panel):
    dm = TimeSeriesDataModule(path=str(make_panel()), **{**KNOWN, "future_covariates": None},
                              predict_split="future")
    dm.setup("predict")
    for s in (0, 1):
        item = dm.datasets["predict"][s]
        times = pl.Series(dm.target_times(int(item["start"]), s))
        np.testing.assert_allclose(item["future"], calendar_features(times), atol=1e-6)


def test_future_covariates_are_unknown_past_the_end(make_panel):
    with pytest.raises(ValueError, match=r"future covariates \['promo'\] are not known"):
        TimeSeriesDataModule(path=str(make_panel()), **KNOWN, predict_split="future")


def build(task_class, sizes):
    torch.manual_seed(0)
    task = (ForecastingTask(patch_len=4, stride=4, data_sizes=sizes) if task_class is ForecastingTask
            else DLinearTask(data_sizes=sizes))
    task.configure_model()
    return task.eval()


@pytest.mark.parametrize("task_class", [ForecastingTask, DLinearTask])
def test_future_inputs_move_the_forecast_at_their_own_step(make_panel, task_class):
    """The future features of step 2 change the forecast of step 2 only (one linear map per step,
    added to the output); without them the model refuses the batch."""
    dm = TimeSeriesDataModule(path=str(make_panel()), **KNOWN)
    dm.setup("fit")
    task = build(task_class, dm.data_sizes)
    batch = torch.utils.data.default_collate([dm.datasets["val"][i] for i in range(8)])
    changed = {**batch, "future": batch["future"].clone()}
    changed["future"][:, 2, 0] += 3.0
    with torch.no_grad():
        a, b = task.forecast(batch), task.forecast(changed)
    assert a.shape == (8, H, 1)
    assert not torch.allclose(a[:, 2], b[:, 2])
    torch.testing.assert_close(a[:, [0, 1, 3]], b[:, [0, 1, 3]])
    with pytest.raises(ValueError, match="built for 7 known-future features"):
        task.forecast({k: v for k, v in batch.items() if k != "future"})
