"""BED intervals on a reference genome, read as labelled sequences for classification.

A BED file (UCSC's format) has one interval a line, tab separated (runs of spaces are accepted
too): ``chrom``, ``start``, ``end`` (0-based, end exclusive), then optional columns, among them
``name`` (column 4) and ``strand`` (column 6: ``+``, ``-`` or ``.``). Blank lines and lines
starting with ``#``, ``track`` or ``browser`` are skipped.

Each interval's label is one of its columns (``label_column``, counted from 1: 4 is ``name``) or,
with one BED file per class, its file's class. An interval on strand ``-`` is read as the reverse
complement of the genome's (plus-strand) bases, as the molecule on that strand reads 5' to 3'.
With ``window`` every interval becomes the ``window`` bases centred on its centre (from
``centre - window // 2``, centre ``(start + end) // 2``), so that intervals of any length give
sequences of one length, the usual input of enhancer / promoter / ChIP-seq peak classifiers.

The genome is a FASTA file (plain or gzipped) streamed once: only the chromosomes some interval
names are kept (one byte per base), and only until the intervals are cut out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from torch import Tensor

from .fasta import iter_fasta
from .labels import LabelledSequences, class_order, labelled
from .tokenizer import NucleotideTokenizer, reverse_complement_tokens

SKIPPED_PREFIXES = ("#", "track", "browser")
STRANDS = ("+", "-", ".")


@dataclass
class Interval:
    """One BED line: ``chrom:start-end`` (0-based, end exclusive), its strand and label, and
    ``where`` it was read (``"<file> line <n>"``, for errors)."""

    chrom: str
    start: int
    end: int
    minus: bool
    label: str
    where: str


def read_bed(path: str | Path, label_column: int = 4, label: Optional[str] = None) -> list[Interval]:
    """The intervals of a BED file, labelled by column ``label_column`` (from 1) or, when
    ``label`` is given (one file per class), by ``label``.

    Raises FileNotFoundError, or ValueError naming the file, line and column: fewer than three
    columns, a start or end that is not an integer, not ``0 <= start < end``, a strand other
    than ``+ - .``, a missing or empty label column, no interval at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BED file not found: {path}")
    intervals = []
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line_no, line in enumerate(lines, 1):
            line = line.rstrip("\r\n")
            if line.strip() and not line.startswith(SKIPPED_PREFIXES):
                intervals.append(_interval(line.split("\t") if "\t" in line else line.split(),
                                           f"{path} line {line_no}", label_column, label))
    if not intervals:
        raise ValueError(f"{path}: no intervals (expected lines 'chrom<TAB>start<TAB>end[<TAB>name ...]')")
    return intervals


def _interval(fields: list[str], where: str, label_column: int, label: Optional[str]) -> Interval:
    """One BED line's fields -> an Interval (errors as ``read_bed``)."""
    if len(fields) < 3:
        raise ValueError(f"{where}: {len(fields)} column(s); a BED line has at least chrom, start, end")
    coordinates = []
    for column, value in (("start", fields[1]), ("end", fields[2])):
        if not value.strip().isdigit():
            raise ValueError(f"{where}: {column} {value!r} is not a non-negative integer")
        coordinates.append(int(value))
    start, end = coordinates
    if start >= end:
        raise ValueError(f"{where}: start {start} >= end {end}; expected 0 <= start < end (0-based, end exclusive)")
    strand = fields[5].strip() if len(fields) > 5 else "."
    if strand not in STRANDS:
        raise ValueError(f"{where}: strand (column 6) is {strand!r}; expected one of {', '.join(STRANDS)}")
    if label is None:
        label = fields[label_column - 1].strip() if len(fields) >= label_column else ""
        if not label:
            raise ValueError(f"{where}: no label in column {label_column} (bed_label_column); the line has "
                             f"{len(fields)} column(s)")
    return Interval(fields[0].strip(), start, end, strand == "-", label, where)


def read_genome(path: str | Path, chromosomes: set[str],
                tokenizer: Optional[NucleotideTokenizer] = None) -> tuple[dict[str, Tensor], list[str]]:
    """Chromosome name -> (L,) uint8 token ids of the records named in ``chromosomes``, and the
    names of every record (for an error about a missing one); the other records are skipped."""
    names: list[str] = []

    def wanted(name: str) -> bool:
        names.append(name)
        return name in chromosomes

    return {r.name: r.tokens for r in iter_fasta(path, tokenizer, keep=wanted)}, names


def cut(interval: Interval, genome: dict[str, Tensor], names: list[str], genome_path: str,
        window: Optional[int] = None) -> Tensor:
    """(L,) uint8 token ids of one interval (its window when ``window`` is set), reverse
    complemented on strand ``-``; a copy, so the genome can be freed.

    Raises ValueError naming the BED line for a chromosome the genome lacks or bases past either
    end of the chromosome.
    """
    if interval.chrom not in genome:
        raise ValueError(f"{interval.where}: chromosome {interval.chrom!r} is not in {genome_path} "
                         f"({_some(names)}){_naming_hint(interval.chrom, names)}")
    start, end = interval.start, interval.end
    if window is not None:
        start = (start + end) // 2 - window // 2
        end = start + window
    chromosome = genome[interval.chrom]
    if start < 0 or end > len(chromosome):
        span = f"window [{start}, {end}) around the interval's centre" if window is not None else "interval"
        raise ValueError(f"{interval.where}: {interval.chrom}:{interval.start}-{interval.end}: the {span} runs "
                         f"past the {'start' if start < 0 else 'end'} of {interval.chrom} "
                         f"({len(chromosome)} bases in {genome_path})")
    tokens = chromosome[start:end].clone()
    return reverse_complement_tokens(tokens) if interval.minus else tokens


def _some(names: list[str], shown: int = 8) -> str:
    """``"its records: a, b, ... (N in all)"``."""
    more = f", ... ({len(names)} in all)" if len(names) > shown else ""
    return f"its records: {', '.join(names[:shown])}{more}"


def _naming_hint(chrom: str, names: list[str]) -> str:
    """A hint when the genome names chromosomes the other way (``chr1`` against ``1``)."""
    other = chrom[3:] if chrom.startswith("chr") else f"chr{chrom}"
    return f"; the genome has {other!r}: the BED and the genome name chromosomes differently" if other in names else ""


def read_bed_sequences(bed: Union[str, dict[str, str]], genome: str, label_column: int = 4,
                       window: Optional[int] = None, class_names: Optional[list[str]] = None,
                       tokenizer: Optional[NucleotideTokenizer] = None) -> LabelledSequences:
    """Labelled sequences of BED intervals on ``genome``: ``bed`` is one file (labels from
    ``label_column``) or class name -> file (mapping order = class order)."""
    if (window is not None and window < 1) or label_column < 1:
        raise ValueError(f"expected window >= 1 (or None) and bed_label_column >= 1 (columns count from 1), "
                         f"got {window} and {label_column}")
    if isinstance(bed, dict):
        if class_names is not None and list(class_names) != list(bed):
            raise ValueError(f"class_names {class_names} differ from the classes of `bed` {list(bed)}")
        intervals = [i for name, path in bed.items() for i in read_bed(path, label=name)]
        names = list(bed)
    else:
        intervals = read_bed(bed, label_column)
        names = class_order([i.label for i in intervals], class_names, str(bed))
    sequences, records = read_genome(genome, {i.chrom for i in intervals}, tokenizer)
    cuts = [cut(i, sequences, records, genome, window) for i in intervals]
    return labelled(cuts, [i.label for i in intervals], names)
