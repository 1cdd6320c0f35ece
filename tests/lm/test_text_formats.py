"""Corpus formats of the text DataModule: JSON lines (plain and gzip), JSON arrays, Parquet, Arrow
folders as ``datasets.save_to_disk`` writes them; the text column; empty records; clear errors;
long documents read in pieces."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from datamodules.text import TextDataModule
from datamodules.text.formats import PIECE_CHARS, Reading, cut_text, text_pieces

from .conftest import document

SPLITS = ("train", "val", "test")


def data(path, tmp_path: Path, **kwargs) -> TextDataModule:
    kwargs = {"seq_len": 16, "batch_size": 2, "cache_dir": str(tmp_path / "cache"), **kwargs}
    return TextDataModule(path=str(path), **kwargs)


def records(n: int = 12, column: str = "text") -> list[dict]:
    return [{"id": k, column: document(k)} for k in range(n)]


def write_jsonl(folder: Path, rows: list[dict]) -> Path:
    path = folder / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_jsonl_gz(folder: Path, rows: list[dict]) -> Path:
    path = folder / "corpus.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as stream:
        stream.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def write_json_array(folder: Path, rows: list[dict]) -> Path:
    path = folder / "corpus.json"
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return path


def write_parquet(folder: Path, rows: list[dict]) -> Path:
    path = folder / "corpus.parquet"
    pl.DataFrame(rows).write_parquet(path, row_group_size=5)
    return path


def write_arrow_folder(folder: Path, rows: list[dict]) -> Path:
    """What ``datasets.Dataset.save_to_disk`` writes: Arrow IPC stream shards ``data-*.arrow`` in
    the order ``state.json`` lists them, and ``dataset_info.json``."""
    path = folder / "saved"
    path.mkdir()
    shards = [rows[:7], rows[7:]]
    names = [f"data-{k:05d}-of-{len(shards):05d}.arrow" for k in range(len(shards))]
    for name, shard in zip(names, shards):
        pl.DataFrame(shard).write_ipc_stream(path / name)
    (path / "state.json").write_text(json.dumps({"_data_files": [{"filename": n} for n in names]}))
    (path / "dataset_info.json").write_text(json.dumps({"features": {"text": {"dtype": "string"}}}))
    return path


WRITERS = [
    pytest.param(write_jsonl, "corpus.jsonl", id="jsonl"),
    pytest.param(write_jsonl_gz, "corpus.jsonl.gz", id="jsonl.gz"),
    pytest.param(write_json_array, "corpus.json", id="json-array"),
    pytest.param(write_parquet, "corpus.parquet", id="parquet"),
    pytest.param(write_arrow_folder, None, id="arrow-folder"),
]


def all_documents(dm: TextDataModule) -> tuple[list[str], str]:
    names = sorted(sum((dm.cache.documents(s) for s in SPLITS), []))
    return names, "".join(dm.decode(dm.cache.tokens(s).tolist()) for s in SPLITS)


@pytest.mark.parametrize("write, file", WRITERS)
def test_each_record_is_a_document(write: Callable, file, tmp_path):
    path = write(tmp_path, records(12))
    dm = data(path, tmp_path, val_fraction=0.2, test_fraction=0.1)
    dm.setup("fit")
    assert [dm.cache.meta["splits"][s]["documents"] for s in SPLITS] == [9, 2, 1]
    names, text = all_documents(dm)
    if file is not None:
        assert names == sorted(f"{file}#{k}" for k in range(12))
    for k in range(12):  # every record whole, exactly once
        assert text.count(document(k)) == 1


def test_text_column_and_empty_records_are_skipped_and_counted(tmp_path, caplog):
    rows = records(10, column="content") + [{"id": 10, "content": ""}, {"id": 11, "content": "  \n"},
                                            {"id": 12, "content": None}]
    dm = data(write_jsonl(tmp_path, rows), tmp_path, text_column="content")
    with caplog.at_level("INFO"):
        dm.setup("fit")
    assert "skipped 3 empty record(s) (corpus.jsonl: 3)" in caplog.text
    assert len(all_documents(dm)[0]) == 10


def test_a_real_save_to_disk_folder_reads(tmp_path):
    """The folder that ``datasets`` itself writes (when installed; the reader never imports it)."""
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(records(12)).save_to_disk(str(tmp_path / "hf"), max_shard_size="1KB")
    assert len(list((tmp_path / "hf").glob("data-*.arrow"))) > 1
    dm = data(tmp_path / "hf", tmp_path)
    dm.setup("fit")
    names, text = all_documents(dm)
    assert len(names) == 12 and all(text.count(document(k)) == 1 for k in range(12))


def write_lines(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


ERRORS = [
    pytest.param(lambda p: write_lines(p, '{"text": "a"}', '{"body": "b", "id": 2}'),
                 r"bad\.jsonl: line 2 has no column 'text' \(--data.text_column\); its columns: 'body', 'id'",
                 id="jsonl-missing-column"),
    pytest.param(lambda p: write_lines(p, '{"text": "a"}', "", '{"text": 5}'),
                 r"bad\.jsonl: line 3, column 'text' \(--data.text_column\): expected a string, got int '5'",
                 id="jsonl-not-a-string"),
    pytest.param(lambda p: write_lines(p, '{"text": "a"}', '{"text": "b'),
                 r"bad\.jsonl: line 2 is not valid JSON", id="jsonl-broken-line"),
    pytest.param(lambda p: write_lines(p, '["a", "b"]', '{"text": "b"}'),
                 r"bad\.jsonl: line 1: expected a JSON object", id="jsonl-not-a-record"),
    pytest.param(lambda p: write_parquet(p, [{"body": "x", "n": 1}]),
                 r"corpus\.parquet: the file has no column 'text' \(--data.text_column\); its columns: 'body', 'n'",
                 id="parquet-missing-column"),
    pytest.param(lambda p: write_parquet(p, [{"text": None}, {"text": None}, {"text": 7}]),
                 r"corpus\.parquet: row 2, column 'text' \(--data.text_column\): expected strings, the column holds "
                 r"Int64", id="parquet-not-strings"),
    pytest.param(lambda p: write_arrow_folder(p, [{"body": "x"}] * 9),
                 r"data-00000-of-00002\.arrow: the file has no column 'text'.*its columns: 'body'",
                 id="arrow-missing-column"),
]


@pytest.mark.parametrize("make_path, message", ERRORS)
def test_bad_records_raise_naming_file_row_and_column(make_path, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        data(make_path(tmp_path), tmp_path).setup("fit")


def test_folder_mixing_formats_or_a_dataset_dict_raises(tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write_jsonl(mixed, records(3))
    (mixed / "a.txt").write_text(document(0), encoding="utf-8")
    with pytest.raises(ValueError, match=r"mixes jsonl, txt files; name one format with a glob"):
        data(mixed, tmp_path).setup("fit")
    saved = tmp_path / "dict"
    (saved / "train").mkdir(parents=True)
    (saved / "dataset_dict.json").write_text('{"splits": ["train"]}')
    with pytest.raises(ValueError, match=r"a saved DatasetDict \(splits: train\); give one split's folder"):
        data(saved, tmp_path).setup("fit")


def test_a_long_text_file_is_read_in_pieces_cut_where_lines_start(tmp_path):
    """Bounded memory: a 3 MB document comes in pieces of about PIECE_CHARS, each after the first
    starting a line with a non-blank character; joined, they are the file."""
    lines = [("  indented\n" if k % 7 == 0 else f"line {k}: ünïcödé text\n") for k in range(120_000)]
    text = "".join(lines) + "\n\n"
    (tmp_path / "long.txt").write_text(text, encoding="utf-8")
    pieces = list(text_pieces(tmp_path / "long.txt", "long.txt", None, Reading()))
    assert len(pieces) >= 2 and all(len(p.text) < 2 * PIECE_CHARS for p in pieces)
    assert [p.start for p in pieces] == [True] + [False] * (len(pieces) - 1)
    assert "".join(p.text for p in pieces) == text
    assert all(p.text[0] not in " \n" and pieces[k].text.endswith("\n") for k, p in enumerate(pieces[1:]))
    record = list(cut_text(text))
    assert "".join(record) == text and len(record) > 1


def test_invalid_utf8_past_the_first_block_names_byte_and_line(tmp_path):
    head = "é line\n" * 200_000  # 1.6 MB: past the first block
    (tmp_path / "late.txt").write_bytes(head.encode() + b"ok then caf\xe9\n")
    size = len(head.encode())
    with pytest.raises(ValueError, match=rf"late\.txt: byte {size + 11} \(line 200001\) is not valid UTF-8"):
        list(text_pieces(tmp_path / "late.txt", "late.txt", None, Reading()))
