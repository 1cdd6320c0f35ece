"""Plain-text corpora for language modelling: a file, a folder of ``.txt`` files, or a glob.

Batch contract (fit / validate / test), shape legend B batch, T ``seq_len``::

    {"input": (B, T) int64, "target": (B, T) int64 (input shifted by one),
     "target_bytes": (B, T) int64 (UTF-8 bytes each target token stands for; 0 = end of document)}

Predict batches hold one prompt each: ``{"prompt": (1, P) int64, "index": (1,) int64}``, the
prompt's tokens after an end-of-document token (the model reads it as "a new document starts").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import Dataset

from ..base import TitansDataModule
from .corpus import PARAGRAPH, SPLITS, TokenCache, build_cache, cache_key, find_files, read_documents, split_documents
from .tokenizer import ByteTokenizer, TextTokenizer, open_tokenizer


class TokenWindows(Dataset):
    """Fixed windows of ``seq_len + 1`` tokens at stride ``seq_len`` over one split's stream.

    ``max_windows`` keeps that many windows evenly spaced over the whole split (a cheap evaluation
    that still visits every held-out document), instead of the first ones. The token file is opened
    lazily, so loader workers each map it rather than receive a copy.
    """

    def __init__(self, cache: TokenCache, split: str, seq_len: int, token_bytes: np.ndarray,
                 max_windows: Optional[int] = None) -> None:
        self.cache, self.split, self.seq_len = cache, split, seq_len
        self.token_bytes = torch.from_numpy(token_bytes)
        count = (cache.meta["splits"][split]["tokens"] - 1) // seq_len
        starts = np.arange(count, dtype=np.int64) * seq_len
        if max_windows is not None and max_windows < count:
            starts = starts[np.linspace(0, count - 1, max_windows).round().astype(np.int64)]
        self.starts = starts
        self._tokens: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self._tokens is None:
            self._tokens = self.cache.tokens(self.split)
        start = int(self.starts[index])
        window = torch.from_numpy(self._tokens[start:start + self.seq_len + 1].astype(np.int64))
        target = window[1:]
        return {"input": window[:-1], "target": target, "target_bytes": self.token_bytes[target]}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tokens": None}  # workers map the file themselves


class Prompts(Dataset):
    """``[EOD] + encode(prompt)`` for each prompt (an empty prompt samples a document from scratch)."""

    def __init__(self, prompts: list[str], tokenizer: TextTokenizer) -> None:
        self.items = [np.concatenate([[tokenizer.eod_id], tokenizer.encode(p)]).astype(np.int64) for p in prompts]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"prompt": torch.from_numpy(self.items[index]), "index": torch.tensor(index)}


class TextDataModule(TitansDataModule):
    """Documents of a text corpus, tokenized once into a memory-mapped cache, cut into windows.

    Args:
        path: a UTF-8 text file, a folder (every ``*.txt`` below it) or a glob
            (``'books/**/*.txt'``). Default: the shipped works of Shakespeare.
        tokenizer: ``byte`` (UTF-8 bytes, vocabulary 257, nothing to train) or ``bpe`` (byte-level
            BPE trained on the training split with Hugging Face ``tokenizers``).
        bpe_vocab_size: vocabulary of the BPE tokenizer (256 bytes + end of document + merges).
        seq_len: tokens per training window (each sample holds ``seq_len + 1`` to shift targets).
        val_fraction, test_fraction: share of documents held out for validation and test; a
            positive share gets at least one document.
        split_seed: seed of the permutation that deals documents to the splits.
        document_separator: cut every file into documents at this string (e.g. ``"\\n\\n\\n"``);
            None = one document per file, except that a corpus of fewer files than splits is cut at
            blank lines (paragraphs), which is logged.
        max_eval_windows: keep this many validation/test windows, evenly spaced (None = all).
        cache_dir: where token caches live, one folder per hash of files + tokenizer + split;
            None = ``.cache/titans/text`` under the working directory.
        prompts: texts that ``titans predict`` continues, one generation each.
    """

    def __init__(
        self,
        path: str = "data/text/shakespeare",
        tokenizer: Literal["byte", "bpe"] = "byte",
        bpe_vocab_size: int = 2048,
        seq_len: int = 256,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        split_seed: int = 0,
        document_separator: Optional[str] = None,
        max_eval_windows: Optional[int] = None,
        cache_dir: Optional[str] = None,
        prompts: Optional[list[str]] = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if tokenizer not in ("byte", "bpe"):
            raise ValueError(f"TextDataModule.tokenizer: expected 'byte' or 'bpe', got {tokenizer!r}")
        if seq_len < 1 or not (0 <= val_fraction < 1 and 0 <= test_fraction < 1):
            raise ValueError(f"TextDataModule: expected seq_len >= 1 and fractions in [0, 1), got seq_len={seq_len}, "
                             f"val_fraction={val_fraction}, test_fraction={test_fraction}")
        if max_eval_windows is not None and max_eval_windows < 1:
            raise ValueError(f"TextDataModule.max_eval_windows: expected None or >= 1, got {max_eval_windows}")
        self.path, self.tokenizer_kind, self.bpe_vocab_size = path, tokenizer, bpe_vocab_size
        self.seq_len, self.val_fraction, self.test_fraction = seq_len, val_fraction, test_fraction
        self.split_seed, self.document_separator = split_seed, document_separator
        self.max_eval_windows = max_eval_windows
        self.cache_dir = Path(cache_dir if cache_dir is not None else os.path.join(".cache", "titans", "text"))
        self.prompts = list(prompts) if prompts is not None else ["ROMEO:"]
        self.tokenizer: Optional[TextTokenizer] = None
        self.cache: Optional[TokenCache] = None
        self._cache_folder: Optional[Path] = None

    @property
    def data_sizes(self) -> dict[str, int]:
        """``{"vocab_size": V}``: 257 for bytes, ``bpe_vocab_size`` for BPE (an upper bound: a small
        corpus may yield fewer merges; the unused rows are never targets)."""
        return {"vocab_size": ByteTokenizer().vocab_size if self.tokenizer_kind == "byte" else self.bpe_vocab_size}

    # ---- the cache ---------------------------------------------------------------------------

    def separator(self, files: list[Path]) -> Optional[str]:
        """The effective document separator (see ``document_separator``)."""
        if self.document_separator is not None:
            return self.document_separator
        needed = 1 + (self.val_fraction > 0) + (self.test_fraction > 0)
        return PARAGRAPH if len(files) < needed else None

    def cache_folder(self) -> Path:
        """``<cache_dir>/<hash>`` for the current files, tokenizer and split; the files are read
        (hashed) once per DataModule, at the first call."""
        if self._cache_folder is None:
            self._cache_folder = self._hash_folder()
        return self._cache_folder

    def _hash_folder(self) -> Path:
        files = find_files(self.path)
        spec = {"tokenizer": self.tokenizer_kind,
                "bpe_vocab_size": self.bpe_vocab_size if self.tokenizer_kind == "bpe" else None,
                "val_fraction": self.val_fraction, "test_fraction": self.test_fraction, "split_seed": self.split_seed,
                "separator": self.separator(files)}
        return self.cache_dir / cache_key(files, spec)

    def prepare_data(self) -> None:
        """Build the token cache if it is missing (Lightning calls this on one process per node)."""
        folder = self.cache_folder()
        if (folder / "meta.json").is_file():
            return
        files = find_files(self.path)
        separator = self.separator(files)
        if separator == PARAGRAPH and self.document_separator is None:
            rank_zero_info(f"TextDataModule: {len(files)} file(s) cannot be split by file into train/val/test; "
                           "blank-line-separated paragraphs are the documents "
                           "(set --data.document_separator to choose)")
        documents = read_documents(files, separator)
        if not any(d.text.strip() for d in documents):
            raise ValueError(f"TextDataModule: the corpus {self.path!r} ({len(files)} file(s)) holds no text")
        splits = split_documents(documents, self.val_fraction, self.test_fraction, self.split_seed)
        rank_zero_info(f"TextDataModule: tokenizing {len(documents)} documents into {folder}")
        build_cache(folder, splits, self.tokenizer_kind, self.bpe_vocab_size)

    def setup(self, stage: str) -> None:
        self.prepare_data()  # a no-op when the cache exists; builds it when used without a Trainer
        self.cache = TokenCache.open(self.cache_folder())
        self.tokenizer = self.cache.tokenizer()
        if self.tokenizer.vocab_size > self.data_sizes["vocab_size"]:
            raise ValueError(f"TextDataModule: the tokenizer has {self.tokenizer.vocab_size} tokens, more than "
                             f"data_sizes['vocab_size'] = {self.data_sizes['vocab_size']}")
        if stage == "predict":  # prompts only: a split too short for a window does not stop predict
            self.datasets["predict"] = Prompts(self.prompts, self.tokenizer)
        else:
            self.datasets.update({split: self.windows(split) for split in SPLITS if self.split_is_used(split)})

    def split_is_used(self, split: str) -> bool:
        return split == "train" or {"val": self.val_fraction, "test": self.test_fraction}[split] > 0

    def windows(self, split: str) -> TokenWindows:
        """The split's windows; a split shorter than one window raises naming its documents."""
        tokens = self.cache.meta["splits"][split]["tokens"]
        if tokens < self.seq_len + 1:
            docs = self.cache.documents(split)
            raise ValueError(f"TextDataModule: the {split} split ({len(docs)} document(s): {', '.join(docs[:5])}"
                             f"{' ...' if len(docs) > 5 else ''}) holds {tokens} tokens, fewer than one window of "
                             f"seq_len + 1 = {self.seq_len + 1}; lower --data.seq_len or give more text")
        max_windows = None if split == "train" else self.max_eval_windows
        return TokenWindows(self.cache, split, self.seq_len, self.tokenizer.token_bytes(), max_windows)

    def save_artifacts(self, run_dir: str) -> None:
        """``<run_dir>/tokenizer.json``, next to ``checkpoints/``: a checkpoint is readable with
        the tokenizer it was trained with even after the cache is gone (``titans-stream`` loads
        it through :meth:`load_tokenizer`). Called by the CLI after ``setup``."""
        self.tokenizer.save(Path(run_dir) / "tokenizer.json")

    @staticmethod
    def load_tokenizer(source: str) -> TextTokenizer:
        """``"byte"``, or the tokenizer file ``source`` that :meth:`save_artifacts` wrote. Users of a
        run (``titans-stream``) reach it through the data class its ``config.yaml`` names, so they
        need not import this package."""
        return open_tokenizer(source)

    def batch_size_of(self, split: str) -> int:
        """One prompt per predict batch (prompts differ in length); ``batch_size`` windows otherwise."""
        return 1 if split == "predict" else self.batch_size

    def decode(self, ids) -> str:
        """Text of token ids (end-of-document tokens dropped)."""
        return self.tokenizer.decode(ids)
