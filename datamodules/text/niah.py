"""Synthetic single-needle haystacks (RULER S-NIAH style) for long-context evaluation.

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

Batch contract, shape legend B batch, T = L, A answer tokens. Training batches follow the text
DataModule's (``datamodules/text/datamodule.py``), so ``LanguageModelingTask`` trains on them as they are::

    {"input": (B, T) int64, "target": (B, T) int64, "target_bytes": (B, T) int64,
     "loss_mask": (B, T) bool (True on the A targets that are answer tokens)}

Evaluation batches (one context length per batch) add what exact-match scoring needs::

    {"answer": (B, A) int64, "prompt_len": (B,) int64 (L + 1 - A: tokens before the answer),
     "length": (B,) int64 (L), "depth": (B,) float32 (requested depth), "needle_start": (B,) int64}

Every sample is a pure function of ``(data_seed, split, index)``: loader workers, reruns and
machines agree without storing anything. This module never imports the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from ..base import TitansDataModule
from .corpus import decode_utf8, find_files
from .tokenizer import ByteTokenizer, TextTokenizer, open_tokenizer

NeedleKind = Literal["number", "word", "uuid"]
NOISE = b"The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
#: (needle sentence, question) per needle kind; ``{v}`` is the value, the answer follows the question.
TEMPLATES: dict[str, tuple[str, str]] = {
    "number": ("The pass key is {v}. Remember it. {v} is the pass key. ",
               "\nWhat is the pass key? The pass key is "),
    "word": ("The magic word is {v}. Remember it. {v} is the magic word. ",
             "\nWhat is the magic word? The magic word is "),
    "uuid": ("The special magic uuid is {v}. Remember it. {v} is the special magic uuid. ",
             "\nWhat is the special magic uuid? The special magic uuid is "),
}
DEFAULT_NEEDLE_LEN = {"number": 5, "word": 6, "uuid": 8}
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
TRAIN_SHARE = 0.9  # of a text haystack's bytes; evaluation haystacks come from the rest
CONSONANTS, VOWELS = "bdfgklmnprstvz", "aeiou"


def needle_value(kind: str, length: int, rng: np.random.Generator) -> str:
    """A random needle: ``length`` digits, letters of a consonant-vowel pseudo-word, or hex
    digits with a dash after the 8th, 12th, 16th and 20th (a full uuid at 32)."""
    if kind == "number":
        return "".join(str(d) for d in rng.integers(0, 10, length))
    if kind == "word":
        return "".join((CONSONANTS, VOWELS)[i % 2][int(rng.integers(0, (14, 5)[i % 2]))] for i in range(length))
    if kind == "uuid":
        digits = "".join("0123456789abcdef"[d] for d in rng.integers(0, 16, length))
        return "-".join(digits[a:b] for a, b in zip((0, 8, 12, 16, 20), (8, 12, 16, 20, length)) if a < length)
    raise ValueError(f"needle: expected one of {list(TEMPLATES)}, got {kind!r}")


def boundaries(filler: np.ndarray) -> np.ndarray:
    """Sorted offsets where a needle may start: 0, the end, after every newline and every '. '."""
    after_newline = np.flatnonzero(filler == ord("\n")) + 1
    after_stop = np.flatnonzero((filler[:-1] == ord(".")) & (filler[1:] == ord(" "))) + 2
    return np.unique(np.concatenate(([0, filler.size], after_newline, after_stop)))


def insertion_point(filler: np.ndarray, depth: float) -> int:
    """The boundary of ``filler`` nearest to ``depth * len(filler)`` (ties go to the earlier)."""
    points = boundaries(filler)
    return int(points[np.argmin(np.abs(points - depth * filler.size))])


@dataclass(frozen=True)
class NeedleSample:
    """One haystack: ``tokens`` (L + 1,) int64, the answer's first token index ``prompt_len``
    (= L + 1 - A), the needle's first token index ``needle_start``, and its text ``answer``."""

    tokens: np.ndarray
    prompt_len: int
    needle_start: int
    answer: str


class Haystack:
    """Filler bytes: RULER's repeated noise (``corpus=None``) or slices of a (n,) uint8 corpus."""

    def __init__(self, corpus: Optional[np.ndarray] = None) -> None:
        self.corpus = corpus

    def filler(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """(size,) uint8 filler starting at a random offset of the noise or corpus."""
        if self.corpus is None:
            period = np.frombuffer(NOISE, dtype=np.uint8)
            start = int(rng.integers(0, period.size))
            return np.resize(np.roll(period, -start), size)
        start = int(rng.integers(0, self.corpus.size - size + 1))
        return self.corpus[start:start + size]


def make_sample(haystack: Haystack, length: int, depth: float, kind: str, needle_len: int,
                rng: np.random.Generator, eod: int) -> NeedleSample:
    """A sample of ``length + 1`` tokens with the needle at ``depth`` of the filler."""
    value = needle_value(kind, needle_len, rng)
    needle_text, question_text = TEMPLATES[kind]
    needle = np.frombuffer(needle_text.format(v=value).encode(), dtype=np.uint8)
    question = np.frombuffer(question_text.encode(), dtype=np.uint8)
    answer = np.frombuffer(value.encode(), dtype=np.uint8)
    size = length - needle.size - question.size - answer.size  # L + 1 tokens, one of them EOD
    if size < 0:
        raise ValueError(f"NeedleDataModule: a context of {length} tokens cannot hold the {kind} needle, question and "
                         f"answer ({length - size} tokens); use lengths >= {length - size}")
    filler = haystack.filler(size, rng)
    p = insertion_point(filler, depth)
    tokens = np.concatenate(([eod], filler[:p], needle, filler[p:], question, answer)).astype(np.int64)
    return NeedleSample(tokens, tokens.size - answer.size, 1 + p, value)


def to_item(sample: NeedleSample) -> dict[str, torch.Tensor]:
    """The training fields of one sample (see the module's batch contract)."""
    tokens = torch.from_numpy(sample.tokens)
    target = tokens[1:]
    loss_mask = torch.zeros(target.shape[0], dtype=torch.bool)
    loss_mask[sample.prompt_len - 1:] = True  # target j is token j + 1
    return {"input": tokens[:-1], "target": target, "target_bytes": torch.ones_like(target), "loss_mask": loss_mask}


class NeedleSet(Dataset):
    """Samples of one split; ``cells`` lists ``(length, depth)`` per sample, where a depth of
    ``None`` is drawn uniformly in [0, 1] (training)."""

    def __init__(self, haystack: Haystack, cells: list[tuple[int, Optional[float]]], kind: str, needle_len: int,
                 seed: int, split: str, with_answer: bool) -> None:
        self.haystack, self.cells, self.kind, self.needle_len = haystack, cells, kind, needle_len
        self.seed, self.split, self.with_answer = seed, split, with_answer
        self.eod = ByteTokenizer.eod_id

    def __len__(self) -> int:
        return len(self.cells)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, SPLIT_IDS[self.split], index))
        length, depth = self.cells[index]
        depth = float(rng.random()) if depth is None else depth
        sample = make_sample(self.haystack, length, depth, self.kind, self.needle_len, rng, self.eod)
        item = to_item(sample)
        if self.with_answer:
            item.update(answer=torch.from_numpy(sample.tokens[sample.prompt_len:]),
                        prompt_len=torch.tensor(sample.prompt_len), length=torch.tensor(length),
                        depth=torch.tensor(depth, dtype=torch.float32), needle_start=torch.tensor(sample.needle_start))
        return item


def same_length_groups(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Runs of at most ``batch_size`` consecutive indices that share a context length."""
    groups: list[list[int]] = []
    for index, length in enumerate(lengths):
        if not groups or len(groups[-1]) == batch_size or lengths[groups[-1][0]] != length:
            groups.append([])
        groups[-1].append(index)
    return groups


def only_item(items: list[Any]) -> Any:
    """Collate of a loader whose items are whole batches (one item per loader batch)."""
    return items[0]


class GroupedBatches(Dataset):
    """Whole batches of ``samples`` as items (one context length each), for a loader that takes one
    item per batch. ``full_only`` keeps only batches of ``batch_size`` samples (training: an
    incomplete group is dropped). Under data parallelism Lightning deals these items out to the
    ranks (its distributed sampler repeats a few to even the ranks out, as for any evaluation set)."""

    def __init__(self, samples: NeedleSet, batch_size: int, full_only: bool = False) -> None:
        self.samples = samples
        groups = same_length_groups([n for n, _ in samples.cells], batch_size)
        self.groups = [g for g in groups if len(g) == batch_size] if full_only else groups

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return default_collate([self.samples[i] for i in self.groups[index]])


def read_corpus(path: str) -> np.ndarray:
    """(n,) uint8 bytes of every file of ``path`` (a file, folder or glob, as the text
    DataModule finds them), joined by newlines; each file must be UTF-8."""
    parts = []
    for file in find_files(path):
        data = file.read_bytes()
        decode_utf8(file, data)  # raises naming the file, byte and line
        parts.append(np.frombuffer(data + b"\n", dtype=np.uint8))
    return np.concatenate(parts)


class NeedleDataModule(TitansDataModule):
    """Needle-in-a-haystack samples: training at one context length (or a cycle of lengths, one per
    batch) with uniform random depths, evaluation on a grid of context lengths x needle depths (the
    S-NIAH accuracy table).

    Args:
        needle: ``number`` (the pass key), ``word`` (a pseudo-word) or ``uuid`` (hex digits).
        needle_len: digits, letters or hex digits of the needle; None = 5, 6 or 8 by kind.
        haystack: ``noise`` (RULER's repeated sentences, as in its S-NIAH pass-key task) or
            ``text`` (random slices of ``haystack_path``).
        haystack_path: a UTF-8 file, folder of ``.txt`` files or glob; used when haystack is text.
        train_length: tokens the model reads per training sample (bytes; one more is stored). A
            list trains on each of its lengths in turn, one length per batch (batch i has length
            ``train_length[i % len]``; repeat a length to weight it): needles then sit at many
            distances from the question, not only those one length allows.
        train_samples: training samples per epoch (each a fresh haystack, needle and depth).
        eval_lengths: context lengths of the validation and test grids (tokens read).
        depths: needle depths of the grids, in [0, 1] (0 = first, 1 = right before the question).
        samples_per_cell: samples per (length, depth) cell of each grid.
        eval_batch_size: samples per evaluation batch (one length per batch); None = batch_size.
        data_seed: seeds every sample (validation and test draw from separate streams).
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
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.needle, self.haystack_kind, self.haystack_path = needle, haystack, haystack_path
        self.needle_len = DEFAULT_NEEDLE_LEN.get(needle, 1) if needle_len is None else needle_len
        cycle = train_length if isinstance(train_length, Sequence) else [train_length]
        self.train_lengths = [int(n) for n in cycle]
        self.train_length, self.train_samples = train_length, train_samples
        self.eval_lengths, self.depths = [int(n) for n in eval_lengths], [float(d) for d in depths]
        self.samples_per_cell, self.data_seed = samples_per_cell, data_seed
        self.eval_batch_size = self.batch_size if eval_batch_size is None else eval_batch_size
        self.tokenizer = ByteTokenizer()
        self.validate()

    def validate(self) -> None:
        """Raise on any argument outside its range, naming it (nothing is silently changed)."""
        name = type(self).__name__
        if self.needle not in TEMPLATES:
            raise ValueError(f"{name}.needle: expected one of {list(TEMPLATES)}, got {self.needle!r}")
        if self.haystack_kind not in ("noise", "text"):
            raise ValueError(f"{name}.haystack: expected 'noise' or 'text', got {self.haystack_kind!r}")
        for field in ("needle_len", "train_samples", "samples_per_cell", "eval_batch_size"):
            if getattr(self, field) < 1:
                raise ValueError(f"{name}.{field}: expected >= 1, got {getattr(self, field)}")
        if not self.train_lengths or not self.eval_lengths or not self.depths:
            raise ValueError(f"{name}: train_length, eval_lengths and depths must each hold at least one value")
        if self.train_samples < self.batch_size:
            raise ValueError(f"{name}.train_samples: expected >= batch_size ({self.batch_size}), "
                             f"got {self.train_samples}")
        bad = [d for d in self.depths if not 0.0 <= d <= 1.0]
        if bad:
            raise ValueError(f"{name}.depths: expected values in [0, 1], got {bad}")
        shortest = self.min_length()
        short = [n for n in [*self.train_lengths, *self.eval_lengths] if n < shortest]
        if short:
            raise ValueError(f"{name}: lengths {short} cannot hold the {self.needle} needle, question and answer; "
                             f"train_length and eval_lengths must be >= {shortest}")

    def min_length(self) -> int:
        """The shortest context that holds the needle, question and answer with no filler."""
        value = needle_value(self.needle, self.needle_len, np.random.default_rng(0))
        needle, question = TEMPLATES[self.needle]
        return len(needle.format(v=value)) + len(question) + len(value)

    @property
    def data_sizes(self) -> dict[str, int]:
        """``{"vocab_size": 257}``: UTF-8 bytes and the end-of-document token."""
        return {"vocab_size": self.tokenizer.vocab_size}

    def haystacks(self) -> tuple[Haystack, Haystack]:
        """``(training, evaluation)`` filler: the noise twice, or disjoint byte ranges of the corpus."""
        if self.haystack_kind == "noise":
            return Haystack(), Haystack()
        corpus = read_corpus(self.haystack_path)
        cut = int(corpus.size * TRAIN_SHARE)
        longest = max(*self.train_lengths, *self.eval_lengths)
        if corpus.size - cut < longest:
            raise ValueError(f"NeedleDataModule.haystack_path {self.haystack_path!r}: {corpus.size} bytes; its last "
                             f"{1 - TRAIN_SHARE:.0%} ({corpus.size - cut} bytes) must hold the longest context "
                             f"({longest} tokens); give more text or shorter lengths")
        return Haystack(corpus[:cut]), Haystack(corpus[cut:])

    def eval_cells(self) -> list[tuple[int, float]]:
        """``(length, depth)`` of every evaluation sample, grouped by length then depth."""
        return [(n, d) for n in self.eval_lengths for d in self.depths for _ in range(self.samples_per_cell)]

    def train_cells(self) -> list[tuple[int, None]]:
        """``(length, None)`` of every training sample: ``batch_size`` consecutive samples share a
        length, the lengths cycling batch by batch (depths are drawn per sample)."""
        cycle = self.train_lengths
        return [(cycle[(i // self.batch_size) % len(cycle)], None) for i in range(self.train_samples)]

    def setup(self, stage: str) -> None:
        """``datasets``: whole batches (:class:`GroupedBatches`, their samples in ``.samples``):
        training batches of one length each, in an order shuffled per epoch (an incomplete last
        batch is dropped; under data parallelism each rank draws its own batches); evaluation
        batches of one context length each, the grid in order (short contexts first)."""
        train, held_out = self.haystacks()
        common = dict(kind=self.needle, needle_len=self.needle_len, seed=self.data_seed)
        train_samples = NeedleSet(train, self.train_cells(), split="train", with_answer=False, **common)
        self.datasets = {"train": GroupedBatches(train_samples, self.batch_size, full_only=True)}
        for split in ("val", "test"):
            samples = NeedleSet(held_out, self.eval_cells(), split=split, with_answer=True, **common)
            self.datasets[split] = GroupedBatches(samples, self.eval_batch_size)

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
