"""Interaction-log file formats, each read into a lazy table of named columns in file order.

``read_table(path, format, names)`` picks the reader by ``format`` or, when it is None, by the
file's suffix (any text format may also be gzipped: ``.gz`` after its suffix):

============ ============================ ====================================================
format       suffixes                     layout
============ ============================ ====================================================
csv          .csv                         comma separated, a header row
tsv          .tsv .tab                    tab separated, a header row
parquet      .parquet .pq                 Parquet
inter        .inter                       RecBole atomic file: tab separated, header cells
                                          ``name:type`` (columns named with or without
                                          ``:type``; ``token`` is text, ``float`` a number)
jsonl        .jsonl .ndjson .json         one JSON object per line (Amazon reviews, Yelp); a
                                          ``.json`` file may also be one array of objects
dat          .dat                         MovieLens ``user::item::rating::timestamp``, no header
sequences    (any: --data.format)         ``user item item ...``: one user a line, items in
                                          time order, space separated, no header (S3-Rec)
pairs        (any: --data.format)         ``user item``: one interaction a line, no header,
                                          file order = time order (SASRec)
============ ============================ ====================================================

The formats without a header (dat, sequences, pairs) hold integer ids; their fields take the
names given in ``names`` (the DataModule's ``user_column``, ``item_column``, ...). The sequence
formats have no timestamp and no rating. Every table has ``ROW``, an order-preserving index
of the file's interactions (the tie-breaker after the timestamp, or the whole order without one).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, Optional

import polars as pl

from .lines import LINE_FORMATS, ROW, read_line_format

Format = Literal["csv", "tsv", "parquet", "inter", "jsonl", "dat", "sequences", "pairs"]
FORMATS: tuple[str, ...] = Format.__args__
SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
            ".inter": "inter", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".dat": "dat"}


@dataclass(frozen=True)
class Table:
    """A log read lazily: ``frame`` holds the file's columns and ``ROW``.

    Attributes:
        path: the file.
        format: one of ``FORMATS``.
        frame: the columns, named as ``resolve`` returns them, and ``ROW``.
        columns: the column names as the file shows them (for errors).
        where: names a row for an error, given its ``ROW`` value: ``"line 7"``.
        aliases: other accepted names of a column (RecBole's ``user_id:token`` for ``user_id``).
        explain: turns a polars error met while collecting ``frame`` into a ValueError naming
            what is wrong in the file.
    """

    path: Path
    format: str
    frame: pl.LazyFrame
    columns: list[str]
    where: Callable[[int], str]
    aliases: dict[str, str] = field(default_factory=dict)
    explain: Optional[Callable[[Exception], ValueError]] = None

    def resolve(self, name: str) -> str:
        """The frame's name of a column given by its name or an alias."""
        return self.aliases.get(name, name)

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Re-raise a polars error met inside as a ValueError naming the file (and line if known)."""
        try:
            yield
        except pl.exceptions.PolarsError as error:
            if self.explain is not None:
                raise self.explain(error) from error
            raise ValueError(f"{self.path}: cannot read it as {self.format}: {error}") from error


def format_of(path: Path, format: Optional[str]) -> str:
    """The format named, or the one the suffix implies; raises naming the choices otherwise."""
    if format is not None:
        if format not in FORMATS:
            raise ValueError(f"{path}: unknown format {format!r}; expected one of {list(FORMATS)}")
        return format
    name = path.name.lower()
    gz = name.endswith(".gz")
    suffix = Path(name[:-3] if gz else name).suffix
    found = SUFFIXES.get(suffix)
    if found is None or (gz and found == "parquet"):
        raise ValueError(f"{path}: unsupported file type {suffix + ('.gz' if gz else '')!r}; expected one of "
                         f"{sorted(SUFFIXES)} (text ones also .gz), or name the format with "
                         f"--data.format {'|'.join(FORMATS)} (sequences and pairs files are named only so)")
    return found


def read_table(path: Path, format: Optional[str], names: dict[str, Optional[str]]) -> Table:
    """The log at ``path`` as a lazy :class:`Table` (see the module docstring).

    ``names`` maps the DataModule's arguments (``user_column``, ``item_column``,
    ``timestamp_column``, ``rating_column``) to column names, None for unused; the formats
    without a header name their fields so.
    """
    if not path.is_file():
        raise FileNotFoundError(f"interaction log {str(path)!r} not found (cwd {Path.cwd()})")
    format = format_of(path, format)
    if format in LINE_FORMATS:
        frame, where = read_line_format(path, format, names)
        return Table(path, format, frame, [n for n in frame.collect_schema().names() if n != ROW], where)
    return READERS[format](path)


def after_header(path: Path) -> Callable[[int], str]:
    return lambda row: f"row {row + 1} (line {row + 2} of the file, after the header)"


def read_csv(path: Path, separator: str, format: str) -> Table:
    frame = pl.scan_csv(path, separator=separator, infer_schema_length=10000)
    table = Table(path, format, frame, [], after_header(path))
    with table.reading():
        columns = frame.collect_schema().names()
    return Table(path, format, frame.with_row_index(ROW), columns, table.where)


def read_parquet(path: Path) -> Table:
    frame = pl.scan_parquet(path)
    return Table(path, "parquet", frame.with_row_index(ROW), frame.collect_schema().names(),
                 lambda row: f"row {row + 1}")


def read_inter(path: Path) -> Table:
    """A RecBole atomic file, every column read as text (a ``float`` timestamp or rating is parsed
    later, as a CSV's text column would be)."""
    with open_text(path) as file:
        header = file.readline().rstrip("\r\n").split("\t")
    named = {cell: cell.split(":", 1)[0] for cell in header}
    frame = pl.scan_csv(path, separator="\t", quote_char=None, infer_schema=False,
                        with_column_names=lambda cells: [named.get(c, c) for c in cells])
    return Table(path, "inter", frame.with_row_index(ROW), header, after_header(path),
                 aliases={cell: name for cell, name in named.items() if cell != name})


def open_text(path: Path) -> IO[str]:
    """The file as text, decompressed if its name ends with ``.gz``."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def first_character(path: Path) -> str:
    with open_text(path) as file:
        for line in file:
            if line.strip():
                return line.strip()[0]
    return ""


def read_json(path: Path) -> Table:
    """JSON lines (streamed, gzip or not), or a ``.json`` array of objects."""
    if first_character(path) == "[":
        with open_text(path) as file:
            try:
                frame = pl.DataFrame(json.load(file)).lazy()
            except (json.JSONDecodeError, TypeError, ValueError) as error:
                raise ValueError(f"{path}: not a JSON array of objects: {error}") from error
        where: Callable[[int], str] = lambda row: f"record {row + 1}"  # noqa: E731
    else:
        frame = pl.scan_ndjson(path, infer_schema_length=10000)
        where = lambda row: json_line_name(path, row)  # noqa: E731
    table = Table(path, "jsonl", frame, [], where, explain=lambda error: explain_json(path, error))
    with table.reading():
        columns = frame.collect_schema().names()
    return Table(path, "jsonl", frame.with_row_index(ROW), columns, where, explain=table.explain)


def json_line_name(path: Path, record: int) -> str:
    """``"record 3 (line 4)"``: JSON lines skip blank lines, so the line is counted (errors only)."""
    with open_text(path) as file:
        seen = -1
        for number, line in enumerate(file, 1):
            seen += bool(line.strip())
            if seen == record:
                return f"record {record + 1} (line {number})"
    return f"record {record + 1}"


def explain_json(path: Path, error: Exception) -> ValueError:
    """The first line that is not a JSON object, found by reading the file again (errors only)."""
    with open_text(path) as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as bad:
                return ValueError(f"{path}: line {number} is not valid JSON ({bad.msg} at character "
                                  f"{bad.pos + 1}): {line.strip()[:80]!r}")
            if not isinstance(record, dict):
                return ValueError(f"{path}: line {number} is not a JSON object: {line.strip()[:80]!r}")
    return ValueError(f"{path}: cannot read it as JSON lines (one object per line): {error}")


READERS: dict[str, Callable[[Path], Table]] = {
    "csv": lambda path: read_csv(path, ",", "csv"),
    "tsv": lambda path: read_csv(path, "\t", "tsv"),
    "parquet": read_parquet,
    "inter": read_inter,
    "jsonl": read_json,
}
