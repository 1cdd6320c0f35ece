"""Labelled sequences for classification: reading (CSV or one FASTA per class), the stratified
split, and the padded batches.

Shape legend: B batch, T = longest sequence of the batch + 1 (the CLS token).

Batch contract of :class:`~datamodules.dna.GenomicsClassificationDataModule`::

    tokens  (B, T) int64  bases, then CLS right after the last base, then PAD
    mask    (B, T) bool   True on bases and CLS
    labels  (B,)   int64  class index (the order of ``class_names``)
    rc_tokens, rc_mask    the same for the reverse complements (evaluation, with rc_average only)

Prediction batches have no ``labels`` but ``index`` (B,) int64: the sequence's position in the
prediction file (its name is ``predict_ids[index]`` of the DataModule).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import polars as pl
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .fasta import FastaFormatError, looks_like_fasta, read_fasta
from .tokenizer import CLS, PAD, NucleotideTokenizer, as_tensor, reverse_complement_tokens


@dataclass
class LabelledSequences:
    """Every example of a classification source: (L_i,) uint8 token ids and a class index each."""

    sequences: list[Tensor]
    labels: Tensor
    class_names: list[str]


def class_order(found: Sequence[str], given: Optional[Sequence[str]], source: str) -> list[str]:
    """The class list: ``given`` if set (every found label must be in it and every class must
    have an example), else the found labels sorted (numerically when they are all integers)."""
    found_set = set(found)
    if given is None:
        integers = all(label.lstrip("-").isdigit() for label in found_set)
        return sorted(found_set, key=int if integers else str)
    unknown = sorted(found_set - set(given))
    if unknown:
        raise ValueError(f"{source}: labels {unknown} are not in class_names {list(given)}")
    empty = [name for name in given if name not in found_set]
    if empty:
        raise ValueError(f"{source}: class {empty[0]!r} has no examples (class_names {list(given)})")
    return list(given)


def reject_fasta(path: str | Path, option: str) -> None:
    """A FASTA file (plain or gzipped) given where a CSV is expected is a usage error: say what
    to pass instead (one FASTA per class, as the mapping ``--data.<option>``)."""
    if Path(path).is_file() and looks_like_fasta(path):
        raise ValueError(f"{path} looks like a FASTA file, not a CSV: pass one FASTA per class as --data.{option} "
                         f"'{{\"<class>\": \"{path}\", ...}}'")


def read_csv_columns(path: str | Path, columns: dict[str, str]) -> pl.DataFrame:
    """A CSV file (plain or gzipped) read as text, checked to have ``columns`` (role -> column
    name, the role named in the error, e.g. ``{"sequence_column": "seq"}``); row r of the frame
    is line r + 2 of the file (header = line 1).

    Raises FileNotFoundError, or ValueError naming the file, the missing column and the header.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {path}")
    frame = pl.read_csv(path, infer_schema=False)
    for role, column in columns.items():
        if column not in frame.columns:
            raise ValueError(f"{path}: no column {column!r} ({role}); the header has {frame.columns}")
    return frame


def encode_rows(path: str | Path, frame: pl.DataFrame, sequence_column: str, others: Optional[dict[str, str]] = None,
                tokenizer: Optional[NucleotideTokenizer] = None) -> list[Tensor]:
    """(L_i,) uint8 token ids of each row's sequence. ``others``: column -> what it holds (``"a
    label"``), columns that must not be empty either. An empty value is a ValueError naming the
    file, line and column."""
    tokenizer, others = tokenizer or NucleotideTokenizer(), others or {}
    needs = ["a sequence", *others.values()]
    needs = f"{', '.join(needs[:-1])} and {needs[-1]}" if len(needs) > 1 else needs[0]
    sequences = []
    for row, values in enumerate(frame.select(sequence_column, *others).iter_rows(), start=2):
        empty = next((c for c, v in zip((sequence_column, *others), values) if not v), None)
        if empty is not None:
            raise ValueError(f"{path} line {row}: empty {empty!r}; every row needs {needs}")
        sequences.append(as_tensor(tokenizer.encode_text(values[0], f"{path} line {row}")))
    return sequences


def read_csv_sequences(path: str | Path, sequence_column: str, label_column: str,
                       class_names: Optional[Sequence[str]] = None,
                       tokenizer: Optional[NucleotideTokenizer] = None) -> LabelledSequences:
    """Sequences and labels from two columns of a CSV file (read as text, other columns ignored).

    Raises (naming the file, and the row as its line number in the file, header = line 1):
        FileNotFoundError; ValueError for a missing column, an empty sequence or label, a label
        outside ``class_names`` or a class of ``class_names`` with no examples;
        InvalidNucleotideError for a non-IUPAC character (row and position).
    """
    frame = read_csv_columns(path, {"sequence_column": sequence_column, "label_column": label_column})
    sequences = encode_rows(path, frame, sequence_column, {label_column: "a label"}, tokenizer)
    labels = frame[label_column].to_list()
    return labelled(sequences, labels, class_order(labels, class_names, str(path)))


def labelled(sequences: list[Tensor], labels: Sequence[str], class_names: list[str]) -> LabelledSequences:
    """Examples with their labels given as class names (every one in ``class_names``)."""
    index = {name: i for i, name in enumerate(class_names)}
    return LabelledSequences(sequences, torch.tensor([index[label] for label in labels], dtype=torch.long),
                             class_names)


def read_fasta_classes(classes: dict[str, str], tokenizer: Optional[NucleotideTokenizer] = None) -> LabelledSequences:
    """Every record of each class's FASTA file is one example of that class (mapping order =
    class index order). A file with no records is a class with no examples: an error."""
    sequences, labels = [], []
    for index, (name, path) in enumerate(classes.items()):
        try:
            records = read_fasta(path, tokenizer)
        except FastaFormatError as error:
            if "no FASTA records" not in str(error):
                raise
            raise ValueError(f"class {name!r} has no examples: {error}") from None
        sequences += [r.tokens for r in records]
        labels += [index] * len(records)
    return LabelledSequences(sequences, torch.tensor(labels), list(classes))


def stratified_split(labels: Tensor, class_names: Sequence[str], val_fraction: float,
                     test_fraction: float, seed: int) -> dict[str, Tensor]:
    """Indices of train / val / test: each class shuffled (from ``seed``) and cut in the same
    proportions, ``round(n * fraction)`` examples of a class of n to val and to test.

    Raises ValueError if a class has no example left for training.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"expected val_fraction, test_fraction >= 0 with a sum below 1, "
                         f"got {val_fraction} and {test_fraction}")
    generator = torch.Generator().manual_seed(seed)
    parts: dict[str, list[Tensor]] = {"train": [], "val": [], "test": []}
    for c, name in enumerate(class_names):
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_test, n_val = round(len(members) * test_fraction), round(len(members) * val_fraction)
        if len(members) - n_test - n_val < 1:
            raise ValueError(f"class {name!r} has {len(members)} examples: none left for training after "
                             f"{n_val} to validation and {n_test} to test")
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test:n_test + n_val])
        parts["train"].append(members[n_test + n_val:])
    # One fixed random order per split, so that any prefix of val or test mixes the classes.
    merged = {split: torch.cat(chunks) for split, chunks in parts.items()}
    return {split: idx[torch.randperm(len(idx), generator=generator)] for split, idx in merged.items()}


class SequenceDataset(Dataset):
    """Examples ``{"tokens": (L,) int64, "label": int}`` of the chosen indices.

    ``rc_augment``: replace an example by its reverse complement with probability 1/2.
    ``with_rc``: also return ``"rc_tokens"`` (for the reverse-complement test-time average).
    """

    def __init__(self, data: LabelledSequences, indices: Tensor, rc_augment: bool = False,
                 with_rc: bool = False) -> None:
        self.data, self.indices = data, indices
        self.rc_augment, self.with_rc = rc_augment, with_rc

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        j = int(self.indices[i])
        tokens = self.data.sequences[j].long()
        if self.rc_augment and torch.rand(()) < 0.5:
            tokens = reverse_complement_tokens(tokens)
        item = {"tokens": tokens, "label": int(self.data.labels[j])}
        if self.with_rc:
            item["rc_tokens"] = reverse_complement_tokens(tokens)
        return item


def pad_with_cls(sequences: list[Tensor]) -> tuple[Tensor, Tensor]:
    """(B, T) tokens (each sequence, then CLS, then PAD) and its (B, T) mask of real tokens."""
    tokens = torch.full((len(sequences), max(len(s) for s in sequences) + 1), PAD, dtype=torch.long)
    for i, s in enumerate(sequences):
        tokens[i, : len(s)] = s
        tokens[i, len(s)] = CLS
    return tokens, tokens != PAD


def collate_sequences(items: list[dict]) -> dict[str, Tensor]:
    """Stack examples into the batch contract of the module docstring (``labels`` from items with
    a ``label``, ``index`` from items with an ``index``: prediction)."""
    tokens, mask = pad_with_cls([item["tokens"] for item in items])
    batch = {"tokens": tokens, "mask": mask}
    for key, name in (("label", "labels"), ("index", "index")):
        if key in items[0]:
            batch[name] = torch.tensor([item[key] for item in items], dtype=torch.long)
    if "rc_tokens" in items[0]:
        batch["rc_tokens"], batch["rc_mask"] = pad_with_cls([item["rc_tokens"] for item in items])
    return batch
