"""The forecasting tasks through ``titans``: a user's own CSV (other names, 15-minute rows,
covariates) is fit, tested and predicted; the logged metrics and the written forecasts are
checked against the model's own forecasts of every test window."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from datamodules.timeseries import TimeSeriesDataModule
from titans_lightning.runs import QUIET, last_values, newest_version, read_metrics
from titans_lightning.tasks import TitansTask
from titans_lightning.tasks.forecasting import DLinearTask, ForecastingTask, ForecastWriter, forecast_frame

REPO = Path(__file__).resolve().parents[2]
DEBUG = REPO / "recipes" / "forecasting" / "debug.yaml"
DATA = dict(date_column="timestamp", target=["load", "wind"], covariates=["temp"], lookback=16, horizon=4)


def own_table(path: Path, rows: int = 300) -> Path:
    """A 15-minute table with its own column names, a text column and values far from 0/1."""
    t = np.arange(rows)
    pl.DataFrame({
        "timestamp": [datetime(2022, 1, 1) + timedelta(minutes=15 * k) for k in range(rows)],
        "site": ["north"] * rows,
        "load": 500 + 80 * np.sin(2 * np.pi * t / 96) + 0.3 * t,
        "temp": 10 + 5 * np.cos(2 * np.pi * t / 96),
        "wind": 3 + np.sin(t / 7.0),
    }).write_csv(path)
    return path


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Fit the debug recipe on the user's table (path, date column, targets: nothing else), then
    ``titans test`` and ``titans predict`` from its last checkpoint."""
    from titans_lightning.cli import main

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("own")
    table = own_table(tmp / "plant.csv")
    data = ["--data.path", str(table), "--data.date_column", "timestamp", "--data.target", "[load, wind]",
            "--data.covariates", "[temp]", "--data.lookback", "16", "--data.horizon", "4"]
    common = ["-c", str(DEBUG), "--trainer.default_root_dir", str(tmp / "runs"), *QUIET, *data]
    main(["fit", *common, "--trainer.max_steps", "3", "--trainer.val_check_interval", "3"])
    fit_run = newest_version(tmp / "runs" / "csv")
    checkpoint = fit_run / "checkpoints" / "last.ckpt"
    main(["test", *common, "--ckpt_path", str(checkpoint)])
    test_run = newest_version(tmp / "runs" / "csv")
    main(["predict", *common, "--ckpt_path", str(checkpoint)])
    return {"table": table, "fit": fit_run, "test": test_run, "predict": newest_version(tmp / "runs" / "csv"),
            "checkpoint": checkpoint}


def model_forecasts(fitted) -> tuple[TimeSeriesDataModule, torch.Tensor, torch.Tensor]:
    """(datamodule, forecasts, targets) of every test window, standardised, (N, H, C)."""
    dm = TimeSeriesDataModule(path=str(fitted["table"]), **DATA)
    dm.setup("test")
    task = ForecastingTask.load_from_checkpoint(fitted["checkpoint"], map_location="cpu")
    task.eval()
    batch = torch.utils.data.default_collate([dm.datasets["test"][i] for i in range(len(dm.datasets["test"]))])
    with torch.no_grad():
        return dm, task.forecast(batch), batch["y"]


def test_fit_logs_metrics_in_both_scales_and_plots(fitted):
    keys = set(read_metrics(fitted["fit"])[0])
    assert {"val/mse", "val/mae", "val/mse_original", "val/mae_original", "train/loss"} <= keys
    assert list((fitted["fit"] / "figures").glob("val_forecast-step3.png"))


def test_test_metrics_count_every_window_in_both_scales(fitted):
    logged = {f"test/{k}": v for k, v in last_values(read_metrics(fitted["test"]), "test").items()}
    dm, forecast, target = model_forecasts(fitted)
    assert len(forecast) == dm.borders()["test"][1] - dm.borders()["test"][0] - 16 - 4 + 1
    original = dm.inverse_transform(forecast), dm.inverse_transform(target)
    expected = {"test/mse": ((forecast - target) ** 2).mean(), "test/mae": (forecast - target).abs().mean(),
                "test/mse_original": ((original[0] - original[1]) ** 2).mean(),
                "test/mae_original": (original[0] - original[1]).abs().mean()}
    for key, value in expected.items():
        assert logged[key] == pytest.approx(float(value), rel=1e-4), key
    assert logged["test/mse_original"] > 10 * logged["test/mse"]  # the load column's scale shows


def test_predict_writes_forecasts_in_original_units_with_timestamps(fitted):
    written = pl.read_csv(fitted["predict"] / "forecasts.csv", try_parse_dates=True)
    dm, forecast, _ = model_forecasts(fitted)
    windows, horizon = forecast.shape[:2]
    assert written.columns == ["origin", "timestamp", "step", "load", "wind"]
    assert written.height == windows * horizon
    first = dm.borders()["test"][0]
    source = pl.read_csv(fitted["table"], try_parse_dates=True)
    assert written["timestamp"][:horizon].to_list() == source["timestamp"][first + 16:first + 20].to_list()
    assert written["origin"][0] == source["timestamp"][first + 15]
    assert written["step"][:horizon].to_list() == [1, 2, 3, 4]
    values = written.select("load", "wind").to_numpy().reshape(windows, horizon, 2)
    np.testing.assert_allclose(values, dm.inverse_transform(forecast).numpy(), rtol=1e-4, atol=1e-3)


def test_writer_to_parquet_and_past_the_end(tmp_path, fitted):
    """``predict_split="future"`` forecasts after the last row, on the file's own 15-minute step."""
    dm = TimeSeriesDataModule(path=str(fitted["table"]), predict_split="future", **DATA)
    dm.setup("predict")
    task = ForecastingTask.load_from_checkpoint(fitted["checkpoint"], map_location="cpu").eval()
    batch = torch.utils.data.default_collate([dm.datasets["future"][0]])
    with torch.no_grad():
        outputs = [task.predict_step(batch, 0)]
    frame = forecast_frame(dm, outputs)
    expected = [datetime(2022, 1, 1) + timedelta(minutes=15 * (299 + k)) for k in (1, 2, 3, 4)]
    assert frame["timestamp"].to_list() == expected
    path = tmp_path / "future.parquet"
    frame.write_parquet(path)
    assert pl.read_parquet(path).equals(frame)
    assert ForecastWriter(str(path)).interval.on_epoch


def test_defaults_lmm_and_dlinear_has_no_backbone():
    sizes = {"channels": 2, "covariates": 1, "lookback": 16, "horizon": 4}
    assert ForecastingTask(data_sizes=sizes).backbone_config.variant == "lmm"
    task = DLinearTask(data_sizes=sizes)
    task.configure_model()
    assert not isinstance(task, TitansTask) and not hasattr(task, "backbone") and set(task.metrics) == {"val", "test"}
    batch = {"x": torch.randn(3, 16, 2), "covariates": torch.randn(3, 16, 1), "start": torch.arange(3)}
    assert task.forecast(batch).shape == (3, 4, 2)
