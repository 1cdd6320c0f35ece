"""The needle DataModule: placement at the requested depth, the sample layout and loss mask,
needle kinds, determinism, same-length evaluation batches and errors that name what is wrong."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.text.niah import (
    NOISE,
    TEMPLATES,
    Haystack,
    NeedleDataModule,
    insertion_point,
    make_sample,
    needle_value,
)

EOD = 256


def text_of(tokens) -> str:
    return bytes(int(t) for t in tokens if int(t) != EOD).decode()


@pytest.mark.parametrize("depth", [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0], ids=lambda d: f"depth{d}")
def test_needle_sits_at_the_requested_depth_of_the_noise(depth):
    length = 1024
    sample = make_sample(Haystack(), length, depth, "number", 5, np.random.default_rng(1), EOD)
    needle = TEMPLATES["number"][0].format(v=sample.answer).encode()
    start = sample.needle_start
    assert bytes(sample.tokens[start:start + len(needle)].astype(np.uint8)) == needle
    filler = length - len(needle) - len(TEMPLATES["number"][1]) - 5
    # the nearest sentence boundary: at most half the longest noise sentence away
    assert abs((start - 1) - depth * filler) <= max(len(s) for s in NOISE.split(b". ")) / 2 + 2


def test_needle_in_a_text_haystack_starts_at_a_line_or_sentence_boundary():
    corpus = np.frombuffer(b"Line one of a play.\nAnd two, with more words in it. Three\n" * 40, dtype=np.uint8)
    for depth in (0.3, 0.6):
        sample = make_sample(Haystack(corpus), 700, depth, "word", 6, np.random.default_rng(2), EOD)
        before = bytes(sample.tokens[1:sample.needle_start].astype(np.uint8))
        assert before.endswith((b"\n", b". ")), before[-10:]


def test_insertion_point_is_the_nearest_boundary():
    filler = np.frombuffer(b"aaaa. bbbbbbbb. cc\ndd", dtype=np.uint8)  # boundaries 0, 6, 16, 19, 21
    assert [insertion_point(filler, d) for d in (0.0, 0.2, 0.5, 0.8, 0.95, 1.0)] == [0, 6, 6, 16, 19, 21]


@pytest.mark.parametrize("kind,pattern", [("number", r"\d{5}"), ("word", r"([bdfgklmnprstvz][aeiou]){3}"),
                                          ("uuid", r"[0-9a-f]{8}")], ids=["number", "word", "uuid"])
def test_sample_layout_and_loss_mask(kind, pattern):
    dm = NeedleDataModule(needle=kind, train_length=200, eval_lengths=[200], depths=[0.5], samples_per_cell=1)
    dm.setup("fit")
    item = dm.datasets["val"].samples[0]
    tokens = torch.cat((item["input"][:1], item["target"]))
    assert item["input"].shape == (200,) and torch.equal(item["input"][1:], item["target"][:-1])
    assert item["input"][0] == EOD and (item["target_bytes"] == 1).all()
    answer = text_of(item["answer"])
    assert re.fullmatch(pattern, answer)
    question = TEMPLATES[kind][1]
    assert text_of(tokens).endswith(question + answer)
    assert item["loss_mask"].sum() == len(answer) and item["loss_mask"][-len(answer):].all()
    assert torch.equal(item["target"][item["loss_mask"]], item["answer"])
    assert int(item["prompt_len"]) == 201 - len(answer)


def test_full_uuid_layout():
    value = needle_value("uuid", 32, np.random.default_rng(0))
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", value)


def test_samples_are_deterministic_and_splits_differ():
    make = lambda: NeedleDataModule(eval_lengths=[256], samples_per_cell=3)  # noqa: E731
    a, b = make(), make()
    a.setup("fit"), b.setup("fit")
    assert torch.equal(a.datasets["val"].samples[2]["input"], b.datasets["val"].samples[2]["input"])
    assert torch.equal(a.datasets["train"].samples[5]["input"], b.datasets["train"].samples[5]["input"])
    assert not torch.equal(a.datasets["val"].samples[2]["answer"], a.datasets["test"].samples[2]["answer"])


def test_evaluation_batches_hold_one_length_in_grid_order():
    dm = NeedleDataModule(eval_lengths=[128, 256], depths=[0.0, 1.0], samples_per_cell=3, batch_size=4)
    dm.setup("validate")
    batches = list(dm.val_dataloader())
    assert [b["input"].shape for b in batches] == [(4, 128), (2, 128), (4, 256), (2, 256)]
    depths = torch.cat([b["depth"] for b in batches]).tolist()
    assert depths == [0.0] * 3 + [1.0] * 3 + [0.0] * 3 + [1.0] * 3


def test_training_batches_cycle_through_the_lengths_one_length_per_batch():
    dm = NeedleDataModule(train_length=[128, 256, 128], train_samples=26, batch_size=4, eval_lengths=[128])
    dm.setup("fit")
    assert [n for n, _ in dm.train_cells()] == [128] * 4 + [256] * 4 + [128] * 8 + [256] * 4 + [128] * 6
    batches = list(dm.train_dataloader())  # 6 full batches; the last 2 samples are dropped
    assert sorted(b["input"].shape[1] for b in batches) == [128] * 4 + [256] * 2
    for b in batches:
        assert b["input"].shape[0] == 4 and b["loss_mask"].sum() == 4 * 5  # 5 answer digits each


def test_one_training_length_gives_full_batches_of_that_length():
    dm = NeedleDataModule(train_length=200, train_samples=10, batch_size=4, eval_lengths=[200])
    dm.setup("fit")
    assert [b["input"].shape for b in dm.train_dataloader()] == [(4, 200), (4, 200)]


def test_text_haystack_keeps_evaluation_text_out_of_training(tmp_path: Path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(f"line {i:05d} of the corpus.\n" for i in range(2000)))
    dm = NeedleDataModule(haystack="text", haystack_path=str(corpus), train_length=300, eval_lengths=[300])
    train, held_out = dm.haystacks()
    assert train.corpus.size + held_out.corpus.size == corpus.stat().st_size + 1
    last_train_line = bytes(train.corpus[-30:]).split(b"\n")[-2]
    assert last_train_line not in bytes(held_out.corpus)


@pytest.mark.parametrize("kwargs,message", [
    ({"eval_lengths": [64]}, "lengths [64] cannot hold the number needle"),
    ({"train_length": 50}, "must be >= 103"),
    ({"depths": [0.5, 1.5]}, "depths: expected values in [0, 1], got [1.5]"),
    ({"needle": "emoji"}, "needle: expected one of"),
    ({"haystack": "books"}, "haystack: expected 'noise' or 'text'"),
    ({"samples_per_cell": 0}, "samples_per_cell: expected >= 1"),
    ({"eval_batch_size": 0}, "eval_batch_size: expected >= 1, got 0"),
    ({"train_length": [256, 90]}, "lengths [90] cannot hold"),
    ({"train_length": []}, "train_length, eval_lengths and depths must each hold at least one value"),
    ({"train_samples": 3, "batch_size": 4}, "train_samples: expected >= batch_size (4), got 3"),
], ids=["eval-too-short", "train-too-short", "depth-range", "needle-kind", "haystack-kind", "samples", "eval-batch",
        "train-cycle-too-short", "train-cycle-empty", "fewer-samples-than-a-batch"])
def test_bad_arguments_raise_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        NeedleDataModule(**kwargs)


def test_a_text_haystack_too_short_names_the_file(tmp_path: Path):
    small = tmp_path / "small.txt"
    small.write_text("Too little text.\n" * 20)
    dm = NeedleDataModule(haystack="text", haystack_path=str(small), eval_lengths=[512])
    with pytest.raises(ValueError, match=re.escape(str(small))):
        dm.setup("fit")


def test_invalid_utf8_in_a_text_haystack_names_file_and_line(tmp_path: Path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\n" * 3 + b"caf\xe9\n")
    with pytest.raises(ValueError, match=r"bad.txt: byte 33 \(line 4\) is not valid UTF-8"):
        NeedleDataModule(haystack="text", haystack_path=str(bad)).setup("fit")
