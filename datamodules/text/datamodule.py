"""Text corpora for language modelling: a file, a folder or a glob of text, JSON lines, Parquet or
Arrow files (``corpus.py``, ``formats.py``), tokenized once into a cache (``cache.py``).

Batch contract (fit / validate / test), shape legend B batch, T ``seq_len``::

    {"input": (B, T) int64, "target": (B, T) int64 (input shifted by one),
     "target_bytes": (B, T) int64 (UTF-8 bytes each target token stands for; 0 = end of document)}

Predict batches hold one prompt each: ``{"prompt": (1, P) int64, "index": (1,) int64}``, the
prompt's tokens after an end-of-document token (the model reads it as "a new document starts").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import Dataset

from ..base import TitansDataModule
from .cache import TokenCache, build_cache
from .corpus import ALL_FORMATS, PARAGRAPH, SPLITS, Plan, Source, cache_key, file_digest, find_files, make_plan
from .formats import file_format
from .tokenizer import ByteTokenizer, TextTokenizer, is_builtin, open_tokenizer, open_user_tokenizer, tokenizer_file


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


def describe_plan(plan: Plan) -> str:
    """One log line: how the documents went to the splits, and the empty records skipped."""
    if plan.mode == "fixed":
        text = "fixed splits: " + ", ".join(f"{split} from {plan.sources[split].option} "
                                            f"({plan.surveys[split].documents} documents)" for split in plan.sources)
    elif plan.mode == "contiguous":
        val, test = plan.fractions
        text = (f"{plan.surveys['train'].documents} document(s) cannot be dealt into train/val/test; the token stream "
                f"is cut instead: the last {val + test:.0%} held out ({val:.0%} validation, then {test:.0%} test)")
    else:
        counts = np.bincount(plan.labels, minlength=3)
        text = f"{plan.labels.size} documents dealt: " + ", ".join(f"{c} {s}" for c, s in zip(counts, SPLITS))
    empty = {f: n for survey in plan.surveys.values() for f, n in survey.reading.empty.items()}
    if empty:
        where = ", ".join(f"{Path(f).name}: {n}" for f, n in list(empty.items())[:5])
        text += f"; skipped {sum(empty.values())} empty record(s) ({where}{', ...' if len(empty) > 5 else ''})"
    return "TextDataModule: " + text


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
        path: a corpus file, a folder or a glob (``'books/**/*.txt'``). Files: UTF-8 ``.txt``,
            JSON lines ``.jsonl`` / ``.jsonl.gz`` / ``.json`` (records; a ``.json`` array too),
            ``.parquet``, ``.arrow``; a folder: every file of one format below it, or a folder
            written by ``datasets.save_to_disk`` (no ``datasets`` needed). Training only when
            ``val_path`` or ``test_path`` is given. Default: the shipped works of Shakespeare.
        text_column: the field of each record that holds its document (JSON, Parquet, Arrow).
        val_path, test_path: fixed held-out files (a file, folder or glob, as ``path``); given
            either, the fractions are unused and a split without its path is absent.
        tokenizer: ``byte`` (UTF-8 bytes, vocabulary 257, nothing to train), ``bpe`` (byte-level
            BPE trained on the training split with Hugging Face ``tokenizers``), or a path to a
            Hugging Face ``tokenizer.json`` or a folder holding one (its EOS token ends documents;
            without one, ``<|endoftext|>`` is added).
        bpe_vocab_size: vocabulary of the BPE tokenizer (256 bytes + end of document + merges).
        seq_len: tokens per training window (each sample holds ``seq_len + 1`` to shift targets).
        val_fraction, test_fraction: share of documents held out for validation and test; a
            positive share gets at least one document. With fewer documents than splits, the
            token stream is cut instead (its last fractions held out), which is logged.
        split_seed: seed of the permutation that deals documents to the splits.
        document_separator: cut every text file into documents at this string (e.g. ``"\\n\\n\\n"``);
            None = one document per file, except that a text corpus of fewer files than splits is cut
            at blank lines (paragraphs), which is logged.
        max_eval_windows: keep this many validation/test windows, evenly spaced (None = all).
        cache_dir: where token caches live, one folder per hash of files + tokenizer + split;
            None = ``.cache/titans/text`` under the working directory.
        prompts: texts that ``titans predict`` continues, one generation each.
    """

    def __init__(
        self,
        path: str = "data/text/shakespeare",
        text_column: str = "text",
        val_path: Optional[str] = None,
        test_path: Optional[str] = None,
        tokenizer: str = "byte",
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
        if seq_len < 1 or not (0 <= val_fraction < 1 and 0 <= test_fraction < 1):
            raise ValueError(f"TextDataModule: expected seq_len >= 1 and fractions in [0, 1), got seq_len={seq_len}, "
                             f"val_fraction={val_fraction}, test_fraction={test_fraction}")
        if max_eval_windows is not None and max_eval_windows < 1:
            raise ValueError(f"TextDataModule.max_eval_windows: expected None or >= 1, got {max_eval_windows}")
        self.path, self.text_column, self.val_path, self.test_path = path, text_column, val_path, test_path
        self.tokenizer_kind, self.bpe_vocab_size = tokenizer, bpe_vocab_size
        self.seq_len, self.val_fraction, self.test_fraction = seq_len, val_fraction, test_fraction
        self.split_seed, self.document_separator = split_seed, document_separator
        self.max_eval_windows = max_eval_windows
        self.cache_dir = Path(cache_dir if cache_dir is not None else os.path.join(".cache", "titans", "text"))
        self.prompts = list(prompts) if prompts is not None else ["ROMEO:"]
        self.tokenizer: Optional[TextTokenizer] = None
        self.cache: Optional[TokenCache] = None
        self._cache_folder: Optional[Path] = None
        self._sources: Optional[dict[str, Source]] = None
        # a tokenizer file is read now: a wrong one fails at once, and data_sizes is known
        self._vocab_size = None if is_builtin(tokenizer) else open_user_tokenizer(tokenizer).vocab_size

    @property
    def data_sizes(self) -> dict[str, int]:
        """``{"vocab_size": V}``: 257 for bytes, ``bpe_vocab_size`` for BPE (an upper bound: a small
        corpus may yield fewer merges; the unused rows are never targets), a tokenizer file's own
        (with the end-of-document token it may add)."""
        if self._vocab_size is not None:
            return {"vocab_size": self._vocab_size}
        return {"vocab_size": ByteTokenizer().vocab_size if self.tokenizer_kind == "byte" else self.bpe_vocab_size}

    # ---- the cache ---------------------------------------------------------------------------

    @property
    def fixed_splits(self) -> bool:
        return self.val_path is not None or self.test_path is not None

    def separator(self, files: list[Path]) -> Optional[str]:
        """The effective document separator (see ``document_separator``)."""
        if self.document_separator is not None:
            return self.document_separator
        needed = 1 + (self.val_fraction > 0) + (self.test_fraction > 0)
        text_only = all((file_format(f) or "txt") == "txt" for f in files)
        return PARAGRAPH if text_only and len(files) < needed and not self.fixed_splits else None

    def sources(self) -> dict[str, Source]:
        """Split -> its files (``train`` only unless fixed splits are given); found once."""
        if self._sources is None:
            paths = {"train": ("--data.path", self.path), "val": ("--data.val_path", self.val_path),
                     "test": ("--data.test_path", self.test_path)}
            self._sources = {}
            for split, (option, path) in paths.items():
                if path is not None:
                    files = find_files(path, option, ALL_FORMATS)
                    separator = self.separator(files) if split == "train" else self.document_separator
                    self._sources[split] = Source(option, tuple(files), self.text_column, separator)
        return self._sources

    def cache_folder(self) -> Path:
        """``<cache_dir>/<hash>`` for the current files, tokenizer and split; the files are read
        (hashed) once per DataModule, at the first call."""
        if self._cache_folder is None:
            self._cache_folder = self.cache_dir / cache_key(self.sources(), self.cache_spec())
        return self._cache_folder

    def cache_spec(self) -> dict:
        """What besides the files decides the cache: tokenizer, split, how documents are read."""
        kind = self.tokenizer_kind
        tokenizer = kind if is_builtin(kind) else "file:" + file_digest(tokenizer_file(kind)).hex()
        split = {} if self.fixed_splits else {"val_fraction": self.val_fraction, "test_fraction": self.test_fraction,
                                              "split_seed": self.split_seed}
        return {"tokenizer": tokenizer, "bpe_vocab_size": self.bpe_vocab_size if kind == "bpe" else None,
                "separator": self.sources()["train"].separator, "text_column": self.text_column, **split}

    def prepare_data(self) -> None:
        """Build the token cache if it is missing (Lightning calls this on one process per node)."""
        folder = self.cache_folder()
        if (folder / "meta.json").is_file():
            return
        train = self.sources()["train"]
        if train.separator == PARAGRAPH and self.document_separator is None:
            rank_zero_info(f"TextDataModule: {len(train.files)} file(s) cannot be split by file into "
                           "train/val/test; blank-line-separated paragraphs are the documents "
                           "(set --data.document_separator to choose)")
        plan = make_plan(self.sources(), self.val_fraction, self.test_fraction, self.split_seed)
        rank_zero_info(describe_plan(plan))
        build_cache(folder, plan, self.tokenizer_kind, self.bpe_vocab_size, log=rank_zero_info)

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
        if self.fixed_splits:
            return split in self.sources()
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
