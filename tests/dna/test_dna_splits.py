"""Fixed splits: a split column of one CSV, one source per split (CSV or class -> FASTA), the
validation split carved from training when none is given, and their errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from datamodules.dna import GenomicsClassificationDataModule
from datamodules.dna.tokenizer import NucleotideTokenizer

BASES = "ACGT"


def sequence(i: int) -> str:
    """A distinct sequence per i (base-4 digits of i), so that each example can be found again."""
    return "".join(BASES[(i >> (2 * k)) % 4] for k in range(8))


def tokens_of(data: GenomicsClassificationDataModule, split: str) -> set[str]:
    """The texts of the examples of ``split``."""
    tokenizer = NucleotideTokenizer()
    return {tokenizer.decode(data.data.sequences[i]) for i in data.splits[split].tolist()}


def split_csv(path: Path, rows: list[tuple[int, str, str]]) -> str:
    path.write_text("sequence,label,fold\n" + "".join(f"{sequence(i)},{y},{s}\n" for i, y, s in rows))
    return str(path)


def module(**kwargs) -> GenomicsClassificationDataModule:
    data = GenomicsClassificationDataModule(batch_size=4, **kwargs)
    data.setup("fit")
    return data


def test_split_column_keeps_the_given_splits(tmp_path):
    rows = [(i, "ab"[i % 2], ("train", "val", "test")[i % 3]) for i in range(60)]
    data = module(path=split_csv(tmp_path / "d.csv", rows), split_column="fold")
    for split in ("train", "val", "test"):
        assert tokens_of(data, split) == {sequence(i) for i, _, s in rows if s == split}
    assert data.label_names == ["a", "b"]


def test_validation_is_carved_from_training_stratified_and_seeded(tmp_path):
    rows = [(i, "a" if i < 40 else "b", "test" if i % 4 == 0 else "train") for i in range(100)]
    path = split_csv(tmp_path / "d.csv", rows)
    data = module(path=path, split_column="fold", val_fraction=0.25, split_seed=3)
    training = {sequence(i) for i, _, s in rows if s == "train"}
    assert tokens_of(data, "test") == {sequence(i) for i, _, s in rows if s == "test"}
    assert tokens_of(data, "train") | tokens_of(data, "val") == training
    assert not tokens_of(data, "train") & tokens_of(data, "val")
    val_labels = Counter(data.data.labels[data.splits["val"]].tolist())
    assert val_labels == {0: round(30 * 0.25), 1: round(45 * 0.25)}  # 30 and 45 training rows per class
    again = module(path=path, split_column="fold", val_fraction=0.25, split_seed=3)
    other = module(path=path, split_column="fold", val_fraction=0.25, split_seed=4)
    assert tokens_of(again, "val") == tokens_of(data, "val") != tokens_of(other, "val")


def test_without_test_rows_there_is_no_test_split(tmp_path):
    rows = [(i, "ab"[i % 2], "train" if i % 5 else "val") for i in range(30)]
    data = module(path=split_csv(tmp_path / "d.csv", rows), split_column="fold")
    assert set(data.splits) == {"train", "val"}
    with pytest.raises(ValueError, match=r"no 'test' split for testing \(its splits: 'train', 'val'\)"):
        data.test_dataloader()


def test_one_file_per_split_csv_and_fasta(tmp_path):
    (tmp_path / "train.csv").write_text("sequence,label\n" + "".join(f"{sequence(i)},{'xy'[i % 2]}\n"
                                                                    for i in range(40)))
    for name, offset in (("x", 100), ("y", 200)):
        (tmp_path / f"test_{name}.fa").write_text("".join(f">t{i}\n{sequence(offset + i)}\n" for i in range(5)))
    test = {"y": str(tmp_path / "test_y.fa"), "x": str(tmp_path / "test_x.fa")}
    data = module(train_path=str(tmp_path / "train.csv"), test_path=test, val_fraction=0.2)
    assert data.label_names == ["x", "y"]  # the training split's labels, sorted
    assert tokens_of(data, "test") == {sequence(o + i) for o in (100, 200) for i in range(5)}
    test_labels = data.data.labels[data.splits["test"]]
    assert Counter(test_labels.tolist()) == {0: 5, 1: 5}
    assert len(data.splits["val"]) == 8 and len(data.splits["train"]) == 32


def test_a_training_mapping_fixes_the_class_order(tmp_path):
    files = {}
    for split, count in (("train", 6), ("val", 2)):
        for name in ("pos", "neg"):
            path = tmp_path / f"{split}_{name}.fa"
            path.write_text("".join(f">r{i}\n{sequence(i + len(files) * 50)}\n" for i in range(count)))
            files.setdefault(split, {})[name] = str(path)
    data = module(train_path=files["train"], val_path=files["val"])
    assert data.label_names == ["pos", "neg"]
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 12, "val": 4}


ERROR_CASES = [
    pytest.param({"split_column": "fold"}, "sequence,label,fold\nACGT,a,train\nACGT,b,dev\n",
                 r"d\.csv line 3: 'fold' \(split_column\) is 'dev'; expected one of train, val, test",
                 id="unknown-split-value"),
    pytest.param({"split_column": "fold"}, "sequence,label,fold\nACGT,a,train\nACGT,b,\n",
                 r"d\.csv line 3: empty 'fold'", id="empty-split-value"),
    pytest.param({"split_column": "split"}, "sequence,label,fold\nACGT,a,train\n",
                 r"d\.csv: no column 'split' \(split_column\)", id="missing-split-column"),
    pytest.param({"split_column": "fold"}, "sequence,label,fold\nACGT,a,test\nACGT,b,val\n",
                 r"no training examples: the splits given are \['val', 'test'\]", id="no-training-rows"),
    pytest.param({"split_column": "fold"}, "sequence,label,fold\nACGT,a,train\nACGT,z,test\n",
                 r"d\.csv \(test rows\): labels \['z'\] are not classes of the training split \['a'\]",
                 id="test-label-unseen-in-training"),
]


@pytest.mark.parametrize("options, text, message", ERROR_CASES)
def test_split_column_errors(tmp_path, options, text, message):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        _ = GenomicsClassificationDataModule(path=str(path), **options).data_sizes


SOURCE_ERRORS = [
    pytest.param({"test_path": "t.csv"}, r"test_path given without train_path", id="test-without-train"),
    pytest.param({"train_path": "a.csv", "classes": {"a": "a.fa"}}, r"give one source, not both classes and train_path",
                 id="two-sources"),
    pytest.param({"train_path": "a.csv", "split_column": "fold"}, r"split_column splits the CSV `path`; train_path",
                 id="split-column-with-split-files"),
    pytest.param({"train_path": {"a": "a.fa", "b": "b.fa"}, "class_names": ["b", "a"]},
                 r"class_names \['b', 'a'\] differ from the classes \['a', 'b'\] of `train_path`",
                 id="class-names-against-mapping"),
]


@pytest.mark.parametrize("options, message", SOURCE_ERRORS)
def test_contradicting_sources_fail_when_built(options, message):
    with pytest.raises(ValueError, match=message):
        GenomicsClassificationDataModule(**options)


def test_a_fasta_given_as_a_split_csv_says_what_to_pass(tmp_path):
    (tmp_path / "train.fa").write_text(">r\nACGT\n")
    with pytest.raises(ValueError, match=r"train\.fa looks like a FASTA file, not a CSV: pass one FASTA per class "
                                         r"as --data\.train_path"):
        _ = GenomicsClassificationDataModule(train_path=str(tmp_path / "train.fa")).data_sizes


def test_split_indices_cover_every_example_once(tmp_path):
    rows = [(i, "abc"[i % 3], ("train", "train", "test")[i % 3 if i % 7 else 0]) for i in range(90)]
    data = module(path=split_csv(tmp_path / "d.csv", rows), split_column="fold", val_fraction=0.1)
    everything = torch.cat(list(data.splits.values())).sort().values
    assert torch.equal(everything, torch.arange(len(rows)))
