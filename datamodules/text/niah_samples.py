"""Needles, haystacks and the single-needle sample (RULER S-NIAH) of ``niah.py``.

Shape legend: L context length (tokens the model reads), n filler bytes. A sample holds ``L + 1``
byte tokens (the model reads ``L`` of them)::

    [EOD] filler[:p] NEEDLE filler[p:] QUESTION ANSWER

Every function here costs O(L) time and memory (a 1M-token sample builds in well under a second):
the filler is sliced or tiled, the needle's boundary found by one pass over the filler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import torch

from .corpus import decode_utf8, find_files

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


def nearest(points: np.ndarray, target: float) -> int:
    """The entry of sorted ``points`` nearest to ``target`` (ties go to the earlier)."""
    return int(points[np.argmin(np.abs(points - target))])


def insertion_point(filler: np.ndarray, depth: float) -> int:
    """The boundary of ``filler`` nearest to ``depth * len(filler)`` (ties go to the earlier)."""
    return nearest(boundaries(filler), depth * filler.size)


@dataclass(frozen=True)
class NeedleSample:
    """One haystack: ``tokens`` (L + 1,) int64, the answer's first token index ``prompt_len``
    (= L + 1 - A), the first token index ``needle_start`` of the needle at the requested depth,
    the ``answer`` text, and ``needle_starts``: the first token of every needle, in the order
    they were drawn (the one at the requested depth first)."""

    tokens: np.ndarray
    prompt_len: int
    needle_start: int
    answer: str
    needle_starts: tuple[int, ...] = ()


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
        if size > self.corpus.size:
            raise ValueError(f"Haystack: {size} filler bytes asked of a text haystack of {self.corpus.size} bytes; "
                             "give more text (haystack_path) or shorter lengths")
        start = int(rng.integers(0, self.corpus.size - size + 1))
        return self.corpus[start:start + size]


def as_bytes(text: str) -> np.ndarray:
    """(n,) uint8 UTF-8 bytes of ``text`` (byte tokens)."""
    return np.frombuffer(text.encode(), dtype=np.uint8)


def filler_size(length: int, parts: int, what: str) -> int:
    """Filler bytes of an ``L = length`` sample whose needles, question and answer take ``parts``
    bytes (L + 1 tokens, one of them EOD); raises if they do not fit."""
    size = length - parts
    if size < 0:
        raise ValueError(f"NeedleDataModule: a context of {length} tokens cannot hold the {what}, question and "
                         f"answer ({parts} tokens); use lengths >= {parts}")
    return size


def make_sample(haystack: Haystack, length: int, depth: float, kind: str, needle_len: int,
                rng: np.random.Generator, eod: int) -> NeedleSample:
    """A sample of ``length + 1`` tokens with the needle at ``depth`` of the filler (S-NIAH)."""
    value = needle_value(kind, needle_len, rng)
    needle_text, question_text = TEMPLATES[kind]
    needle, question, answer = as_bytes(needle_text.format(v=value)), as_bytes(question_text), as_bytes(value)
    size = filler_size(length, needle.size + question.size + answer.size, f"{kind} needle")
    filler = haystack.filler(size, rng)
    p = insertion_point(filler, depth)
    tokens = np.concatenate(([eod], filler[:p], needle, filler[p:], question, answer)).astype(np.int64)
    return NeedleSample(tokens, tokens.size - answer.size, 1 + p, value, (1 + p,))


def to_item(sample: NeedleSample) -> dict[str, torch.Tensor]:
    """The training fields of one sample (see ``niah.py``'s batch contract)."""
    tokens = torch.from_numpy(sample.tokens)
    target = tokens[1:]
    loss_mask = torch.zeros(target.shape[0], dtype=torch.bool)
    loss_mask[sample.prompt_len - 1:] = True  # target j is token j + 1
    return {"input": tokens[:-1], "target": target, "target_bytes": torch.ones_like(target), "loss_mask": loss_mask}


def read_corpus(path: str) -> np.ndarray:
    """(n,) uint8 bytes of every file of ``path`` (a file, folder or glob, as the text
    DataModule finds them), joined by newlines; each file must be UTF-8."""
    parts = []
    for file in find_files(path):
        data = file.read_bytes()
        decode_utf8(file, data)  # raises naming the file, byte and line
        parts.append(np.frombuffer(data + b"\n", dtype=np.uint8))
    return np.concatenate(parts)
