"""Tokenizers of the text DataModule: raw bytes (the default), a byte-level BPE trained locally, or
a user's Hugging Face ``tokenizer.json`` (GPT-2, Llama, Mistral, ...).

Each has one end-of-document token (``eod_id``): documents are joined with it, so a training window
that crosses a document boundary says so, and a prompt starts after it. A ``tokenizer.json`` gives
its own EOS token when it has one (the first special token named in ``EOS_TOKENS``); otherwise
``<|endoftext|>`` is added to it (one more id). The rule reads the vocabulary only, so a saved
tokenizer loads back with the same end-of-document token.

``token_bytes()`` gives, for every token id, how many UTF-8 bytes the token stands for (0 for
special tokens). Bits per byte divide the summed loss by these counts, which is what makes models
with different tokenizers comparable (nanochat's ``evaluate_bpb``). Exact for byte-level
tokenizers (one character per byte); for SentencePiece-style vocabularies (``▁`` for a space,
``<0xNN>`` byte tokens) the count of each token's text.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np

EOD_TOKEN = "<|endoftext|>"
#: special tokens taken as the end of a document, first found wins (GPT-2/Qwen, Llama 3, Llama 2/Mistral, Gemma)
EOS_TOKENS = (EOD_TOKEN, "<|end_of_text|>", "</s>", "<eos>", "<|eos|>", "[EOS]")
BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
TOKENIZER_CHOICES = "'byte', 'bpe', or a path to a Hugging Face tokenizer.json (or a folder holding one)"


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
    eod_note = "end of document = token 256 after the 256 bytes"

    @property
    def vocab_size(self) -> int:
        return 257

    def encode(self, text: str) -> np.ndarray:
        """(n,) uint16 token ids of ``text``'s UTF-8 bytes."""
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [self.encode(t) for t in texts]

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


def special_ids(tokenizer) -> dict[str, int]:
    """Content -> id of the tokenizer's special added tokens."""
    return {t.content: i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}


class HFTokenizer:
    """A Hugging Face ``tokenizers.Tokenizer`` (``tokenizer.json``) and its end-of-document token.

    Text is encoded without the tokenizer's own special tokens (no BOS per document: documents are
    joined by ``eod_id`` instead). Build one with :meth:`load`, :meth:`from_file` or
    ``BPETokenizer.train``.
    """

    kind = "file"

    def __init__(self, tokenizer, eod_note: str = "") -> None:
        self.tokenizer = tokenizer
        specials = special_ids(tokenizer)
        eos = next((t for t in EOS_TOKENS if t in specials), None)
        if eos is None:
            raise ValueError(f"{type(self).__name__}: the tokenizer has no end-of-document token "
                             f"(none of {', '.join(EOS_TOKENS)} is a special token)")
        self.eod_id = specials[eos]
        self.eod_note = eod_note or f"end of document = its special token {eos!r} (id {self.eod_id})"

    @classmethod
    def load(cls, path: Path) -> HFTokenizer:
        """The tokenizer file ``path`` as written by :meth:`save` (or by Hugging Face)."""
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    @classmethod
    def from_file(cls, source: str) -> HFTokenizer:
        """A user's ``tokenizer.json`` (or a folder holding one); ``<|endoftext|>`` is added when it
        has no EOS token. Raises a ValueError naming the file when it is not a tokenizer."""
        from tokenizers import AddedToken, Tokenizer

        path = tokenizer_file(source)
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as error:  # tokenizers raises a bare Exception with the JSON parser's message
            raise ValueError(f"{path} (--data.tokenizer) is not a Hugging Face tokenizer.json: "
                             f"{str(error).splitlines()[0][:200]}") from None
        if any(t in special_ids(tokenizer) for t in EOS_TOKENS):
            return cls(tokenizer)
        tokenizer.add_special_tokens([AddedToken(EOD_TOKEN, special=True, normalized=False)])
        eod = tokenizer.token_to_id(EOD_TOKEN)
        return cls(tokenizer, f"{path} has no EOS token ({', '.join(EOS_TOKENS)}): end of document = "
                              f"the added {EOD_TOKEN!r} (id {eod}, vocabulary {tokenizer.get_vocab_size()})")

    @property
    def vocab_size(self) -> int:
        """One more than the largest id (added tokens included)."""
        return max(self.tokenizer.get_vocab_size(with_added_tokens=True), max(self.tokenizer.get_vocab().values()) + 1)

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.uint32)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """Encode many documents at once, in parallel over the cores ``tokenizers`` is given
        (``RAYON_NUM_THREADS``, else every core the process may use)."""
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)  # no offsets: faster
        return [np.asarray(e.ids, dtype=np.uint32) for e in encode(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids if int(i) != self.eod_id])

    def token_bytes(self) -> np.ndarray:
        """(V,) UTF-8 bytes per token (see the module docstring); 0 for special tokens."""
        from tokenizers import pre_tokenizers

        byte_level = type(self.tokenizer.decoder).__name__ == "ByteLevel"
        alphabet = set(pre_tokenizers.ByteLevel.alphabet())
        specials = set(special_ids(self.tokenizer).values())
        counts = np.zeros(self.vocab_size, dtype=np.int64)
        for token, index in self.tokenizer.get_vocab().items():
            if index in specials:
                continue
            if byte_level and all(c in alphabet for c in token):
                counts[index] = len(token)
            elif BYTE_TOKEN.fullmatch(token):
                counts[index] = 1
            else:
                counts[index] = len(token.replace("\u2581", " ").encode("utf-8"))
        return counts

    def save(self, path: Path) -> None:
        self.tokenizer.save(str(path))


class BPETokenizer(HFTokenizer):
    """Byte-level BPE (GPT-2 style) from Hugging Face ``tokenizers``, trained on the training split.

    Every byte is in the base alphabet, so any text encodes without an unknown token.
    """

    kind = "bpe"

    @classmethod
    def train(cls, documents: Iterable[str], vocab_size: int) -> BPETokenizer:
        """Learn ``vocab_size - 257`` merges (256 base bytes and the end-of-document token come
        first) from ``documents`` (an iterable: streamed, not held). Deterministic for the same documents."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if vocab_size <= 257:
            raise ValueError(f"BPETokenizer: vocab_size must exceed 257 (256 bytes + {EOD_TOKEN}), got {vocab_size}")
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOD_TOKEN],
                                      show_progress=sys.stderr.isatty(),  # a bar on a terminal only
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tokenizer.train_from_iterator(documents, trainer=trainer)
        return cls(tokenizer)


def tokenizer_file(source: str) -> Path:
    """The ``tokenizer.json`` that ``source`` names: the file, or ``tokenizer.json`` in the folder."""
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise ValueError(f"--data.tokenizer {source!r}: no such file; expected {TOKENIZER_CHOICES}")
    return path


def is_builtin(kind: str) -> bool:
    return kind in ("byte", "bpe")


def make_tokenizer(kind: str, documents: Iterable[str], vocab_size: int) -> TextTokenizer:
    """A ``byte`` tokenizer, a ``bpe`` one of ``vocab_size`` trained on ``documents``, or the
    tokenizer file ``kind`` names (see :meth:`HFTokenizer.from_file`)."""
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        return BPETokenizer.train(documents, vocab_size)
    return open_user_tokenizer(kind)


def open_user_tokenizer(source: str) -> TextTokenizer:
    """A tokenizer file given by a user: our own saved ``{"kind": "byte"}`` or a ``tokenizer.json``."""
    path = tokenizer_file(source)
    if is_saved_byte_tokenizer(path):
        return ByteTokenizer()
    return HFTokenizer.from_file(str(path))


def is_saved_byte_tokenizer(path: Path) -> bool:
    if path.stat().st_size > 1024:
        return False
    try:
        return json.loads(path.read_text()).get("kind") == "byte"
    except (ValueError, UnicodeDecodeError, AttributeError):
        return False


def load_tokenizer(path: Path) -> TextTokenizer:
    """The tokenizer that ``save`` wrote to ``path``."""
    return ByteTokenizer() if is_saved_byte_tokenizer(path) else HFTokenizer.load(path)


def open_tokenizer(source: str) -> TextTokenizer:
    """``"byte"`` (nothing to read), or the tokenizer that ``save`` wrote to the file ``source``."""
    return ByteTokenizer() if source == "byte" else load_tokenizer(Path(source))
