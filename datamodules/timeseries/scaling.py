"""Scaling of forecasting data: one standard scaler per series, fit on that series' training
rows only, and the seasonal-naive scale of each series' training part (the denominator of MASE).

Shape legend: T rows of one series, C columns, S series, B windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

Values = Union[np.ndarray, Tensor]


class StandardScaler:
    """Per-column ``(v - mean) / std``, fit on the training rows only (std 0 is taken as 1)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)

    @classmethod
    def fit(cls, values: np.ndarray) -> StandardScaler:
        """From (rows, C) training values (population std, as scikit-learn); no rows: identity."""
        if len(values) == 0:
            return cls.identity(values.shape[1])
        std = values.std(axis=0, dtype=np.float64)
        return cls(values.mean(axis=0, dtype=np.float64), np.where(std > 0, std, 1.0))

    @classmethod
    def identity(cls, columns: int) -> StandardScaler:
        return cls(np.zeros(columns), np.ones(columns))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def inverse_transform(self, values: Values) -> Values:
        """(..., C) standardised values back to original units (numpy or torch)."""
        if isinstance(values, Tensor):
            return values * values.new_tensor(self.std) + values.new_tensor(self.mean)
        return values * self.std + self.mean


class SeriesScalers:
    """The target scalers of S series, applied per window by its series number."""

    def __init__(self, scalers: Sequence[StandardScaler]) -> None:
        self.scalers = list(scalers)
        self.mean = np.stack([s.mean for s in self.scalers])  # (S, C)
        self.std = np.stack([s.std for s in self.scalers])

    def inverse_transform(self, values: Values, series: Optional[Values] = None) -> Values:
        """(B, ..., C) standardised values of windows of series ``series`` (B,) in original units.
        ``series=None`` is allowed for a single series only (any leading shape then)."""
        if series is None:
            if len(self.scalers) > 1:
                raise ValueError(f"inverse_transform: the data has {len(self.scalers)} series; pass the "
                                 f"windows' series numbers (the batch's 'series')")
            return self.scalers[0].inverse_transform(values)
        if isinstance(values, Tensor):
            index = torch.as_tensor(series, device="cpu").long()
            shape = (len(index),) + (1,) * (values.ndim - 2) + (values.shape[-1],)
            mean = values.new_tensor(self.mean[index.numpy()]).view(shape)
            std = values.new_tensor(self.std[index.numpy()]).view(shape)
            return values * std + mean
        index = np.asarray(series.cpu() if isinstance(series, Tensor) else series, dtype=np.int64)
        shape = (len(index),) + (1,) * (values.ndim - 2) + (values.shape[-1],)
        return values * self.std[index].reshape(shape) + self.mean[index].reshape(shape)


def seasonal_naive_mae(values: np.ndarray, season: int) -> np.ndarray:
    """(T, C) training values -> (C,) in-sample MAE of the seasonal-naive forecast
    ``v[t] = v[t - season]``: ``mean_t |v[t] - v[t - season]|`` over t = season..T-1 (Hyndman and
    Koehler 2006). A column with no such pair (T <= season) or a zero MAE (a constant, or exactly
    periodic, training part) gets 1, so that its scaled errors stay finite (they are then plain
    absolute errors on the standardised scale)."""
    if season < 1:
        raise ValueError(f"seasonal_naive_mae: expected a season >= 1, got {season}")
    if len(values) <= season:
        return np.ones(values.shape[1], dtype=np.float32)
    mae = np.abs(values[season:] - values[:-season]).mean(axis=0, dtype=np.float64)
    return np.where(mae > 0, mae, 1.0).astype(np.float32)
