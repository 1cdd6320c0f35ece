"""Synthetic delayed copy: reproduce the input sequence ``delay`` steps later.

Shapes: x, y (N, T, C); ``y[:, t] = x[:, t - delay]`` and ``y[:, t] = 0`` for ``t < delay``.
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from datamodules.base import TitansDataModule


def delayed_copy(n: int, seq_len: int, channels: int, delay: int, generator: torch.Generator) -> TensorDataset:
    """``n`` Gaussian sequences and their copies shifted right by ``delay`` steps."""
    x = torch.randn(n, seq_len, channels, generator=generator)
    y = torch.zeros_like(x)
    y[:, delay:] = x[:, : seq_len - delay]
    return TensorDataset(x, y)


class DelayedCopyDataModule(TitansDataModule):
    """Train / val / test sets of ``delayed_copy``, all drawn from ``seed``.

    Args:
        channels: features per time step (linked to the task as ``data_sizes["channels"]``).
        seq_len: time steps per sequence.
        delay: how far back the target looks.
        num_train: training sequences (``num_train / batch_size`` steps per epoch).
        num_eval: validation and test sequences each.
        **kwargs: ``batch_size``, ``num_workers``, ``seed``, ``pin_memory``, ``shuffle`` of the base.

    The base builds the loaders from ``self.datasets`` (training shuffled when ``shuffle`` is set);
    a DataModule whose batches need more than stacking also writes ``collate(split)``.
    """

    def __init__(self, channels: int = 4, seq_len: int = 16, delay: int = 2, num_train: int = 16,
                 num_eval: int = 8, **kwargs) -> None:
        super().__init__(**kwargs)
        self.channels, self.seq_len, self.delay = channels, seq_len, delay
        self.num_train, self.num_eval = num_train, num_eval

    @property
    def data_sizes(self) -> dict[str, int]:
        return {"channels": self.channels}

    def setup(self, stage: str) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        sizes = (self.seq_len, self.channels, self.delay, generator)
        counts = {"train": self.num_train, "val": self.num_eval, "test": self.num_eval}
        self.datasets = {split: delayed_copy(n, *sizes) for split, n in counts.items()}
