"""The token cache of a text corpus: built by streaming, read by memory-mapping.

A cache folder holds, per split, ``<split>.bin`` (the ``[EOD] doc [EOD] doc ...`` token ids, uint16
for vocabularies up to 65,536, else uint32) and ``<split>.documents`` (the documents' names, one a
line), the tokenizer (``tokenizer.json``) and ``meta.json`` (per split: file, offset and count of
tokens, dtype, documents). A stream cut contiguously (``corpus.Plan``) is one ``stream.bin`` that the
three splits share at different offsets.

Building streams: documents are read in batches of about ``BATCH_CHARS`` characters (a reader thread
parses the next batch while the tokenizer encodes this one, on every core it is given) and each
batch's tokens are appended to the split files, so memory holds a few batches whatever the corpus
size. A progress bar (bytes/s) shows on a terminal; one log line sums up.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .corpus import SPLITS, Plan, contiguous_shares
from .formats import Piece, Reading
from .tokenizer import TextTokenizer, load_tokenizer, make_tokenizer

BATCH_CHARS = 1 << 20
Log = Callable[[str], None]


def batches(labelled: Iterable[tuple[str, Piece]], chars: int = BATCH_CHARS) -> Iterator[list[tuple[str, Piece]]]:
    """``labelled`` grouped into lists of about ``chars`` characters."""
    batch, size = [], 0
    for item in labelled:
        batch.append(item)
        size += len(item[1].text)
        if size >= chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def prefetched(items: Iterator) -> Iterator:
    """``items``, the next one produced by a thread while the caller works on this one (the
    parsers and the tokenizer's encoder release the GIL for most of their work)."""
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(next, items, None)
        while (item := future.result()) is not None:
            future = pool.submit(next, items, None)
            yield item


class SplitWriter:
    """Appends each batch's tokens, with an end-of-document token before every new document, to
    ``<output>.bin``, and the documents' names to ``<output>.documents``."""

    def __init__(self, folder: Path, outputs: Iterable[str], dtype: np.dtype, eod_id: int) -> None:
        self.dtype, self.eod = dtype, np.array([eod_id], dtype=dtype)
        self.tokens = {o: open(folder / f"{o}.bin", "wb") for o in outputs}
        self.names = {o: open(folder / f"{o}.documents", "w", encoding="utf-8") for o in outputs}
        self.counts = {o: 0 for o in outputs}
        self.documents = {o: 0 for o in outputs}

    def write(self, batch: list[tuple[str, Piece]], ids: list[np.ndarray]) -> None:
        parts: dict[str, list[np.ndarray]] = {o: [] for o in self.tokens}
        for (output, piece), tokens in zip(batch, ids):
            if piece.start:
                parts[output].append(self.eod)
                self.names[output].write(piece.name + "\n")
                self.documents[output] += 1
            parts[output].append(tokens.astype(self.dtype, copy=False))
        for output, arrays in parts.items():
            if arrays:
                stream = np.concatenate(arrays)
                stream.tofile(self.tokens[output])
                self.counts[output] += stream.size

    def close(self) -> None:
        for file in (*self.tokens.values(), *self.names.values()):
            file.close()


def progress_bar(total: int):
    """A bytes/s bar on a terminal's stderr; nothing when stderr is not a terminal (logs, tests)."""
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="tokenizing", disable=None,
                file=sys.stderr, mininterval=0.5, dynamic_ncols=True)


def encode_all(plan: Plan, tokenizer: TextTokenizer, writer: SplitWriter) -> None:
    """Every document of ``plan`` through ``tokenizer`` into ``writer``, batch by batch."""
    with progress_bar(plan.bytes) as bar:
        for batch in prefetched(batches(plan.labelled(Reading()))):
            writer.write(batch, tokenizer.encode_batch([piece.text for _, piece in batch]))
            bar.update(sum(len(piece.text.encode("utf-8")) for _, piece in batch))


def split_entries(plan: Plan, writer: SplitWriter, dtype: np.dtype) -> dict[str, dict]:
    """``meta["splits"]``: where each split's tokens lie, how many, and its documents."""
    if plan.mode == "contiguous":
        total = writer.counts["stream"]
        shares = contiguous_shares(total, *plan.fractions)
        offsets = np.cumsum((0, *shares[:-1]))
        return {split: {"file": "stream.bin", "offset": int(offset), "tokens": int(share), "dtype": dtype.name,
                        "names": "stream.documents", "documents": writer.documents["stream"]}
                for split, offset, share in zip(SPLITS, offsets, shares)}
    return {split: {"file": f"{split}.bin", "offset": 0, "tokens": writer.counts.get(split, 0), "dtype": dtype.name,
                    "names": f"{split}.documents", "documents": writer.documents.get(split, 0)}
            for split in SPLITS}


def build_cache(folder: Path, plan: Plan, tokenizer_kind: str, vocab_size: int, log: Log = print) -> None:
    """Make the tokenizer (a BPE learns from the training text only), write every split's tokens,
    then move the finished folder into place (a run killed half-way leaves no half-written cache)."""
    if tokenizer_kind == "bpe":
        log(f"TextDataModule: training a byte-level BPE of {vocab_size} tokens on the training text "
            f"({plan.split_bytes('train') / 1e6:.1f} MB)")
    tokenizer = make_tokenizer(tokenizer_kind, plan.training_texts(), vocab_size)
    log(f"TextDataModule: tokenizer {tokenizer_kind!r}, vocabulary {tokenizer.vocab_size}; {tokenizer.eod_note}")
    dtype = np.dtype(np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    outputs = ("stream",) if plan.mode == "contiguous" else SPLITS
    writer = SplitWriter(staging, outputs, dtype, tokenizer.eod_id)
    start = time.perf_counter()
    try:
        encode_all(plan, tokenizer, writer)
    except BaseException:
        writer.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    writer.close()
    seconds = time.perf_counter() - start
    log(f"TextDataModule: tokenized {plan.bytes / 1e6:.1f} MB into {sum(writer.counts.values()):,} tokens in "
        f"{seconds:.1f} s ({plan.bytes / 1e6 / max(seconds, 1e-9):.1f} MB/s) into {folder}")
    meta = {"tokenizer": tokenizer.kind, "vocab_size": tokenizer.vocab_size, "mode": plan.mode,
            "splits": split_entries(plan, writer, dtype)}
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
        offset = info["offset"] * np.dtype(info["dtype"]).itemsize
        return np.memmap(self.folder / info["file"], dtype=info["dtype"], mode="r", offset=offset,
                         shape=(info["tokens"],))

    def documents(self, split: str) -> list[str]:
        """Names of ``split``'s documents (contiguous splits: every document of the stream)."""
        return (self.folder / self.meta["splits"][split]["names"]).read_text(encoding="utf-8").splitlines()
