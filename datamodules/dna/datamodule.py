"""DNA DataModules: nucleotide pretraining on FASTA windows, and sequence classification.

Both tokenise with :class:`~datamodules.dna.tokenizer.NucleotideTokenizer` (A C G T N, case
folded, IUPAC ambiguity codes read as N, PAD and CLS specials; ``vocab_size`` 7) and link
``{"vocab_size": 7}`` (plus ``num_classes`` for classification) to the task.

Pretraining batches: ``tokens`` (B, L) int64 windows of ``seq_len + 1`` tokens (inputs
``tokens[:, :-1]``, next-base targets ``tokens[:, 1:]``; PAD after the end of a short record).
Classification batches: see :mod:`datamodules.dna.labels`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Optional

import torch
from lightning.pytorch.utilities import rank_zero_info

from ..base import TitansDataModule
from .fasta import WindowDataset, random_windows, read_fasta, report_short_regions, split_held_out, tiled_windows
from .labels import (
    LabelledSequences,
    SequenceDataset,
    collate_sequences,
    read_csv_sequences,
    read_fasta_classes,
    stratified_split,
)
from .tokenizer import NucleotideTokenizer


class GenomicsPretrainDataModule(TitansDataModule):
    """Next-nucleotide pretraining on fixed-length windows of a FASTA file (plain or gzipped,
    one record or many: a genome, a set of contigs, a set of reads).

    The last ``val_fraction`` of all bases (records laid end to end in file order: the tail of a
    single chromosome, or the last records) is held out; training windows start uniformly at
    random anywhere in the rest, never crossing a record's end. Validation (and ``test``) windows
    tile the held-out region once. A record shorter than a window gives one window padded at
    the end.

    Args:
        path: the FASTA file.
        seq_len: tokens the model reads per window (each window holds ``seq_len + 1``).
        val_fraction: share of all bases held out for validation, in (0, 1).
        train_windows: training windows per epoch; None = as many as it takes to cover the
            training bases once (``train bases // seq_len``, at least one batch). The windows are
            drawn once from ``seed`` and reshuffled every epoch.
        val_windows: cap on validation windows (evenly spaced over the held-out region); None = all.
        rc_augment: reverse-complement each training window with probability 1/2 (both strands
            of a genome are DNA; a model trained this way sees the minus strand too).
    """

    def __init__(self, path: str = "data/dna/splice_pretrain.fa", seq_len: int = 128, val_fraction: float = 0.05,
                 train_windows: Optional[int] = None, val_windows: Optional[int] = 512,
                 rc_augment: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        if seq_len < 1 or not 0 < val_fraction < 1:
            raise ValueError(f"GenomicsPretrainDataModule: expected seq_len >= 1 and 0 < val_fraction < 1, "
                             f"got {seq_len} and {val_fraction}")
        self.path, self.seq_len, self.val_fraction = path, seq_len, val_fraction
        self.train_windows, self.val_windows, self.rc_augment = train_windows, val_windows, rc_augment
        self.tokenizer = NucleotideTokenizer()

    @property
    def data_sizes(self) -> dict[str, int]:
        return {"vocab_size": self.tokenizer.vocab_size}

    def setup(self, stage: str) -> None:
        if self.datasets:
            return
        train, val = split_held_out(read_fasta(self.path, self.tokenizer), self.val_fraction)
        # A region of one base has no next base to predict (a record's end, or a cut at its last base).
        train, val = [r for r in train if len(r) > 1], [r for r in val if len(r) > 1]
        if not train or not val:
            raise ValueError(f"{self.path}: too short to hold out {self.val_fraction} of its bases")
        length = self.seq_len + 1
        report_short_regions(train, length, "training")
        count = self.train_windows or max(sum(len(r) for r in train) // self.seq_len, self.batch_size)
        generator = torch.Generator().manual_seed(self.seed)
        training = WindowDataset(train, length, *random_windows(train, length, count, generator), self.rc_augment)
        held_out = WindowDataset(val, length, *tiled_windows(val, length, self.val_windows))
        # test reads the held-out windows too: a FASTA file has no region set apart for testing
        self.datasets = {"train": training, "val": held_out, "test": held_out}


class GenomicsClassificationDataModule(TitansDataModule):
    """Sequence classification from a CSV file or from one FASTA file per class, split into
    train / val / test per class (stratified) from ``split_seed``.

    Args:
        path: CSV with a sequence column and a label column (other columns are ignored).
        classes: class name -> FASTA file; every record of a file is one example of its class.
            When given it replaces ``path`` (``--data.classes '{"pos": a.fa, "neg": b.fa}'``
            switches a CSV recipe to FASTA files).
        sequence_column, label_column: CSV column names.
        class_names: the classes in index order (CSV only; default: the labels found, sorted,
            numerically when they are integers). A class listed with no rows is an error.
        val_fraction, test_fraction: share of each class held out for validation and test.
        split_seed: seeds the split, apart from ``seed`` (shuffling), so that training seeds can
            vary over one fixed test set.
        rc_augment: reverse-complement a training example with probability 1/2. Only for labels
            that do not depend on the strand: a splice donor read backwards is not a donor.
        rc_average: evaluation batches also carry the reverse complements; the task averages the
            class probabilities of both strands (test-time augmentation).
    """

    def __init__(self, path: Optional[str] = "data/dna/splice.csv", classes: Optional[dict[str, str]] = None,
                 sequence_column: str = "sequence", label_column: str = "label",
                 class_names: Optional[list[str]] = None, val_fraction: float = 0.1, test_fraction: float = 0.2,
                 split_seed: int = 0, rc_augment: bool = False, rc_average: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        if path is None and not classes:
            raise ValueError("GenomicsClassificationDataModule: give a CSV `path` or a `classes` mapping "
                             "class name -> FASTA file")
        self.path, self.classes = path, dict(classes) if classes else None
        self.sequence_column, self.label_column, self.class_names = sequence_column, label_column, class_names
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.rc_augment, self.rc_average = rc_augment, rc_average
        self.tokenizer = NucleotideTokenizer()
        self._data: Optional[LabelledSequences] = None
        self.splits: dict[str, torch.Tensor] = {}

    @property
    def data(self) -> LabelledSequences:
        """Every example, read once (on first use: ``data_sizes`` needs the number of classes)."""
        if self._data is None:
            self._data = self._read()
        return self._data

    def _read(self) -> LabelledSequences:
        if self.classes:
            if self.path is not None:
                rank_zero_info(f"GenomicsClassificationDataModule: reading the FASTA files of `classes`; "
                               f"`path` ({self.path}) is not used")
            if self.class_names is not None and list(self.class_names) != list(self.classes):
                raise ValueError(f"class_names {self.class_names} differ from the classes {list(self.classes)}")
            return read_fasta_classes(self.classes, self.tokenizer)
        _reject_fasta(Path(self.path))
        return read_csv_sequences(self.path, self.sequence_column, self.label_column, self.class_names,
                                  self.tokenizer)

    @property
    def data_sizes(self) -> dict[str, int]:
        return {"vocab_size": self.tokenizer.vocab_size, "num_classes": len(self.data.class_names)}

    def setup(self, stage: str) -> None:
        if not self.splits:
            self.splits = stratified_split(self.data.labels, self.data.class_names, self.val_fraction,
                                           self.test_fraction, self.split_seed)
            self.datasets = {split: self.dataset(split) for split in self.splits}

    def dataset(self, split: str) -> SequenceDataset:
        """The examples of ``split`` ("train", "val", "test") with this module's options."""
        if split == "train":
            return SequenceDataset(self.data, self.splits[split], rc_augment=self.rc_augment)
        return SequenceDataset(self.data, self.splits[split], with_rc=self.rc_average)

    def collate(self, split: str) -> Callable[[list[dict]], dict[str, torch.Tensor]]:
        return collate_sequences  # pads each batch to its longest sequence


def _reject_fasta(path: Path) -> None:
    """A FASTA file given as the CSV ``path`` is a usage error: say what to pass instead."""
    if path.is_file():
        with open(path, "rb") as f:
            start = f.read(2)
        gzipped = start == b"\x1f\x8b"
        if start[:1] == b">" or gzipped:
            kind = "a gzipped file" if gzipped else "a FASTA file"
            raise ValueError(f"{path} looks like {kind}, not a CSV: pass one FASTA per class as --data.classes "
                             f"'{{\"<class>\": \"{path}\", ...}}'")
