"""Time-series forecasting windows with the literature's protocol, for one series or many.

A table (CSV or Parquet, read with polars) has a date column, target columns and optional
covariate columns. A wide table is one series; with ``id_column`` a long table (neuralforecast's
``unique_id, ds, y``) is one series per id (``panel``). A window is ``lookback`` rows of input
and the ``horizon`` rows after them, slid one row at a time inside one series.

Splits (as in Time-Series-Library, the protocol behind every published ETT number), applied to
every series on its own time axis (rows counted from the series' first row):

- ETT files (``ETTh*``, ``ETTm*`` by name, or ``split="ett"``): 12/4/4 months of 30 days,
  train rows ``[0, 12M)``, val ``[12M - L, 16M)``, test ``[16M - L, 20M)`` with M the rows of a
  month (720 hourly, 2880 at 15 minutes) and L the lookback: the val and test inputs reach back
  into the previous split so that their first target is the split's first row. ETTh1, L = 96:
  train ``[0, 8640)``, val ``[8544, 11520)``, test ``[11424, 14400)``; the rest of the file is
  unused, as in the literature.
- any other file: chronological ``ratios`` (0.7/0.1/0.2): ``n_train = int(0.7 n)``,
  ``n_test = int(0.2 n)``, val is the rest, with the same lookback overlap.

A split of R rows holds ``R - L - H + 1`` windows. A series too short for one window of a split
is left out of that split (and the count logged); a split without any window is an error. Values
are standardised per series with a scaler fit on that series' training rows only;
``inverse_transform`` maps forecasts back to original units.

Known-future inputs (F features): ``future_covariates`` (standardised like the covariates) and,
with ``calendar_features``, 6 calendar features of the timestamps (``calendar.py``). Over the
lookback they join the covariates; over the horizon they are the batch's ``future``.

Batch contract (shapes: B windows, L lookback, H horizon, C targets, K covariates)::

    {"x": (B, L, C), "y": (B, H, C), "covariates": (B, L, K + F), "index": (B,) window number in
     its split, "start": (B,) row of the window's first input on its series' axis (the file row
     for a wide table), "future": (B, H, F) if F > 0, "series": (B,) series number if panel}

``predict_split="future"`` gives one window per series, its last L rows, with no ``"y"``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
from lightning.pytorch.utilities import rank_zero_info

from ..base import TitansDataModule
from . import io
from .calendar import CALENDAR_NAMES
from .panel import Panel, Series, known_features, read_panel
from .scaling import SeriesScalers, StandardScaler, Values, seasonal_naive_mae
from .windows import SPLITS, Borders, ForecastWindows, Stacked, ett_borders, ratio_borders, window_starts

ETT_ROWS_PER_DAY = {"h": 24, "m": 96}  # ETTh*: hourly, ETTm*: every 15 minutes

__all__ = ["ForecastWindows", "StandardScaler", "TimeSeriesDataModule", "ett_borders", "ratio_borders"]


class TimeSeriesDataModule(TitansDataModule):
    """Forecasting windows of a CSV/Parquet table (see the module docstring for the protocol).

    Args:
        path: the table (CSV with a header line, or Parquet).
        date_column: its timestamp column (dates/times as text or native, or integer steps).
        target: the column(s) to forecast: one name, a list, or ``None`` / ``"all"`` for every
            numeric column but the date, the id and the covariates.
        covariates: extra input columns, observed over the lookback and not forecast.
        id_column: the column that tells series apart in a long table (many series, each with
            its own time axis, split, scaler and windows); None = one series (a wide table).
        future_covariates: input columns known over the horizon too (planned prices, holidays):
            seen over the lookback and over the horizon (the batch's ``future``).
        calendar_features: add hour of day, day of week and month of each row (sin/cos pairs,
            ``calendar.py``) as known-future inputs; needs dates/times.
        lookback: input rows per window (L).
        horizon: forecast rows per window (H).
        split: ``"auto"`` (the ETT split for files named ETTh*/ETTm*, ratios otherwise),
            ``"ett"`` (12/4/4 months, rows per day from the timestamps) or ``"ratio"``.
        ratios: train/val/test fractions of a ratio split.
        scale: standardise with the training rows' mean and std (``False``: raw values).
        interpolate: fill missing values linearly (within each series) instead of raising.
        predict_split: windows ``titans predict`` forecasts: a split's, or ``"future"`` (the
            last ``lookback`` rows of each series, forecasting past the end of the file).
        **kwargs: ``batch_size``, ``num_workers``, ``seed``, ``pin_memory``, ``shuffle`` of the base.
    """

    def __init__(
        self,
        path: str = "data/timeseries/ETTh1.csv",
        date_column: str = "date",
        target: Union[str, list[str], None] = None,
        covariates: Optional[list[str]] = None,
        id_column: Optional[str] = None,
        future_covariates: Optional[list[str]] = None,
        calendar_features: bool = False,
        lookback: int = 96,
        horizon: int = 96,
        split: Literal["auto", "ett", "ratio"] = "auto",
        ratios: tuple[float, float, float] = (0.7, 0.1, 0.2),
        scale: bool = True,
        interpolate: bool = False,
        predict_split: Literal["train", "val", "test", "future"] = "test",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if lookback < 1 or horizon < 1:
            raise ValueError(f"TimeSeriesDataModule: expected lookback >= 1 and horizon >= 1, "
                             f"got {lookback} and {horizon}")
        if len(ratios) != 3 or min(ratios) <= 0 or abs(sum(ratios) - 1) > 1e-6:
            raise ValueError(f"TimeSeriesDataModule: ratios must be three positive fractions "
                             f"summing to 1, got {ratios}")
        if future_covariates and predict_split == "future":
            raise ValueError("TimeSeriesDataModule: predict_split='future' forecasts past the end of the "
                             f"file, where the future covariates {future_covariates} are not known; "
                             "predict a split, or use calendar_features only")
        self.path, self.date_column, self.target = Path(path), date_column, target
        self.covariate_columns = list(covariates or [])
        self.id_column, self.future_columns = id_column, list(future_covariates or [])
        self.calendar_features = calendar_features
        self.lookback, self.horizon, self.split = lookback, horizon, split
        self.ratios, self.scale, self.interpolate = tuple(ratios), scale, interpolate
        self.predict_split = predict_split
        self._table: Optional[Panel] = None

    # ---- the table, read once -------------------------------------------------------------

    @property
    def table(self) -> Panel:
        """The checked series, read on first use (``data_sizes`` reads them before ``setup``)."""
        if self._table is None:
            self._table = read_panel(self.path, self.date_column, self.target, self.covariate_columns,
                                     self.future_columns, self.id_column, self.interpolate)
            if self._table.unused:
                rank_zero_info(f"{self.path}: columns not used: {', '.join(self._table.unused)}")
        return self._table

    @property
    def panel(self) -> bool:
        """Whether the table is long (``id_column``): batches then carry ``series``."""
        return self.id_column is not None

    @property
    def future_names(self) -> list[str]:
        """The F known-future features: future covariates, then the calendar features."""
        return self.table.future_names + (list(CALENDAR_NAMES) if self.calendar_features else [])

    @property
    def data_sizes(self) -> dict[str, int]:
        """``channels`` (targets C), ``covariates`` (K + F: past covariates and the known-future
        features over the lookback), ``lookback`` (L), ``horizon`` (H), and ``future`` (F) if F > 0."""
        future = len(self.future_names)
        sizes = {"channels": len(self.table.target_names),
                 "covariates": len(self.table.covariate_names) + future,
                 "lookback": self.lookback, "horizon": self.horizon}
        return {**sizes, "future": future} if future else sizes

    @property
    def target_names(self) -> list[str]:
        return self.table.target_names

    @property
    def series_names(self) -> list:
        """The id of every series (``[None]`` for a wide table), by series number."""
        return [s.name for s in self.table.series]

    # ---- splits ---------------------------------------------------------------------------

    def ett_rows_per_day(self, series: int = 0) -> Optional[int]:
        """Rows per day of the ETT split, or None for a ratio split."""
        match = re.match(r"ETT([hm])\d", self.path.name)
        if self.split == "ratio" or (self.split == "auto" and not match):
            return None
        if match:
            return ETT_ROWS_PER_DAY[match.group(1)]
        step = io.regular_step(self.table.series[series].times)
        if not isinstance(step, timedelta) or step <= timedelta(0) or timedelta(days=1) % step:
            raise ValueError(f"{self._where(series)}: split='ett' needs timestamps whose step divides a "
                             f"day, got a step of {step}")
        return timedelta(days=1) // step

    def borders(self, series: int = 0) -> Borders:
        """``{split: (first row, end row)}`` of train/val/test of one series, rows counted from its
        first row (see the module docstring)."""
        rows = len(self.table.series[series].times)
        per_day = self.ett_rows_per_day(series)
        if per_day is None:
            return ratio_borders(rows, self.lookback, self.ratios)
        borders = ett_borders(per_day, self.lookback)
        if borders["test"][1] > rows:
            raise ValueError(f"{self._where(series)}: the ETT split needs {borders['test'][1]} rows "
                             f"(20 months of {30 * per_day} rows), the file has {rows}; "
                             f"use --data.split ratio")
        return borders

    def _where(self, series: int) -> str:
        name = self.table.series[series].name
        return str(self.path) if not self.panel else f"{self.path}: series {self.id_column}={name!r}"

    def _split_windows(self, borders: list[Borders], split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(series, first row)`` of every window of ``split``; series too short are left out
        (logged), and a split with no window at all is an error."""
        need = self.lookback + self.horizon
        series, starts = window_starts([b[split] for b in borders], need)
        if len(starts) == 0 and not self.panel:
            short = {s: b - a for s, (a, b) in borders[0].items() if b - a < need}
            raise ValueError(f"{self.path}: too short for lookback {self.lookback} + horizon "
                             f"{self.horizon} = {need} rows per window: the "
                             + ", ".join(f"{s} split has {n} rows" for s, n in short.items())
                             + f" ({len(self.table.series[0].times)} rows in all)")
        if len(starts) == 0:
            longest = max(end - first for first, end in (b[split] for b in borders))
            raise ValueError(f"{self.path}: no series is long enough for one {split} window of lookback "
                             f"{self.lookback} + horizon {self.horizon} = {need} rows: the longest {split} "
                             f"split has {longest} rows ({len(borders)} series)")
        skipped = len(borders) - len(np.unique(series))
        if skipped:
            rank_zero_info(f"{self.path}: {skipped} of {len(borders)} series too short for a {split} "
                           f"window ({need} rows): left out of {split}")
        return series, starts

    # ---- Lightning hooks ------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """``datasets``: the windows of train, val and test, of ``"future"`` (unless there are
        future covariates, unknown past the end) and, as ``"predict"``, those of
        ``predict_split``. The base's loaders keep every test window (dropping the last partial
        batch, as some public code does, changes the published numbers)."""
        if self.datasets:
            return
        table = self.table
        borders = [self.borders(s) for s in range(len(table.series))]
        windows = {split: self._split_windows(borders, split) for split in SPLITS}
        stacked = self._stack(borders)
        for split, (series, starts) in windows.items():
            self.datasets[split] = ForecastWindows(stacked, series, starts, self.lookback, self.horizon, self.panel)
        if not self.future_columns:
            self.datasets["future"] = self._future_windows(stacked)
        self.datasets["predict"] = self.datasets[self.predict_split]

    def _stack(self, borders: list[Borders]) -> Stacked:
        """Every series standardised by its own training rows (``self.scalers``), stacked."""
        fit = StandardScaler.fit if self.scale else (lambda v: StandardScaler.identity(v.shape[1]))
        values, covariates, known, scalers = [], [], [], []
        K = len(self.table.covariate_names)
        for series, border in zip(self.table.series, borders):
            first, end = border["train"]
            inputs = np.concatenate([series.covariates, series.future], axis=1)
            scalers.append(fit(series.targets[first:end]))
            inputs = fit(inputs[first:end]).transform(inputs).astype(np.float32)
            values.append(scalers[-1].transform(series.targets).astype(np.float32))
            covariates.append(inputs[:, :K])
            known.append(known_features(series.times, inputs[:, K:], self.calendar_features, self.horizon))
        self.scalers = SeriesScalers(scalers)
        self.scaler = scalers[0] if len(scalers) == 1 else None  # a wide table's one scaler
        self._train_values = [v[b["train"][0]:b["train"][1]] for v, b in zip(values, borders)]
        return Stacked.of(values, covariates, known if self.future_names else None)

    def _future_windows(self, stacked: Stacked) -> ForecastWindows:
        """The last ``lookback`` rows of every series at least that long (no targets)."""
        lengths = np.array([len(s.times) for s in self.table.series])
        series = np.flatnonzero(lengths >= self.lookback)
        if len(series) < len(lengths):
            rank_zero_info(f"{self.path}: {len(lengths) - len(series)} series shorter than the lookback "
                           f"({self.lookback} rows): no future window")
        return ForecastWindows(stacked, series, lengths[series] - self.lookback, self.lookback, self.horizon,
                               self.panel, targets=False)

    # ---- back to the user's units and times -----------------------------------------------

    def inverse_transform(self, values: Values, series: Optional[Values] = None) -> Values:
        """(B, ..., C) standardised target values in original units, each window by its series'
        scaler (``series`` (B,) the batch's ``"series"``; None for a wide table, any shape)."""
        return self.scalers.inverse_transform(values, series)

    def naive_scale(self, season: int) -> np.ndarray:
        """(S, C) the in-sample MAE of the seasonal-naive forecast (``v[t - season]``) over each
        series' training rows, on the standardised scale: the denominator of MASE
        (``scaling.seasonal_naive_mae``)."""
        return np.stack([seasonal_naive_mae(v, season) for v in self._train_values])

    def _series(self, series: Optional[int]) -> Series:
        return self.table.series[0 if series is None else int(series)]

    def input_times(self, start: int, series: Optional[int] = None) -> list:
        """The ``lookback`` timestamps of the inputs of the window at row ``start`` of a series."""
        return self._series(series).times[start:start + self.lookback].to_list()

    def target_times(self, start: int, series: Optional[int] = None) -> list:
        """The ``horizon`` timestamps forecast by the window whose first input is row ``start``
        of series ``series`` (None: the only one); past the end of the series they continue at
        its most common step."""
        times = self._series(series).times
        first = start + self.lookback
        known = times[first:first + self.horizon].to_list()
        if len(known) < self.horizon:
            known += io.continued_times(times, self.horizon - len(known))
        return known

    def origin_time(self, start: int, series: Optional[int] = None):
        """Timestamp of the window's last input row (the forecast origin)."""
        return self._series(series).times[start + self.lookback - 1]
