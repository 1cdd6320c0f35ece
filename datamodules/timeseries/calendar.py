"""Calendar features of timestamps: inputs known over the horizon (``--data.calendar_features``).

Each of hour of day, day of week and month is a sin/cos pair of its phase in its cycle, so that
23:00 sits next to 00:00 and December next to January; every value lies in [-1, 1]:

    hour:    2 pi (hour + minute / 60 + second / 3600) / 24
    weekday: 2 pi (weekday - 1) / 7          (Monday = 0)
    month:   2 pi (month - 1) / 12           (January = 0)

Shape legend: T timestamps.
"""

from __future__ import annotations

import numpy as np
import polars as pl

CALENDAR_NAMES = ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos", "month_sin", "month_cos")


def calendar_features(times: pl.Series) -> np.ndarray:
    """(T,) datetimes -> (T, 6) float32: the sin/cos pairs of ``CALENDAR_NAMES``, in that order."""
    if times.dtype != pl.Datetime:
        raise ValueError(f"calendar features need dates/times; the date column holds {times.dtype} "
                         f"(integer steps have no calendar): set --data.calendar_features false")
    hour = (times.dt.hour().cast(pl.Float64) + times.dt.minute() / 60 + times.dt.second() / 3600).to_numpy()
    phases = (2 * np.pi * hour / 24,
              2 * np.pi * (times.dt.weekday().to_numpy() - 1) / 7,
              2 * np.pi * (times.dt.month().to_numpy() - 1) / 12)
    return np.stack([f(p) for p in phases for f in (np.sin, np.cos)], axis=1).astype(np.float32)
