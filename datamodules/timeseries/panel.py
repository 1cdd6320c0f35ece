"""A table as series: a wide table (one column per variable) is one series; a long table (an id
column, e.g. neuralforecast's ``unique_id, ds, y``) is one series per id, in order of first
appearance, each with its own time axis checked on its own (order, duplicates, missing values,
interpolation) with errors naming the file, the series id and the file row.

Shape legend: T rows of one series, C targets, K covariates, G future covariates, E rows past
the end, F known-future features (G future covariates, then 6 calendar features if asked).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import polars as pl

from . import io
from .calendar import calendar_features


@dataclass
class Series:
    """One series, raw: id (None for a wide table), timestamps (T,), targets (T, C), covariates
    (T, K), future covariates (T, G)."""

    name: object
    times: pl.Series
    targets: np.ndarray
    covariates: np.ndarray
    future: np.ndarray


@dataclass
class Panel:
    """The checked series of a table, their column names, and the columns left unused."""

    series: list[Series]
    target_names: list[str]
    covariate_names: list[str]
    future_names: list[str]
    unused: list[str]


def read_panel(path: Path, date_column: str, target: Union[str, Sequence[str], None],
               covariates: Sequence[str], future_covariates: Sequence[str], id_column: Optional[str],
               interpolate: bool) -> Panel:
    """Read and check the table at ``path`` as its series (see the module docstring)."""
    frame = io.read_table(path)
    targets = io.resolve_targets(frame, path, date_column, target, covariates, future_covariates, id_column)
    used = {date_column, *targets, *covariates, *future_covariates} | ({id_column} if id_column else set())
    if id_column is None:
        parts = [(None, frame, io.Source(path))]
        hint = io.suggest_id_column(frame, date_column)
    else:
        parts, hint = io.series_frames(frame, path, id_column), ""
    series = [Series(name, io.timestamps(part, source, date_column, hint),
                     io.numeric_values(part, source, targets, interpolate),
                     io.numeric_values(part, source, covariates, interpolate),
                     io.numeric_values(part, source, future_covariates, interpolate))
              for name, part, source in parts]
    return Panel(series, targets, list(covariates), list(future_covariates),
                 [c for c in frame.columns if c not in used])


def known_features(times: pl.Series, future: np.ndarray, calendar: bool, extra: int) -> np.ndarray:
    """(T + E, F) features known over the horizon: the (standardised) future covariates (T, G),
    zero past the end (they are not known there), then the calendar features of the time axis
    continued ``extra`` rows at its most common step."""
    past = np.concatenate([future, np.zeros((extra, future.shape[1]), np.float32)])
    if not calendar:
        return past.astype(np.float32)
    if len(times) > 1:
        times = pl.concat([times, pl.Series(times.name, io.continued_times(times, extra), dtype=times.dtype)])
    features = calendar_features(times)
    if len(features) < len(past):  # a single row has no step to continue: its features repeat
        features = np.concatenate([features, np.repeat(features[-1:], len(past) - len(features), 0)])
    return np.concatenate([past, features], axis=1).astype(np.float32)
