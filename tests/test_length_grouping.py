"""Length-grouped shuffling (``--data.group_by_length``): each sample once an epoch, batches of
alike lengths, a new grouping every epoch, the same global batches on one or two ranks, and clear
errors where it cannot apply."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from datamodules import TitansDataModule
from datamodules.recsys import InteractionDataModule
from datamodules.sampling import LengthGroupedSampler

LENGTHS = np.random.default_rng(0).geometric(0.15, size=1003).clip(max=50)


def batches(sampler: LengthGroupedSampler, batch_size: int) -> list[list[int]]:
    order = list(sampler)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def padded_positions(groups: list[list[int]]) -> int:
    """Positions computed when each batch is padded to its longest sample."""
    return sum(int(LENGTHS[b].max()) * len(b) for b in groups)


def test_each_sample_once_in_batches_of_alike_lengths():
    sampler = LengthGroupedSampler(LENGTHS, batch_size=16, seed=3)
    grouped = batches(sampler, 16)
    assert sorted(i for b in grouped for i in b) == list(range(len(LENGTHS)))
    shuffled = torch.randperm(len(LENGTHS), generator=torch.Generator().manual_seed(3)).tolist()
    random = [shuffled[i:i + 16] for i in range(0, len(shuffled), 16)]
    real = int(LENGTHS.sum())
    assert real / padded_positions(grouped) > 0.8 > 0.4 > real / padded_positions(random)
    assert len(grouped[-1]) == len(LENGTHS) % 16  # the one smaller batch stays last


def test_the_grouping_changes_every_epoch_and_repeats_for_a_seed():
    sampler = LengthGroupedSampler(LENGTHS, batch_size=16, seed=3)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert first != second
    assert list(LengthGroupedSampler(LENGTHS, batch_size=16, seed=3)) == first
    # batches are not the same samples sorted anew: the groups are drawn again
    assert {frozenset(b) for b in batches(sampler, 16)} != {frozenset(first[i:i + 16]) for i in range(0, 1003, 16)}


def test_two_ranks_see_the_global_batches_of_one_process():
    one = batches(LengthGroupedSampler(LENGTHS, batch_size=32, seed=5), 32)
    ranks = [batches(LengthGroupedSampler(LENGTHS, batch_size=16, num_replicas=2, rank=r, seed=5), 16)
             for r in range(2)]
    for step, global_batch in enumerate(one[:-1]):
        assert sorted(ranks[0][step] + ranks[1][step]) == sorted(global_batch)
    assert len(ranks[0]) == len(ranks[1]) == len(one)


class Fixed(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.zeros(1)


class FixedData(TitansDataModule):
    def setup(self, stage: str) -> None:
        self.datasets = {"train": Fixed()}


def test_grouping_needs_shuffling_and_lengths():
    with pytest.raises(ValueError, match="group_by_length groups the shuffled training order; it needs shuffle true"):
        FixedData(group_by_length=True, shuffle=False)
    data = FixedData(group_by_length=True)
    data.setup("fit")
    with pytest.raises(ValueError, match="group_by_length needs the training dataset to give each sample's length "
                                         "as a `lengths` attribute; Fixed has none"):
        data.train_dataloader()


def test_recsys_training_windows_grouped_on_amazon_beauty():
    data = InteractionDataModule(path="data/recsys/Beauty.txt", format="sequences", user_column="user",
                                 item_column="item", timestamp_column=None, batch_size=128, group_by_length=True)
    data.setup("fit")
    windows = data.datasets["train"]
    seen, real, computed = [], 0, 0
    for batch in data.train_dataloader():
        real += int(batch["mask"].sum())
        computed += batch["mask"].numel()
        seen.append(batch["items"][:, 0])
    assert real == int(windows.lengths.sum()) and sum(len(s) for s in seen) == len(windows)
    assert real / computed > 0.9  # random batches of 128: 13% real positions
