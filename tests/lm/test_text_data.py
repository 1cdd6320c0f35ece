"""The text DataModule: tokenizers, split by document, windows, the token cache, clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import datamodules.text.datamodule as text_module
from datamodules.text import TextDataModule
from datamodules.text.corpus import split_sizes
from datamodules.text.tokenizer import BPETokenizer, ByteTokenizer

from .conftest import document

ROUND_TRIP = [
    pytest.param("To be, or not to be: that is the question.", id="ascii"),
    pytest.param("Ünïcödé — naïve café, 日本語 and 🎭", id="multibyte"),
    pytest.param("", id="empty"),
    pytest.param("  leading spaces\n\n\ttabs and\r\nnewlines  ", id="whitespace"),
]


def data(path, tmp_path: Path, **kwargs) -> TextDataModule:
    kwargs = {"seq_len": 16, "batch_size": 2, "cache_dir": str(tmp_path / "cache"), **kwargs}
    return TextDataModule(path=str(path), **kwargs)


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    corpus = [document(k) + "Ünïcödé café, and some more words to merge. " * 3 for k in range(20)]
    return BPETokenizer.train(corpus, vocab_size=300)


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_byte_tokenizer_round_trip_counts_one_byte_per_token(text):
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert tokenizer.token_bytes()[ids.astype(np.int64)].sum() == len(text.encode("utf-8"))


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_bpe_tokenizer_round_trip_and_byte_counts(text, bpe, tmp_path):
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert bpe.token_bytes()[ids.astype(np.int64)].sum() == len(text.encode("utf-8"))
    bpe.save(tmp_path / "tokenizer.json")
    assert BPETokenizer.load(tmp_path / "tokenizer.json").encode(text).tolist() == ids.tolist()


def test_bpe_merges_and_keeps_the_end_of_document_token_out_of_byte_counts(bpe):
    assert 257 < bpe.vocab_size <= 300
    assert bpe.token_bytes()[bpe.eod_id] == 0
    assert len(bpe.encode(document(3))) < len(document(3).encode("utf-8"))  # merges shorten the text
    assert bpe.decode([bpe.eod_id, *bpe.encode("Line 3").tolist()]) == "Line 3"


@pytest.mark.parametrize("tokenizer", ["byte", "bpe"])
def test_split_is_by_whole_document(tokenizer, make_corpus, tmp_path):
    dm = data(make_corpus(12), tmp_path, tokenizer=tokenizer, bpe_vocab_size=300, val_fraction=0.2, test_fraction=0.1)
    dm.setup("fit")
    names = {split: dm.cache.documents(split) for split in ("train", "val", "test")}
    assert [len(names[s]) for s in ("train", "val", "test")] == [9, 2, 1]
    assert sorted(sum(names.values(), [])) == [f"doc{k:02d}.txt" for k in range(12)]
    for split, docs in names.items():
        stream = dm.decode(dm.cache.tokens(split).tolist())
        # the split's stream is exactly its documents, whole, and no other document's marker
        assert stream == "".join(document(int(name[3:5])) for name in docs)
        assert set(re.findall(r"<doc (\d\d)>", stream)) == {name[3:5] for name in docs}


def test_windows_are_shifted_targets_with_byte_counts(make_corpus, tmp_path):
    dm = data(make_corpus(12), tmp_path)
    dm.setup("fit")
    stream = torch.from_numpy(dm.cache.tokens("train").astype(np.int64))
    windows = dm.datasets["train"]
    assert len(windows) == (len(stream) - 1) // 16
    sample = windows[3]
    assert torch.equal(sample["input"], stream[48:64]) and torch.equal(sample["target"], stream[49:65])
    assert torch.equal(sample["target_bytes"], (sample["target"] != 256).long())
    batch = next(iter(dm.train_dataloader()))
    assert batch["input"].shape == batch["target"].shape == batch["target_bytes"].shape == (2, 16)


def test_eval_windows_are_spread_over_the_whole_split(make_corpus, tmp_path):
    dm = data(make_corpus(12), tmp_path, val_fraction=0.3, max_eval_windows=3)
    dm.setup("validate")
    full = (dm.cache.meta["splits"]["val"]["tokens"] - 1) // 16
    assert dm.datasets["val"].starts.tolist() == [0, 16 * ((full - 1) // 2), 16 * (full - 1)]


def test_cache_is_reused_and_rebuilt_when_a_file_changes(make_corpus, tmp_path, monkeypatch):
    corpus = make_corpus(12)
    first = data(corpus, tmp_path)
    first.setup("fit")

    def fail(*args, **kwargs):
        raise AssertionError("the cache was rebuilt")

    monkeypatch.setattr(text_module, "build_cache", fail)
    second = data(corpus, tmp_path)
    second.setup("fit")
    assert second.cache.folder == first.cache.folder
    assert isinstance(second.cache.tokens("train"), np.memmap)
    monkeypatch.undo()
    (corpus / "doc00.txt").write_text("changed", encoding="utf-8")
    third = data(corpus, tmp_path)
    assert third.cache_folder() != first.cache.folder


@pytest.mark.parametrize("kind, documents", [
    pytest.param("file", [f"book.txt#{k}" for k in range(6)], id="file-cut-at-blank-lines"),
    pytest.param("folder", [f"doc{k:02d}.txt" for k in range(12)], id="folder"),
    pytest.param("glob", [f"doc{k:02d}.txt" for k in range(10)], id="glob"),
])
def test_path_may_be_a_file_a_folder_or_a_glob(kind, documents, make_corpus, tmp_path):
    corpus = make_corpus(12)
    (corpus / "notes.md").write_text("not text of the corpus", encoding="utf-8")
    (tmp_path / "book.txt").write_text("\n\n".join(document(k) for k in range(6)), encoding="utf-8")
    path = {"file": tmp_path / "book.txt", "folder": corpus, "glob": corpus / "doc0*.txt"}[kind]
    dm = data(path, tmp_path, seq_len=8)
    dm.setup("fit")
    assert sorted(sum((dm.cache.documents(s) for s in ("train", "val", "test")), [])) == documents
    everything = "".join(dm.decode(dm.cache.tokens(s).tolist()) for s in ("train", "val", "test"))
    assert "not text" not in everything and len(re.findall(r"<doc \d\d>", everything)) == len(documents)


def test_single_file_without_blank_lines_is_cut_contiguously(tmp_path, caplog):
    """One paragraph cannot be dealt into three splits: the token stream is cut, the last
    fractions held out, in order, and this is logged (never an error)."""
    text = "".join(f"line {k} of a novel without a blank line\n" for k in range(100))
    (tmp_path / "one.txt").write_text(text, encoding="utf-8")
    dm = data(tmp_path / "one.txt", tmp_path, val_fraction=0.1, test_fraction=0.2)
    with caplog.at_level("INFO"):
        dm.setup("fit")
    assert "cannot be dealt into train/val/test; the token stream is cut" in caplog.text
    sizes = [dm.cache.meta["splits"][s]["tokens"] for s in ("train", "val", "test")]
    total = len(text.encode()) + 1  # one end-of-document token
    assert sizes == [total - round(total * 0.1) - round(total * 0.2), round(total * 0.1), round(total * 0.2)]
    stream = np.concatenate([dm.cache.tokens(s) for s in ("train", "val", "test")])
    assert stream[0] == 256 and dm.decode(stream.tolist()) == text
    assert set(dm.datasets) == {"train", "val", "test"}


def write_bad_utf8(tmp_path: Path) -> Path:
    folder = tmp_path / "bad"
    folder.mkdir()
    for k in range(3):
        (folder / f"ok{k}.txt").write_text(document(k), encoding="utf-8")
    (folder / "latin1.txt").write_bytes("line one\ncaf\xe9 on line two\n".encode("latin-1"))
    return folder


def write_empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    for k in range(3):
        (folder / f"e{k}.txt").write_text("", encoding="utf-8")
    return folder


def write_short(tmp_path: Path) -> Path:
    folder = tmp_path / "short"
    folder.mkdir()
    for k in range(3):
        (folder / f"s{k}.txt").write_text("tiny", encoding="utf-8")
    return folder


def write_no_txt(tmp_path: Path) -> Path:
    folder = tmp_path / "no_txt"
    folder.mkdir()
    (folder / "data.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    return folder


ERRORS = [
    pytest.param(write_bad_utf8, ValueError, r"latin1\.txt: byte 12 \(line 2\) is not valid UTF-8", id="undecodable"),
    pytest.param(write_empty, ValueError, r"holds no text", id="empty-corpus"),
    pytest.param(write_short, ValueError, r"the \w+ split \(\d document\(s\): s\d\.txt\) holds \d+ tokens, fewer than "
                 r"one window of seq_len \+ 1 = 17", id="shorter-than-a-window"),
    pytest.param(write_no_txt, FileNotFoundError, r"no_txt' \(--data.path\) holds no corpus file",
                 id="folder-without-txt"),
    pytest.param(lambda tmp_path: tmp_path / "missing" / "*.txt", FileNotFoundError, r"matches no file", id="no-match"),
]


@pytest.mark.parametrize("make_path, error, message", ERRORS)
def test_clear_errors(make_path, error, message, tmp_path):
    with pytest.raises(error, match=message):
        data(make_path(tmp_path), tmp_path).setup("fit")


@pytest.mark.parametrize("kwargs, message", [
    pytest.param({"tokenizer": "word"}, r"'word': no such file; expected 'byte', 'bpe', or a path", id="tokenizer"),
    pytest.param({"seq_len": 0}, r"seq_len >= 1", id="seq_len"),
    pytest.param({"val_fraction": 1.0}, r"fractions in \[0, 1\)", id="fraction"),
])
def test_bad_arguments_raise_at_construction(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        data(tmp_path, tmp_path, **kwargs)


def test_data_sizes_come_from_the_arguments_before_setup(tmp_path):
    assert data(tmp_path / "none", tmp_path).data_sizes == {"vocab_size": 257}
    assert data(tmp_path / "none", tmp_path, tokenizer="bpe", bpe_vocab_size=512).data_sizes == {"vocab_size": 512}


def test_split_sizes_give_every_positive_fraction_a_document():
    assert split_sizes(42, 0.05, 0.05) == (38, 2, 2)
    assert split_sizes(5, 0.01, 0.0) == (4, 1, 0)
