"""The base DataModule: batch size, workers, seed, and the sizes the model needs from the data.

A domain's DataModule subclasses :class:`TitansDataModule`, builds its datasets in ``setup`` and
returns loaders made by :meth:`TitansDataModule.loader`. It states what the model must know about
the data (vocabulary size, number of items, channels, classes) in ``data_sizes``; the CLI links
that dict to the task's ``data_sizes`` argument, so a recipe never repeats it and a new domain
needs no CLI change. Files a run keeps besides its checkpoints (a tokenizer) are written by
:meth:`TitansDataModule.save_artifacts`, which the CLI calls with the run folder. This package
never imports the model.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class TitansDataModule(LightningDataModule):
    """Shared loader settings of every domain.

    Args:
        batch_size: samples per batch on each device (the global batch is this times the world size).
        num_workers: loader worker processes; 0 loads in the main process.
        seed: seeds the shuffling of training loaders (reshuffled every epoch from seed + epoch).
        pin_memory: page-locked host memory for faster host-to-GPU copies.
    """

    def __init__(self, batch_size: int = 32, num_workers: int = 0, seed: int = 0, pin_memory: bool = False) -> None:
        super().__init__()
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"{type(self).__name__}: expected batch_size >= 1 and num_workers >= 0, "
                             f"got {batch_size} and {num_workers}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.pin_memory = pin_memory

    @property
    def data_sizes(self) -> dict[str, int]:
        """Sizes the model needs from the data, e.g. ``{"vocab_size": 256}``.

        Read once, right after the DataModule is constructed and before ``setup``: compute it from
        the constructor arguments or a cheap scan of the source. Default: nothing.
        """
        return {}

    def save_artifacts(self, run_dir: str) -> None:
        """Write the files that later users of a run need, besides its checkpoints and
        ``config.yaml``, into the run folder ``run_dir`` (e.g. the text DataModule's
        ``tokenizer.json``, which ``titans-stream`` reads back). Default: nothing.

        The CLI calls it once per command, on global rank zero only, after this module's ``setup``
        (so what ``setup`` builds, such as a trained tokenizer, exists) and with ``run_dir``
        already created. The CLI computes the folder (it knows the loggers); the data side is
        handed it, so that this package never imports ``titans_lightning``. Without the CLI
        (a bare ``Trainer``), call it yourself if you want the files.
        """

    def loader(
        self,
        dataset: Dataset,
        shuffle: bool = False,
        drop_last: bool = False,
        collate_fn: Optional[Callable[[list[Any]], Any]] = None,
        batch_size: Optional[int] = None,
    ) -> DataLoader:
        """A DataLoader with this module's settings.

        ``shuffle=True`` orders each epoch by a permutation drawn from ``seed + epoch`` and deals
        it out to the data-parallel ranks, so the global batch at every step is the same whatever
        the number of processes: two processes with ``batch_size`` b see what one process with
        2b sees. (Left to Lightning, one process would shuffle with a ``RandomSampler`` and several
        with its ``DistributedSampler``: different orders.) Without shuffling, Lightning
        distributes the loader itself.
        """
        sampler = None
        if shuffle:
            ranks = (self.trainer.distributed_sampler_kwargs if self.trainer is not None else None) or {}
            sampler = DistributedSampler(dataset, num_replicas=ranks.get("num_replicas", 1),
                                         rank=ranks.get("rank", 0), shuffle=True, seed=self.seed)
        return DataLoader(
            dataset,
            batch_size=batch_size or self.batch_size,
            sampler=sampler,
            drop_last=drop_last,
            collate_fn=collate_fn,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )
