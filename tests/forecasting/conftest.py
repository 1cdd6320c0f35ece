"""Small generated panels for the forecasting tests: long tables in neuralforecast's layout
(``unique_id, ds, y``) plus a past covariate ``temp`` and a known-future column ``promo``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional

import numpy as np
import polars as pl
import pytest

# Two series with their own lengths, starts, steps and levels, whose times overlap: written in
# time order, their rows interleave in the file.
SERIES = {"A": dict(rows=240, start=datetime(2021, 1, 1), step=timedelta(hours=1), level=10.0),
          "B": dict(rows=150, start=datetime(2021, 1, 5, 7), step=timedelta(hours=2), level=1000.0)}


def series_frame(name: str, rows: int, start: datetime, step: timedelta, level: float) -> pl.DataFrame:
    """One series: a daily cycle around ``level``, a promotion every 5th row that lifts ``y``."""
    t = np.arange(rows)
    promo = (t % 5 == 0).astype(float)
    return pl.DataFrame({
        "unique_id": [name] * rows,
        "ds": [start + int(k) * step for k in t],
        "y": level + 0.1 * level * np.sin(2 * np.pi * t / 24) + 0.05 * level * promo,
        "temp": 15 + 5 * np.cos(2 * np.pi * t / 24),
        "promo": promo,
    })


def panel_frame(series: Optional[dict] = None) -> pl.DataFrame:
    """Every series of ``series`` (default ``SERIES``) stacked, sorted by time (stable)."""
    parts = [series_frame(name, **spec) for name, spec in (series or SERIES).items()]
    return pl.concat(parts).sort("ds", maintain_order=True)


@pytest.fixture
def make_panel(tmp_path: Path) -> Callable[..., Path]:
    """``make_panel(series=None, edit=None, name="panel.csv")``: the panel written as a CSV, after
    ``edit(frame) -> frame`` if given."""
    def make(series: Optional[dict] = None, edit=None, name: str = "panel.csv") -> Path:
        frame = panel_frame(series)
        frame = edit(frame) if edit is not None else frame
        path = tmp_path / name
        frame.write_parquet(path) if path.suffix == ".parquet" else frame.write_csv(path)
        return path
    return make
