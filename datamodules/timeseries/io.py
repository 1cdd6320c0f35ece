"""Reading a time-series table with polars and checking it before any window is cut.

Every error names the file, the column, the data row (0-based, the header excluded; for a CSV
also its line in the file) and what was expected; for one series of a long table (many series
told apart by an id column) also the series id, with the row still counted in the whole file.
Nothing is changed silently: missing values are filled only when the caller asks for it
(``interpolate=True``), and only within one series.

Shape legend: T rows (time steps), C columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import polars as pl

CSV_SUFFIXES = (".csv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
ROW = "__titans_file_row__"  # the file row of each row while a long table is cut into series


def where(path: Path, row: int) -> str:
    """``data row 17 (line 19)`` for a CSV with a header line, ``data row 17`` otherwise."""
    line = f" (line {row + 2})" if path.suffix.lower() in CSV_SUFFIXES else ""
    return f"data row {row}{line}"


@dataclass(frozen=True)
class Source:
    """Where checked rows come from, for error messages: the file and, for one series of a long
    table, its id (``"unique_id='B'"``) and the file row of each of its rows (T,)."""

    path: Path
    series: Optional[str] = None
    rows: Optional[np.ndarray] = None

    def __str__(self) -> str:
        return str(self.path) if self.series is None else f"{self.path}: series {self.series}"

    def where(self, row: int) -> str:
        """The place of the series' ``row``-th row in the file (see ``where``)."""
        return where(self.path, int(self.rows[row]) if self.rows is not None else row)


def as_source(path: Union[Path, Source]) -> Source:
    return path if isinstance(path, Source) else Source(Path(path))


def read_table(path: Union[str, Path]) -> pl.DataFrame:
    """The whole table at ``path`` (CSV with a header line, or Parquet), types inferred from
    every row so that one odd value late in a column is reported rather than misparsed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (--data.path)")
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return pl.read_csv(path, infer_schema_length=None)
    if suffix in PARQUET_SUFFIXES:
        return pl.read_parquet(path)
    raise ValueError(f"{path}: expected a CSV ({', '.join(CSV_SUFFIXES)}) or Parquet "
                     f"({', '.join(PARQUET_SUFFIXES)}) file, got suffix {suffix!r}")


def check_columns(frame: pl.DataFrame, path: Path, names: Sequence[str], option: str) -> None:
    """Raise if any of ``names`` is not a column, listing the columns that exist."""
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(map(repr, missing))} ({option}); "
                         f"the columns are: {', '.join(frame.columns)}")


def resolve_targets(frame: pl.DataFrame, path: Path, date_column: str,
                    target: Union[str, Sequence[str], None], covariates: Sequence[str],
                    future_covariates: Sequence[str] = (), id_column: Optional[str] = None) -> list[str]:
    """Target column names: one name, a list, or (``None`` / ``"all"``) every numeric column
    other than the date, the id and the (future) covariates, in file order. A text column whose
    cells are mostly numbers counts as numeric, so that one bad cell is reported instead of
    dropping the column."""
    check_columns(frame, path, [date_column], "--data.date_column")
    check_columns(frame, path, [id_column] if id_column else [], "--data.id_column")
    check_columns(frame, path, list(covariates), "--data.covariates")
    check_columns(frame, path, list(future_covariates), "--data.future_covariates")
    both = sorted(set(covariates) & set(future_covariates))
    if both:
        raise ValueError(f"{path}: column(s) {both} are both --data.covariates and --data.future_covariates; "
                         f"name a column once (a future covariate is an input over the lookback too)")
    inputs = {date_column, *covariates, *future_covariates} | ({id_column} if id_column else set())
    if target is None or target == "all":
        excluded = inputs
        names = [n for n in frame.columns if n not in excluded and _looks_numeric(frame[n])]
        if not names:
            raise ValueError(f"{path}: no numeric column besides {sorted(excluded)}; "
                             f"the columns are: {', '.join(frame.columns)}")
        return names
    names = [target] if isinstance(target, str) else list(target)
    if not names:
        raise ValueError(f"{path}: --data.target is an empty list; name at least one column")
    check_columns(frame, path, names, "--data.target")
    overlap = sorted(set(names) & inputs)
    if overlap:
        raise ValueError(f"{path}: column(s) {overlap} cannot be both a target and the date "
                         f"column, the id column or a covariate")
    return names


def _looks_numeric(column: pl.Series) -> bool:
    if column.dtype.is_numeric():
        return True
    if column.dtype != pl.String:
        return False
    cells = column.drop_nulls().str.strip_chars()
    cells = cells.filter(cells != "")
    return len(cells) > 0 and cells.cast(pl.Float64, strict=False).is_not_null().mean() > 0.5


def timestamps(frame: pl.DataFrame, path: Union[Path, Source], date_column: str,
               hint: str = "") -> pl.Series:
    """The date column as datetimes (text is parsed, formats inferred by polars) or as integer
    steps, checked to be present, strictly increasing and free of duplicates. ``hint`` is added
    to an ordering error (``suggest_id_column``)."""
    source, column = as_source(path), frame[date_column]
    if column.dtype == pl.String:
        parsed = column.str.to_datetime(strict=False)
        bad = (parsed.is_null() & column.is_not_null()).arg_true()
        if len(bad):
            row = int(bad[0])
            raise ValueError(f"{source}: date column {date_column!r}, {source.where(row)}: "
                             f"{column[row]!r} is not a date/time")
        column = parsed
    elif column.dtype == pl.Date:
        column = column.cast(pl.Datetime("us"))
    elif not (column.dtype == pl.Datetime or column.dtype.is_integer()):
        raise ValueError(f"{source}: date column {date_column!r} has type {column.dtype}; "
                         f"expected dates/times (text or native) or integer steps")
    nulls = column.is_null().arg_true()
    if len(nulls):
        raise ValueError(f"{source}: date column {date_column!r}, {source.where(int(nulls[0]))}: "
                         f"missing timestamp")
    check_order(column, source, date_column, hint)
    return column


def check_order(column: pl.Series, path: Union[Path, Source], date_column: str, hint: str = "") -> None:
    """Raise at the first timestamp that repeats or goes back in time."""
    source = as_source(path)
    steps = column.diff().drop_nulls()
    if column.dtype == pl.Datetime:
        steps = steps.dt.total_microseconds()
    bad = (steps <= 0).arg_true()
    if len(bad):
        row = int(bad[0]) + 1
        kind = "duplicate timestamp" if steps[int(bad[0])] == 0 else "timestamps not sorted"
        raise ValueError(f"{source}: date column {date_column!r}, {source.where(row)}: {kind}: "
                         f"{column[row]} follows {column[row - 1]}; expected strictly increasing "
                         f"times (sort the file and remove repeated rows){hint}")


def suggest_id_column(frame: pl.DataFrame, date_column: str) -> str:
    """When the date column repeats, a hint naming the columns that could tell series apart (text
    or integer columns with 2 to T-1 values that make every (column, date) pair unique): the
    table is probably long (many series); empty when none could."""
    if frame.height < 2 or not frame[date_column].is_duplicated().any():
        return ""
    candidates = [name for name in frame.columns
                  if name != date_column and _id_like(frame[name])
                  and 1 < frame[name].n_unique() < frame.height
                  and not frame.select(name, date_column).is_duplicated().any()]
    if not candidates:
        return ""
    return (f"; the table looks long (many series): set --data.id_column "
            f"{candidates[0]} (candidates: {', '.join(candidates)})")


def _id_like(column: pl.Series) -> bool:
    return column.dtype in (pl.String, pl.Categorical) or column.dtype.is_integer()


def series_frames(frame: pl.DataFrame, path: Path, id_column: str) -> list[tuple[object, pl.DataFrame, Source]]:
    """A long table cut into its series, in order of first appearance: ``(id, rows, source)``,
    each series' rows in file order, its ``Source`` naming the id and the file rows."""
    ids = frame[id_column]
    missing = ids.is_null().arg_true()
    if len(missing):
        raise ValueError(f"{path}: id column {id_column!r}, {where(path, int(missing[0]))}: "
                         f"missing series id (--data.id_column)")
    numbered = frame.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(ROW))
    out = []
    for part in numbered.partition_by(id_column, maintain_order=True):
        name = part[id_column][0]
        rows = part[ROW].to_numpy()
        out.append((name, part.drop(ROW), Source(path, f"{id_column}={name!r}", rows)))
    return out


def numeric_values(frame: pl.DataFrame, path: Union[Path, Source], columns: Sequence[str],
                   interpolate: bool) -> np.ndarray:
    """(T, len(columns)) float32 values of ``columns``.

    Text that is not a number is always an error. A missing value (empty cell, null, NaN) is an
    error unless ``interpolate``: then gaps are filled linearly between their neighbours, and a
    gap at either end takes the nearest observed value.
    """
    out = np.empty((frame.height, len(columns)), dtype=np.float32)
    for j, name in enumerate(columns):
        out[:, j] = _numeric_column(frame[name], as_source(path), interpolate).to_numpy()
    return out


def _numeric_column(column: pl.Series, path: Source, interpolate: bool) -> pl.Series:
    if column.dtype == pl.String:
        parsed = column.str.strip_chars().cast(pl.Float64, strict=False)
        bad = (parsed.is_null() & column.is_not_null() & (column.str.strip_chars() != "")).arg_true()
        if len(bad):
            row = int(bad[0])
            raise ValueError(f"{path}: column {column.name!r}, {path.where(row)}: "
                             f"{column[row]!r} is not a number")
        column = parsed
    elif not column.dtype.is_numeric():
        raise ValueError(f"{path}: column {column.name!r} has type {column.dtype}; expected numbers")
    column = column.cast(pl.Float64)
    if column.is_infinite().any():
        row = int(column.is_infinite().arg_true()[0])
        raise ValueError(f"{path}: column {column.name!r}, {path.where(row)}: infinite value")
    column = column.fill_nan(None)
    missing = column.is_null().arg_true()
    if len(missing) == 0:
        return column
    if not interpolate:
        raise ValueError(f"{path}: column {column.name!r}, {path.where(int(missing[0]))}: missing "
                         f"value ({len(missing)} in this column); expected a number, or set "
                         f"--data.interpolate true to fill gaps linearly")
    if len(missing) == len(column):
        raise ValueError(f"{path}: column {column.name!r} has no value at all to interpolate from")
    return column.interpolate().fill_null(strategy="forward").fill_null(strategy="backward")


def regular_step(column: pl.Series) -> Optional[object]:
    """The most common step between consecutive timestamps (a ``timedelta`` or an int), used to
    extend the time axis past the end of the data; None for a single row."""
    steps = column.diff().drop_nulls()
    if steps.is_empty():
        return None
    return steps.mode().sort()[0]


def calendar_stride(column: pl.Series) -> Optional[tuple[int, bool]]:
    """``(k, month_end)`` when the timestamps step by k calendar months (monthly k = 1, quarterly
    3, yearly 12): every step the same number of months, and every timestamp on the same day of
    the month at the same time, or every one a month's last day (``month_end``). None otherwise
    (integer steps, hours, days, weeks, irregular data): such axes step by a fixed ``timedelta``."""
    if column.dtype not in (pl.Date, pl.Datetime) or column.len() < 2:
        return None
    months = (column.dt.year().cast(pl.Int64) * 12 + column.dt.month().cast(pl.Int64)).diff().drop_nulls()
    if months.n_unique() != 1 or months[0] < 1:
        return None
    month_end = bool((column.dt.date() == column.dt.month_end().dt.date()).all())
    moment = column.dt.day() if column.dtype == pl.Date else column.dt.strftime("%d %H:%M:%S%.f")
    same_day = moment.n_unique() == 1
    return (int(months[0]), month_end) if same_day or month_end else None


def continued_times(column: pl.Series, count: int) -> list:
    """The ``count`` timestamps after the column's last: by calendar months for monthly,
    quarterly or yearly data (``calendar_stride``: 2019-09-01 is followed by 2019-10-01, a month
    end by the next month's end), else at the most common step (``regular_step``)."""
    stride = calendar_stride(column)
    if stride is not None:
        months, month_end = stride
        frame = pl.DataFrame({"last": pl.Series([column[-1]] * count, dtype=column.dtype),
                              "by": [f"{months * k}mo" for k in range(1, count + 1)]})
        times = frame.select(pl.col("last").dt.offset_by(pl.col("by"))).to_series()
        return (times.dt.month_end() if month_end else times).to_list()
    step = regular_step(column)
    if step is None:
        raise ValueError("cannot continue the time axis of a single row: its step is unknown")
    last = column[-1]
    return [last + step * k for k in range(1, count + 1)]
