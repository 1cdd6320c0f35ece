"""Next-item recommendation data: per-user histories, leave-one-out split, right-padded batches.

Shape legend: B users (or training windows) in a batch, T history positions (the longest in the
batch, at most ``max_len``), S items a user saw before the target.

Split (leave-one-out, as in SASRec and RecBole): a user's last item is the test target, the
second-to-last the validation target, the rest is training. Training windows cover the training
items: a window of ``max_len + 1`` items gives inputs ``w[:-1]`` and next-item targets ``w[1:]``.
Validation reads the training items and predicts the validation item; test reads the training
and validation items and predicts the test item; predict reads everything. Validation and test
batches hold users of alike history lengths (users sorted by length: little padding, the same
metrics); predict keeps the log's user order.

Batches are dicts of tensors (item id 0 = padding):

* training: ``items`` (B, T), ``targets`` (B, T) next items (0 at pads), ``mask`` (B, T) bool.
* evaluation and predict: ``items`` (B, T) the most recent ``max_len`` items, ``mask`` (B, T),
  ``lengths`` (B,), ``user`` (B,) user index (``vocabulary`` maps it back), ``seen`` (B, S)
  every item before the target however long the history (for excluding seen items), and, but
  for predict, ``target`` (B,).

Padding is on the right: real items sit at positions 0..n-1 whatever the pad count, so a causal
model's outputs at real positions cannot depend on pads (memory chunks and MAC segments sit at
absolute positions: left padding would shift them), and ``mask`` makes pads leave the memory
untouched. The last real position of row b is ``lengths[b] - 1``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import polars as pl
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..base import TitansDataModule
from .formats import Format
from .log import InteractionLog, read_interactions

Split = Literal["val", "test", "predict"]
#: how many of a user's last items each split holds out (the target and everything after it)
HELD_OUT = {"val": 2, "test": 1, "predict": 0}


def pad_right(rows: list[np.ndarray], length: Optional[int] = None) -> Tensor:
    """(B,) int arrays -> (B, length) int64, zero-padded on the right (length: the longest row)."""
    length = max([len(r) for r in rows] + [1]) if length is None else length
    out = np.zeros((len(rows), length), dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return torch.from_numpy(out)


def training_windows(offsets: np.ndarray, max_len: int, windows: Literal["all", "last"]) -> np.ndarray:
    """(W, 2) [start, stop) item ranges of the training windows.

    Each user's training items ``[offsets[u], offsets[u+1] - 2)`` are cut from the end into
    windows of at most ``max_len + 1`` items that overlap by one, so every training item but
    the user's first is a target exactly once (``"all"``), or only the most recent window is
    kept (``"last"``, as in SASRec). Users with a single training item have no window.
    """
    ranges = []
    for start, stop in zip(offsets[:-1], offsets[1:] - 2):
        hi = stop
        while hi - start >= 2:
            lo = max(start, hi - max_len - 1)
            ranges.append((lo, hi))
            if windows == "last":
                break
            hi = lo + 1
    return np.asarray(ranges, dtype=np.int64).reshape(-1, 2)


class TrainingWindows(Dataset):
    """Training windows of a log (see ``training_windows``); item ``i`` is one window's items."""

    def __init__(self, log: InteractionLog, max_len: int, windows: Literal["all", "last"]) -> None:
        self.items = log.items
        self.ranges = training_windows(log.offsets, max_len, windows)
        #: (W,) input positions of each window (for ``group_by_length``)
        self.lengths = self.ranges[:, 1] - self.ranges[:, 0] - 1

    def __len__(self) -> int:
        return len(self.ranges)

    def __getitem__(self, index: int) -> np.ndarray:
        lo, hi = self.ranges[index]
        return self.items[lo:hi]

    @staticmethod
    def collate(windows: list[np.ndarray]) -> dict[str, Tensor]:
        items = pad_right([w[:-1] for w in windows])
        return {"items": items, "targets": pad_right([w[1:] for w in windows]), "mask": items != 0}


class UserHistories(Dataset):
    """One example per user: the history before the split's target, and the target.

    Item ``i`` is ``(u, history, seen, target)`` for user ``u = order[i]``, with ``seen`` every
    item before the target, ``history`` its last ``max_len`` items and ``target`` 0 for
    ``predict``. ``by_length``: users in order of history length (batches padded to their longest
    history then carry little padding; metrics are means over users, so the order changes none),
    else in user order (``predict``: recommendations are written in the log's user order).
    """

    def __init__(self, log: InteractionLog, max_len: int, split: Split, by_length: bool = False) -> None:
        self.items, self.offsets, self.max_len = log.items, log.offsets, max_len
        self.held_out = HELD_OUT[split]
        lengths = np.minimum(np.diff(self.offsets) - self.held_out, max_len)
        self.order = np.argsort(lengths, kind="stable") if by_length else np.arange(len(lengths))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> tuple[int, np.ndarray, np.ndarray, int]:
        user = int(self.order[index])
        start, stop = self.offsets[user], self.offsets[user + 1] - self.held_out
        seen = self.items[start:stop]
        target = int(self.items[stop]) if self.held_out else 0
        return user, seen[-self.max_len :], seen, target

    def collate(self, examples: list[tuple[int, np.ndarray, np.ndarray, int]]) -> dict[str, Tensor]:
        users, histories, seen, targets = zip(*examples)
        items = pad_right(list(histories))
        batch = {"items": items, "mask": items != 0,
                 "lengths": torch.tensor([len(h) for h in histories]),
                 "user": torch.tensor(users), "seen": pad_right(list(seen))}
        if self.held_out:
            batch["target"] = torch.tensor(targets)
        return batch


class InteractionDataModule(TitansDataModule):
    """Next-item recommendation from an interaction log (CSV, TSV, Parquet, RecBole ``.inter``,
    JSON lines, MovieLens ``.dat``, S3-Rec sequences or SASRec pairs).

    Args:
        path: the log (default: the shipped MovieLens latest-small).
        format: ``csv``, ``tsv``, ``parquet``, ``inter``, ``jsonl``, ``dat`` (text ones also ``.gz``),
            ``sequences`` (``user item item ...`` a line) or ``pairs`` (``user item`` a line);
            None: from the file's suffix (sequences and pairs files must name it). See
            ``datamodules.recsys.formats``.
        user_column, item_column: its column names (RecBole's with or without ``:type``); the
            formats without a header (dat, sequences, pairs) give these names to their fields.
        timestamp_column: the time column; None: the file's order is the time order (the
            sequence formats have no timestamp: set None).
        rating_column, min_rating: keep only rows with ``rating >= min_rating`` (implicit
            feedback from ratings); both or neither. Default: every row is an interaction.
        k_core: if > 0, repeatedly drop users and items with fewer than this many interactions.
        max_len: history length: the most recent ``max_len`` items are read (training windows
            hold ``max_len`` inputs).
        train_windows: ``"all"`` cuts each training sequence into windows covering every item;
            ``"last"`` keeps only the most recent window per user (SASRec).
        eval_batch_size: users per validation/test/predict batch (default: ``batch_size``).
        **kwargs: ``batch_size``, ``num_workers``, ``seed``, ``pin_memory``, ``shuffle``,
            ``group_by_length`` of the base (grouping training windows by length cuts the padded
            positions a model computes several-fold on short-history data such as Amazon's).

    ``data_sizes`` is ``{"num_items": N}``; real item ids are 1..N, 0 is padding.
    ``vocabulary`` gives the original user and item ids (for writing recommendations).
    """

    def __init__(
        self,
        path: str = "data/recsys/ratings.csv",
        format: Optional[Format] = None,
        user_column: str = "userId",
        item_column: str = "movieId",
        timestamp_column: Optional[str] = "timestamp",
        rating_column: Optional[str] = None,
        min_rating: Optional[float] = None,
        k_core: int = 0,
        max_len: int = 50,
        train_windows: Literal["all", "last"] = "all",
        eval_batch_size: Optional[int] = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if max_len < 1 or k_core < 0 or train_windows not in ("all", "last"):
            raise ValueError(f"{type(self).__name__}: expected max_len >= 1, k_core >= 0 and train_windows in "
                             f"('all', 'last'), got {max_len}, {k_core}, {train_windows!r}")
        self.path = path
        self.read_args = dict(user_column=user_column, item_column=item_column, timestamp_column=timestamp_column,
                              rating_column=rating_column, min_rating=min_rating, k_core_min=k_core,
                              format=format)
        self.max_len, self.train_windows = max_len, train_windows
        self.eval_batch_size = eval_batch_size
        self._interactions: Optional[InteractionLog] = None

    @property
    def interactions(self) -> InteractionLog:
        """The preprocessed log, read on first use (``data_sizes`` needs it before ``setup``)."""
        if self._interactions is None:
            self._interactions = read_interactions(Path(self.path), **self.read_args)
        return self._interactions

    @property
    def data_sizes(self) -> dict[str, int]:
        return {"num_items": self.interactions.num_items}

    @property
    def vocabulary(self) -> tuple[pl.Series, pl.Series]:
        """``(users, items)``: original user ids by user index, original item ids by id - 1."""
        return self.interactions.users, self.interactions.item_ids

    def setup(self, stage: str) -> None:
        self.datasets = {"train": TrainingWindows(self.interactions, self.max_len, self.train_windows)}
        self.datasets.update({split: UserHistories(self.interactions, self.max_len, split, by_length=split != "predict")
                              for split in HELD_OUT})

    def collate(self, split: str) -> Callable[[list], dict[str, Tensor]]:
        """Training windows padded to the longest; evaluation adds what full ranking needs."""
        return TrainingWindows.collate if split == "train" else self.datasets[split].collate

    def batch_size_of(self, split: str) -> int:
        return self.batch_size if split == "train" else self.eval_batch_size or self.batch_size
