"""RULER's harder needle tasks, multi-key (MK-NIAH) and multi-value (MV-NIAH), in the sample
layout of the single needle (``niah_samples.py``), and :class:`NeedleSpec`, which picks the task.

Shape legend: L context length, n filler bytes. With ``<noun>`` the needle kind (``number``,
``word``, ``uuid``), ``<key>`` a 6-letter pseudo-word and ``<value>`` a needle value::

    NEEDLE = "One of the special magic <noun>s for <key> is: <value>. "

- ``multikey``: ``num_needles`` needles with distinct keys (the asked one included, as RULER's
  ``num_needle_k``: 4 = the asked needle and 3 distractors). The asked needle (drawn first) sits at
  the requested depth, every other at its own uniform random depth. Then
  ``"\\nWhat is the special magic <noun> for <key>? The special magic <noun> for <key> is "`` and
  the answer ``<value>``.
- ``multivalue``: ``num_values`` needles with one key and their own values; the first drawn sits at
  the requested depth, the others at uniform random depths. Then ``"\\nWhat are all the special
  magic <noun>s for <key>? The special magic <noun>s for <key> are "`` and the answer: every value,
  in the order the needles stand in the haystack, joined by ``", "`` (scored by exact match of the
  whole answer).

Needles go to the filler boundary (sentence or line) nearest to their depth, all measured on the
filler before any needle is inserted; needles at the same boundary keep the order they were drawn.
The cost is O(L) like the single needle's: one boundary scan, then one concatenation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .niah_samples import (
    TEMPLATES,
    Haystack,
    NeedleSample,
    as_bytes,
    boundaries,
    filler_size,
    make_sample,
    nearest,
    needle_value,
)

NeedleTaskName = Literal["single", "multikey", "multivalue"]
TASKS = ("single", "multikey", "multivalue")
KEY_LEN = 6  # letters of a key (a consonant-vowel pseudo-word: 14^3 5^3 = 343,000 of them)
MULTI_NEEDLE = "One of the special magic {noun}s for {key} is: {v}. "
QUESTIONS = {
    "multikey": "\nWhat is the special magic {noun} for {key}? The special magic {noun} for {key} is ",
    "multivalue": "\nWhat are all the special magic {noun}s for {key}? The special magic {noun}s for {key} are ",
}
VALUE_SEPARATOR = ", "


def distinct_keys(count: int, rng: np.random.Generator) -> list[str]:
    """``count`` different pseudo-word keys, in the order drawn."""
    keys: list[str] = []
    while len(keys) < count:
        key = needle_value("word", KEY_LEN, rng)
        if key not in keys:
            keys.append(key)
    return keys


@dataclass(frozen=True)
class NeedleSpec:
    """What a sample asks: the ``task`` (``single``, ``multikey``, ``multivalue``), the needle
    ``kind`` and ``needle_len``, ``num_needles`` (multikey) and ``num_values`` (multivalue)."""

    task: str = "single"
    kind: str = "number"
    needle_len: int = 5
    num_needles: int = 4
    num_values: int = 4

    def make(self, haystack: Haystack, length: int, depth: float, rng: np.random.Generator,
             eod: int) -> NeedleSample:
        """A sample of ``length + 1`` tokens with the (first) needle at ``depth``."""
        if self.task == "single":
            return make_sample(haystack, length, depth, self.kind, self.needle_len, rng, eod)
        return make_multi_sample(self, haystack, length, depth, rng, eod)

    def needles(self, rng: np.random.Generator) -> tuple[list[str], list[str], str]:
        """``(needle sentences, their values, question)`` of a multi-needle sample, in the order
        drawn (the first is asked, or sits at the requested depth)."""
        count = self.num_needles if self.task == "multikey" else self.num_values
        values = [needle_value(self.kind, self.needle_len, rng) for _ in range(count)]
        keys = distinct_keys(count if self.task == "multikey" else 1, rng)
        keys = keys if self.task == "multikey" else keys * count
        sentences = [MULTI_NEEDLE.format(noun=self.kind, key=k, v=v) for k, v in zip(keys, values)]
        return sentences, values, QUESTIONS[self.task].format(noun=self.kind, key=keys[0])

    def answer_len(self, values: list[str]) -> int:
        """Tokens of the answer: the asked value (multikey) or every value joined (multivalue)."""
        if self.task == "multikey":
            return len(values[0])
        return sum(map(len, values)) + len(VALUE_SEPARATOR) * (len(values) - 1)

    def min_length(self) -> int:
        """The shortest context that holds the needles, question and answer with no filler."""
        rng = np.random.default_rng(0)
        if self.task == "single":
            value = needle_value(self.kind, self.needle_len, rng)
            needle, question = TEMPLATES[self.kind]
            return len(needle.format(v=value)) + len(question) + len(value)
        sentences, values, question = self.needles(rng)
        return sum(map(len, sentences)) + len(question) + self.answer_len(values)

    def describe(self) -> str:
        """Words for error messages: what a sample must hold besides the filler."""
        if self.task == "single":
            return f"{self.kind} needle"
        count = self.num_needles if self.task == "multikey" else self.num_values
        return f"{self.task} task's {count} {self.kind} needles"


def splice(filler: np.ndarray, points: list[int], needles: list[np.ndarray],
           eod: int) -> tuple[list, list[int], list[int]]:
    """``(pieces, starts, order)``: EOD, the filler with needle i inserted at filler offset
    ``points[i]`` (equal offsets in drawing order), as pieces to concatenate; the first token
    index of each needle (drawing order); the needles' order in the text."""
    order = sorted(range(len(needles)), key=lambda i: (points[i], i))
    pieces, starts, previous, offset = [np.array([eod])], [0] * len(needles), 0, 1
    for i in order:
        pieces.append(filler[previous:points[i]])
        offset += points[i] - previous
        starts[i] = offset
        pieces.append(needles[i])
        offset += needles[i].size
        previous = points[i]
    pieces.append(filler[previous:])
    return pieces, starts, order


def make_multi_sample(spec: NeedleSpec, haystack: Haystack, length: int, depth: float, rng: np.random.Generator,
                      eod: int) -> NeedleSample:
    """A multi-key or multi-value sample of ``length + 1`` tokens (see the module's layout)."""
    sentences, values, question_text = spec.needles(rng)
    depths = [depth, *rng.random(len(sentences) - 1).tolist()]
    needles, question = [as_bytes(s) for s in sentences], as_bytes(question_text)
    size = filler_size(length, sum(n.size for n in needles) + question.size + spec.answer_len(values),
                       spec.describe())
    filler = haystack.filler(size, rng)
    candidates = boundaries(filler)
    points = [nearest(candidates, d * filler.size) for d in depths]
    pieces, starts, order = splice(filler, points, needles, eod)
    answer = values[0] if spec.task == "multikey" else VALUE_SEPARATOR.join(values[i] for i in order)
    answer_bytes = as_bytes(answer)
    tokens = np.concatenate([*pieces, question, answer_bytes]).astype(np.int64)
    return NeedleSample(tokens, tokens.size - answer_bytes.size, starts[0], answer, tuple(starts))

