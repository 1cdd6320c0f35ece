"""The DataModule base: a subclass that writes only ``setup`` (and, if it likes, ``collate``) gets
all four loaders, training alone shuffled (from ``seed``), each batch made by its split's collate;
a split the subclass did not make is an error naming it, except that fit without a validation split
trains without validating."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import Dataset

from datamodules import TitansDataModule
from external_domain.runs import EXTERNAL_RECIPE, QUIET
from titans_lightning.cli import main
from titans_lightning.errors import TRACEBACK_VARIABLE

SIZES = {"train": 10, "val": 6, "test": 5, "predict": 3}


class Numbers(Dataset):
    """Item i is i (as a float tensor of shape (1,))."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([float(index)])


class NumbersData(TitansDataModule):
    """Only ``setup`` and ``collate``: the base builds every loader."""

    def __init__(self, splits=tuple(SIZES), **kwargs) -> None:
        super().__init__(**kwargs)
        self.splits = splits

    def setup(self, stage: str) -> None:
        self.datasets = {split: Numbers(SIZES[split]) for split in self.splits}

    def collate(self, split: str):
        return lambda items: {"split": split, "x": torch.stack(items)}


def order(loader) -> list[int]:
    return [int(v) for batch in loader for v in batch["x"].flatten()]


def test_a_subclass_with_only_setup_gets_all_four_loaders_shuffling_only_training():
    data = NumbersData(batch_size=4, seed=7)
    data.setup("fit")
    loaders = {split: getattr(data, f"{split}_dataloader")() for split in SIZES}
    for split, loader in loaders.items():
        assert {batch["split"] for batch in loader} == {split}  # the split's own collate
        full, rest = divmod(SIZES[split], 4)
        assert [len(batch["x"]) for batch in loader] == [4] * full + [rest] * (rest > 0)  # a last, smaller batch counts
    for split in ("val", "test", "predict"):
        assert order(loaders[split]) == list(range(SIZES[split]))
    # epoch 0 of the training loader: the permutation drawn from seed + epoch
    expected = torch.randperm(SIZES["train"], generator=torch.Generator().manual_seed(7)).tolist()
    assert order(loaders["train"]) == expected != list(range(SIZES["train"]))


def test_shuffle_off_keeps_the_training_order():
    data = NumbersData(batch_size=4, shuffle=False)
    data.setup("fit")
    assert order(data.train_dataloader()) == list(range(SIZES["train"]))


@pytest.mark.parametrize("split, use", [("test", "testing"), ("predict", "prediction")], ids=["test", "predict"])
def test_a_missing_split_is_an_error_naming_it(split, use):
    data = NumbersData(splits=("train", "val"))
    data.setup("fit")
    with pytest.raises(ValueError, match=f"^NumbersData has no '{split}' split for {use} "
                                         r"\(its splits: 'train', 'val'\)$"):
        getattr(data, f"{split}_dataloader")()


def test_before_setup_the_error_says_so():
    expected = r"has no 'train' split for training \(its splits: none \(was setup called\?\)\)"
    with pytest.raises(ValueError, match=expected):
        NumbersData().train_dataloader()


class Regression(LightningModule):
    """y = w x; counts the validation batches it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.val_batches = 0

    def training_step(self, batch, index):
        return ((self.weight * batch["x"] - batch["x"]) ** 2).mean()

    def validation_step(self, batch, index):
        self.val_batches += 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def trainer() -> Trainer:
    return Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False)


def test_fit_without_a_validation_split_trains_without_validating_and_validate_names_the_split():
    model, data = Regression(), NumbersData(splits=("train",), batch_size=4)
    trainer().fit(model, datamodule=data)
    assert model.weight.item() != 0 and model.val_batches == 0
    with pytest.raises(ValueError, match="NumbersData has no 'val' split for validation"):
        trainer().validate(model, datamodule=data)


def test_titans_predict_without_a_predict_split_ends_with_one_error_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(TRACEBACK_VARIABLE, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "-c", str(EXTERNAL_RECIPE), "--trainer.default_root_dir", str(tmp_path), *QUIET])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "Traceback" not in err
    assert err.rstrip().splitlines()[-1] == ("error: DelayedCopyDataModule has no 'predict' split for prediction "
                                             "(its splits: 'train', 'val', 'test')")
