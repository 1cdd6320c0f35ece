"""Tokenizers of the text DataModule: raw bytes (the default) and a byte-level BPE trained locally.

Both reserve one special token, the end of a document (``eod_id``): documents are joined with it, so
a training window that crosses a document boundary says so, and a prompt starts after it.

``token_bytes()`` gives, for every token id, how many UTF-8 bytes the token stands for (0 for the
end-of-document token). Bits per byte divide the summed loss by these counts, which is what makes
models with different tokenizers comparable (nanochat's ``evaluate_bpb``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np

EOD_TOKEN = "<|endoftext|>"


class TextTokenizer(Protocol):
    """What the DataModule and the prediction writer need from a tokenizer."""

    kind: str
    eod_id: int

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> np.ndarray: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def token_bytes(self) -> np.ndarray: ...

    def save(self, path: Path) -> None: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens 0..255 and the end-of-document token 256 (vocabulary 257).

    Nothing to train or download; bits per byte equal bits per token on every byte token.
    """

    kind = "byte"
    eod_id = 256

    @property
    def vocab_size(self) -> int:
        return 257

    def encode(self, text: str) -> np.ndarray:
        """(n,) uint16 token ids of ``text``'s UTF-8 bytes."""
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; end-of-document tokens are dropped, and a byte sequence that is not
        valid UTF-8 (a sampled model can write one) shows as U+FFFD instead of raising."""
        data = bytes(int(i) for i in ids if int(i) != self.eod_id)
        return data.decode("utf-8", errors="replace")

    def token_bytes(self) -> np.ndarray:
        """(257,) bytes per token: 1 for every byte, 0 for the end of a document."""
        counts = np.ones(self.vocab_size, dtype=np.int64)
        counts[self.eod_id] = 0
        return counts

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"kind": "byte"}))


class BPETokenizer:
    """Byte-level BPE (GPT-2 style) from Hugging Face ``tokenizers``, trained on the training split.

    Every byte is in the base alphabet, so any text encodes without an unknown token. ``tokenizer``
    is a ``tokenizers.Tokenizer``; build one with :meth:`train` or :meth:`load`.
    """

    kind = "bpe"

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        eod = tokenizer.token_to_id(EOD_TOKEN)
        if eod is None:
            raise ValueError(f"BPETokenizer: the tokenizer has no {EOD_TOKEN!r} token")
        self.eod_id = eod

    @classmethod
    def train(cls, documents: Iterable[str], vocab_size: int) -> BPETokenizer:
        """Learn ``vocab_size - 257`` merges (256 base bytes and the end-of-document token come
        first) from ``documents``. Deterministic for the same documents."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if vocab_size <= 257:
            raise ValueError(f"BPETokenizer: vocab_size must exceed 257 (256 bytes + {EOD_TOKEN}), got {vocab_size}")
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOD_TOKEN], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tokenizer.train_from_iterator(documents, trainer=trainer)
        return cls(tokenizer)

    @classmethod
    def load(cls, path: Path) -> BPETokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tokenizer.encode(text).ids, dtype=np.uint32)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """Encode many documents at once (in parallel inside ``tokenizers``)."""
        return [np.asarray(e.ids, dtype=np.uint32) for e in self.tokenizer.encode_batch(texts)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids if int(i) != self.eod_id])

    def token_bytes(self) -> np.ndarray:
        """(V,) bytes per token: a byte-level token is written in an alphabet of one character
        per byte, so its byte count is its length; 0 for the end-of-document token."""
        counts = np.zeros(self.vocab_size, dtype=np.int64)
        for token, index in self.tokenizer.get_vocab().items():
            counts[index] = 0 if index == self.eod_id else len(token)
        return counts

    def save(self, path: Path) -> None:
        self.tokenizer.save(str(path))


def make_tokenizer(kind: str, documents: Iterable[str], vocab_size: int) -> TextTokenizer:
    """A ``byte`` tokenizer, or a ``bpe`` one of ``vocab_size`` trained on ``documents``."""
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        return BPETokenizer.train(documents, vocab_size)
    raise ValueError(f"tokenizer: expected 'byte' or 'bpe', got {kind!r}")


def load_tokenizer(path: Path) -> TextTokenizer:
    """The tokenizer that ``save`` wrote to ``path``."""
    spec = json.loads(path.read_text())
    return ByteTokenizer() if spec.get("kind") == "byte" else BPETokenizer.load(path)


def open_tokenizer(source: str) -> TextTokenizer:
    """``"byte"`` (nothing to read), or the tokenizer that ``save`` wrote to the file ``source``."""
    return ByteTokenizer() if source == "byte" else load_tokenizer(Path(source))
