"""The forecasting DataModule: the standard ETT protocol on the shipped ETTh1 file, the ratio split
of a user's own table, the training-only scaler, and the errors a user meets."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from datamodules.timeseries.datamodule import TimeSeriesDataModule, ett_borders

REPO = Path(__file__).resolve().parents[2]
ETTH1 = REPO / "data" / "timeseries" / "ETTh1.csv"


def windows(dm: TimeSeriesDataModule) -> dict[str, int]:
    dm.setup("fit")
    return {split: len(dm.datasets[split]) for split in ("train", "val", "test")}


def write_series(path: Path, rows: int, step: timedelta = timedelta(minutes=15), columns=("load", "temp"),
                 date_name: str = "timestamp") -> Path:
    """A regular table of ``rows`` rows: a date column and smooth numeric columns."""
    t = np.arange(rows)
    data = {date_name: [datetime(2021, 3, 1) + k * step for k in range(rows)]}
    for j, name in enumerate(columns):
        data[name] = np.sin(t / (5 + j)) * (10 + j) + 100 * j
    frame = pl.DataFrame(data)
    frame.write_parquet(path) if path.suffix == ".parquet" else frame.write_csv(path)
    return path


# ---- the standard ETT protocol (Time-Series-Library's Dataset_ETT_hour) -----------------------

# (lookback, horizon) -> windows per split: a split of R rows holds R - L - H + 1 windows, with val
# and test starting L rows early: train 8640 rows, val and test 2880 + L rows.
ETTH1_CASES = [
    pytest.param(96, 96, {"train": 8449, "val": 2785, "test": 2785}, id="L96-H96"),
    pytest.param(96, 192, {"train": 8353, "val": 2689, "test": 2689}, id="L96-H192"),
    pytest.param(96, 336, {"train": 8209, "val": 2545, "test": 2545}, id="L96-H336"),
    pytest.param(96, 720, {"train": 7825, "val": 2161, "test": 2161}, id="L96-H720"),
    pytest.param(336, 96, {"train": 8209, "val": 2785, "test": 2785}, id="L336-H96"),
]


@pytest.mark.parametrize("lookback, horizon, expected", ETTH1_CASES)
def test_etth1_window_counts(lookback, horizon, expected):
    dm = TimeSeriesDataModule(path=str(ETTH1), lookback=lookback, horizon=horizon)
    assert windows(dm) == expected
    assert dm.borders() == {"train": (0, 8640), "val": (8640 - lookback, 11520), "test": (11520 - lookback, 14400)}


def test_etth1_split_borders_in_time():
    """Train targets end at 2017-06-25 23:00 (row 8639); the first val and test targets are the
    first rows of their splits; the last test target is row 14399 (2018-02-20 23:00); later rows are unused."""
    dm = TimeSeriesDataModule(path=str(ETTH1), lookback=96, horizon=96)
    dm.setup("fit")
    values = dm.datasets["train"].values
    train, val, test = (dm.datasets[s] for s in ("train", "val", "test"))
    assert torch.equal(train[len(train) - 1]["y"][-1], values[8639])
    assert int(val[0]["start"]) + 96 == 8640 and torch.equal(val[0]["y"][0], values[8640])
    assert int(test[0]["start"]) + 96 == 11520 and torch.equal(test[-1 + len(test)]["y"][-1], values[14399])
    assert dm.target_times(int(test[0]["start"]))[0] == datetime(2017, 10, 24, 0, 0)
    assert dm.target_times(int(test[len(test) - 1]["start"]))[-1] == datetime(2018, 2, 20, 23, 0)
    assert dm.data_sizes == {"channels": 7, "covariates": 0, "lookback": 96, "horizon": 96}


def test_window_contents_are_consecutive_rows():
    dm = TimeSeriesDataModule(path=str(ETTH1), lookback=8, horizon=4)
    dm.setup("fit")
    item, values = dm.datasets["val"][5], dm.datasets["val"].values
    start = 8640 - 8 + 5
    assert int(item["start"]) == start and int(item["index"]) == 5
    assert torch.equal(item["x"], values[start:start + 8]) and torch.equal(item["y"], values[start + 8:start + 12])


def test_ettm_files_use_four_rows_per_hour(tmp_path):
    path = write_series(tmp_path / "ETTm2.csv", rows=20 * 30 * 96 + 10, columns=("OT",), date_name="date")
    dm = TimeSeriesDataModule(path=str(path), lookback=96, horizon=48)
    assert dm.borders() == {"train": (0, 34560), "val": (34560 - 96, 46080), "test": (46080 - 96, 57600)}
    assert ett_borders(96, 96) == dm.borders()


# ---- scaling ----------------------------------------------------------------------------------

def test_scaler_is_fit_on_the_training_rows_only():
    dm = TimeSeriesDataModule(path=str(ETTH1), lookback=96, horizon=96)
    dm.setup("fit")
    raw = pl.read_csv(ETTH1).drop("date").to_numpy()
    np.testing.assert_allclose(dm.scaler.mean, raw[:8640].mean(0), rtol=1e-5)
    np.testing.assert_allclose(dm.scaler.std, raw[:8640].std(0), rtol=1e-5)
    scaled = dm.datasets["train"].values.numpy()
    np.testing.assert_allclose(scaled[:8640].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(scaled[:8640].std(0), 1, atol=1e-4)
    np.testing.assert_allclose(dm.inverse_transform(scaled), raw, rtol=1e-4, atol=1e-4)
    tensor = dm.inverse_transform(torch.from_numpy(scaled[:5]))
    np.testing.assert_allclose(tensor.numpy(), raw[:5], rtol=1e-4, atol=1e-4)


def test_changing_test_rows_does_not_move_the_scaler(tmp_path):
    path = write_series(tmp_path / "a.csv", rows=300)
    frame = pl.read_csv(path)
    frame.with_columns(pl.when(pl.int_range(pl.len()) >= 250).then(1e6).otherwise(pl.col("load")).alias("load")) \
        .write_csv(tmp_path / "b.csv")
    scalers = []
    for name in ("a.csv", "b.csv"):
        dm = TimeSeriesDataModule(path=str(tmp_path / name), date_column="timestamp", lookback=8, horizon=4)
        dm.setup("fit")
        scalers.append((dm.scaler.mean, dm.scaler.std))
    np.testing.assert_array_equal(scalers[0][0], scalers[1][0])
    np.testing.assert_array_equal(scalers[0][1], scalers[1][1])


# ---- a user's own table -------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_own_table_with_other_names_and_frequency(tmp_path, suffix):
    """Setting path, date column and target is all a user needs: ratio split 0.7/0.1/0.2."""
    path = write_series(tmp_path / f"site{suffix}", rows=200, columns=("load", "temp", "wind"))
    dm = TimeSeriesDataModule(path=str(path), date_column="timestamp", target=["load", "wind"],
                              covariates=["temp"], lookback=16, horizon=8)
    assert dm.data_sizes == {"channels": 2, "covariates": 1, "lookback": 16, "horizon": 8}
    assert dm.borders() == {"train": (0, 140), "val": (124, 160), "test": (144, 200)}
    assert windows(dm) == {"train": 117, "val": 13, "test": 33}
    item = dm.datasets["test"][0]
    assert item["x"].shape == (16, 2) and item["covariates"].shape == (16, 1) and item["y"].shape == (8, 2)
    assert dm.target_times(int(item["start"]))[:2] == [datetime(2021, 3, 2, 16, 0), datetime(2021, 3, 2, 16, 15)]


def test_single_target_and_all_numeric_columns(tmp_path):
    path = write_series(tmp_path / "s.csv", rows=120, columns=("a", "b"))
    frame = pl.read_csv(path).with_columns(pl.lit("north").alias("region"))
    frame.write_csv(path)
    assert TimeSeriesDataModule(path=str(path), date_column="timestamp", target="b", lookback=8,
                                horizon=4).target_names == ["b"]
    assert TimeSeriesDataModule(path=str(path), date_column="timestamp", lookback=8,
                                horizon=4).target_names == ["a", "b"]


def test_future_window_extends_the_time_axis(tmp_path):
    path = write_series(tmp_path / "f.csv", rows=100, step=timedelta(days=1))
    dm = TimeSeriesDataModule(path=str(path), date_column="timestamp", lookback=10, horizon=3, predict_split="future")
    dm.setup("predict")
    item = dm.datasets["future"][0]
    assert len(dm.datasets["future"]) == 1 and "y" not in item and int(item["start"]) == 90
    last = datetime(2021, 3, 1) + timedelta(days=99)
    assert dm.target_times(90) == [last + timedelta(days=k) for k in (1, 2, 3)]


def test_interpolation_fills_gaps_linearly_on_request(tmp_path):
    path = tmp_path / "gaps.csv"
    times = [f"2020-01-01 {h:02d}:00" for h in range(24)]
    values = ["" if h in (5, 6) else str(float(h)) for h in range(24)]
    path.write_text("when,v\n" + "".join(f"{t},{v}\n" for t, v in zip(times, values)))
    dm = TimeSeriesDataModule(path=str(path), date_column="when", lookback=4, horizon=2, interpolate=True, scale=False)
    dm.setup("fit")
    np.testing.assert_allclose(dm.datasets["train"].values[:, 0].numpy(), np.arange(24, dtype=np.float32))


# ---- errors -----------------------------------------------------------------------------------

def corrupt(tmp_path: Path, edit) -> Path:
    """A 60-row hourly CSV (columns when, x, y) after ``edit(lines)`` changed its text lines."""
    lines = ["when,x,y"] + [f"2020-01-{1 + h // 24:02d} {h % 24:02d}:00:00,{h}.5,{2 * h}" for h in range(60)]
    edit(lines)
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def set_line(index: int, text: str):
    def edit(lines):
        lines[index] = text
    return edit


ERROR_CASES = [
    pytest.param(lambda lines: None, {"target": "z"}, ["no column 'z'", "--data.target", "when, x, y"],
                 id="missing-target"),
    pytest.param(lambda lines: None, {"date_column": "time"}, ["no column 'time'", "when, x, y"],
                 id="missing-date-column"),
    pytest.param(set_line(11, "2020-01-01 10:00:00,abc,20"), {},
                 ["column 'x'", "data row 10 (line 12)", "'abc' is not a number"], id="non-numeric"),
    pytest.param(set_line(8, "2020-01-01 07:00:00,,14"), {},
                 ["column 'x'", "data row 7 (line 9)", "missing value", "--data.interpolate"], id="missing-value"),
    pytest.param(set_line(8, "2020-01-01 07:00:00,NaN,14"), {}, ["data row 7 (line 9)", "missing value"],
                 id="nan-value"),
    pytest.param(set_line(6, "2020-01-01 02:00:00,5.5,10"), {}, ["data row 5 (line 7)", "timestamps not sorted"],
                 id="unsorted"),
    pytest.param(set_line(6, "2020-01-01 04:00:00,5.5,10"), {}, ["data row 5 (line 7)", "duplicate timestamp"],
                 id="duplicate"),
    pytest.param(set_line(3, "yesterday,2.5,4"), {}, ["data row 2 (line 4)", "'yesterday' is not a date"],
                 id="bad-date"),
    pytest.param(lambda lines: None, {"lookback": 40, "horizon": 10},
                 ["too short", "lookback 40 + horizon 10", "val split has 46 rows"], id="too-short"),
    pytest.param(lambda lines: None, {"target": ["x", "when"]}, ["cannot be both a target and the date"],
                 id="date-as-target"),
]


@pytest.mark.parametrize("edit, options, fragments", ERROR_CASES)
def test_clear_errors(tmp_path, edit, options, fragments):
    path = corrupt(tmp_path, edit)
    dm = TimeSeriesDataModule(path=str(path), **{"date_column": "when", "lookback": 4, "horizon": 2, **options})
    with pytest.raises(ValueError) as error:
        dm.setup("fit")
    message = str(error.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message


def test_ett_split_needs_twenty_months(tmp_path):
    path = write_series(tmp_path / "ETTh9.csv", rows=5000, step=timedelta(hours=1), date_name="date")
    with pytest.raises(ValueError, match="ETT split needs 14400 rows.*has 5000.*--data.split ratio"):
        TimeSeriesDataModule(path=str(path)).setup("fit")
    assert windows(TimeSeriesDataModule(path=str(path), split="ratio", lookback=8, horizon=8))["train"] == 3500 - 15


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.csv: no such file"):
        _ = TimeSeriesDataModule(path=str(tmp_path / "nowhere.csv")).data_sizes
    (tmp_path / "data.xlsx").write_text("x")
    with pytest.raises(ValueError, match="expected a CSV .* or Parquet"):
        _ = TimeSeriesDataModule(path=str(tmp_path / "data.xlsx")).data_sizes
