"""Classification data: CSV and per-class FASTA sources, errors, stratified split, RC options."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from datamodules.dna import GenomicsClassificationDataModule
from datamodules.dna.labels import stratified_split
from datamodules.dna.tokenizer import CLS, PAD, InvalidNucleotideError, reverse_complement_tokens

REPO = Path(__file__).resolve().parents[2]
SPLICE = REPO / "data" / "dna" / "splice.csv"


def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "seq,cls") -> Path:
    path.write_text(header + "\n" + "".join(f"{s},{y}\n" for s, y in rows))
    return path


def module(**kwargs) -> GenomicsClassificationDataModule:
    kwargs.setdefault("batch_size", 4)
    return GenomicsClassificationDataModule(**kwargs)


def test_shipped_splice_file():
    data = module(path=str(SPLICE))
    assert data.data_sizes == {"vocab_size": 7, "num_classes": 3}
    assert data.data.class_names == ["EI", "IE", "N"]
    data.setup("fit")
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 2232, "val": 320, "test": 638}


def test_csv_columns_are_configurable_and_batches_follow_the_contract(tmp_path):
    path = write_csv(tmp_path / "d.csv", [("ACGT", "b"), ("acg", "a"), ("GGNNRA", "b"), ("TT", "a")] * 3)
    data = module(path=str(path), sequence_column="seq", label_column="cls", val_fraction=0, test_fraction=0)
    assert data.data.class_names == ["a", "b"]
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    lengths = batch["mask"].sum(1)
    assert batch["tokens"].shape[1] == int(lengths.max())  # longest sequence + CLS
    for row, n in zip(batch["tokens"], lengths.tolist()):
        assert row[n - 1] == CLS and torch.all(row[n:] == PAD) and torch.all(row[: n - 1] > CLS)
    assert set(batch) == {"tokens", "mask", "labels"}


def test_integer_labels_are_ordered_numerically(tmp_path):
    path = write_csv(tmp_path / "d.csv", [("AC", "10"), ("GT", "2"), ("AA", "1")], header="sequence,label")
    assert module(path=str(path)).data.class_names == ["1", "2", "10"]


ERROR_CASES = [
    pytest.param("seq,cls\nACGT,a\n", {"label_column": "label"}, ValueError,
                 r"d\.csv: no column 'label' \(label_column\); the header has \['seq', 'cls'\]",
                 id="missing-label-column"),
    pytest.param("seq,cls\nACGT,a\n", {"sequence_column": "sequence"}, ValueError,
                 r"no column 'sequence' \(sequence_column\)", id="missing-sequence-column"),
    pytest.param("seq,cls\nACGT,a\nACXT,b\n", {}, InvalidNucleotideError,
                 r"d\.csv line 3: character 'X' at position 3 ", id="bad-character"),
    pytest.param("seq,cls\nACGT,a\n,b\n", {}, ValueError, r"d\.csv line 3: empty 'seq'", id="empty-sequence"),
    pytest.param("seq,cls\nACGT,\n", {}, ValueError, r"d\.csv line 2: empty 'cls'", id="empty-label"),
    pytest.param("seq,cls\nACGT,a\nACGT,b\n", {"class_names": ["a", "b", "c"]}, ValueError,
                 r"class 'c' has no examples", id="class-without-examples"),
    pytest.param("seq,cls\nACGT,a\nACGT,z\n", {"class_names": ["a", "b"]}, ValueError,
                 r"labels \['z'\] are not in class_names", id="unknown-label"),
]


@pytest.mark.parametrize("text, options, error, message", ERROR_CASES)
def test_csv_errors(tmp_path, text, options, error, message):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(error, match=message):
        _ = module(path=str(path), **{"sequence_column": "seq", "label_column": "cls", **options}).data_sizes


def test_fasta_given_as_csv_path_says_what_to_do(tmp_path):
    path = tmp_path / "x.fa"
    path.write_text(">r\nACGT\n")
    with pytest.raises(ValueError,
                       match=r"looks like a FASTA file, not a CSV: pass one FASTA per class as --data.classes"):
        _ = module(path=str(path)).data_sizes


def fasta(path: Path, sequences: list[str]) -> str:
    path.write_text("".join(f">s{i}\n{s}\n" for i, s in enumerate(sequences)))
    return str(path)


def test_one_fasta_per_class_replaces_the_csv_path(tmp_path):
    classes = {"pos": fasta(tmp_path / "p.fa", ["ACGT"] * 5), "neg": fasta(tmp_path / "n.fa", ["TTTT", "GG"] * 4)}
    data = module(path=str(SPLICE), classes=classes, val_fraction=0.2, test_fraction=0.2)
    assert data.data_sizes["num_classes"] == 2 and data.data.class_names == ["pos", "neg"]
    assert Counter(data.data.labels.tolist()) == {0: 5, 1: 8}


def test_class_with_an_empty_fasta_is_an_error(tmp_path):
    (tmp_path / "empty.fa").write_text("\n")
    classes = {"pos": fasta(tmp_path / "p.fa", ["ACGT"] * 3), "neg": str(tmp_path / "empty.fa")}
    with pytest.raises(ValueError, match=r"class 'neg' has no examples: .*empty\.fa: no FASTA records"):
        _ = module(path=None, classes=classes).data_sizes


SPLIT_CASES = [
    pytest.param([767, 768, 1655], 0.1, 0.2, id="splice-sizes"),
    pytest.param([50, 7, 400], 0.15, 0.15, id="imbalanced"),
    pytest.param([3, 3], 0.34, 0.34, id="tiny"),
]


@pytest.mark.parametrize("counts, val, test", SPLIT_CASES)
def test_split_is_stratified_disjoint_and_complete(counts, val, test):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])[torch.randperm(sum(counts))]
    splits = stratified_split(labels, [str(c) for c in range(len(counts))], val, test, seed=5)
    everything = torch.cat(list(splits.values()))
    assert sorted(everything.tolist()) == list(range(len(labels)))
    for c, n in enumerate(counts):
        assert int((labels[splits["test"]] == c).sum()) == round(n * test)
        assert int((labels[splits["val"]] == c).sum()) == round(n * val)


def test_split_depends_on_the_seed_only():
    labels = torch.arange(200) % 3
    names = ["a", "b", "c"]
    first, again = stratified_split(labels, names, 0.1, 0.2, 1), stratified_split(labels, names, 0.1, 0.2, 1)
    other = stratified_split(labels, names, 0.1, 0.2, 2)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["test"].sort().values, other["test"].sort().values)


def test_a_class_too_small_to_train_on_is_an_error():
    with pytest.raises(ValueError, match=r"class 'b' has 2 examples: none left for training"):
        stratified_split(torch.tensor([0] * 10 + [1] * 2), ["a", "b"], 0.3, 0.3, 0)


def test_rc_augment_switch(tmp_path):
    path = write_csv(tmp_path / "d.csv", [("AACCCGT", "a"), ("GATTACAG", "b")] * 40, header="sequence,label")
    plain, augmented = module(path=str(path)), module(path=str(path), rc_augment=True)
    for data in (plain, augmented):
        data.setup("fit")
    torch.manual_seed(0)
    pairs = [(plain.dataset("train")[i], augmented.dataset("train")[i]) for i in range(len(plain.splits["train"]))]
    same = sum(torch.equal(a["tokens"], b["tokens"]) for a, b in pairs)
    flipped = sum(torch.equal(reverse_complement_tokens(a["tokens"]), b["tokens"]) for a, b in pairs)
    assert same + flipped == len(pairs) and 0.25 < flipped / len(pairs) < 0.75
    assert all(a["label"] == b["label"] for a, b in pairs)
    evaluation = augmented.dataset("val")  # augmentation never touches evaluation
    assert all(torch.equal(evaluation[i]["tokens"], plain.dataset("val")[i]["tokens"]) for i in range(len(evaluation)))


def test_rc_average_adds_reverse_complements_to_evaluation_batches_only():
    data = module(path=str(SPLICE), rc_average=True)
    data.setup("fit")
    assert "rc_tokens" not in next(iter(data.train_dataloader()))
    batch = next(iter(data.val_dataloader()))
    n = batch["mask"].sum(1)
    for row, rc_row, length in zip(batch["tokens"], batch["rc_tokens"], n.tolist()):
        assert torch.equal(rc_row[: length - 1], reverse_complement_tokens(row[: length - 1]))
        assert rc_row[length - 1] == CLS
    assert torch.equal(batch["rc_mask"], batch["mask"])
