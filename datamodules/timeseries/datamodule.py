"""Multivariate time-series forecasting windows with the literature's protocol.

A table (CSV or Parquet, read with polars) has a date column, target columns and optional
covariate columns. A window is ``lookback`` rows of input and the ``horizon`` rows after them as
the target, slid one row at a time.

Splits (as in Time-Series-Library, the protocol behind every published ETT number):

- ETT files (``ETTh*``, ``ETTm*`` by name, or ``split="ett"``): 12/4/4 months of 30 days,
  train rows ``[0, 12M)``, val ``[12M - L, 16M)``, test ``[16M - L, 20M)`` with M the rows of a
  month (720 hourly, 2880 at 15 minutes) and L the lookback: the val and test inputs reach back
  into the previous split so that their first target is the split's first row. ETTh1, L = 96:
  train ``[0, 8640)``, val ``[8544, 11520)``, test ``[11424, 14400)``; the rest of the file is
  unused, as in the literature.
- any other file: chronological ``ratios`` (0.7/0.1/0.2): ``n_train = int(0.7 n)``,
  ``n_test = int(0.2 n)``, val is the rest, with the same lookback overlap.

A split of R rows holds ``R - L - H + 1`` windows. Values are standardised with a scaler fit on
the training rows only; ``inverse_transform`` maps forecasts back to original units.

Batch contract (shapes: B windows, L lookback, H horizon, C targets, K covariates)::

    {"x": (B, L, C), "y": (B, H, C), "covariates": (B, L, K), "index": (B,) window number in its
     split, "start": (B,) file row of the window's first input}

``predict_split="future"`` gives one window, the last L rows, with no ``"y"``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
import polars as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import Dataset

from ..base import TitansDataModule
from . import io

SPLITS = ("train", "val", "test")
ETT_MONTHS = (12, 4, 4)
ETT_ROWS_PER_DAY = {"h": 24, "m": 96}  # ETTh*: hourly, ETTm*: every 15 minutes


def ett_borders(rows_per_day: int, lookback: int) -> dict[str, tuple[int, int]]:
    """``{split: (first row, end row)}`` of the standard ETT split (12/4/4 months of 30 days)."""
    month = 30 * rows_per_day
    ends = np.cumsum(ETT_MONTHS) * month
    starts = (0, ends[0] - lookback, ends[1] - lookback)
    return {s: (int(a), int(b)) for s, a, b in zip(SPLITS, starts, ends)}


def ratio_borders(rows: int, lookback: int, ratios: Sequence[float]) -> dict[str, tuple[int, int]]:
    """``{split: (first row, end row)}`` of a chronological split by ``ratios`` (train, val, test)."""
    n_train, n_test = int(rows * ratios[0]), int(rows * ratios[2])
    n_val = rows - n_train - n_test
    starts = (0, n_train - lookback, rows - n_test - lookback)
    ends = (n_train, n_train + n_val, rows)
    return {s: (max(0, a), b) for s, a, b in zip(SPLITS, starts, ends)}


class StandardScaler:
    """Per-column ``(v - mean) / std``, fit on the training rows only (std 0 is taken as 1)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)

    @classmethod
    def fit(cls, values: np.ndarray) -> StandardScaler:
        """From (rows, C) training values (population std, as scikit-learn)."""
        std = values.std(axis=0, dtype=np.float64)
        return cls(values.mean(axis=0, dtype=np.float64), np.where(std > 0, std, 1.0))

    @classmethod
    def identity(cls, columns: int) -> StandardScaler:
        return cls(np.zeros(columns), np.ones(columns))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def inverse_transform(self, values: Union[np.ndarray, Tensor]) -> Union[np.ndarray, Tensor]:
        """(..., C) standardised values back to original units (numpy or torch)."""
        if isinstance(values, Tensor):
            return values * values.new_tensor(self.std) + values.new_tensor(self.mean)
        return values * self.std + self.mean


class ForecastWindows(Dataset):
    """Every window of ``lookback`` + ``horizon`` rows inside rows ``[first, end)``.

    ``values`` (T, C) and ``covariates`` (T, K) are already standardised; ``horizon=0`` gives
    inputs only (forecasting past the end of the data).
    """

    def __init__(self, values: Tensor, covariates: Tensor, first: int, end: int,
                 lookback: int, horizon: int) -> None:
        self.values, self.covariates = values, covariates
        self.first, self.lookback, self.horizon = first, lookback, horizon
        self.count = end - first - lookback - horizon + 1

    def __len__(self) -> int:
        return max(0, self.count)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range [0, {len(self)})")
        start = self.first + index
        cut = start + self.lookback
        item = {"x": self.values[start:cut], "covariates": self.covariates[start:cut],
                "index": torch.tensor(index), "start": torch.tensor(start)}
        if self.horizon:
            item["y"] = self.values[cut:cut + self.horizon]
        return item


@dataclass
class Table:
    """A checked table: timestamps (T,), targets (T, C), covariates (T, K), column names."""

    times: pl.Series
    targets: np.ndarray
    covariates: np.ndarray
    target_names: list[str]
    covariate_names: list[str]


class TimeSeriesDataModule(TitansDataModule):
    """Forecasting windows of a CSV/Parquet table (see the module docstring for the protocol).

    Args:
        path: the table (CSV with a header line, or Parquet).
        date_column: its timestamp column (dates/times as text or native, or integer steps).
        target: the column(s) to forecast: one name, a list, or ``None`` / ``"all"`` for every
            numeric column but the date and the covariates.
        covariates: extra input columns, observed over the lookback and not forecast.
        lookback: input rows per window (L).
        horizon: forecast rows per window (H).
        split: ``"auto"`` (the ETT split for files named ETTh*/ETTm*, ratios otherwise),
            ``"ett"`` (12/4/4 months, rows per day from the timestamps) or ``"ratio"``.
        ratios: train/val/test fractions of a ratio split.
        scale: standardise with the training rows' mean and std (``False``: raw values).
        interpolate: fill missing values linearly instead of raising.
        predict_split: windows ``titans predict`` forecasts: a split's, or ``"future"`` (the
            last ``lookback`` rows, forecasting past the end of the file).
        **kwargs: ``batch_size``, ``num_workers``, ``seed``, ``pin_memory``, ``shuffle`` of the base.
    """

    def __init__(
        self,
        path: str = "data/timeseries/ETTh1.csv",
        date_column: str = "date",
        target: Union[str, list[str], None] = None,
        covariates: Optional[list[str]] = None,
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
        self.path, self.date_column, self.target = Path(path), date_column, target
        self.covariate_columns = list(covariates or [])
        self.lookback, self.horizon, self.split = lookback, horizon, split
        self.ratios, self.scale, self.interpolate = tuple(ratios), scale, interpolate
        self.predict_split = predict_split
        self._table: Optional[Table] = None

    # ---- the table, read once -------------------------------------------------------------

    @property
    def table(self) -> Table:
        """The checked table, read on first use (``data_sizes`` reads it before ``setup``)."""
        if self._table is None:
            self._table = self._read()
        return self._table

    def _read(self) -> Table:
        frame = io.read_table(self.path)
        targets = io.resolve_targets(frame, self.path, self.date_column, self.target, self.covariate_columns)
        times = io.timestamps(frame, self.path, self.date_column)
        skipped = [c for c in frame.columns if c not in {self.date_column, *targets, *self.covariate_columns}]
        if skipped:
            rank_zero_info(f"{self.path}: columns not used: {', '.join(skipped)}")
        return Table(times,
                     io.numeric_values(frame, self.path, targets, self.interpolate),
                     io.numeric_values(frame, self.path, self.covariate_columns, self.interpolate),
                     targets, list(self.covariate_columns))

    @property
    def data_sizes(self) -> dict[str, int]:
        """``channels`` (targets C), ``covariates`` (K), ``lookback`` (L), ``horizon`` (H)."""
        return {"channels": len(self.table.target_names), "covariates": len(self.table.covariate_names),
                "lookback": self.lookback, "horizon": self.horizon}

    @property
    def target_names(self) -> list[str]:
        return self.table.target_names

    # ---- splits ---------------------------------------------------------------------------

    def ett_rows_per_day(self) -> Optional[int]:
        """Rows per day of the ETT split, or None for a ratio split."""
        match = re.match(r"ETT([hm])\d", self.path.name)
        if self.split == "ratio" or (self.split == "auto" and not match):
            return None
        if match:
            return ETT_ROWS_PER_DAY[match.group(1)]
        step = io.regular_step(self.table.times)
        if not isinstance(step, timedelta) or step <= timedelta(0) or timedelta(days=1) % step:
            raise ValueError(f"{self.path}: split='ett' needs timestamps whose step divides a day, "
                             f"got a step of {step}")
        return timedelta(days=1) // step

    def borders(self) -> dict[str, tuple[int, int]]:
        """``{split: (first row, end row)}`` of train/val/test (see the module docstring)."""
        rows = len(self.table.times)
        per_day = self.ett_rows_per_day()
        if per_day is None:
            borders = ratio_borders(rows, self.lookback, self.ratios)
        else:
            borders = ett_borders(per_day, self.lookback)
            if borders["test"][1] > rows:
                raise ValueError(f"{self.path}: the ETT split needs {borders['test'][1]} rows "
                                 f"(20 months of {30 * per_day} rows), the file has {rows}; "
                                 f"use --data.split ratio")
        self._check_lengths(borders)
        return borders

    def _check_lengths(self, borders: dict[str, tuple[int, int]]) -> None:
        need = self.lookback + self.horizon
        short = {s: b - a for s, (a, b) in borders.items() if b - a < need}
        if short:
            raise ValueError(f"{self.path}: too short for lookback {self.lookback} + horizon "
                             f"{self.horizon} = {need} rows per window: the "
                             + ", ".join(f"{s} split has {n} rows" for s, n in short.items())
                             + f" ({len(self.table.times)} rows in all)")

    # ---- Lightning hooks ------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """``datasets``: the windows of train, val and test, of ``"future"`` and, as ``"predict"``,
        those of ``predict_split``. The base's loaders keep every test window (dropping the last
        partial batch, as some public code does, changes the published numbers)."""
        if self.datasets:
            return
        table, borders = self.table, self.borders()
        first, end = borders["train"]
        fit = StandardScaler.fit if self.scale else (lambda v: StandardScaler.identity(v.shape[1]))
        self.scaler = fit(table.targets[first:end])
        self.covariate_scaler = fit(table.covariates[first:end])
        values = torch.from_numpy(self.scaler.transform(table.targets).astype(np.float32))
        covariates = torch.from_numpy(self.covariate_scaler.transform(table.covariates).astype(np.float32))
        for split, (a, b) in borders.items():
            self.datasets[split] = ForecastWindows(values, covariates, a, b, self.lookback, self.horizon)
        rows = len(table.times)
        self.datasets["future"] = ForecastWindows(values, covariates, rows - self.lookback, rows, self.lookback, 0)
        self.datasets["predict"] = self.datasets[self.predict_split]

    # ---- back to the user's units and times -----------------------------------------------

    def inverse_transform(self, values: Union[np.ndarray, Tensor]) -> Union[np.ndarray, Tensor]:
        """(..., C) standardised target values in original units."""
        return self.scaler.inverse_transform(values)

    def target_times(self, start: int) -> list:
        """The ``horizon`` timestamps forecast by the window whose first input is file row
        ``start``; past the end of the file they continue at the file's most common step."""
        times = self.table.times
        first = start + self.lookback
        known = times[first:first + self.horizon].to_list()
        if len(known) < self.horizon:
            step = io.regular_step(times)
            last = times[-1]
            known += [last + step * k for k in range(1, self.horizon - len(known) + 1)]
        return known

    def origin_time(self, start: int):
        """Timestamp of the window's last input row (the forecast origin)."""
        return self.table.times[start + self.lookback - 1]
