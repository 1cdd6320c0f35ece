"""The sources of :class:`~datamodules.dna.GenomicsClassificationDataModule`: which one its
arguments choose (checked when it is built, so a contradiction fails before any file is read),
and reading it as every example plus the splits the source fixes.

``options`` is the DataModule (its arguments as attributes); the sources, by precedence:
``bed`` + ``genome`` (BED intervals), ``train_path`` (+ ``val_path``, ``test_path``: one source
per split), ``classes`` (one FASTA per class), ``path`` (a CSV, with or without ``split_column``).
Only one of the first three may be given; any of them replaces ``path``.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from lightning.pytorch.utilities import rank_zero_info

from .bed import read_bed_sequences
from .labels import LabelledSequences, read_csv_sequences, read_fasta_classes, reject_fasta
from .splits import join_splits, read_split_column, read_split_sources

Source = tuple[LabelledSequences, dict[str, torch.Tensor]]


def chosen_sources(options: Any) -> list[str]:
    """The arguments given among those that replace ``path``: ``classes``, ``train_path``, ``bed``."""
    given = {"classes": options.classes, "train_path": options.sources.get("train"), "bed": options.bed}
    return [name for name, value in given.items() if value]


def class_mapping(options: Any) -> Optional[dict[str, str]]:
    """The class -> file mapping that fixes the class order, if the source is one."""
    for mapping in (options.classes, options.bed, options.sources.get("train")):
        if isinstance(mapping, dict):
            return mapping
    return None


def check_sources(options: Any) -> None:
    """Raise ValueError, saying what to give instead, when the arguments name no source, more
    than one, or options that do not go with the chosen one."""
    name, given = type(options).__name__, chosen_sources(options)
    if len(given) > 1:
        raise ValueError(f"{name}: give one source, not both {' and '.join(given)}")
    if options.sources and "train" not in options.sources:
        raise ValueError(f"{name}: {' and '.join(f'{s}_path' for s in options.sources)} given without train_path")
    if (options.bed is None) != (options.genome is None):
        raise ValueError(f"{name}: bed and genome go together (BED intervals are cut from the genome's FASTA); "
                         f"got bed={options.bed!r}, genome={options.genome!r}")
    if options.window is not None and options.bed is None:
        raise ValueError(f"{name}: window cuts BED intervals around their centres; give --data.bed and --data.genome")
    if options.split_column and given:
        raise ValueError(f"{name}: split_column splits the CSV `path`; {given[0]} is given instead")
    if options.path is None and not given:
        raise ValueError(f"{name}: give a CSV `path`, a `classes` mapping class name -> FASTA file, a "
                         f"train_path, or bed and genome")
    mapping = class_mapping(options)
    if options.class_names is not None and mapping is not None and list(options.class_names) != list(mapping):
        raise ValueError(f"{name}: class_names {list(options.class_names)} differ from the classes "
                         f"{list(mapping)} of `{given[0]}`")


def read_source(options: Any) -> Source:
    """Every example of the chosen source, and the (N_split,) indices of each split it fixes
    (``{}``: none, the DataModule splits at random)."""
    given = chosen_sources(options)
    if given and options.path is not None:
        rank_zero_info(f"{type(options).__name__}: reading `{given[0]}`; `path` ({options.path}) is not used")
    if options.bed is not None:
        return read_bed_sequences(options.bed, options.genome, options.bed_label_column, options.window,
                                  options.class_names, options.tokenizer), {}
    if options.sources:
        mapping = class_mapping(options)
        parts = read_split_sources(options.sources, options.sequence_column, options.label_column, options.tokenizer)
        return join_splits(parts, options.class_names or (list(mapping) if mapping else None))
    if options.classes:
        return read_fasta_classes(options.classes, options.tokenizer), {}
    if options.split_column:
        return join_splits(read_split_column(options.path, options.sequence_column, options.label_column,
                                             options.split_column, options.tokenizer), options.class_names)
    reject_fasta(options.path, "classes")
    return read_csv_sequences(options.path, options.sequence_column, options.label_column, options.class_names,
                              options.tokenizer), {}


def require_predict_path(options: Any) -> str:
    """``options.predict_path``, or a ValueError saying how to give one."""
    if options.predict_path is None:
        raise ValueError(f"{type(options).__name__}: nothing to predict; give --data.predict_path (a FASTA file, "
                         f"plain or gzipped, or a CSV with a {options.sequence_column!r} column)")
    return options.predict_path
