"""DNA DataModules: nucleotide pretraining on FASTA windows, and sequence classification.

Both tokenise with :class:`~datamodules.dna.tokenizer.NucleotideTokenizer` (A C G T N, case
folded, IUPAC ambiguity codes read as N, PAD and CLS specials; ``vocab_size`` 7) and link
``{"vocab_size": 7}`` (plus ``num_classes`` for classification) to the task.

Pretraining batches: ``tokens`` (B, L) int64 windows of ``seq_len + 1`` tokens (inputs
``tokens[:, :-1]``, next-base targets ``tokens[:, 1:]``; PAD after the end of a short record),
``mask`` (B, L) bool; prediction batches also ``index`` (B,) int64, the sequence of each window.
Classification batches: see :mod:`datamodules.dna.labels`.

Prediction (``titans predict``, ``predict_path``): both modules keep ``predict_ids`` (the name of
each sequence, by the ``index`` its batches carry); the classifier also ``label_names`` (the
classes in index order). A prediction writer reads them (see :mod:`datamodules.dna.predict`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional, Union

import torch

from ..base import TitansDataModule
from .fasta import WindowDataset, random_windows, read_fasta, report_short_regions, split_held_out, tiled_windows
from .labels import LabelledSequences, SequenceDataset, collate_sequences, stratified_split
from .predict import PredictDataset, read_predict_source
from .sources import check_sources, read_source, require_predict_path
from .splits import SplitSource, carve_validation, split_sources
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
        predict_path: sequences for ``titans predict`` (bits per nucleotide of each): FASTA
            (plain or gzipped) or CSV (``sequence_column``, and ``id_column``). Each is scored
            in windows tiled as validation's, every base but the first once.
        sequence_column, id_column: columns of a ``predict_path`` CSV; ``id_column`` None = the
            row number names each sequence.
    """

    def __init__(self, path: str = "data/dna/splice_pretrain.fa", seq_len: int = 128, val_fraction: float = 0.05,
                 train_windows: Optional[int] = None, val_windows: Optional[int] = 512,
                 rc_augment: bool = False, predict_path: Optional[str] = None, sequence_column: str = "sequence",
                 id_column: Optional[str] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if seq_len < 1 or not 0 < val_fraction < 1:
            raise ValueError(f"GenomicsPretrainDataModule: expected seq_len >= 1 and 0 < val_fraction < 1, "
                             f"got {seq_len} and {val_fraction}")
        self.path, self.seq_len, self.val_fraction = path, seq_len, val_fraction
        self.train_windows, self.val_windows, self.rc_augment = train_windows, val_windows, rc_augment
        self.predict_path, self.sequence_column, self.id_column = predict_path, sequence_column, id_column
        self.tokenizer = NucleotideTokenizer()
        #: the name of each sequence of ``predict_path`` (``index`` of a prediction batch -> name)
        self.predict_ids: list[str] = []

    @property
    def data_sizes(self) -> dict[str, int]:
        return {"vocab_size": self.tokenizer.vocab_size}

    def setup(self, stage: str) -> None:
        if stage == "predict":
            if "predict" not in self.datasets:
                self.datasets["predict"] = self.predict_dataset()
            return
        if "train" in self.datasets:
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
        self.datasets.update({"train": training, "val": held_out, "test": held_out})

    def predict_dataset(self) -> WindowDataset:
        """Windows of ``seq_len + 1`` tiling each sequence of ``predict_path`` (overlapping by one
        token, as validation's), each with its sequence's ``index``; names in ``predict_ids``."""
        named = read_predict_source(require_predict_path(self), self.sequence_column, self.id_column, self.tokenizer)
        self.predict_ids = named.ids
        length = self.seq_len + 1
        return WindowDataset(named.sequences, length, *tiled_windows(named.sequences, length, None), with_index=True)


class GenomicsClassificationDataModule(TitansDataModule):
    """Sequence classification from one of four sources, split into train / val / test:

    - a CSV (``path``), split at random per class (stratified) from ``split_seed``, or by its
      ``split_column`` (fixed splits);
    - one FASTA file per class (``classes``), split at random;
    - one source per split (``train_path``, ``val_path``, ``test_path``; fixed splits);
    - BED intervals on a reference genome (``bed`` and ``genome``), split at random.

    A fixed split without validation gets one carved from training (stratified, ``val_fraction``
    of each class, from ``split_seed``); see :mod:`datamodules.dna.splits` and
    :mod:`datamodules.dna.bed`. ``titans predict`` reads ``predict_path``.

    Args:
        path: CSV with a sequence column and a label column (other columns are ignored).
        classes: class name -> FASTA file; every record of a file is one example of its class.
            When given it replaces ``path`` (``--data.classes '{"pos": a.fa, "neg": b.fa}'``
            switches a CSV recipe to FASTA files).
        sequence_column, label_column: CSV column names (of every CSV: ``path``, the per-split
            files, ``predict_path``).
        class_names: the classes in index order (default: the training labels found, sorted,
            numerically when they are integers; a mapping's order). A class listed with no
            training example is an error.
        val_fraction, test_fraction: share of each class held out for validation and test (a
            random split; with fixed splits only ``val_fraction``, when no validation is given).
        split_seed: seeds the split, apart from ``seed`` (shuffling), so that training seeds can
            vary over one fixed test set.
        rc_augment: reverse-complement a training example with probability 1/2. Only for labels
            that do not depend on the strand: a splice donor read backwards is not a donor.
        rc_average: evaluation and prediction batches also carry the reverse complements; the
            task averages the class probabilities of both strands (test-time augmentation).
        split_column: a column of the CSV ``path`` saying each row's split: ``train``, ``val``
            or ``test``.
        train_path, val_path, test_path: one source per split, each a CSV or a mapping class ->
            FASTA file; ``train_path`` replaces ``path``.
        bed: a BED file (labels from ``bed_label_column``) or class name -> BED file; replaces
            ``path``. Needs ``genome``.
        genome: the reference genome of ``bed``: FASTA, plain or gzipped.
        bed_label_column: the BED column holding the label, counted from 1 (4: ``name``).
        window: cut every BED interval to this many bases around its centre; None = as is.
        predict_path: sequences for ``titans predict``: FASTA (plain or gzipped) or CSV
            (``sequence_column``, and ``id_column``).
        id_column: the CSV column naming each sequence to predict; None = the row number.
    """

    def __init__(self, path: Optional[str] = "data/dna/splice.csv", classes: Optional[dict[str, str]] = None,
                 sequence_column: str = "sequence", label_column: str = "label",
                 class_names: Optional[list[str]] = None, val_fraction: float = 0.1, test_fraction: float = 0.2,
                 split_seed: int = 0, rc_augment: bool = False, rc_average: bool = False,
                 split_column: Optional[str] = None, train_path: Optional[SplitSource] = None,
                 val_path: Optional[SplitSource] = None, test_path: Optional[SplitSource] = None,
                 bed: Optional[Union[str, dict[str, str]]] = None, genome: Optional[str] = None,
                 bed_label_column: int = 4, window: Optional[int] = None, predict_path: Optional[str] = None,
                 id_column: Optional[str] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.path, self.classes = path, dict(classes) if classes else None
        self.sequence_column, self.label_column, self.class_names = sequence_column, label_column, class_names
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.rc_augment, self.rc_average = rc_augment, rc_average
        self.split_column, self.sources = split_column, split_sources(train_path, val_path, test_path)
        self.bed, self.genome, self.bed_label_column, self.window = bed, genome, bed_label_column, window
        self.predict_path, self.id_column = predict_path, id_column
        check_sources(self)
        self.tokenizer = NucleotideTokenizer()
        self._source: Optional[tuple[LabelledSequences, dict[str, torch.Tensor]]] = None
        self.splits: dict[str, torch.Tensor] = {}
        #: the name of each sequence of ``predict_path`` (``index`` of a prediction batch -> name)
        self.predict_ids: list[str] = []

    @property
    def data(self) -> LabelledSequences:
        """Every example, read once (on first use: ``data_sizes`` needs the number of classes)."""
        if self._source is None:
            self._source = read_source(self)
        return self._source[0]

    @property
    def label_names(self) -> list[str]:
        """The classes in index order (the probability columns of ``predictions.csv``)."""
        return self.data.class_names

    @property
    def data_sizes(self) -> dict[str, int]:
        return {"vocab_size": self.tokenizer.vocab_size, "num_classes": len(self.label_names)}

    def setup(self, stage: str) -> None:
        if stage == "predict":
            if "predict" not in self.datasets:
                self.datasets["predict"] = self.predict_dataset()
            return
        if not self.splits:
            data, fixed = self.data, self._source[1]
            self.splits = (carve_validation(data.labels, data.class_names, fixed, self.val_fraction, self.split_seed)
                           if fixed else stratified_split(data.labels, data.class_names, self.val_fraction,
                                                          self.test_fraction, self.split_seed))
            self.datasets.update({split: self.dataset(split) for split in self.splits})

    def dataset(self, split: str) -> SequenceDataset:
        """The examples of ``split`` ("train", "val", "test") with this module's options."""
        if split == "train":
            return SequenceDataset(self.data, self.splits[split], rc_augment=self.rc_augment)
        return SequenceDataset(self.data, self.splits[split], with_rc=self.rc_average)

    def predict_dataset(self) -> PredictDataset:
        """The sequences of ``predict_path`` (their names in ``predict_ids``)."""
        named = read_predict_source(require_predict_path(self), self.sequence_column, self.id_column, self.tokenizer)
        self.predict_ids = named.ids
        return PredictDataset(named.sequences, with_rc=self.rc_average)

    def collate(self, split: str) -> Callable[[list[dict]], dict[str, torch.Tensor]]:
        return collate_sequences  # pads each batch to its longest sequence
