"""Many series in one long table (``--data.id_column``): each series has its own time axis,
checks, split and scaler; windows are cut inside one series; too-short series are left out."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
import torch

from datamodules.timeseries import TimeSeriesDataModule
from datamodules.timeseries import datamodule as timeseries_module
from datamodules.timeseries.windows import ratio_borders

from .conftest import SERIES, panel_frame

L, H = 16, 4
PANEL = dict(date_column="ds", id_column="unique_id", target="y", lookback=L, horizon=H)


def raw_series() -> dict[str, np.ndarray]:
    frame = panel_frame()
    return {name: frame.filter(pl.col("unique_id") == name)["y"].to_numpy() for name in SERIES}


def test_a_long_table_without_id_column_suggests_one(make_panel):
    """The two series' rows interleave: read as one series, the time axis repeats and goes back."""
    dm = TimeSeriesDataModule(path=str(make_panel()), date_column="ds", target="y", lookback=L, horizon=H)
    with pytest.raises(ValueError, match="looks long.*--data.id_column unique_id"):
        dm.setup("fit")


def test_each_series_has_its_own_split_and_scaler(make_panel):
    dm = TimeSeriesDataModule(path=str(make_panel()), **PANEL)
    assert dm.data_sizes == {"channels": 1, "covariates": 0, "lookback": L, "horizon": H}
    assert dm.series_names == ["A", "B"]
    dm.setup("fit")
    raw = raw_series()
    for s, name in enumerate(("A", "B")):
        rows = SERIES[name]["rows"]
        assert dm.borders(s) == ratio_borders(rows, L, (0.7, 0.1, 0.2))
        train = raw[name][:int(0.7 * rows)]
        scaler = dm.scalers.scalers[s]
        np.testing.assert_allclose(scaler.mean, [train.mean()], rtol=1e-5)
        np.testing.assert_allclose(scaler.std, [train.std()], rtol=1e-5)
    assert dm.scaler is None  # no single scaler for many series
    expected = {split: sum(max(0, b - a - L - H + 1) for a, b in (dm.borders(s)[split] for s in (0, 1)))
                for split in ("train", "val", "test")}
    assert {split: len(dm.datasets[split]) for split in expected} == expected == {"train": 149 + 86,
                                                                                   "val": 21 + 12,
                                                                                   "test": 45 + 27}


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_windows_never_cross_series(make_panel, split):
    """Every window lies inside one split of one series, and in original units it is exactly
    that series' rows."""
    dm = TimeSeriesDataModule(path=str(make_panel()), **PANEL)
    dm.setup("fit")
    raw, names = raw_series(), dm.series_names
    dataset = dm.datasets[split]
    batch = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
    x, y = dm.inverse_transform(batch["x"], batch["series"]), dm.inverse_transform(batch["y"], batch["series"])
    assert set(batch["series"].tolist()) == {0, 1}
    for i, (s, start) in enumerate(zip(batch["series"].tolist(), batch["start"].tolist())):
        first, end = dm.borders(s)[split]
        assert first <= start and start + L + H <= end
        rows = raw[names[s]][start:start + L + H]
        np.testing.assert_allclose(torch.cat([x[i, :, 0], y[i, :, 0]]).numpy(), rows, rtol=1e-5)


def test_batches_carry_the_series_number(make_panel):
    dm = TimeSeriesDataModule(path=str(make_panel()), batch_size=500, **PANEL)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["series"].dtype == torch.long and batch["series"].shape == (len(dm.datasets["train"]),)
    wide = TimeSeriesDataModule(path=str(make_panel(edit=lambda f: f.filter(pl.col("unique_id") == "A"))),
                                date_column="ds", target="y", lookback=L, horizon=H)
    wide.setup("fit")
    assert "series" not in wide.datasets["train"][0]


def test_interpolation_stays_inside_a_series(make_panel):
    """A's last value and one value of B are missing: each is filled from its own series."""
    def edit(frame):
        last_a = (frame["unique_id"] == "A").arg_true()[-1]
        tenth_b = (frame["unique_id"] == "B").arg_true()[10]
        index = pl.int_range(pl.len())
        return frame.with_columns(pl.when(index.is_in([last_a, tenth_b])).then(None).otherwise(pl.col("y")).alias("y"))

    path = make_panel(edit=edit)
    with pytest.raises(ValueError, match=r"series unique_id='A': column 'y', data row \d+ \(line \d+\): missing value"):
        TimeSeriesDataModule(path=str(path), **PANEL).setup("fit")
    dm = TimeSeriesDataModule(path=str(path), interpolate=True, **PANEL)
    a, b = (s.targets[:, 0] for s in dm.table.series)
    raw = raw_series()
    assert a[-1] == pytest.approx(raw["A"][-2], rel=1e-6)  # its own last value, not B's
    assert b[10] == pytest.approx((raw["B"][9] + raw["B"][11]) / 2, rel=1e-6)


def test_errors_name_the_series_and_the_file_row(make_panel):
    frame = panel_frame()
    rows_b = (frame["unique_id"] == "B").arg_true().to_list()
    duplicated = frame[rows_b[6]]["ds"][0]

    def edit(f):
        index = pl.int_range(pl.len())
        return f.with_columns(pl.when(index == rows_b[7]).then(duplicated).otherwise(pl.col("ds")).alias("ds"))

    dm = TimeSeriesDataModule(path=str(make_panel(edit=edit)), **PANEL)
    with pytest.raises(ValueError) as error:
        dm.setup("fit")
    message = str(error.value)
    for fragment in ("panel.csv: series unique_id='B'", f"data row {rows_b[7]} (line {rows_b[7] + 2})",
                     "duplicate timestamp"):
        assert fragment in message, message
    missing_id = make_panel(edit=lambda f: f.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise(pl.col("unique_id")).alias("unique_id")),
        name="no_id.csv")
    with pytest.raises(ValueError, match=r"id column 'unique_id', data row 3 \(line 5\): missing series id"):
        _ = TimeSeriesDataModule(path=str(missing_id), **PANEL).data_sizes


def test_too_short_series_are_left_out_and_counted(make_panel, monkeypatch):
    """C (30 rows: train 21, val 3 + L, test 6 + L) has no val window; D (12 rows) has none."""
    logged = []
    monkeypatch.setattr(timeseries_module, "rank_zero_info", logged.append)
    hourly = dict(step=timedelta(hours=1), level=50.0)
    short = {**SERIES, "C": dict(rows=30, start=datetime(2021, 1, 2), **hourly),
             "D": dict(rows=12, start=datetime(2021, 1, 3), **hourly)}
    dm = TimeSeriesDataModule(path=str(make_panel(short)), **PANEL)
    dm.setup("fit")
    assert dm.series_names == ["A", "C", "D", "B"]  # in order of first appearance in the file
    kept = {split: set(dm.datasets[split].series.tolist()) for split in ("train", "val", "test")}
    assert kept == {"train": {0, 1, 3}, "val": {0, 3}, "test": {0, 1, 3}}
    for split, count in (("train", 1), ("val", 2), ("test", 1)):
        assert f"{count} of 4 series too short for a {split} window ({L + H} rows): left out of {split}" in \
            "\n".join(logged), logged


def test_no_series_long_enough_is_an_error(make_panel):
    """Validation holds 24 rows of A and 15 of B after the lookback: none fits a horizon of 30."""
    dm = TimeSeriesDataModule(path=str(make_panel()), **{**PANEL, "horizon": 30})
    with pytest.raises(ValueError, match=r"no series is long enough for one val window of lookback 16 \+ "
                                         r"horizon 30 = 46 rows: the longest val split has 40 rows \(2 series\)"):
        dm.setup("fit")


def test_future_split_forecasts_every_series_past_its_own_end(make_panel):
    dm = TimeSeriesDataModule(path=str(make_panel()), predict_split="future", **PANEL)
    dm.setup("predict")
    future = dm.datasets["predict"]
    assert len(future) == 2
    for s, name in enumerate(("A", "B")):
        item, spec = future[s], SERIES[name]
        assert int(item["series"]) == s and "y" not in item
        assert int(item["start"]) == spec["rows"] - L
        last = spec["start"] + (spec["rows"] - 1) * spec["step"]
        assert dm.target_times(int(item["start"]), s) == [last + k * spec["step"] for k in range(1, H + 1)]
        assert dm.origin_time(int(item["start"]), s) == last


def test_series_ids_may_be_numbers_and_parquet(make_panel):
    path = make_panel(edit=lambda f: f.with_columns(pl.col("unique_id").replace({"A": "7", "B": "9"}).cast(pl.Int64)),
                      name="panel.parquet")
    dm = TimeSeriesDataModule(path=str(path), **PANEL)
    dm.setup("fit")
    assert dm.series_names == [7, 9] and dm.target_names == ["y"]
