"""Length curricula of needle training (``NeedleDataModule(curriculum=...)``); a batch always has
one length.

Shape legend: B batch, n lengths in the list, S steps of the ``grow`` schedule.

- ``cycle``: batch b has length ``lengths[b % n]``; the batches are shuffled every epoch.
- ``mix``: batch b has ``lengths[c_b]``, ``c_b`` drawn uniformly by a generator seeded with
  ``(data_seed, 3, b)`` (a pure function of the batch number); the batches are shuffled every epoch.
- ``grow``: stage k of n (0-based) covers optimizer steps ``[k S / n, (k + 1) S / n)``; steps past
  S stay in the last stage. Repeat a length to give it more steps. How the data knows the step:
  :class:`GrowSampler`, the training loader's sampler, runs in the main process; when an epoch's
  iteration starts it reads the trainer's global step (and ``accumulate_grad_batches``), then
  counts the batches it deals out from there. It gives each batch number its stage's length as it
  draws it, so loader workers need no message, and a resumed run takes its stage from the
  restored step. Sample b B + j of a batch is the same haystack, needle and depth at any length
  (its generator is seeded by ``(data_seed, split, index)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, default_collate

from .niah_batches import NeedleSet

Curriculum = Literal["cycle", "grow", "mix"]
CURRICULA = ("cycle", "grow", "mix")
MIX_STREAM = 3  # after the split ids 0-2, so a mix draw never shares a generator with a sample


def batch_lengths(lengths: Sequence[int], curriculum: str, num_batches: int, seed: int) -> list[int]:
    """The length of each of ``num_batches`` training batches under ``cycle`` or ``mix``."""
    if curriculum == "cycle":
        return [lengths[b % len(lengths)] for b in range(num_batches)]
    if curriculum == "mix":
        return [lengths[int(np.random.default_rng((seed, MIX_STREAM, b)).integers(len(lengths)))]
                for b in range(num_batches)]
    raise ValueError(f"batch_lengths: expected 'cycle' or 'mix', got {curriculum!r} (grow follows the step)")


def grow_stage(step: int, total_steps: int, stages: int) -> int:
    """The stage (0-based) of optimizer ``step`` when ``stages`` equal stages share ``total_steps``."""
    return min(stages - 1, step * stages // total_steps)


class CurriculumBatches(Dataset):
    """Every training batch at every length of a ``grow`` curriculum: item ``b n + k`` is batch b
    (samples ``b B .. b B + B - 1`` of ``samples``) at ``lengths[k]``; :class:`GrowSampler` picks
    one item per batch number."""

    def __init__(self, samples: NeedleSet, lengths: Sequence[int], batch_size: int) -> None:
        self.samples, self.lengths, self.batch_size = samples, [int(n) for n in lengths], batch_size
        self.num_batches = len(samples) // batch_size  # an incomplete last batch is dropped

    def __len__(self) -> int:
        return self.num_batches * len(self.lengths)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        batch, stage = divmod(index, len(self.lengths))
        first = batch * self.batch_size
        return default_collate([self.samples.item(i, self.lengths[stage], None)
                                for i in range(first, first + self.batch_size)])


class GrowSampler(DistributedSampler):
    """Deals out batch numbers as torch's ``DistributedSampler`` does (shuffled from ``seed +
    epoch``, split between ranks; Lightning calls ``set_epoch``) and yields each as the item of its
    step's stage in :class:`CurriculumBatches`.

    ``progress()`` returns ``(optimizer steps done, accumulate_grad_batches)``; it is read once when
    an epoch's iteration starts, and the batch at position p of the epoch belongs to step
    ``done + p // accumulate``.
    """

    def __init__(self, batches: CurriculumBatches, total_steps: int, progress: Callable[[], tuple[int, int]],
                 num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0) -> None:
        super().__init__(range(batches.num_batches), num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=seed)
        self.stages, self.total_steps, self.progress = len(batches.lengths), total_steps, progress

    def __iter__(self):
        done, accumulate = self.progress()
        for position, batch in enumerate(super().__iter__()):
            yield batch * self.stages + grow_stage(done + position // accumulate, self.total_steps, self.stages)
