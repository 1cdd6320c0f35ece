"""Splits and windows of one or many series.

Every series has its own time axis, cut into train/val/test by the same rule (``ett_borders`` or
``ratio_borders``, rows counted from the series' first row). A window is ``lookback`` rows of
input and the ``horizon`` rows after them, slid one row at a time inside one split of one series:
a window never crosses two series. The series' rows are stacked one after another (``Stacked``)
and a window is a (series number, first row on its series' axis) pair.

Shape legend: S series, R rows of all series, L lookback, H horizon, C targets, K past-only
covariates, F known-future features (future covariates and calendar features).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

SPLITS = ("train", "val", "test")
ETT_MONTHS = (12, 4, 4)
Borders = dict[str, tuple[int, int]]


def ett_borders(rows_per_day: int, lookback: int) -> Borders:
    """``{split: (first row, end row)}`` of the standard ETT split (12/4/4 months of 30 days)."""
    month = 30 * rows_per_day
    ends = np.cumsum(ETT_MONTHS) * month
    starts = (0, ends[0] - lookback, ends[1] - lookback)
    return {s: (int(a), int(b)) for s, a, b in zip(SPLITS, starts, ends)}


def ratio_borders(rows: int, lookback: int, ratios: Sequence[float]) -> Borders:
    """``{split: (first row, end row)}`` of a chronological split by ``ratios`` (train, val, test)."""
    n_train, n_test = int(rows * ratios[0]), int(rows * ratios[2])
    n_val = rows - n_train - n_test
    starts = (0, n_train - lookback, rows - n_test - lookback)
    ends = (n_train, n_train + n_val, rows)
    return {s: (max(0, a), b) for s, a, b in zip(SPLITS, starts, ends)}


def window_starts(spans: Sequence[tuple[int, int]], span: int) -> tuple[np.ndarray, np.ndarray]:
    """Every window of ``span`` rows inside each series' rows ``[first, end)``: ``(series (N,),
    first row (N,))``, series by series. A series too short for one window gives none."""
    series, starts = [], []
    for s, (first, end) in enumerate(spans):
        count = max(0, end - first - span + 1)
        series.append(np.full(count, s, dtype=np.int64))
        starts.append(np.arange(first, first + count, dtype=np.int64))
    return np.concatenate(series), np.concatenate(starts)


@dataclass
class Stacked:
    """Every series' standardised rows one after another.

    ``values`` (R, C) and ``covariates`` (R, K) hold series s at rows ``offsets[s]`` on. ``known``
    (R + S E, F) holds the known-future features, each series extended by E rows past its end
    (calendar features of the continued time axis) at rows ``known_offsets[s]`` on; None if F = 0.
    """

    values: Tensor
    covariates: Tensor
    offsets: np.ndarray
    known: Optional[Tensor] = None
    known_offsets: Optional[np.ndarray] = None

    @classmethod
    def of(cls, values: Sequence[np.ndarray], covariates: Sequence[np.ndarray],
           known: Optional[Sequence[np.ndarray]] = None) -> Stacked:
        """From per-series arrays: values (T_s, C), covariates (T_s, K), known (T_s + E, F)."""
        def cat(parts):
            return torch.from_numpy(np.concatenate(parts).astype(np.float32))

        offsets = np.cumsum([0] + [len(v) for v in values[:-1]])
        if known is None:
            return cls(cat(values), cat(covariates), offsets)
        known_offsets = np.cumsum([0] + [len(k) for k in known[:-1]])
        return cls(cat(values), cat(covariates), offsets, cat(known), known_offsets)


class ForecastWindows(Dataset):
    """The windows ``(series[i], starts[i])`` of ``stacked``: ``lookback`` input rows and the
    ``horizon`` rows after them (``targets=False``: no ``y``, forecasting past the end of the data;
    known-future features still cover the horizon, from the continued time axis).

    An item: ``x`` (L, C), ``y`` (H, C) if ``targets``, ``covariates`` (L, K + F) (the past
    covariates, then the known-future features over the lookback), ``future`` (H, F) if F > 0,
    ``index`` the window number in this dataset, ``start`` its first row on its series' axis
    (the file row for a single series), and ``series`` (its series number) when ``panel``.
    """

    def __init__(self, stacked: Stacked, series: np.ndarray, starts: np.ndarray, lookback: int,
                 horizon: int, panel: bool = False, targets: bool = True) -> None:
        self.stacked, self.series, self.starts = stacked, series, starts
        self.values, self.covariates = stacked.values, stacked.covariates
        self.lookback, self.horizon, self.panel, self.targets = lookback, horizon, panel, targets

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range [0, {len(self)})")
        s, start = int(self.series[index]), int(self.starts[index])
        row = int(self.stacked.offsets[s]) + start
        cut = row + self.lookback
        item = {"x": self.values[row:cut], "covariates": self.covariates[row:cut],
                "index": torch.tensor(index), "start": torch.tensor(start)}
        if self.targets:
            item["y"] = self.values[cut:cut + self.horizon]
        if self.stacked.known is not None:
            first = int(self.stacked.known_offsets[s]) + start
            known = self.stacked.known[first:first + self.lookback + self.horizon]
            item["covariates"] = torch.cat([item["covariates"], known[:self.lookback]], dim=1)
            item["future"] = known[self.lookback:]
        if self.panel:
            item["series"] = torch.tensor(s)
        return item
