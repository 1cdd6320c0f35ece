"""The needle datasets of ``niah.py``: samples of one split, and whole batches of one length each.

Shape legend: B batch, T = L context length. Every sample is a pure function of
``(data_seed, split, index, length)``: its generator is seeded by ``(data_seed, split, index)``
and draws, in order, the depth (training), the needle values and keys, the distractor depths and
the filler offset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from .niah_ruler import NeedleSpec
from .niah_samples import Haystack, to_item
from .tokenizer import ByteTokenizer

SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


class NeedleSet(Dataset):
    """Samples of one split; ``cells`` lists ``(length, depth)`` per sample, where a depth of
    ``None`` is drawn uniformly in [0, 1] (training)."""

    def __init__(self, haystack: Haystack, cells: list[tuple[int, Optional[float]]], spec: NeedleSpec,
                 seed: int, split: str, with_answer: bool) -> None:
        self.haystack, self.cells, self.spec = haystack, cells, spec
        self.seed, self.split, self.with_answer = seed, split, with_answer
        self.eod = ByteTokenizer.eod_id

    def __len__(self) -> int:
        return len(self.cells)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.item(index, *self.cells[index])

    def item(self, index: int, length: int, depth: Optional[float]) -> dict[str, torch.Tensor]:
        """Sample ``index`` at context ``length`` (a curriculum may ask any length of an index)."""
        rng = np.random.default_rng((self.seed, SPLIT_IDS[self.split], index))
        depth = float(rng.random()) if depth is None else depth
        sample = self.spec.make(self.haystack, length, depth, rng, self.eod)
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
