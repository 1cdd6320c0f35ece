"""RULER's multi-key and multi-value needles: every needle in the haystack, the asked one at the
requested depth, the right answer, the batch contract, determinism, both haystacks; and the
single needle's numbers pinned (the new tasks left them unchanged)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.text.niah import NOISE, Haystack, NeedleDataModule, NeedleSpec
from datamodules.text.niah_ruler import QUESTIONS

EOD = 256
NEEDLE = re.compile(r"One of the special magic (number|word|uuid)s for ([a-z]{6}) is: ([0-9a-z-]+)\. ")
CORPUS = b"Line one of a play.\nAnd two, with more words in it. Three\n" * 400


def text_of(tokens) -> str:
    return bytes(int(t) for t in tokens if int(t) != EOD).decode()


def needles_in(sample) -> list[tuple[int, str, str]]:
    """(first token index, key, value) of every needle sentence of a sample, in text order."""
    text = bytes(int(t) for t in sample.tokens[1:]).decode()  # token i + 1 is character i
    return [(m.start() + 1, m.group(2), m.group(3)) for m in NEEDLE.finditer(text)]


def haystack_of(kind: str) -> Haystack:
    return Haystack() if kind == "noise" else Haystack(np.frombuffer(CORPUS, dtype=np.uint8))


@pytest.mark.parametrize("haystack", ["noise", "text"])
@pytest.mark.parametrize("kind", ["number", "uuid"])
def test_multikey_holds_every_needle_with_distinct_keys_and_asks_the_first(haystack, kind):
    spec = NeedleSpec("multikey", kind, 8 if kind == "uuid" else 5, num_needles=5)
    sample = spec.make(haystack_of(haystack), 1500, 0.4, np.random.default_rng(7), EOD)
    found = needles_in(sample)
    assert len(found) == 5 and len({key for _, key, _ in found}) == 5
    assert sorted(start for start, _, _ in found) == sorted(sample.needle_starts)
    asked = {start: (key, value) for start, key, value in found}[sample.needle_start]
    question = f"\nWhat is the special magic {kind} for {asked[0]}? The special magic {kind} for {asked[0]} is "
    assert text_of(sample.tokens).endswith(question + asked[1]) and sample.answer == asked[1]
    assert text_of(sample.tokens[sample.prompt_len:]) == asked[1] and sample.tokens.size == 1501


@pytest.mark.parametrize("haystack", ["noise", "text"])
def test_multivalue_answer_is_every_value_in_text_order(haystack):
    spec = NeedleSpec("multivalue", "number", 5, num_values=6)
    sample = spec.make(haystack_of(haystack), 1500, 0.7, np.random.default_rng(3), EOD)
    found = needles_in(sample)
    assert len(found) == 6 and len({key for _, key, _ in found}) == 1
    key = found[0][1]
    assert sample.answer == ", ".join(value for _, _, value in found)
    question = f"\nWhat are all the special magic numbers for {key}? The special magic numbers for {key} are "
    assert text_of(sample.tokens).endswith(question + sample.answer)
    assert text_of(sample.tokens[sample.prompt_len:]) == sample.answer


@pytest.mark.parametrize("task", ["multikey", "multivalue"])
@pytest.mark.parametrize("depth", [0.0, 0.3, 0.6, 1.0], ids=lambda d: f"depth{d}")
def test_the_first_needle_sits_at_the_requested_depth(task, depth):
    spec = NeedleSpec(task, "number", 5)
    sample = spec.make(Haystack(), 4000, depth, np.random.default_rng(11), EOD)
    found = needles_in(sample)
    sizes = {start: len(NEEDLE.match(text_of(sample.tokens[start:start + 80])).group(0)) for start, _, _ in found}
    question = QUESTIONS[task].format(noun="number", key=found[0][1])
    filler = 4000 - sum(sizes.values()) - len(question) - len(sample.answer)  # L + 1 tokens, one of them EOD
    before = sum(size for start, size in sizes.items() if start < sample.needle_start)
    offset = sample.needle_start - 1 - before  # in the filler before any needle was inserted
    assert abs(offset - depth * filler) <= max(len(s) for s in NOISE.split(b". ")) / 2 + 2
    if task == "multikey":  # the needle at the requested depth is the asked one
        assert {s: v for s, _, v in found}[sample.needle_start] == sample.answer


def test_needles_start_at_sentence_or_line_boundaries_of_a_text_haystack():
    sample = NeedleSpec("multikey", "number", 5, num_needles=8).make(haystack_of("text"), 2000, 0.5,
                                                                     np.random.default_rng(5), EOD)
    for start in sample.needle_starts:
        assert text_of(sample.tokens[:start]).endswith(("\n", ". ", "is: ")) or start == 1


@pytest.mark.parametrize("task", ["multikey", "multivalue"])
def test_batches_keep_the_contract(task):
    dm = NeedleDataModule(task=task, eval_lengths=[400, 600], depths=[0.0, 1.0], samples_per_cell=2, batch_size=4,
                          train_length=[400, 500], train_samples=8)
    dm.setup("fit")
    for batch in dm.val_dataloader():
        n, length = batch["input"].shape
        answer_len = batch["answer"].shape[1]
        assert (batch["prompt_len"] == length + 1 - answer_len).all() and (batch["length"] == length).all()
        assert torch.equal(batch["target"][batch["loss_mask"]].view(n, -1), batch["answer"])
        for row, start in zip(batch["input"], batch["needle_start"].tolist()):
            assert text_of(row[start:start + 40]).startswith("One of the special magic numbers for ")
    expected = 5 if task == "multikey" else 4 * 5 + 3 * 2  # four values joined by ", "
    assert answer_len == expected
    for batch in dm.train_dataloader():
        assert set(batch["loss_mask"].sum(1).tolist()) == {expected}


@pytest.mark.parametrize("task", ["multikey", "multivalue"])
def test_samples_are_pure_functions_of_seed_split_and_index(task, tmp_path: Path):
    (tmp_path / "c.txt").write_bytes(CORPUS * 3)
    make = lambda seed=0: NeedleDataModule(task=task, haystack="text", haystack_path=str(tmp_path / "c.txt"),  # noqa
                                           eval_lengths=[700], train_length=700, samples_per_cell=2, data_seed=seed)
    a, b, c = make(), make(), make(seed=1)
    for dm in (a, b, c):
        dm.setup("fit")
    assert torch.equal(a.datasets["val"].samples[3]["input"], b.datasets["val"].samples[3]["input"])
    assert torch.equal(a.datasets["train"].samples[2]["input"], b.datasets["train"].samples[2]["input"])
    assert not torch.equal(a.datasets["val"].samples[3]["input"], c.datasets["val"].samples[3]["input"])
    assert not torch.equal(a.datasets["val"].samples[3]["answer"], a.datasets["test"].samples[3]["answer"])


def test_the_single_needle_numbers_are_unchanged():
    """The pass keys and depths of the default DataModule, as before the RULER tasks existed."""
    dm = NeedleDataModule(eval_lengths=[256], depths=[0.5], samples_per_cell=2, train_samples=64, batch_size=4)
    dm.setup("fit")
    answers = [text_of(dm.datasets[s].samples[i]["answer"]) for s in ("val", "test") for i in (0, 1)]
    assert answers == PINNED_ANSWERS
    assert int(dm.datasets["val"].samples[0]["needle_start"]) == PINNED_START
    train = dm.datasets["train"].samples[0]
    assert text_of(train["target"][train["loss_mask"]]) == PINNED_TRAIN_ANSWER


PINNED_ANSWERS = ["58953", "68829", "90242", "95386"]  # computed with the code before the RULER tasks
PINNED_START = 75
PINNED_TRAIN_ANSWER = "52300"


@pytest.mark.parametrize("kwargs,message", [
    ({"task": "triple"}, "task: expected one of ['single', 'multikey', 'multivalue']"),
    ({"task": "multikey", "num_needles": 0}, "num_needles: expected >= 1, got 0"),
    ({"task": "multivalue", "num_values": 0}, "num_values: expected >= 1, got 0"),
    ({"task": "multikey", "eval_lengths": [300]}, "lengths [300] cannot hold the multikey task's 4 number needles"),
    ({"task": "multivalue", "num_values": 8, "train_length": 500},
     "lengths [500] cannot hold the multivalue task's 8 number needles"),
], ids=["task", "num-needles", "num-values", "multikey-too-short", "multivalue-train-too-short"])
def test_bad_task_arguments_raise_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        NeedleDataModule(**{"eval_lengths": [1024], "train_length": 1024, **kwargs})
