"""Evaluation at length: a 1M-token sample builds in O(L) time and memory, the test grid takes its
own lengths and sample counts, streamed answers of the RULER tasks equal recomputation, a long cell
read in pieces equals one call, and the experiment times each cell and marks what full attention
was not run on."""

from __future__ import annotations

import json
import time
import tracemalloc
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.text.niah import Haystack, NeedleDataModule, NeedleSpec
from experiments.longctx import niah as experiment
from titans_lightning.backbone import TitansConfig
from titans_lightning.heads.lm import generate_by_recomputation
from titans_lightning.tasks.longctx import NeedleAccuracy, NeedleTask, answer_span, format_timed_table

MILLION = 1 << 20


def build(spec: NeedleSpec, length: int) -> tuple[float, int]:
    """(seconds, peak bytes numpy allocated) of one sample of ``length`` tokens."""
    tracemalloc.start()
    start = time.perf_counter()
    spec.make(Haystack(), length, 0.37, np.random.default_rng(0), 256)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak


@pytest.mark.parametrize("task", ["single", "multikey", "multivalue"])
def test_a_million_token_sample_builds_in_linear_time_and_memory(task):
    spec = NeedleSpec(task, "number", 5)
    seconds, peak = build(spec, MILLION)
    _, quarter_peak = build(spec, MILLION // 4)
    assert seconds < 1.0  # ~0.02 s measured; a quadratic insertion would take minutes
    assert peak < 40 * MILLION  # bytes per token: the int64 tokens and a few byte-sized passes
    assert peak / quarter_peak < 4.5  # 4x the length, 4x the memory


def test_the_test_grid_has_its_own_lengths_and_sample_counts():
    lengths = [1024, 4096, 16384, 65536, 262144, MILLION]
    dm = NeedleDataModule(eval_lengths=[256], test_lengths=lengths, test_samples_per_cell=[4, 4, 2, 2, 1, 1],
                          depths=[0.0, 0.5, 1.0], samples_per_cell=3, eval_batch_size=2)
    dm.setup("test")
    assert [n for n, _ in dm.eval_cells()] == [256] * 9
    test = dm.datasets["test"]
    assert [n for n, _ in dm.test_cells()] == [n for n, c in zip(lengths, [4, 4, 2, 2, 1, 1]) for _ in range(3 * c)]
    assert [len(g) for g in test.groups][-2:] == [2, 1]  # the 1M cells: 3 samples in batches of 2
    start = time.perf_counter()
    batch = test[len(test) - 2]
    assert time.perf_counter() - start < 5.0
    assert batch["input"].shape == (2, MILLION) and batch["depth"].tolist() == [0.0, 0.5]
    assert (batch["prompt_len"] == MILLION + 1 - 5).all()


def test_test_samples_per_cell_must_match_the_test_lengths():
    with pytest.raises(ValueError, match=r"test_samples_per_cell: expected a count >= 1, or one per test length \(2\)"):
        NeedleDataModule(test_lengths=[1024, 4096], test_samples_per_cell=[2, 2, 1])


def make_task(variant: str, eval_chunk: int) -> NeedleTask:
    torch.manual_seed(0)
    task = NeedleTask(TitansConfig(variant=variant, size="debug"), data_sizes={"vocab_size": 257},
                      eval_chunk=eval_chunk)
    task.configure_model()
    return task.eval()


def eval_batch(task: str, length: int, n: int = 2) -> dict[str, torch.Tensor]:
    dm = NeedleDataModule(task=task, eval_lengths=[length], depths=[0.5], samples_per_cell=n, batch_size=n)
    dm.setup("validate")
    return next(iter(dm.val_dataloader()))


@pytest.mark.parametrize("variant,task", [("mac", "multikey"), ("lmm", "multivalue")])
def test_streamed_answers_of_the_ruler_tasks_equal_recomputation(variant, task):
    model = make_task(variant, eval_chunk=29)  # pieces cut across segments and memory chunks
    batch = eval_batch(task, 400, n=1)
    generated, nll = model.answer(batch)
    prompt, answer = answer_span(batch)
    expected = generate_by_recomputation(model.head, model.backbone, prompt, answer.shape[1], temperature=0.0)
    assert torch.equal(generated, expected[:, prompt.shape[1]:])
    with torch.no_grad():
        _, (_, full_nll) = model.compute_loss(batch)
    torch.testing.assert_close(nll, full_nll[batch["loss_mask"]].view_as(nll), rtol=1e-4, atol=1e-4)


def test_a_long_cell_read_in_pieces_equals_one_call():
    """A 4,096-token multi-key haystack through the memory (LMM) in pieces of 512 gives the answer
    and answer loss of one unstreamed call over the whole prompt."""
    batch = eval_batch("multikey", 4096, n=1)
    streamed, one_call = make_task("lmm", eval_chunk=512), make_task("lmm", eval_chunk=4096)
    generated, nll = streamed.answer(batch)
    whole, whole_nll = one_call.answer(batch)
    assert torch.equal(generated, whole)
    torch.testing.assert_close(nll, whole_nll, rtol=1e-4, atol=1e-4)


def test_cell_seconds_and_the_timed_table():
    metric = NeedleAccuracy()
    metric.update(torch.tensor([True, False]), torch.tensor([1024, 1024]), torch.tensor([0.0, 1.0]),
                  torch.tensor([0.5, 0.25]))
    metric.update(torch.tensor([True]), torch.tensor([1024]), torch.tensor([0.0]), torch.tensor([1.5]))
    lengths, depths, accuracy, counts = metric.table()
    seconds = metric.seconds_table()
    assert seconds.tolist() == [[2.0, 0.25]] and counts.tolist() == [[2, 1]]
    table = format_timed_table(lengths, depths, accuracy, counts, seconds, not_run=[65536]).splitlines()
    assert table[0] == "| length | samples per cell | depth 0 | depth 1 | mean | seconds |"
    assert table[2] == "| 1,024 | 2/1 | 100.0 (2.00 s) | 0.0 (0.25 s) | 50.0 | 2.25 |"
    assert table[3] == "| 65,536 | - | not run (memory) | not run (memory) | - | - |"


def test_full_attention_stops_at_its_limit_and_memory_variants_run_every_length():
    lengths = [1024, 4096, 16384, MILLION]
    assert experiment.runnable("transformer", lengths, 4096) == ([1024, 4096], [16384, MILLION])
    assert experiment.runnable("mac", lengths, 4096) == (lengths, [])


def test_the_experiment_scores_a_given_checkpoint_timed_per_cell(debug_run: Path, tmp_path: Path):
    checkpoint = debug_run / "checkpoints" / "last.ckpt"
    experiment.main(["--checkpoint", str(checkpoint), "--lengths", "110", "130", "--samples", "2", "1",
                     "--depths", "0", "1", "--batch", "2", "--eval-chunk", "16", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "niah.json").read_text())["mac"]
    assert result["lengths"] == [110, 130] and result["counts"] == [[2, 2], [1, 1]]
    assert result["eval_chunk"] == 16 and all(s > 0 for row in result["seconds"] for s in row)
    table = (tmp_path / "niah_mac.md").read_text()
    assert "| length | samples per cell | depth 0 | depth 1 | mean | seconds |" in table
    assert "\n| 110 | 2 | " in table and "\n| 130 | 1 | " in table and (tmp_path / "niah_mac.png").is_file()


def test_cells_past_the_full_attention_limit_are_marked_not_run(debug_run: Path):
    args = Namespace(lengths=[110, 130], samples=[1], depths=[0.5], batch=1, eval_chunk=None, device="cpu",
                     max_full_attention_length=120, haystack=None)
    result = experiment.evaluate(debug_run / "checkpoints" / "last.ckpt", "transformer", args)
    assert result["lengths"] == [110] and result["not_run"] == [130]
    assert result["table"].splitlines()[-1] == "| 130 | - | not run (memory) | - | - |"


def test_a_checkpoint_is_scored_on_another_haystack(debug_run: Path, tmp_path: Path, monkeypatch):
    """``--haystack text`` reads the shipped Shakespeare around the needle of a noise-trained run
    (the run's other data settings kept), and the table says which haystack it scored."""
    monkeypatch.chdir(Path(experiment.REPO))  # the recipe's haystack_path is relative to the repository
    checkpoint = debug_run / "checkpoints" / "last.ckpt"

    def filler(haystack):
        dm = experiment.test_grid(checkpoint, [400], [1.0], [1], 1, haystack=haystack)
        return dm.haystack_kind, bytes(next(iter(dm.test_dataloader()))["input"][0, 1:300].tolist())

    (own, noise), (other, text) = filler(None), filler("text")
    assert (own, other) == ("noise", "text")
    assert b"The grass is green" in noise and b"The grass is green" not in text and text.strip()
    experiment.main(["--checkpoint", str(checkpoint), "--lengths", "200", "--samples", "1", "--depths", "0.5",
                     "--batch", "1", "--eval-chunk", "64", "--haystack", "text", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "niah.json").read_text())["mac"]["haystack"] == "text"
    assert "single task, text haystack" in (tmp_path / "niah_mac.md").read_text()
