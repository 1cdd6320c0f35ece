"""FASTA reading and the fixed-length windows of nucleotide pretraining.

Shape legend: L window length in tokens (``seq_len + 1``: inputs and next-base targets overlap).

A FASTA file (plain or gzipped, recognised by its magic bytes) is a list of records: a header
line ``>name description`` followed by sequence lines. Blank lines and ``;`` comment lines are
skipped. Each record is kept as one ``uint8`` tensor of token ids (one byte per base, so a 100 Mb
chromosome costs 100 MB).
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .tokenizer import PAD, NucleotideTokenizer, as_tensor, reverse_complement_tokens

log = logging.getLogger(__name__)


class FastaFormatError(ValueError):
    """A FASTA file that cannot be read as records of nucleotides."""


@dataclass
class FastaRecord:
    """One FASTA record: its name (the header's first word) and (L,) uint8 token ids."""

    name: str
    tokens: Tensor


def _open(path: Path):
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def looks_like_fasta(path: str | Path) -> bool:
    """Whether the first line that is not blank or a ``;`` comment starts with ``>`` (plain or
    gzipped file): how a prediction file is told from a CSV."""
    with _open(Path(path)) as lines:
        for line in lines:
            line = line.strip()
            if line and not line.startswith(b";"):
                return line.startswith(b">")
    return False


def read_fasta(path: str | Path, tokenizer: Optional[NucleotideTokenizer] = None) -> list[FastaRecord]:
    """Every record of a FASTA file, tokenised.

    Raises:
        FileNotFoundError: no such file.
        FastaFormatError: a sequence line before any header (file and line), a record with no
            sequence (file and header line), no record at all (file).
        InvalidNucleotideError: a non-IUPAC character (record, position in it, file and line).
    """
    return list(iter_fasta(path, tokenizer))


def iter_fasta(path: str | Path, tokenizer: Optional[NucleotideTokenizer] = None,
               keep: Optional[Callable[[str], bool]] = None) -> Iterator[FastaRecord]:
    """The records of a FASTA file one at a time, read line by line (only one record is held at
    once). ``keep(name)`` chooses the records to tokenise and yield; the lines of the others are
    skipped unread (a genome's unwanted chromosomes cost no memory). Errors as ``read_fasta``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FASTA file not found: {path}")
    tokenizer = tokenizer or NucleotideTokenizer()
    name, header_line, parts, length, line_no, wanted, count = None, 0, [], 0, 0, True, 0
    with _open(path) as lines:
        for line_no, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith(b";"):
                continue
            if line.startswith(b">"):
                yield from _finish(name, parts, length, path, header_line, wanted)
                words = line[1:].decode("utf-8", errors="replace").split()
                count += 1
                name, header_line, parts, length = (words[0] if words else f"record{count}"), line_no, [], 0
                wanted = keep is None or keep(name)
                continue
            if name is None:
                raise FastaFormatError(f"{path} line {line_no}: sequence line before any '>' header "
                                       f"(a FASTA record starts with a line '>name')")
            if wanted:
                parts.append(tokenizer.encode_bytes(line, f"record {name!r}", length, f"{path} line {line_no}"))
            length += len(line)
    yield from _finish(name, parts, length, path, header_line, wanted)
    if not count:
        raise FastaFormatError(f"{path}: no FASTA records in {line_no} lines (expected a header line "
                               f"'>name' followed by sequence lines)")


def _finish(name: Optional[str], parts: list[bytes], length: int, path: Path, line: int,
            wanted: bool) -> Iterator[FastaRecord]:
    """The record being read (``length`` bases in ``parts``), if any and wanted; a header
    without sequence is an error."""
    if name is None:
        return
    if not length:
        raise FastaFormatError(f"{path} line {line}: record {name!r} has no sequence lines")
    if wanted:
        yield FastaRecord(name, as_tensor(b"".join(parts)))


def split_held_out(records: list[FastaRecord], val_fraction: float) -> tuple[list[Tensor], list[Tensor]]:
    """Train and validation regions: the last ``val_fraction`` of all bases, in file order.

    The records are laid end to end; the final ``val_fraction`` of that length is held out. With
    one chromosome this is its tail; with many records it is the last records (and the tail of
    the one the cut falls in). Windows never cross a record, so no region does either.
    """
    total = sum(len(r.tokens) for r in records)
    cut = total - round(total * val_fraction)
    train, val, offset = [], [], 0
    for record in records:
        tokens, n = record.tokens, len(record.tokens)
        split = min(max(cut - offset, 0), n)
        if split > 0:
            train.append(tokens[:split])
        if split < n:
            val.append(tokens[split:])
        offset += n
    return train, val


class WindowDataset(Dataset):
    """Windows of ``length`` tokens at given starts in regions; a region shorter than a window
    gives one window padded with PAD at the end.

    Items: ``{"tokens": (L,) int64, "mask": (L,) bool}`` (mask: not padding), and with
    ``with_index`` the window's region as ``"index"`` (prediction: per-sequence sums). With
    ``rc_augment`` each item is replaced by its reverse complement with probability 1/2 (drawn
    from torch's global generator, seeded per worker).
    """

    def __init__(self, regions: list[Tensor], length: int, region_ids: Tensor, starts: Tensor,
                 rc_augment: bool = False, with_index: bool = False) -> None:
        self.regions, self.length = regions, length
        self.region_ids, self.starts = region_ids, starts
        self.rc_augment, self.with_index = rc_augment, with_index

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        region, start = self.regions[int(self.region_ids[i])], int(self.starts[i])
        real = region[start:start + self.length].long()
        if self.rc_augment and torch.rand(()) < 0.5:
            real = reverse_complement_tokens(real)
        tokens = torch.full((self.length,), PAD, dtype=torch.long)
        tokens[: len(real)] = real
        item = {"tokens": tokens, "mask": tokens != PAD}
        if self.with_index:
            item["index"] = int(self.region_ids[i])
        return item


def starts_per_region(regions: list[Tensor], length: int) -> Tensor:
    """(R,) number of window starts in each region (at least 1: a short region is one window)."""
    return torch.tensor([max(1, len(r) - length + 1) for r in regions], dtype=torch.long)


def random_windows(regions: list[Tensor], length: int, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``count`` (region, start) pairs drawn uniformly over every window start of every region."""
    counts = starts_per_region(regions, length)
    bounds = counts.cumsum(0)
    flat = torch.randint(int(bounds[-1]), (count,), generator=generator)
    region_ids = torch.searchsorted(bounds, flat, right=True)
    return region_ids, flat - (bounds[region_ids] - counts[region_ids])


def tiled_windows(regions: list[Tensor], length: int, limit: Optional[int]) -> tuple[Tensor, Tensor]:
    """Windows covering every region once (the last of each may be short and padded), thinned to
    ``limit`` evenly spaced ones when there are more.

    Consecutive windows overlap by one token: a window of L tokens scores its last L - 1 as
    next-base targets, so a stride of L - 1 scores every base of the region but the first once.
    """
    stride = max(length - 1, 1)
    pairs = [(i, s) for i, r in enumerate(regions) for s in range(0, max(len(r) - 1, 1), stride)]
    if limit is not None and len(pairs) > limit:
        keep = torch.linspace(0, len(pairs) - 1, limit).round().long().tolist()
        pairs = [pairs[k] for k in keep]
    ids, starts = zip(*pairs)
    return torch.tensor(ids), torch.tensor(starts)


def report_short_regions(regions: list[Tensor], length: int, what: str) -> None:
    """Log how many regions are shorter than a window (they train padded, not dropped)."""
    short = sum(len(r) < length for r in regions)
    if short:
        log.info("%d of %d %s regions are shorter than a window of %d tokens; each is one padded window",
                 short, len(regions), what, length)
