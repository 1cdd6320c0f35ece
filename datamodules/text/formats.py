"""Corpus file formats: each file read as a stream of documents, in pieces of bounded size.

Formats, by file name: ``.txt`` (any unknown suffix too) is UTF-8 text, one document per file, or
cut into documents at a separator; ``.jsonl``, ``.jsonl.gz``, ``.json`` and ``.json.gz`` are JSON
records (JSON lines, or one array of records when the file starts with ``[``); ``.parquet`` is
Parquet; ``.arrow`` is an Arrow IPC stream (what ``datasets.save_to_disk`` writes, ``data-*.arrow``).
A record's ``text_column`` is its document; ``null`` and blank values are empty records, skipped
and counted.

Memory stays bounded whatever the file size: text files are read in blocks of ``BLOCK_BYTES`` and a
long document comes out in pieces of about ``PIECE_CHARS`` characters, each cut where a line starts
with a non-blank character (so a byte-level BPE encodes the pieces as it would the whole, whose
pre-tokenizer splits there too); JSON lines are read line by line; Parquet in slices of
``RECORD_BATCH`` rows. An Arrow shard and a ``.json`` array file are read whole (``datasets`` writes
shards of at most 500 MB by default).
"""

from __future__ import annotations

import gzip
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Optional

BLOCK_BYTES = 1 << 20
PIECE_CHARS = 1 << 20
RECORD_BATCH = 1024
SUFFIXES = {".txt": "txt", ".jsonl": "jsonl", ".jsonl.gz": "jsonl", ".json": "json", ".json.gz": "json",
            ".parquet": "parquet", ".arrow": "arrow"}
#: files that ``datasets.save_to_disk`` writes beside the Arrow shards: never documents
DATASETS_METADATA = {"state.json", "dataset_info.json", "dataset_dict.json"}


@dataclass(frozen=True)
class Piece:
    """Text of one document (``start``: the first piece of a new document) or of a continuing one."""

    name: str
    text: str
    start: bool = True


@dataclass
class Reading:
    """What a reader reports besides the pieces: how many empty records it skipped, per file."""

    empty: dict[str, int] = field(default_factory=dict)

    def skip(self, name: str) -> None:
        self.empty[name] = self.empty.get(name, 0) + 1


def file_format(path: Path) -> Optional[str]:
    """``txt``, ``jsonl``, ``json``, ``parquet`` or ``arrow`` by the file's suffix; None if unknown."""
    name = path.name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return SUFFIXES[suffix]
    return None


def read_pieces(file: Path, name: str, column: str, separator: Optional[str], reading: Reading) -> Iterator[Piece]:
    """The pieces of every document of ``file`` (``name``: how documents are named, ``name#k``)."""
    kind = file_format(file) or "txt"
    if kind == "txt":
        yield from text_pieces(file, name, separator, reading)
        return
    records = {"jsonl": json_lines, "json": json_records, "parquet": parquet_records, "arrow": arrow_records}[kind]
    for row, text in records(file, column):
        if text is None or not text.strip():
            reading.skip(str(file))
        else:
            yield from (Piece(f"{name}#{row}", p, k == 0) for k, p in enumerate(cut_text(text)))


# ---- plain text ------------------------------------------------------------------------------

def safe_cut(data: bytes) -> int:
    """Where ``data`` may be cut: after the last newline followed by a non-blank byte, else after
    the last whole UTF-8 character; 0 when nothing can be cut."""
    end = data.rfind(b"\n", 0, len(data) - 1)
    while end >= 0 and data[end + 1] in b" \t\r\n":
        end = data.rfind(b"\n", 0, end)
    if end >= 0:
        return end + 1
    lead = len(data) - 1
    if lead < 0:
        return 0
    while lead > 0 and len(data) - lead < 4 and data[lead] & 0xC0 == 0x80:
        lead -= 1  # back over continuation bytes to the last character's lead byte
    width = 1 if data[lead] < 0xC0 else 2 if data[lead] < 0xE0 else 3 if data[lead] < 0xF0 else 4
    return len(data) if lead + width <= len(data) else lead


def text_chunks(file: Path) -> Iterator[str]:
    """``file`` decoded as UTF-8 in chunks of about ``BLOCK_BYTES``, each ending at a safe cut.
    An invalid byte raises naming the file, its byte offset and line."""
    opener = gzip.open if file.name.lower().endswith(".gz") else open
    offset, lines, carry = 0, 0, b""
    with opener(file, "rb") as stream:
        while True:
            block = stream.read(BLOCK_BYTES)
            data = carry + block
            cut = len(data) if not block else safe_cut(data) or len(data)
            chunk, carry = data[:cut], data[cut:]
            try:
                yield chunk.decode("utf-8")
            except UnicodeDecodeError as error:
                line = lines + chunk.count(b"\n", 0, error.start) + 1
                raise ValueError(f"{file}: byte {offset + error.start} (line {line}) is not valid UTF-8 "
                                 f"({error.reason}); the text DataModule reads UTF-8: convert the file first, "
                                 "e.g. `iconv -f latin1 -t utf-8`") from None
            offset, lines = offset + len(chunk), lines + chunk.count(b"\n")
            if not block:
                return


def text_pieces(file: Path, name: str, separator: Optional[str], reading: Reading) -> Iterator[Piece]:
    """One document per file (``name``), or per non-blank part between separators (``name#k``)."""
    names = (f"{name}#{k}" for k in itertools.count()) if separator else iter([name])
    carry, begun, found = "", None, False  # begun: the name of a document whose first piece is out

    def finish(part: str, begun: Optional[str]) -> Iterator[Piece]:
        if begun is not None and part:
            yield Piece(begun, part, False)
        elif begun is None and part.strip():
            yield Piece(next(names), part)

    for chunk in text_chunks(file):
        parts = (carry + chunk).split(separator) if separator else [carry + chunk]
        carry = parts.pop()
        for part in parts:  # each ends at a separator
            for piece in finish(part, begun):
                found = True
                yield piece
            begun = None
        if len(carry) >= PIECE_CHARS and (begun is not None or carry.strip()):
            piece = Piece(begun, carry, False) if begun is not None else Piece(next(names), carry)
            begun, carry, found = piece.name, "", True
            yield piece
    for piece in finish(carry, begun):
        found = True
        yield piece
    if not found and separator is None:
        reading.skip(str(file))


def cut_text(text: str) -> Iterator[str]:
    """``text`` in pieces of about ``PIECE_CHARS`` characters, cut where a line starts."""
    while len(text) > 2 * PIECE_CHARS:
        cut = text.rfind("\n", PIECE_CHARS // 2, PIECE_CHARS)
        while cut > PIECE_CHARS // 2 and text[cut + 1].isspace():
            cut = text.rfind("\n", PIECE_CHARS // 2, cut)
        cut = cut + 1 if cut > PIECE_CHARS // 2 else PIECE_CHARS
        yield text[:cut]
        text = text[cut:]
    yield text


# ---- records ---------------------------------------------------------------------------------

def value_error(file: Path, where: str, column: str, value) -> ValueError:
    return ValueError(f"{file}: {where}, column {column!r} (--data.text_column): expected a string, "
                      f"got {type(value).__name__} {str(value)[:40]!r}")


def missing_error(file: Path, where: str, column: str, columns) -> ValueError:
    have = ", ".join(repr(str(c)) for c in columns) or "none"
    return ValueError(f"{file}: {where} has no column {column!r} (--data.text_column); its columns: {have}")


def record_text(file: Path, where: str, record, column: str) -> Optional[str]:
    """``record[column]`` of a JSON record; raises naming the file, place and column."""
    if not isinstance(record, dict):
        raise ValueError(f"{file}: {where}: expected a JSON object (a record with a {column!r} field), "
                         f"got {type(record).__name__}")
    if column not in record:
        raise missing_error(file, where, column, record)
    value = record[column]
    if value is not None and not isinstance(value, str):
        raise value_error(file, where, column, value)
    return value


def open_binary(file: Path) -> IO[bytes]:
    return gzip.open(file, "rb") if file.name.lower().endswith(".gz") else open(file, "rb")


def json_records(file: Path, column: str) -> Iterator[tuple[int, Optional[str]]]:
    """``(row, text)`` of a ``.json`` file: one JSON array of records (read whole), or JSON lines
    (what ``datasets``' ``to_json`` writes)."""
    with open_binary(file) as stream:
        head = stream.read(64).lstrip()
    if not head.startswith(b"["):
        yield from json_lines(file, column)
        return
    with open_binary(file) as stream:
        try:
            records = json.load(stream)
        except ValueError as error:
            raise ValueError(f"{file}: not valid JSON ({error}); expected an array of records or JSON lines") from None
    for row, record in enumerate(records):
        yield row, record_text(file, f"record {row}", record, column)


def json_lines(file: Path, column: str) -> Iterator[tuple[int, Optional[str]]]:
    """``(row, text)`` of JSON lines, one record a line (blank lines skipped), read line by line."""
    with open_binary(file) as stream:
        row = 0
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as error:
                raise ValueError(f"{file}: line {number} is not valid JSON ({error}); expected one record "
                                 "per line (JSON lines)") from None
            yield row, record_text(file, f"line {number}", record, column)
            row += 1


def column_values(file: Path, frame, column: str, offset: int) -> list:
    """``frame[column]`` as Python values; a non-string column raises naming its first value's row."""
    import polars as pl

    series = frame.get_column(column)
    if series.dtype not in (pl.String, pl.Null):
        first = series.drop_nulls()
        row = offset + (int(series.is_not_null().arg_max()) if first.len() else 0)
        raise ValueError(f"{file}: row {row}, column {column!r} (--data.text_column): expected strings, "
                         f"the column holds {series.dtype} (value {str(first[0] if first.len() else None)[:40]!r})")
    return series.to_list()


def parquet_records(file: Path, column: str) -> Iterator[tuple[int, Optional[str]]]:
    """``(row, text)`` of a Parquet file, ``RECORD_BATCH`` rows at a time."""
    import polars as pl

    frame = pl.scan_parquet(file)
    names = frame.collect_schema().names()
    if column not in names:
        raise missing_error(file, "the file", column, names)
    rows = frame.select(pl.len()).collect().item()
    for offset in range(0, rows, RECORD_BATCH):
        batch = frame.select(column).slice(offset, RECORD_BATCH).collect()
        yield from enumerate(column_values(file, batch, column, offset), start=offset)


def arrow_records(file: Path, column: str) -> Iterator[tuple[int, Optional[str]]]:
    """``(row, text)`` of an Arrow IPC stream (a ``datasets`` shard) or IPC file, read whole."""
    import polars as pl

    try:
        names = pl.read_ipc_stream(file, n_rows=0).columns
        read = pl.read_ipc_stream
    except Exception:  # not a stream: the IPC file format
        names, read = pl.read_ipc_schema(file).keys(), pl.read_ipc
    if column not in names:
        raise missing_error(file, "the file", column, names)
    frame = read(file, columns=[column])
    for offset in range(0, frame.height, RECORD_BATCH):
        batch = frame.slice(offset, RECORD_BATCH)
        yield from enumerate(column_values(file, batch, column, offset), start=offset)
