"""Length-grouped shuffling (``--data.group_by_length``): each sample once an epoch, batches of
alike lengths holding about the positions of a random batch, as many batches as random batching,
a new grouping every epoch, the same global batches on one or two ranks, and clear errors where it
cannot apply."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from datamodules import TitansDataModule
from datamodules.recsys import InteractionDataModule
from datamodules.sampling import LengthGroupedSampler, equal_sum_cuts

LENGTHS = np.random.default_rng(0).geometric(0.15, size=1003).clip(max=50)


def padded_positions(batches: list[list[int]]) -> int:
    """Positions computed when each batch is padded to its longest sample."""
    return sum(int(LENGTHS[b].max()) * len(b) for b in batches)


def test_each_sample_once_in_batches_of_alike_lengths_and_about_equal_positions():
    sampler = LengthGroupedSampler(LENGTHS, batch_size=16, seed=3)
    grouped = list(sampler)
    assert len(grouped) == len(sampler) == 63  # ceil(1003 / 16), as random batching
    assert sorted(i for b in grouped for i in b) == list(range(len(LENGTHS)))
    shuffled = torch.randperm(len(LENGTHS), generator=torch.Generator().manual_seed(3)).tolist()
    random = [shuffled[i:i + 16] for i in range(0, len(shuffled), 16)]
    real = int(LENGTHS.sum())
    assert real / padded_positions(grouped) > 0.85 > 0.4 > real / padded_positions(random)
    per_batch = np.array([LENGTHS[b].sum() for b in grouped])
    assert per_batch.max() < 1.5 * real / 63  # no batch much above the average positions
    sizes = [len(b) for b in grouped]
    assert min(sizes) < 16 < max(sizes)  # long samples in small batches, short ones in large


def test_equal_sum_cuts_keep_a_minimum_per_part():
    bounds = equal_sum_cuts(np.array([50, 50, 50, 1, 1, 1, 1, 1]), 3, 2)
    assert bounds.tolist() == [0, 2, 4, 8]
    assert equal_sum_cuts(np.ones(12, dtype=int), 3, 1).tolist() == [0, 4, 8, 12]


def test_the_grouping_changes_every_epoch_and_repeats_for_a_seed():
    sampler = LengthGroupedSampler(LENGTHS, batch_size=16, seed=3)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert {frozenset(b) for b in first} != {frozenset(b) for b in second}
    assert list(LengthGroupedSampler(LENGTHS, batch_size=16, seed=3)) == first


@pytest.mark.parametrize("size", [1003, 1601], ids=["one-group", "a-last-group-of-one"])
def test_two_ranks_see_the_global_batches_of_one_process(size):
    lengths = np.resize(LENGTHS, size)
    one = list(LengthGroupedSampler(lengths, batch_size=32, seed=5, group_batches=50))
    ranks = [list(LengthGroupedSampler(lengths, batch_size=16, num_replicas=2, rank=r, seed=5, group_batches=50))
             for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(one)
    for step, global_batch in enumerate(one):
        assert ranks[0][step] and ranks[1][step]  # no rank left without samples
        dealt = ranks[0][step] + ranks[1][step]
        assert set(dealt) >= set(global_batch) and len(dealt) <= len(global_batch) + 1  # + 1: the padded sample
    if size == 1003:
        assert [sorted(a + b) for a, b in zip(*ranks)] == [sorted(b) for b in one]


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
    loader = data.train_dataloader()
    real, computed, rows, steps = 0, 0, 0, 0
    for batch in loader:
        real += int(batch["mask"].sum())
        computed += batch["mask"].numel()
        rows += len(batch["items"])
        steps += 1
    assert real == int(windows.lengths.sum()) and rows == len(windows)
    assert steps == len(loader) == -(-len(windows) // 128)
    assert real / computed > 0.9  # random batches of 128: 13% real positions


def test_grouped_batches_train_under_ddp_on_two_processes(tmp_path):
    """The grouped loader through Lightning's DDP (two gloo processes): Lightning keeps the sampler
    (a DistributedSampler) and each rank trains on its share of every global batch."""
    from external_domain.runs import QUIET, newest_version, read_metrics, run_subprocess, series

    run_subprocess(["fit", "-c", "recipes/recsys/debug.yaml", "-c", "recipes/trainer/ddp.yaml",
                    "--data.group_by_length", "true", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
                    "--trainer.max_steps", "3", "--trainer.log_every_n_steps", "1", "--trainer.limit_val_batches", "1",
                    "--trainer.val_check_interval", "3", "--trainer.default_root_dir", str(tmp_path), *QUIET])
    assert sorted(series(read_metrics(newest_version(tmp_path / "csv")), "train/loss")) == [0, 1, 2]
