"""Fixed train / val / test splits: a split column of one CSV, or one source per split.

Genomic Benchmarks and the Nucleotide Transformer tasks ship a fixed train / test split (and no
validation set); their numbers are only comparable on that split, not on a random one. Here:

- ``split_column``: a column of the CSV ``path`` whose values are ``train``, ``val`` or ``test``
  (exactly; any other value is an error naming the file, line and value);
- ``train_path`` / ``val_path`` / ``test_path``: each a CSV (sequence and label columns) or a
  mapping class name -> FASTA file, as ``path`` and ``classes`` are.

The classes are those of the training split (sorted, numerically when integers, or the order of a
training mapping, or ``class_names``); a val or test label outside them is an error. When no
validation split is given, it is carved from training, stratified: ``val_fraction`` of each class,
drawn from ``split_seed``. A missing test split stays missing (``titans test`` then says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import Tensor

from .labels import (
    LabelledSequences,
    class_order,
    encode_rows,
    labelled,
    read_csv_columns,
    read_fasta_classes,
    reject_fasta,
    stratified_split,
)
from .tokenizer import NucleotideTokenizer

SPLITS = ("train", "val", "test")
#: a split's source: a CSV path, or class name -> FASTA file
SplitSource = Union[str, dict[str, str]]


@dataclass
class SplitPart:
    """The examples of one split: (L_i,) uint8 token ids, labels as class names, and where they
    were read (for errors)."""

    sequences: list[Tensor]
    labels: list[str]
    source: str


def read_split_column(path: str, sequence_column: str, label_column: str, split_column: str,
                      tokenizer: Optional[NucleotideTokenizer] = None) -> dict[str, SplitPart]:
    """The splits of one CSV by its ``split_column`` (values ``train``, ``val``, ``test``).

    Raises ValueError naming the file, line and value for a split value outside those three, and
    as ``read_csv_sequences`` otherwise (missing columns, empty values, bad characters).
    """
    reject_fasta(path, "classes")
    frame = read_csv_columns(path, {"sequence_column": sequence_column, "label_column": label_column,
                                    "split_column": split_column})
    sequences = encode_rows(path, frame, sequence_column, {label_column: "a label", split_column: "a split"},
                            tokenizer)
    splits, labels = frame[split_column].to_list(), frame[label_column].to_list()
    for row, value in enumerate(splits, start=2):
        if value not in SPLITS:
            raise ValueError(f"{path} line {row}: {split_column!r} (split_column) is {value!r}; expected one of "
                             f"{', '.join(SPLITS)}")
    return {split: SplitPart([s for s, v in zip(sequences, splits) if v == split],
                             [y for y, v in zip(labels, splits) if v == split], f"{path} ({split} rows)")
            for split in SPLITS if split in splits}


def read_split_sources(sources: dict[str, SplitSource], sequence_column: str, label_column: str,
                       tokenizer: Optional[NucleotideTokenizer] = None) -> dict[str, SplitPart]:
    """Split name -> its examples, each split from its own CSV or class-to-FASTA mapping."""
    parts = {}
    for split, source in sources.items():
        if isinstance(source, dict):
            data = read_fasta_classes(source, tokenizer)
            names = [data.class_names[i] for i in data.labels.tolist()]
            parts[split] = SplitPart(data.sequences, names, f"{split}_path {sorted(source.values())}")
            continue
        reject_fasta(source, f"{split}_path")
        frame = read_csv_columns(source, {"sequence_column": sequence_column, "label_column": label_column})
        sequences = encode_rows(source, frame, sequence_column, {label_column: "a label"}, tokenizer)
        parts[split] = SplitPart(sequences, frame[label_column].to_list(), str(source))
    return parts


def join_splits(parts: dict[str, SplitPart], class_names: Optional[list[str]]) -> tuple[LabelledSequences,
                                                                                       dict[str, Tensor]]:
    """Every example in one ``LabelledSequences`` (train, then val, then test) and the (N_split,)
    indices of each given split. ``class_names``: the class order (default: the training labels
    sorted). Raises ValueError for no training split or a label the training split lacks."""
    if "train" not in parts:
        raise ValueError(f"no training examples: the splits given are {list(parts)} (a split column needs "
                         f"'train' rows, per-split files a train_path)")
    names = class_order(parts["train"].labels, class_names, parts["train"].source)
    for part in parts.values():
        unknown = sorted(set(part.labels) - set(names))
        if unknown:
            raise ValueError(f"{part.source}: labels {unknown} are not classes of the training split {names}")
    sequences, labels, splits = [], [], {}
    for split, part in parts.items():
        splits[split] = torch.arange(len(sequences), len(sequences) + len(part.sequences))
        sequences += part.sequences
        labels += part.labels
    return labelled(sequences, labels, names), splits


def carve_validation(labels: Tensor, class_names: list[str], splits: dict[str, Tensor], val_fraction: float,
                     seed: int) -> dict[str, Tensor]:
    """``splits`` with a validation split carved from training when it has none: ``val_fraction``
    of each training class, drawn from ``seed`` (as ``stratified_split``)."""
    if "val" in splits:
        return splits
    train = splits["train"]
    inner = stratified_split(labels[train], class_names, val_fraction, 0.0, seed)
    return {**splits, "train": train[inner["train"]], "val": train[inner["val"]]}


def split_sources(train: Optional[SplitSource], val: Optional[SplitSource],
                  test: Optional[SplitSource]) -> dict[str, SplitSource]:
    """The per-split sources that are given, by split name."""
    return {split: source for split, source in zip(SPLITS, (train, val, test)) if source is not None}

