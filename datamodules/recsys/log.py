"""Reading an interaction log into per-user item sequences (polars throughout).

``read_interactions(path, ...)`` turns a log of (user, item[, timestamp][, rating]) interactions,
in any format of ``formats`` (CSV, TSV, Parquet, RecBole ``.inter``, JSON lines, MovieLens
``.dat``, S3-Rec sequences, SASRec pairs), into an :class:`InteractionLog`: one flat array of
remapped item ids, each user's items contiguous and in time order (ties keep the file's order;
without a timestamp column the file's order is the time order), plus the vocabularies that map
back to the original ids. Item id 0 is reserved for padding; real items are 1..N in the sorted
order of their original ids.

Steps, in order: select and validate the columns (clear errors naming the file, the column and
the row), keep ``rating >= min_rating`` if a threshold is given, k-core filtering, drop users
with fewer than 3 interactions (leave-one-out needs a training, a validation and a test item),
remap items, group by user.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import polars as pl

from .formats import ROW, Table, read_table

log = logging.getLogger(__name__)

#: Users need a training, a validation and a test interaction (leave-one-out).
MIN_INTERACTIONS = 3
_ROW = ROW
_TIME = "__time"


@dataclass(frozen=True)
class InteractionLog:
    """Per-user item sequences in time order.

    Attributes:
        items: (I,) int64 remapped item ids in 1..N, users one after another.
        offsets: (U + 1,) int64; user u's sequence is ``items[offsets[u]:offsets[u + 1]]``.
        users: (U,) original user ids, in the order of ``offsets``.
        item_ids: (N,) original item ids; remapped id i is ``item_ids[i - 1]``.
    """

    items: np.ndarray
    offsets: np.ndarray
    users: pl.Series
    item_ids: pl.Series

    @property
    def num_items(self) -> int:
        """N, the number of distinct items (the padding id 0 not counted)."""
        return len(self.item_ids)

    @property
    def num_users(self) -> int:
        return len(self.users)

    def lengths(self) -> np.ndarray:
        """(U,) interactions per user."""
        return np.diff(self.offsets)


def select_columns(table: Table, columns: dict[str, Optional[str]]) -> pl.DataFrame:
    """``ROW`` and the named columns, collected; raises if one is missing or has nulls.

    ``columns`` maps an argument name (``user_column``) to a column name (or None = unused).
    """
    path = table.path
    with table.reading():
        existing = table.frame.collect_schema().names()
    wanted = {arg: name for arg, name in columns.items() if name is not None}
    missing = [f"{arg}={name!r}" for arg, name in wanted.items() if name not in existing]
    if missing:
        raise ValueError(f"{path}: column(s) not found: {', '.join(missing)}; the file has the columns "
                         f"{table.columns}. Set --data.user_column, --data.item_column, "
                         f"--data.timestamp_column (and --data.rating_column) to match.")
    with table.reading():
        df = table.frame.select(_ROW, *dict.fromkeys(wanted.values())).collect()
    for name in dict.fromkeys(wanted.values()):
        nulls = df.filter(pl.col(name).is_null())
        if nulls.height:
            raise ValueError(f"{path}: column {name!r} is empty at {table.where(nulls[_ROW][0])} "
                             f"({nulls.height} empty value(s) in all)")
    return df


def parse_timestamps(df: pl.DataFrame, column: str, table: Table) -> pl.Series:
    """The timestamp column as Int64, ordered like the times it encodes.

    Integers are used as they are; floats must be whole numbers; dates and datetimes become
    their integer representation; strings must all be integers (or whole numbers written as
    floats) or all parse as datetimes. Raises naming the first row that does not parse.
    """
    values = df[column]
    dtype = values.dtype
    if dtype.is_integer():
        return values.cast(pl.Int64)
    if dtype.is_float():
        parsed = values.cast(pl.Int64, strict=False)
        bad = (parsed.cast(pl.Float64) != values) | parsed.is_null()
    elif dtype in (pl.Date, pl.Datetime) or isinstance(dtype, pl.Datetime):
        return values.cast(pl.Int64)
    elif dtype == pl.String:
        parsed = parse_time_strings(values.str.strip_chars())
        bad = parsed.is_null()
    else:
        raise ValueError(f"{table.path}: timestamp column {column!r} has type {dtype}; expected integers, "
                         f"dates/datetimes or strings holding either")
    if bad.any():
        first = int(bad.arg_true()[0])
        raise ValueError(f"{table.path}: timestamp column {column!r}: cannot read {values[first]!r} at "
                         f"{table.where(df[_ROW][first])} as an integer or a datetime "
                         f"({int(bad.sum())} such value(s) in all)")
    return parsed


def parse_time_strings(values: pl.Series) -> pl.Series:
    """Int64 times of a string column, null where a value does not parse.

    The first value decides the kind: an integer makes it an integer column, anything else a
    datetime column whose format polars infers from that first value.
    """
    as_int = values.cast(pl.Int64, strict=False)
    if as_int[0] is not None:
        return as_int
    as_float = values.cast(pl.Float64, strict=False)
    if as_float[0] is not None:  # RecBole's timestamp:float, as "978300760.0"
        whole = as_float.cast(pl.Int64, strict=False)
        return pl.select(pl.when(whole.cast(pl.Float64) == as_float).then(whole)).to_series().alias(values.name)
    try:
        return values.str.to_datetime(strict=False).cast(pl.Int64)
    except pl.exceptions.ComputeError:  # no datetime format fits the first value
        return pl.Series(values.name, [None] * len(values), dtype=pl.Int64)


def keep_ratings(df: pl.DataFrame, column: str, min_rating: float, table: Table) -> pl.DataFrame:
    """Rows whose rating is at least ``min_rating`` (implicit feedback from explicit ratings)."""
    path = table.path
    ratings = df[column].cast(pl.Float64, strict=False)
    if ratings.null_count():
        first = int(ratings.is_null().arg_true()[0])
        raise ValueError(f"{path}: rating column {column!r}: {df[column][first]!r} at "
                         f"{table.where(df[_ROW][first])} is not a number")
    kept = df.filter(ratings >= min_rating)
    log.info("%s: kept %d of %d interactions with %s >= %s", path, kept.height, df.height, column, min_rating)
    return kept


def k_core(df: pl.DataFrame, user: str, item: str, k: int) -> pl.DataFrame:
    """Repeatedly drop users and items with fewer than ``k`` interactions until none is left.

    Interactions are counted with repeats (a user who saw one item twice has two).
    """
    while True:
        lf = df.lazy()
        kept = (lf.filter(pl.len().over(user) >= k).filter(pl.len().over(item) >= k)).collect()
        if kept.height == df.height:
            return kept
        df = kept


def drop_short_users(df: pl.DataFrame, user: str, path: str | Path) -> pl.DataFrame:
    """Drop users with fewer than ``MIN_INTERACTIONS`` interactions (logged); raise if none is left."""
    counts = df.group_by(user).len()
    short = counts.filter(pl.col("len") < MIN_INTERACTIONS).height
    if short == counts.height:
        raise ValueError(f"{path}: no user has {MIN_INTERACTIONS} or more interactions after filtering "
                         f"({counts.height} users, {df.height} interactions); leave-one-out needs a "
                         f"training, a validation and a test item per user")
    if short:
        log.warning("%s: dropped %d of %d users with fewer than %d interactions (leave-one-out needs %d)",
                    path, short, counts.height, MIN_INTERACTIONS, MIN_INTERACTIONS)
        df = df.filter(pl.len().over(user) >= MIN_INTERACTIONS)
    return df


def read_interactions(
    path: str | Path,
    user_column: str = "userId",
    item_column: str = "movieId",
    timestamp_column: Optional[str] = "timestamp",
    rating_column: Optional[str] = None,
    min_rating: Optional[float] = None,
    k_core_min: int = 0,
    format: Optional[str] = None,
) -> InteractionLog:
    """Read, validate, filter, remap and group an interaction log (see the module docstring).

    Args:
        path: the log, in one of the formats of ``datamodules.recsys.formats``.
        user_column, item_column: column names in the file (the formats without a header name
            their fields so).
        timestamp_column: the time column; None: the file's order is the time order.
        rating_column, min_rating: keep rows with ``rating >= min_rating``; both or neither.
        k_core_min: if > 0, the k-core: every user and item keeps at least this many interactions.
        format: ``csv``, ``tsv``, ``parquet``, ``inter``, ``jsonl``, ``dat``, ``sequences`` or
            ``pairs``; None: from the suffix.
    """
    path = Path(path)
    if (rating_column is None) != (min_rating is None):
        raise ValueError(f"{path}: rating threshold: set both rating_column and min_rating or neither, "
                         f"got rating_column={rating_column!r}, min_rating={min_rating!r}")
    named = [n for n in (user_column, item_column, timestamp_column) if n is not None]
    if len(set(named)) < len(named):
        raise ValueError(f"{path}: user_column, item_column and timestamp_column must differ, got "
                         f"{user_column!r}, {item_column!r}, {timestamp_column!r}")
    columns = dict(user_column=user_column, item_column=item_column,
                   timestamp_column=timestamp_column, rating_column=rating_column)
    table = read_table(path, format, columns)
    columns = {arg: None if name is None else table.resolve(name) for arg, name in columns.items()}
    user, item, time, rating = columns.values()
    df = select_columns(table, columns)
    if time is not None:
        df = df.with_columns(parse_timestamps(df, time, table).alias(_TIME))
    if min_rating is not None:
        df = keep_ratings(df, rating, min_rating, table)
    if k_core_min > 0:
        before = df.height
        df = k_core(df, user, item, k_core_min)
        log.info("%s: %d-core kept %d of %d interactions", path, k_core_min, df.height, before)
    df = drop_short_users(df, user, path)
    return group_sequences(df, user, item)


def group_sequences(df: pl.DataFrame, user: str, item: str) -> InteractionLog:
    """Sort by (user, time if any, file row), remap items to 1..N by sorted original id, cut per user."""
    order = [user, _TIME, _ROW] if _TIME in df.columns else [user, _ROW]
    df = df.lazy().sort(order).with_columns(pl.col(item).rank("dense").cast(pl.Int64).alias("__item")).collect()
    item_ids = df[item].unique().sort()
    users = df[user].unique(maintain_order=True)
    counts = df[user].unique_counts().to_numpy().astype(np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return InteractionLog(df["__item"].to_numpy(), offsets, users, item_ids)
