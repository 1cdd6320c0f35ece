"""Splits of the text DataModule: fixed held-out files (``val_path``, ``test_path``), and the
contiguous cut of the token stream when documents are too few to deal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datamodules.text import TextDataModule
from datamodules.text.corpus import Source, contiguous_shares, make_plan

from .conftest import document

SPLITS = ("train", "val", "test")


def data(path, tmp_path: Path, **kwargs) -> TextDataModule:
    kwargs = {"seq_len": 16, "batch_size": 2, "cache_dir": str(tmp_path / "cache"), **kwargs}
    return TextDataModule(path=str(path), **kwargs)


def held_out(tmp_path: Path) -> tuple[Path, Path]:
    val = tmp_path / "valid.jsonl"
    val.write_text("".join(json.dumps({"text": document(k)}) + "\n" for k in (50, 51)), encoding="utf-8")
    test = tmp_path / "test.txt"
    test.write_text(document(60), encoding="utf-8")
    return val, test


def test_fixed_splits_read_each_path_and_path_is_training_only(make_corpus, tmp_path):
    val, test = held_out(tmp_path)
    dm = data(make_corpus(6), tmp_path, val_path=str(val), test_path=str(test), val_fraction=0.5)
    dm.setup("fit")
    names = {s: dm.cache.documents(s) for s in SPLITS}
    assert names == {"train": [f"doc{k:02d}.txt" for k in range(6)], "val": ["valid.jsonl#0", "valid.jsonl#1"],
                     "test": ["test.txt"]}
    assert dm.decode(dm.cache.tokens("val").tolist()) == document(50) + document(51)
    assert dm.decode(dm.cache.tokens("test").tolist()) == document(60)
    assert set(dm.datasets) == set(SPLITS)


def test_a_split_without_its_path_is_absent(make_corpus, tmp_path):
    val, _ = held_out(tmp_path)
    dm = data(make_corpus(6), tmp_path, val_path=str(val))
    dm.setup("fit")
    assert set(dm.datasets) == {"train", "val"}
    with pytest.raises(ValueError, match=r"has no 'test' split for testing \(its splits: 'train', 'val'\)"):
        dm.test_dataloader()


def test_fixed_cache_is_rebuilt_when_a_held_out_file_changes(make_corpus, tmp_path):
    val, test = held_out(tmp_path)
    corpus = make_corpus(6)
    first = data(corpus, tmp_path, val_path=str(val), test_path=str(test)).cache_folder()
    assert data(corpus, tmp_path, val_path=str(val), test_path=str(test)).cache_folder() == first
    test.write_text(document(61), encoding="utf-8")
    assert data(corpus, tmp_path, val_path=str(val), test_path=str(test)).cache_folder() != first


def test_two_records_for_three_splits_are_cut_contiguously(tmp_path):
    path = tmp_path / "two.jsonl"
    path.write_text("".join(json.dumps({"text": document(k) * 3}) + "\n" for k in range(2)), encoding="utf-8")
    dm = data(path, tmp_path, val_fraction=0.2, test_fraction=0.2)
    dm.setup("fit")
    assert dm.cache.meta["mode"] == "contiguous"
    stream = np.concatenate([dm.cache.tokens(s) for s in SPLITS])
    assert dm.decode(stream.tolist()) == document(0) * 3 + document(1) * 3
    assert [dm.cache.meta["splits"][s]["tokens"] for s in SPLITS] == list(contiguous_shares(stream.size, 0.2, 0.2))


def test_contiguous_tokenizer_training_reads_only_the_training_share(tmp_path):
    text = "".join(f"sentence {k} of one long document\n" for k in range(300))
    (tmp_path / "one.txt").write_text(text, encoding="utf-8")
    source = Source("--data.path", (tmp_path / "one.txt",), separator="\n\n")
    plan = make_plan({"train": source}, 0.1, 0.2, seed=0)
    assert plan.mode == "contiguous"
    train_bytes = contiguous_shares(len(text), 0.1, 0.2)[0]
    assert "".join(plan.training_texts()) == text[:train_bytes]
