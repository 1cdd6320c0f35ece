"""A plain-text corpus: find its files, read them as documents, split the documents, cache the tokens.

Splits are by document (a whole work goes to train, validation or test), never by position inside
a document, so held-out text shares no passage with training text. Each split's token stream is
``[EOD] doc [EOD] doc ...`` written once to ``<cache_dir>/<key>/<split>.bin`` and memory-mapped
afterwards; the key hashes the files' names and bytes, the tokenizer and the split, so a second run
with the same inputs starts at once and any change builds a fresh cache beside the old one.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .tokenizer import BPETokenizer, TextTokenizer, load_tokenizer, make_tokenizer

SPLITS = ("train", "val", "test")
CACHE_FORMAT = 1  # bump when the layout of a cache folder changes
PARAGRAPH = "\n\n"


@dataclass(frozen=True)
class Document:
    """One document: ``name`` (its file, relative to the corpus root, ``#k`` for the k-th piece
    of a file cut by a separator) and its text."""

    name: str
    text: str


def find_files(path: str) -> list[Path]:
    """The files of ``path``: a file, every ``*.txt`` below a folder, or a glob; sorted."""
    target = Path(path).expanduser()
    if target.is_file():
        return [target]
    if target.is_dir():
        files = sorted(p for p in target.rglob("*.txt") if p.is_file())
        if not files:
            raise FileNotFoundError(f"TextDataModule: the folder {str(target)!r} (--data.path) holds no .txt file")
        return files
    files = sorted(Path(p) for p in glob.glob(os.path.expanduser(path), recursive=True) if Path(p).is_file())
    if not files:
        raise FileNotFoundError(f"TextDataModule: --data.path {path!r} matches no file; expected a text file, "
                                "a folder of .txt files or a glob such as 'books/**/*.txt'")
    return files


def decode_utf8(file: Path, data: bytes) -> str:
    """``data`` as text; an invalid byte raises naming the file, the byte offset and the line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(f"{file}: byte {error.start} (line {line}) is not valid UTF-8 ({error.reason}); "
                         "the text DataModule reads UTF-8: convert the file first, "
                         "e.g. `iconv -f latin1 -t utf-8`") from None


def corpus_root(files: list[Path]) -> Path:
    """The deepest folder holding every file (document names are relative to it)."""
    parents = [str(f.resolve().parent) for f in files]
    return Path(os.path.commonpath(parents))


def read_documents(files: list[Path], separator: Optional[str]) -> list[Document]:
    """One document per file, or per non-blank piece of a file cut at ``separator``."""
    root = corpus_root(files)
    documents = []
    for file in files:
        name = str(file.resolve().relative_to(root))
        text = decode_utf8(file, file.read_bytes())
        pieces = [text] if separator is None else [p for p in text.split(separator) if p.strip()]
        if separator is None or len(pieces) == 1:
            documents += [Document(name, p) for p in pieces if p]
        else:
            documents += [Document(f"{name}#{k}", p) for k, p in enumerate(pieces)]
    return documents


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """``(train, val, test)`` document counts: a positive fraction gets at least one document."""
    def count(fraction: float) -> int:
        return 0 if fraction <= 0 else max(1, round(n * fraction))

    val, test = count(val_fraction), count(test_fraction)
    return n - val - test, val, test


def split_documents(documents: list[Document], val_fraction: float, test_fraction: float,
                    seed: int) -> dict[str, list[Document]]:
    """Documents dealt to train / val / test by a permutation drawn from ``seed``."""
    n_train, n_val, _ = split_sizes(len(documents), val_fraction, test_fraction)
    if n_train < 1:
        raise ValueError(f"TextDataModule: {len(documents)} document(s) cannot be split by document into "
                         f"train/val/test with val_fraction={val_fraction}, test_fraction={test_fraction}; "
                         "give more files, or cut files into documents with --data.document_separator")
    order = np.random.default_rng(seed).permutation(len(documents))
    dealt = [documents[i] for i in order]
    parts = {"train": dealt[:n_train], "val": dealt[n_train:n_train + n_val], "test": dealt[n_train + n_val:]}
    # Name order inside a split: the stream reads works whole and in a stable order.
    return {split: sorted(docs, key=lambda d: d.name) for split, docs in parts.items()}


def cache_key(files: list[Path], spec: dict) -> str:
    """A hash of the files' names and bytes and of ``spec`` (tokenizer, split, format)."""
    digest = hashlib.blake2b(json.dumps({**spec, "format": CACHE_FORMAT}, sort_keys=True).encode(), digest_size=16)
    root = corpus_root(files)
    for file in files:
        digest.update(str(file.resolve().relative_to(root)).encode() + b"\0")
        digest.update(hashlib.blake2b(file.read_bytes(), digest_size=16).digest())
    return digest.hexdigest()


def token_stream(tokenizer: TextTokenizer, documents: list[Document]) -> np.ndarray:
    """``[EOD] doc [EOD] doc ...`` as one (n,) array (uint16 for vocabularies up to 65,536)."""
    texts = [d.text for d in documents]
    encoded = (tokenizer.encode_batch(texts) if isinstance(tokenizer, BPETokenizer)
               else [tokenizer.encode(t) for t in texts])
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32
    eod = np.array([tokenizer.eod_id], dtype=dtype)
    parts = []
    for ids in encoded:
        parts += [eod, ids.astype(dtype)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def build_cache(folder: Path, splits: dict[str, list[Document]], tokenizer_kind: str, vocab_size: int) -> None:
    """Train the tokenizer on the training documents, write every split's tokens, then move the
    finished folder into place (a run killed half-way leaves no half-written cache)."""
    tokenizer = make_tokenizer(tokenizer_kind, (d.text for d in splits["train"]), vocab_size)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    meta = {"tokenizer": tokenizer.kind, "vocab_size": tokenizer.vocab_size, "splits": {}}
    for split, documents in splits.items():
        tokens = token_stream(tokenizer, documents)
        tokens.tofile(staging / f"{split}.bin")
        meta["splits"][split] = {"tokens": int(tokens.size), "dtype": tokens.dtype.name,
                                 "documents": [d.name for d in documents]}
    tokenizer.save(staging / "tokenizer.json")
    (staging / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        staging.rename(folder)
    except OSError:  # another process finished the same cache first: keep theirs
        shutil.rmtree(staging, ignore_errors=True)


@dataclass(frozen=True)
class TokenCache:
    """A finished cache folder: its tokenizer and, per split, the token file, count and dtype."""

    folder: Path
    meta: dict

    @classmethod
    def open(cls, folder: Path) -> TokenCache:
        return cls(folder, json.loads((folder / "meta.json").read_text()))

    def tokenizer(self) -> TextTokenizer:
        return load_tokenizer(self.folder / "tokenizer.json")

    def tokens(self, split: str) -> np.ndarray:
        """(n,) token ids of ``split``, memory-mapped read-only (nothing is loaded up front)."""
        info = self.meta["splits"][split]
        if info["tokens"] == 0:
            return np.zeros(0, dtype=info["dtype"])
        return np.memmap(self.folder / f"{split}.bin", dtype=info["dtype"], mode="r", shape=(info["tokens"],))

    def documents(self, split: str) -> list[str]:
        return self.meta["splits"][split]["documents"]
