"""Synthetic needle-in-a-haystack data (RULER S-NIAH, MK-NIAH, MV-NIAH) for long-context work.

A sample is one byte-level token sequence of ``L + 1`` tokens (the model reads ``L`` of them)::

    [EOD] filler[:p] NEEDLE filler[p:] QUESTION ANSWER
    NEEDLE   = "The pass key is 71432. Remember it. 71432 is the pass key. "
    QUESTION = "\\nWhat is the pass key? The pass key is "        ANSWER = "71432"

The needle starts at the sentence (or line) boundary ``p`` of the filler nearest to
``depth * len(filler)``: depth 0 puts it first, depth 1 right before the question. The needle is a
number (the pass key), a pronounceable pseudo-word (RULER's word needle) or hex digits in uuid
layout. The filler (haystack) is either RULER's repeated noise ("The grass is green. The sky is
blue. ...") or a random slice of a text corpus (by default the shipped Shakespeare; training draws
from its first 90% of bytes, evaluation from the last 10%, so no evaluation haystack was trained on).
``task="multikey"`` / ``"multivalue"`` hide several needles instead (``niah_ruler.py``).

Batch contract, shape legend B batch, T = L, A answer tokens. Training batches follow the text
DataModule's (``datamodules/text/datamodule.py``), so ``LanguageModelingTask`` trains on them as they are::

    {"input": (B, T) int64, "target": (B, T) int64, "target_bytes": (B, T) int64,
     "loss_mask": (B, T) bool (True on the A targets that are answer tokens)}

Evaluation batches (one context length per batch) add what exact-match scoring needs::

    {"answer": (B, A) int64, "prompt_len": (B,) int64 (L + 1 - A: tokens before the answer),
     "length": (B,) int64 (L), "depth": (B,) float32 (requested depth), "needle_start": (B,) int64
     (first token of the needle at the requested depth)}

Every sample is a pure function of ``(data_seed, split, index, length)``: loader workers, reruns
and machines agree without storing anything. Pieces: ``niah_samples.py`` (needles, haystacks, the
single needle), ``niah_ruler.py`` (multi-key, multi-value), ``niah_batches.py`` (datasets),
``niah_curriculum.py`` (training length schedules). This package never imports the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Optional, Union

from torch.utils.data import DataLoader

from ..base import TitansDataModule
from .niah_batches import SPLIT_IDS, GroupedBatches, NeedleSet, only_item, same_length_groups
from .niah_curriculum import CURRICULA, Curriculum, CurriculumBatches, GrowSampler, batch_lengths
from .niah_ruler import TASKS, NeedleSpec, NeedleTaskName
from .niah_samples import (
    DEFAULT_NEEDLE_LEN,
    NOISE,
    TEMPLATES,
    Haystack,
    NeedleKind,
    NeedleSample,
    insertion_point,
    make_sample,
    needle_value,
    read_corpus,
    to_item,
)
from .tokenizer import ByteTokenizer, TextTokenizer, open_tokenizer

__all__ = ["NOISE", "SPLIT_IDS", "TEMPLATES", "GroupedBatches", "Haystack", "NeedleDataModule", "NeedleSample",
           "NeedleSet", "NeedleSpec", "insertion_point", "make_sample", "needle_value", "only_item",
           "same_length_groups", "to_item"]
TRAIN_SHARE = 0.9  # of a text haystack's bytes; evaluation haystacks come from the rest


class NeedleDataModule(TitansDataModule):
    """Needle-in-a-haystack samples: training at one context length (or a schedule of lengths, one
    per batch) with uniform random depths, evaluation on a grid of context lengths x needle depths
    (the NIAH accuracy table); the test grid may reach 1M tokens with fewer samples per cell.

    Args:
        needle: ``number`` (the pass key), ``word`` (a pseudo-word) or ``uuid`` (hex digits).
        needle_len: digits, letters or hex digits of the needle; None = 5, 6 or 8 by kind.
        haystack: ``noise`` (RULER's repeated sentences, as in its S-NIAH pass-key task) or
            ``text`` (random slices of ``haystack_path``).
        haystack_path: a UTF-8 file, folder of ``.txt`` files or glob; used when haystack is text.
        train_length: tokens the model reads per training sample (bytes; one more is stored). A list
            is a schedule, as ``train_lengths``.
        train_samples: training samples per epoch (each a fresh haystack, needle and depth).
        eval_lengths: context lengths of the validation grid (and of the test grid unless
            ``test_lengths``).
        depths: needle depths of the grids, in [0, 1] (0 = first, 1 = right before the question).
        samples_per_cell: samples per (length, depth) cell of each grid.
        eval_batch_size: samples per evaluation batch (one length per batch); None = batch_size.
        data_seed: seeds every sample (validation and test draw from separate streams).
        task: ``single`` (one needle, S-NIAH), ``multikey`` (MK-NIAH: ``num_needles`` needles with
            distinct keys, one asked) or ``multivalue`` (MV-NIAH: ``num_values`` values of one key,
            all asked; the answer is the values in the order they stand, joined by ", ").
        num_needles: needles of a multikey haystack, the asked one included (RULER's num_needle_k).
        num_values: values (needles) of a multivalue haystack.
        train_lengths: training lengths of a schedule set by ``curriculum``; when given, it replaces
            ``train_length`` (so a recipe's ``train_length`` yields to ``--data.train_lengths``).
        curriculum: ``cycle`` (batch i has length ``lengths[i % n]``), ``mix`` (each batch draws one
            length uniformly) or ``grow`` (equal stages of ``curriculum_steps`` optimizer steps, one
            length each, in list order): see ``niah_curriculum.py``.
        curriculum_steps: steps the ``grow`` stages divide; None = the trainer's ``max_steps``.
        test_lengths: context lengths of the test grid (e.g. 1K to 1M); None = ``eval_lengths``.
        test_samples_per_cell: samples per test cell: one count for every length, or a list with
            one count per test length (fewer at the long end); None = ``samples_per_cell``.
        batch_size, num_workers, seed, pin_memory, shuffle: see :class:`TitansDataModule`.
    """

    def __init__(
        self,
        needle: NeedleKind = "number",
        needle_len: Optional[int] = None,
        haystack: Literal["noise", "text"] = "noise",
        haystack_path: str = "data/text/shakespeare",
        train_length: Union[int, Sequence[int]] = 512,
        train_samples: int = 100_000,
        eval_lengths: Sequence[int] = (512,),
        depths: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
        samples_per_cell: int = 8,
        eval_batch_size: Optional[int] = None,
        data_seed: int = 0,
        task: NeedleTaskName = "single",
        num_needles: int = 4,
        num_values: int = 4,
        train_lengths: Optional[Sequence[int]] = None,
        curriculum: Curriculum = "cycle",
        curriculum_steps: Optional[int] = None,
        test_lengths: Optional[Sequence[int]] = None,
        test_samples_per_cell: Optional[Union[int, Sequence[int]]] = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.needle, self.haystack_kind, self.haystack_path = needle, haystack, haystack_path
        self.needle_len = DEFAULT_NEEDLE_LEN.get(needle, 1) if needle_len is None else needle_len
        self.spec = NeedleSpec(task, needle, self.needle_len, num_needles, num_values)
        schedule = train_length if train_lengths is None else train_lengths
        self.train_lengths = [int(n) for n in (schedule if isinstance(schedule, Sequence) else [schedule])]
        self.train_length, self.train_samples = schedule, train_samples
        self.curriculum, self.curriculum_steps = curriculum, curriculum_steps
        self.eval_lengths, self.depths = [int(n) for n in eval_lengths], [float(d) for d in depths]
        self.test_lengths = self.eval_lengths if test_lengths is None else [int(n) for n in test_lengths]
        counts = samples_per_cell if test_samples_per_cell is None else test_samples_per_cell
        counts = counts if isinstance(counts, Sequence) else [counts] * len(self.test_lengths)
        self.test_samples = [int(c) for c in counts]  # per test length
        self.samples_per_cell, self.data_seed = samples_per_cell, data_seed
        self.eval_batch_size = self.batch_size if eval_batch_size is None else eval_batch_size
        self.tokenizer = ByteTokenizer()
        self.validate()

    @property
    def task(self) -> str:
        return self.spec.task

    def validate(self) -> None:
        """Raise on any argument outside its range, naming it (nothing is silently changed)."""
        name = type(self).__name__
        if self.needle not in TEMPLATES:
            raise ValueError(f"{name}.needle: expected one of {list(TEMPLATES)}, got {self.needle!r}")
        if self.haystack_kind not in ("noise", "text"):
            raise ValueError(f"{name}.haystack: expected 'noise' or 'text', got {self.haystack_kind!r}")
        for field, allowed in (("task", TASKS), ("curriculum", CURRICULA)):
            if getattr(self, field) not in allowed:
                raise ValueError(f"{name}.{field}: expected one of {list(allowed)}, got {getattr(self, field)!r}")
        for field in ("needle_len", "train_samples", "samples_per_cell", "eval_batch_size"):
            if getattr(self, field) < 1:
                raise ValueError(f"{name}.{field}: expected >= 1, got {getattr(self, field)}")
        for field in ("num_needles", "num_values"):
            if getattr(self.spec, field) < 1:
                raise ValueError(f"{name}.{field}: expected >= 1, got {getattr(self.spec, field)}")
        if self.curriculum_steps is not None and self.curriculum_steps < 1:
            raise ValueError(f"{name}.curriculum_steps: expected >= 1 or None, got {self.curriculum_steps}")
        if not self.train_lengths or not self.eval_lengths or not self.depths:
            raise ValueError(f"{name}: train_length, eval_lengths and depths must each hold at least one value")
        if not self.test_lengths:
            raise ValueError(f"{name}.test_lengths: expected at least one length, or None (= eval_lengths)")
        if len(self.test_samples) != len(self.test_lengths) or min(self.test_samples) < 1:
            raise ValueError(f"{name}.test_samples_per_cell: expected a count >= 1, or one per test length "
                             f"({len(self.test_lengths)}), got {self.test_samples}")
        if self.train_samples < self.batch_size:
            raise ValueError(f"{name}.train_samples: expected >= batch_size ({self.batch_size}), "
                             f"got {self.train_samples}")
        bad = [d for d in self.depths if not 0.0 <= d <= 1.0]
        if bad:
            raise ValueError(f"{name}.depths: expected values in [0, 1], got {bad}")
        self.validate_lengths()

    def validate_lengths(self) -> None:
        shortest = self.min_length()
        short = [n for n in [*self.train_lengths, *self.eval_lengths, *self.test_lengths] if n < shortest]
        if short:
            raise ValueError(f"{type(self).__name__}: lengths {sorted(set(short))} cannot hold the "
                             f"{self.spec.describe()}, question and answer; train_length(s), eval_lengths and "
                             f"test_lengths must be >= {shortest}")

    def min_length(self) -> int:
        """The shortest context that holds the needles, question and answer with no filler."""
        return self.spec.min_length()

    @property
    def data_sizes(self) -> dict[str, int]:
        """``{"vocab_size": 257}``: UTF-8 bytes and the end-of-document token."""
        return {"vocab_size": self.tokenizer.vocab_size}

    def haystacks(self, stage: Optional[str] = None) -> tuple[Haystack, Haystack]:
        """``(training, evaluation)`` filler: the noise twice, or disjoint byte ranges of the corpus,
        each checked to hold the longest context that ``stage`` reads (None: every stage)."""
        if self.haystack_kind == "noise":
            return Haystack(), Haystack()
        corpus = read_corpus(self.haystack_path)
        cut = int(corpus.size * TRAIN_SHARE)
        train = self.train_lengths if stage in (None, "fit") else []
        held_out = [*(self.eval_lengths if stage in (None, "fit", "validate") else []),
                    *(self.test_lengths if stage in (None, "test") else [])]
        for part, size, lengths in (("first", cut, train), ("last", corpus.size - cut, held_out)):
            if lengths and size < max(lengths):
                share = TRAIN_SHARE if part == "first" else 1 - TRAIN_SHARE
                raise ValueError(f"NeedleDataModule.haystack_path {self.haystack_path!r}: {corpus.size} bytes; its "
                                 f"{part} {share:.0%} ({size} bytes) must hold the longest context ({max(lengths)} "
                                 "tokens); give more text or shorter lengths")
        return Haystack(corpus[:cut]), Haystack(corpus[cut:])

    def eval_cells(self) -> list[tuple[int, float]]:
        """``(length, depth)`` of every validation sample, grouped by length then depth."""
        return [(n, d) for n in self.eval_lengths for d in self.depths for _ in range(self.samples_per_cell)]

    def test_cells(self) -> list[tuple[int, float]]:
        """``(length, depth)`` of every test sample: ``test_samples_per_cell`` per cell, grouped by
        length then depth."""
        return [(n, d) for n, count in zip(self.test_lengths, self.test_samples) for d in self.depths
                for _ in range(count)]

    def train_cells(self) -> list[tuple[int, None]]:
        """``(length, None)`` of every training sample under ``cycle`` or ``mix``: ``batch_size``
        consecutive samples share a length (depths are drawn per sample)."""
        num_batches = -(-self.train_samples // self.batch_size)
        lengths = batch_lengths(self.train_lengths, self.curriculum, num_batches, self.data_seed)
        return [(lengths[i // self.batch_size], None) for i in range(self.train_samples)]

    def setup(self, stage: str) -> None:
        """``datasets``: whole batches (:class:`GroupedBatches`, their samples in ``.samples``;
        :class:`CurriculumBatches` for ``grow``): training batches of one length each, in an order
        shuffled per epoch (an incomplete last batch is dropped; under data parallelism each rank
        draws its own batches); evaluation batches of one context length each, the grid in order
        (short contexts first)."""
        train, held_out = self.haystacks(stage)
        common = dict(spec=self.spec, seed=self.data_seed)
        if self.curriculum == "grow":
            cells = [(self.train_lengths[0], None)] * self.train_samples  # the length is the step's
            samples = NeedleSet(train, cells, split="train", with_answer=False, **common)
            self.datasets = {"train": CurriculumBatches(samples, self.train_lengths, self.batch_size)}
        else:
            samples = NeedleSet(train, self.train_cells(), split="train", with_answer=False, **common)
            self.datasets = {"train": GroupedBatches(samples, self.batch_size, full_only=True)}
        for split, cells in (("val", self.eval_cells()), ("test", self.test_cells())):
            samples = NeedleSet(held_out, cells, split=split, with_answer=True, **common)
            self.datasets[split] = GroupedBatches(samples, self.eval_batch_size)

    def train_dataloader(self) -> DataLoader:
        """The base's loader, but for ``grow``: a :class:`GrowSampler` that reads the trainer's step."""
        if self.curriculum != "grow":
            return super().train_dataloader()
        batches = self.datasets["train"]
        ranks = (self.trainer.distributed_sampler_kwargs if self.trainer is not None else None) or {}
        sampler = GrowSampler(batches, self.grow_steps(), self.progress, num_replicas=ranks.get("num_replicas", 1),
                              rank=ranks.get("rank", 0), shuffle=self.shuffle, seed=self.seed)
        return DataLoader(batches, batch_size=1, sampler=sampler, collate_fn=only_item, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0)

    def grow_steps(self) -> int:
        """Optimizer steps the ``grow`` stages divide: ``curriculum_steps``, else ``trainer.max_steps``."""
        if self.curriculum_steps is not None:
            return self.curriculum_steps
        max_steps = self.trainer.max_steps if self.trainer is not None else -1
        if max_steps is None or max_steps < 1:
            raise ValueError("NeedleDataModule.curriculum_steps: grow needs the number of steps its stages divide; "
                             "set curriculum_steps or trainer.max_steps")
        return max_steps

    def progress(self) -> tuple[int, int]:
        """``(optimizer steps done, accumulate_grad_batches)`` of the trainer; (0, 1) without one."""
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_step, self.trainer.accumulate_grad_batches

    def collate(self, split: str) -> Callable[[list[Any]], Any]:
        return only_item  # each item is a whole batch already

    def batch_size_of(self, split: str) -> int:
        return 1  # one whole batch per loader batch

    def decode(self, ids) -> str:
        """Text of token ids (end-of-document tokens dropped)."""
        return self.tokenizer.decode(ids)

    @staticmethod
    def load_tokenizer(source: str) -> TextTokenizer:
        """``"byte"`` (this module's tokenizer) or a tokenizer file, as ``TextDataModule.load_tokenizer``:
        ``titans-stream`` reads a needle run's tokenizer through the data class its ``config.yaml`` names."""
        return open_tokenizer(source)

