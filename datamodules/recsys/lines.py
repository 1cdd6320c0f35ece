"""The log formats without a header, read line by line: MovieLens ``dat``, S3-Rec ``sequences``
and SASRec ``pairs`` (see ``formats``).

Each non-blank line is split into fields (at ``::`` for dat, at runs of spaces or tabs for the
others); user and item ids must be integers. The fields take the names the DataModule's column
arguments give them. Errors name the file, the line (1-based, blank lines counted) and the field.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Optional

import polars as pl

LINE_FORMATS = ("dat", "sequences", "pairs")
#: fields of a dat line, by the DataModule argument that names each
DAT_FIELDS = ("user_column", "item_column", "rating_column", "timestamp_column")
ROW = "__row"
LINE = "__line"
FIELDS = "__fields"
POSITION = "__position"


def split_lines(path: Path, separator: Optional[str]) -> pl.DataFrame:
    """Non-blank lines as lists of stripped fields (``FIELDS``), with ``LINE`` the 0-based line index."""
    lines = pl.scan_lines(path, row_index_name=LINE).with_columns(pl.col("line").str.strip_chars())
    fields = (pl.col("line").str.split(separator).list.eval(pl.element().str.strip_chars()) if separator
              else pl.col("line").str.extract_all(r"\S+"))
    return lines.filter(pl.col("line") != "").select(LINE, fields.alias(FIELDS)).collect()


def check_field_counts(lines: pl.DataFrame, ok: pl.Expr, path: Path, expected: str, separator: str = " ") -> None:
    """Raise naming the first line whose field count fails ``ok``."""
    bad = lines.filter(~ok)
    if bad.height:
        fields = bad[FIELDS][0].to_list()
        raise ValueError(f"{path}: line {bad[LINE][0] + 1}: expected {expected}, got {len(fields)} field(s): "
                         f"{separator.join(fields)[:80]!r} ({bad.height} such line(s) in all)")


def integer_column(frame: pl.DataFrame, column: str, path: Path, format: str) -> pl.DataFrame:
    """``column`` (text) cast to Int64; raises naming the line and field (``POSITION``) of a non-integer."""
    values = frame[column].cast(pl.Int64, strict=False)
    bad = values.is_null()
    if bad.any():
        first = int(bad.arg_true()[0])
        raise ValueError(f"{path}: line {frame[LINE][first] + 1}, field {frame[POSITION][first]} ({column}): "
                         f"{frame[column][first]!r} is not an integer; {format} files hold integer user and "
                         f"item ids ({int(bad.sum())} such value(s) in all)")
    return frame.with_columns(values)


def no_time_or_rating(path: Path, format: str, names: dict[str, Optional[str]]) -> None:
    """The sequence formats have neither: naming a column for one is a mistake, said plainly."""
    for argument, what in (("timestamp_column", "timestamp"), ("rating_column", "rating")):
        if names.get(argument) is not None:
            raise ValueError(f"{path}: {format} files have no {what} (only user and item ids, in time order); set "
                             f"--data.{argument} null, got {names[argument]!r}")


def fields_of(lines: pl.DataFrame, columns: dict[int, str], path: Path, format: str) -> pl.DataFrame:
    """Columns from fixed field positions (0-based ``columns`` keys); user and item ids checked as
    integers. ``ROW`` is the line index, so file order is kept."""
    frame = lines.select(pl.col(LINE).alias(ROW), LINE, *[pl.col(FIELDS).list.get(i).alias(name)
                                                         for i, name in columns.items()])
    for position, name in list(columns.items())[:2]:
        frame = integer_column(frame.with_columns(pl.lit(position + 1).alias(POSITION)), name, path, format)
    return frame.select(ROW, *columns.values())


def read_dat(path: Path, names: dict[str, Optional[str]]) -> pl.DataFrame:
    lines = split_lines(path, "::")
    check_field_counts(lines, pl.col(FIELDS).list.len() == 4, path, "4 fields user::item::rating::timestamp", "::")
    columns = {i: names[arg] for i, arg in enumerate(DAT_FIELDS) if names.get(arg) is not None}
    return fields_of(lines, columns, path, "dat")


def read_pairs(path: Path, names: dict[str, Optional[str]]) -> pl.DataFrame:
    no_time_or_rating(path, "pairs", names)
    lines = split_lines(path, None)
    check_field_counts(lines, pl.col(FIELDS).list.len() == 2, path, "2 fields 'user item'")
    return fields_of(lines, {0: names["user_column"], 1: names["item_column"]}, path, "pairs")


def read_sequences(path: Path, names: dict[str, Optional[str]]) -> pl.DataFrame:
    """One row per item, in line order then position; ``LINE`` kept for errors."""
    no_time_or_rating(path, "sequences", names)
    user, item = names["user_column"], names["item_column"]
    lines = split_lines(path, None)
    check_field_counts(lines, pl.col(FIELDS).list.len() >= 2, path, "'user item item ...' (a user and its items)")
    users = lines.select(LINE, pl.col(FIELDS).list.first().alias(user), pl.lit(1).alias(POSITION))
    integer_column(users, user, path, "sequences")
    items = lines.select(LINE, pl.col(FIELDS).list.first().alias(user), pl.col(FIELDS).list.slice(1).alias(item),
                         pl.int_ranges(2, pl.col(FIELDS).list.len() + 1).alias(POSITION)).explode(item, POSITION)
    items = integer_column(items, item, path, "sequences")
    return items.with_columns(pl.col(user).cast(pl.Int64)).with_row_index(ROW)


def read_line_format(path: Path, format: str, names: dict[str, Optional[str]]
                     ) -> tuple[pl.LazyFrame, Callable[[int], str]]:
    """The file as a lazy frame (``ROW`` and the named fields) and how to name a row's line."""
    if format == "sequences":
        frame = read_sequences(path, names)
        lines = frame[LINE].to_numpy()
        return frame.drop(LINE, POSITION).lazy(), lambda row: f"line {int(lines[row]) + 1}"
    frame = read_dat(path, names) if format == "dat" else read_pairs(path, names)
    return frame.lazy(), lambda row: f"line {row + 1}"

