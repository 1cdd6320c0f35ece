"""The base DataModule: the four loaders, built from the splits a subclass makes, and the sizes
the model needs from the data.

A domain's DataModule subclasses :class:`TitansDataModule` and writes ``setup``, which fills
``self.datasets``: split name (``"train"``, ``"val"``, ``"test"``, ``"predict"``) -> dataset. A
split may be left out (loading it is then an error naming it, but fit without ``"val"`` trains
without validating), and other entries kept for the subclass's own use. The base builds every
loader from that mapping through one factory, :meth:`TitansDataModule.loader` (batch size,
shuffling of training only, workers, seed, pinned memory), with the collate function
(:meth:`TitansDataModule.collate`) and batch size (:meth:`TitansDataModule.batch_size_of`) a
subclass may choose per split. A subclass writes no ``*_dataloader`` method.

It states what the model must know about the data (vocabulary size, number of items, channels,
classes) in ``data_sizes``; the CLI links that dict to the task's ``data_sizes`` argument, so a
recipe never repeats it and a new domain needs no CLI change. Files a run keeps besides its
checkpoints (a tokenizer) are written by :meth:`TitansDataModule.save_artifacts`, which the CLI
calls with the run folder. This package never imports the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .sampling import BatchedSamples, LengthGroupedSampler

Collate = Callable[[list[Any]], Any]
#: what each split is loaded for (named in the error for a split a DataModule lacks)
SPLIT_USES = {"train": "training", "val": "validation", "test": "testing", "predict": "prediction"}


class TitansDataModule(LightningDataModule):
    """Shared loader settings of every domain, and its four loaders.

    Args:
        batch_size: samples per batch on each device (the global batch is this times the world size).
        num_workers: loader worker processes; 0 loads in the main process.
        seed: seeds the shuffling of training loaders (reshuffled every epoch from seed + epoch).
        pin_memory: page-locked host memory for faster host-to-GPU copies.
        shuffle: shuffle the training samples every epoch (evaluation and prediction keep
            their order).
        group_by_length: shuffle into batches of samples of similar length
            (:class:`datamodules.sampling.LengthGroupedSampler`), so that batches padded to their
            longest sample carry little padding, each holding about as many positions as a
            random batch of ``batch_size`` (so ``batch_size`` is then the average); needs
            ``shuffle`` and a training dataset with a ``lengths`` attribute ((N,) ints).
    """

    def __init__(self, batch_size: int = 32, num_workers: int = 0, seed: int = 0, pin_memory: bool = False,
                 shuffle: bool = True, group_by_length: bool = False) -> None:
        super().__init__()
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"{type(self).__name__}: expected batch_size >= 1 and num_workers >= 0, "
                             f"got {batch_size} and {num_workers}")
        if group_by_length and not shuffle:
            raise ValueError(f"{type(self).__name__}: group_by_length groups the shuffled training order; "
                             f"it needs shuffle true (got shuffle false)")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.pin_memory = pin_memory
        self.shuffle = shuffle
        self.group_by_length = group_by_length
        #: split name -> dataset, filled by the subclass's ``setup``; the loaders read it.
        self.datasets: dict[str, Dataset] = {}

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

    # ---- what a subclass may change per split ----------------------------------------------

    def collate(self, split: str) -> Optional[Collate]:
        """The function that makes a batch of ``split``'s samples; None = torch's ``default_collate``
        (stacking tensors, dicts of tensors, numbers). Called after ``setup``, so it may depend on
        the split's dataset."""
        return None

    def batch_size_of(self, split: str) -> int:
        """Samples per batch of ``split``'s loader. Default: ``batch_size`` for every split."""
        return self.batch_size

    def lengths_of(self, dataset: Dataset):
        """(N,) sample lengths of ``dataset`` for ``group_by_length``: its ``lengths`` attribute."""
        lengths = getattr(dataset, "lengths", None)
        if lengths is None:
            raise ValueError(f"{type(self).__name__}: group_by_length needs the training dataset to give each "
                             f"sample's length as a `lengths` attribute; {type(dataset).__name__} has none")
        return lengths

    # ---- the loaders -------------------------------------------------------------------------

    def train_dataloader(self) -> DataLoader:
        return self.split_loader("train")

    def val_dataloader(self) -> DataLoader:
        if "val" not in self.datasets and self.trainer is not None and self.trainer.state.fn == "fit":
            return []  # no validation split: fit trains without validating
        return self.split_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.split_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.split_loader("predict")

    def split_loader(self, split: str) -> DataLoader:
        """The loader of ``self.datasets[split]``: shuffled if ``split`` is ``"train"`` and
        ``shuffle`` is set, with the split's collate function and batch size. A split that
        ``setup`` did not make raises a ``ValueError`` naming it and the splits there are."""
        if split not in self.datasets:
            have = ", ".join(f"'{s}'" for s in self.datasets) or "none (was setup called?)"
            raise ValueError(f"{type(self).__name__} has no '{split}' split for {SPLIT_USES[split]} "
                             f"(its splits: {have})")
        return self.loader(self.datasets[split], shuffle=split == "train" and self.shuffle,
                           collate_fn=self.collate(split), batch_size=self.batch_size_of(split))

    def loader(
        self,
        dataset: Dataset,
        shuffle: bool = False,
        drop_last: bool = False,
        collate_fn: Optional[Collate] = None,
        batch_size: Optional[int] = None,
    ) -> DataLoader:
        """A DataLoader with this module's settings: the one factory behind every loader (a
        DataModule that overrides a ``*_dataloader`` method may call it too).

        ``shuffle=True`` orders each epoch by a permutation drawn from ``seed + epoch`` and deals
        it out to the data-parallel ranks, so the global batch at every step is the same whatever
        the number of processes: two processes with ``batch_size`` b see what one process with
        2b sees. (Left to Lightning, one process would shuffle with a ``RandomSampler`` and several
        with its ``DistributedSampler``: different orders.) Without shuffling, Lightning
        distributes the loader itself. With ``group_by_length``, the shuffled order is grouped into
        batches of alike lengths and about equal positions
        (:class:`datamodules.sampling.LengthGroupedSampler`), dealt out the same way. The split
        loaders keep every sample (no ``drop_last``): a last, smaller batch still counts, in
        evaluation above all.
        """
        sampler, batch_size = None, batch_size or self.batch_size
        if shuffle:
            ranks = (self.trainer.distributed_sampler_kwargs if self.trainer is not None else None) or {}
            world, rank = ranks.get("num_replicas", 1), ranks.get("rank", 0)
            if self.group_by_length:  # the sampler yields whole batches: no auto-batching
                sampler = LengthGroupedSampler(self.lengths_of(dataset), batch_size, world, rank, self.seed)
                dataset, batch_size = BatchedSamples(dataset), None
            else:
                sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            collate_fn=collate_fn,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )
