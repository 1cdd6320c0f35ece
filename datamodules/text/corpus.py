"""A text corpus: find its files, read them as documents, decide the splits, the token cache.

Splits are by document (a whole work goes to train, validation or test), never by position inside
a document, so held-out text shares no passage with training text. Three ways, in this order:

- fixed: ``--data.val_path`` / ``--data.test_path`` name the held-out files, ``--data.path`` is
  training only;
- dealt: the documents of ``--data.path`` are dealt to the splits by a permutation drawn from the
  seed (a positive fraction gets at least one document);
- contiguous: too few documents to deal (one file without blank lines): the token stream itself is
  cut, its last fractions held out (logged).

Each split's token stream is ``[EOD] doc [EOD] doc ...``, written once under
``<cache_dir>/<key>/`` (``datamodules/text/cache.py``) and memory-mapped afterwards; the key hashes
the files' names and bytes, the tokenizer and the split, so a second run with the same inputs starts
at once and any change builds a fresh cache beside the old one.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .formats import DATASETS_METADATA, SUFFIXES, Piece, Reading, file_format, read_pieces

SPLITS = ("train", "val", "test")
CACHE_FORMAT = 2  # bump when the layout of a cache folder changes
PARAGRAPH = "\n\n"
ALL_FORMATS = tuple(sorted(set(SUFFIXES.values())))


def find_files(path: str, option: str = "--data.path", formats: tuple[str, ...] = ("txt",)) -> list[Path]:
    """The files of ``path``: a file, a ``datasets.save_to_disk`` folder (its Arrow shards), every
    file of ``formats`` below a folder (all of one format), or a glob; sorted."""
    target = Path(path).expanduser()
    if target.is_file():
        return [target]
    if target.is_dir():
        return folder_files(target, option, formats)
    files = sorted(Path(p) for p in glob.glob(os.path.expanduser(path), recursive=True) if Path(p).is_file())
    if not files:
        raise FileNotFoundError(f"TextDataModule: {option} {path!r} matches no file; expected a file, "
                                "a folder or a glob such as 'books/**/*.txt'")
    return files


def folder_files(folder: Path, option: str, formats: tuple[str, ...]) -> list[Path]:
    """The corpus files below ``folder``: see :func:`find_files`."""
    if (folder / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in folder.iterdir() if p.is_dir())
        raise ValueError(f"TextDataModule: {option} {str(folder)!r} is a saved DatasetDict (splits: "
                         f"{', '.join(splits)}); give one split's folder, e.g. --data.path {folder}/train "
                         f"--data.val_path {folder}/validation")
    if (folder / "state.json").is_file() and "arrow" in formats:
        state = json.loads((folder / "state.json").read_text())
        return [folder / f["filename"] for f in state.get("_data_files", [])] or sorted(folder.glob("data-*.arrow"))
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in DATASETS_METADATA
                   and file_format(p) in formats)
    kinds = sorted({file_format(p) for p in files})
    if not files:
        names = ", ".join(f".{k}" for k in formats)
        raise FileNotFoundError(f"TextDataModule: the folder {str(folder)!r} ({option}) holds no corpus file "
                                f"({names})")
    if len(kinds) > 1:
        raise ValueError(f"TextDataModule: the folder {str(folder)!r} ({option}) mixes {', '.join(kinds)} files; "
                         f"name one format with a glob, e.g. '{folder}/**/*.{kinds[0]}'")
    return files


def decode_utf8(file: Path, data: bytes) -> str:
    """``data`` as text; an invalid byte raises naming the file, the byte offset and the line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(f"{file}: byte {error.start} (line {line}) is not valid UTF-8 ({error.reason}); "
                         "the text DataModule reads UTF-8: convert the file first, "
                         "e.g. `iconv -f latin1 -t utf-8`") from None


def corpus_root(files: list[Path]) -> Path:
    """The deepest folder holding every file (document names are relative to it)."""
    parents = [str(f.resolve().parent) for f in files]
    return Path(os.path.commonpath(parents))


@dataclass(frozen=True)
class Source:
    """The files of one ``--data.*`` path and how their documents are read."""

    option: str
    files: tuple[Path, ...]
    column: str = "text"
    separator: Optional[str] = None

    def pieces(self, reading: Reading) -> Iterator[Piece]:
        """Every document's pieces, file by file, in order."""
        root = corpus_root(list(self.files))
        for file in self.files:
            yield from read_pieces(file, str(file.resolve().relative_to(root)), self.column, self.separator, reading)

    def digest(self) -> bytes:
        """A hash of the files' names (relative to their root) and bytes, read in blocks."""
        digest = hashlib.blake2b(digest_size=16)
        root = corpus_root(list(self.files))
        for file in self.files:
            digest.update(str(file.resolve().relative_to(root)).encode() + b"\0")
            digest.update(file_digest(file))
        return digest.digest()


def file_digest(file: Path) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    with open(file, "rb") as stream:
        while block := stream.read(1 << 22):
            digest.update(block)
    return digest.digest()


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """``(train, val, test)`` document counts: a positive fraction gets at least one document."""
    def count(fraction: float) -> int:
        return 0 if fraction <= 0 else max(1, round(n * fraction))

    val, test = count(val_fraction), count(test_fraction)
    return n - val - test, val, test


@dataclass
class Survey:
    """A first pass over a source: the UTF-8 bytes of each document (in reading order), and the
    empty records skipped. Memory: 8 bytes per document, never the text."""

    sizes: array = field(default_factory=lambda: array("q"))
    reading: Reading = field(default_factory=Reading)

    @classmethod
    def of(cls, source: Source) -> Survey:
        survey = cls()
        for piece in source.pieces(survey.reading):
            size = len(piece.text.encode("utf-8"))
            if piece.start:
                survey.sizes.append(size)
            else:
                survey.sizes[-1] += size
        return survey

    @property
    def documents(self) -> int:
        return len(self.sizes)

    @property
    def bytes(self) -> int:
        return int(sum(self.sizes))


@dataclass(frozen=True)
class Plan:
    """Which split each document goes to. ``mode``: ``fixed`` (``sources`` by split), ``dealt``
    (``labels[i]``: the split index of the i-th document of ``sources["train"]``) or ``contiguous``
    (the one stream of ``sources["train"]``, cut at ``fractions``)."""

    mode: str
    sources: dict[str, Source]
    surveys: dict[str, Survey]
    labels: Optional[np.ndarray] = None
    fractions: tuple[float, float] = (0.0, 0.0)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.surveys.values())

    def split_bytes(self, split: str) -> int:
        """UTF-8 bytes of ``split``'s documents (the contiguous mode: its share of the stream)."""
        if self.mode == "fixed":
            return self.surveys[split].bytes if split in self.surveys else 0
        if self.mode == "contiguous":
            shares = dict(zip(SPLITS, contiguous_shares(self.bytes, *self.fractions)))
            return shares[split]
        sizes = np.frombuffer(self.surveys["train"].sizes, dtype=np.int64)
        return int(sizes[self.labels == SPLITS.index(split)].sum())

    def labelled(self, reading: Reading) -> Iterator[tuple[str, Piece]]:
        """``(output, piece)`` for every piece: output is the split, or ``stream`` (contiguous)."""
        if self.mode == "fixed":
            for split, source in self.sources.items():
                yield from ((split, p) for p in source.pieces(reading))
            return
        if self.mode == "contiguous":
            yield from (("stream", p) for p in self.sources["train"].pieces(reading))
            return
        document = -1
        for piece in self.sources["train"].pieces(reading):
            document += piece.start
            yield SPLITS[self.labels[document]], piece

    def training_texts(self) -> Iterator[str]:
        """The training text only, for a tokenizer to learn (contiguous: the first train share)."""
        budget = self.split_bytes("train") if self.mode == "contiguous" else None
        for split, piece in self.labelled(Reading()):
            if budget is not None:
                if budget <= 0:
                    return
                text = piece.text.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
                budget -= len(text.encode("utf-8"))
                yield text
            elif split in ("train", "stream"):
                yield piece.text


def contiguous_shares(total: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """``(train, val, test)`` sizes of a stream of ``total`` cut at the fractions (the last ones held out)."""
    val, test = round(total * val_fraction), round(total * test_fraction)
    return total - val - test, val, test


def deal(documents: int, val_fraction: float, test_fraction: float, seed: int) -> Optional[np.ndarray]:
    """(documents,) int8 split index (0 train, 1 val, 2 test) by a permutation drawn from ``seed``;
    None when the documents cannot be dealt (fewer than splits)."""
    n_train, n_val, _ = split_sizes(documents, val_fraction, test_fraction)
    if n_train < 1:
        return None
    order = np.random.default_rng(seed).permutation(documents)
    labels = np.zeros(documents, dtype=np.int8)
    labels[order[n_train:n_train + n_val]] = 1
    labels[order[n_train + n_val:]] = 2
    return labels


def make_plan(sources: dict[str, Source], val_fraction: float, test_fraction: float, seed: int) -> Plan:
    """Survey every source, then fix, deal or cut the splits (see the module docstring)."""
    surveys = {split: Survey.of(source) for split, source in sources.items()}
    if not any(s.documents for s in surveys.values()):
        files = sum(len(s.files) for s in sources.values())
        raise ValueError(f"TextDataModule: the corpus {sources['train'].option} ({files} file(s)) holds no text")
    if len(sources) > 1:
        return Plan("fixed", sources, surveys)
    labels = deal(surveys["train"].documents, val_fraction, test_fraction, seed)
    if labels is None:
        return Plan("contiguous", sources, surveys, fractions=(val_fraction, test_fraction))
    return Plan("dealt", sources, surveys, labels)


def cache_key(sources: dict[str, Source], spec: dict) -> str:
    """A hash of every source's files (names and bytes) and of ``spec`` (tokenizer, split, format)."""
    digest = hashlib.blake2b(json.dumps({**spec, "format": CACHE_FORMAT}, sort_keys=True).encode(), digest_size=16)
    for split, source in sorted(sources.items()):
        digest.update(split.encode() + b"\0" + source.digest())
    return digest.hexdigest()
