"""A panel with quantiles and known-future inputs through ``titans``: the debug recipe fit on a
generated long table (options only, no recipe of its own), then test and predict; the logged
metrics and ``forecasts.csv`` are checked against the checkpoint's own forecasts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from datamodules.timeseries import TimeSeriesDataModule
from titans_lightning.runs import QUIET, last_values, newest_version, read_metrics
from titans_lightning.tasks.forecasting import ForecastingTask

from .conftest import panel_frame

REPO = Path(__file__).resolve().parents[2]
DEBUG = REPO / "recipes" / "forecasting" / "debug.yaml"
DATA = dict(date_column="ds", id_column="unique_id", target="y", covariates=["temp"], future_covariates=["promo"],
            calendar_features=True, lookback=16, horizon=4)
LEVELS = (0.1, 0.5, 0.9)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from titans_lightning.cli import main

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("panel")
    table = tmp / "sales.csv"
    panel_frame().write_csv(table)
    data = ["--data.path", str(table), "--data.date_column", "ds", "--data.id_column", "unique_id",
            "--data.target", "y", "--data.covariates", "[temp]", "--data.future_covariates", "[promo]",
            "--data.calendar_features", "true", "--data.lookback", "16", "--data.horizon", "4"]
    model = ["--model.quantiles", "[0.1, 0.5, 0.9]", "--model.cycle", "24"]
    common = ["-c", str(DEBUG), "--trainer.default_root_dir", str(tmp / "runs"), *QUIET, *data]
    main(["fit", *common, *model, "--trainer.max_steps", "3", "--trainer.val_check_interval", "3"])
    fit_run = newest_version(tmp / "runs" / "csv")
    checkpoint = fit_run / "checkpoints" / "last.ckpt"
    main(["test", *common, "--ckpt_path", str(checkpoint)])
    test_run = newest_version(tmp / "runs" / "csv")
    main(["predict", *common, "--ckpt_path", str(checkpoint)])
    return {"table": table, "fit": fit_run, "test": test_run, "predict": newest_version(tmp / "runs" / "csv"),
            "checkpoint": checkpoint}


def checkpoint_forecasts(fitted):
    """(datamodule, task, batch of every test window, quantile forecasts (N, H, 1, 3))."""
    dm = TimeSeriesDataModule(path=str(fitted["table"]), **DATA)
    dm.setup("test")
    task = ForecastingTask.load_from_checkpoint(fitted["checkpoint"], map_location="cpu").eval()
    dataset = dm.datasets["test"]
    batch = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        return dm, task, batch, task.forecast(batch)


def test_fit_trains_and_logs_interval_and_scaled_metrics(fitted):
    rows = read_metrics(fitted["fit"])
    keys = set(rows[0])
    assert {"train/loss", "val/mse", "val/mase", "val/smape", "val/quantile_loss", "val/crps", "val/coverage"} <= keys
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert list((fitted["fit"] / "figures").glob("val_forecast-step3.png"))


def test_the_checkpoint_keeps_quantiles_and_future_sizes(fitted):
    _, task, batch, forecast = checkpoint_forecasts(fitted)
    assert task.quantiles == LEVELS and task.data_sizes["future"] == 1 + 6 and task.data_sizes["covariates"] == 8
    assert forecast.shape == (len(batch["x"]), 4, 1, 3)


def test_test_metrics_match_the_forecasts(fitted):
    logged = last_values(read_metrics(fitted["test"]), "test")
    dm, task, batch, forecast = checkpoint_forecasts(fitted)
    y, series = batch["y"], batch["series"]
    point = forecast[..., 1]
    scale = torch.from_numpy(dm.naive_scale(24))[series].unsqueeze(1)  # season = the cycle
    in_units = dm.inverse_transform(point, series), dm.inverse_transform(y, series)
    tau = torch.tensor(LEVELS)
    error = y.unsqueeze(-1) - forecast
    pinball = torch.maximum(tau * error, (tau - 1) * error).mean()
    expected = {"mse": ((point - y) ** 2).mean(), "mase": ((point - y).abs() / scale).mean(),
                "mae_original": (in_units[0] - in_units[1]).abs().mean(),
                "smape": (2 * (in_units[0] - in_units[1]).abs() / (in_units[0].abs() + in_units[1].abs())).mean(),
                "quantile_loss": pinball, "crps": 2 * pinball,
                "coverage": ((y >= forecast[..., 0]) & (y <= forecast[..., 2])).float().mean()}
    for key, value in expected.items():
        assert logged[key] == pytest.approx(float(value), rel=1e-4, abs=1e-6), key


def test_predict_writes_each_series_with_its_id_and_quantiles(fitted):
    written = pl.read_csv(fitted["predict"] / "forecasts.csv", try_parse_dates=True)
    dm, _, batch, forecast = checkpoint_forecasts(fitted)
    assert written.columns == ["unique_id", "origin", "ds", "step", "y", "y_q0.1", "y_q0.5", "y_q0.9"]
    assert written.height == len(batch["x"]) * 4
    assert set(written["unique_id"]) == {"A", "B"}
    band = dm.inverse_transform(forecast.movedim(-1, 1), batch["series"]).movedim(1, -1)  # (N, H, 1, 3)
    values = written.select("y_q0.1", "y_q0.5", "y_q0.9").to_numpy().reshape(-1, 4, 3)
    np.testing.assert_allclose(values, band[:, :, 0].numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(written["y"].to_numpy(), written["y_q0.5"].to_numpy())
    last = len(batch["x"]) - 1
    s, start = int(batch["series"][last]), int(batch["start"][last])
    assert written["ds"][-4:].to_list() == dm.target_times(start, s)
    assert written["unique_id"][-1] == dm.series_names[s]
