"""The needle task: answer extraction, exact-match scoring and the accuracy grid on hand-made
examples, the answer-token loss, streaming evaluation == recomputation, and a fit that writes
the heatmap."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from datamodules.text import NeedleDataModule
from titans_lightning.backbone import TitansConfig
from titans_lightning.heads.lm import generate_by_recomputation
from titans_lightning.streaming import read_prompt
from titans_lightning.tasks.lm import LanguageModelingTask
from titans_lightning.tasks.longctx import NeedleAccuracy, NeedleTask, answer_span, exact_match, format_table


def make_task(variant: str = "mac", **kwargs) -> NeedleTask:
    torch.manual_seed(0)
    task = NeedleTask(TitansConfig(variant=variant, size="debug"), data_sizes={"vocab_size": 257}, **kwargs)
    task.configure_model()
    return task.eval()


def needle_batch(length: int = 160, n: int = 2) -> dict[str, torch.Tensor]:
    dm = NeedleDataModule(eval_lengths=[length], depths=[0.5], samples_per_cell=n, batch_size=n)
    dm.setup("validate")
    return next(iter(dm.val_dataloader()))


def test_answer_span_of_a_hand_made_batch():
    batch = {"input": torch.tensor([[256, 10, 11, 12, 7, 8], [256, 20, 21, 22, 5, 6]]),
             "answer": torch.tensor([[7, 8, 9], [5, 6, 4]]), "prompt_len": torch.tensor([4, 4])}
    prompt, answer = answer_span(batch)
    assert prompt.tolist() == [[256, 10, 11, 12], [256, 20, 21, 22]] and answer is batch["answer"]
    with pytest.raises(ValueError, match="share their prompt length"):
        answer_span({**batch, "prompt_len": torch.tensor([4, 5])})


def test_answer_span_of_a_real_sample_ends_right_before_the_answer():
    batch = needle_batch()
    prompt, answer = answer_span(batch)
    text = bytes(prompt[0, 1:].tolist()).decode()
    assert text.endswith("What is the pass key? The pass key is ") and bytes(answer[0].tolist()).decode().isdigit()


def test_exact_match_on_a_hand_made_example():
    answer = torch.tensor([[7, 1, 4], [7, 1, 4], [2, 2, 2]])
    generated = torch.tensor([[7, 1, 4], [7, 1, 5], [2, 2, 2]])
    assert exact_match(generated, answer).tolist() == [True, False, True]
    with pytest.raises(ValueError, match="differ"):
        exact_match(generated[:, :2], answer)


def test_accuracy_grid_and_table_on_hand_made_records():
    metric = NeedleAccuracy()
    metric.update(torch.tensor([True, False, True]), torch.tensor([512, 512, 2048]), torch.tensor([0.0, 0.0, 0.5]))
    metric.update(torch.tensor([True]), torch.tensor([512]), torch.tensor([0.5]))
    lengths, depths, accuracy, counts = metric.table()
    assert lengths == [512, 2048] and depths == [0.0, 0.5]
    assert counts.tolist() == [[2, 1], [0, 1]]
    assert accuracy[0].tolist() == [0.5, 1.0] and math.isnan(accuracy[1, 0]) and accuracy[1, 1] == 1.0
    assert metric.compute() == 0.75
    table = format_table(lengths, depths, accuracy)
    assert table.splitlines()[2] == "| 512 | 50.0 | 100.0 | 75.0 |"
    assert table.splitlines()[3] == "| 2,048 | nan | 100.0 | 100.0 |"


def test_training_loss_counts_only_the_answer_tokens():
    task = make_task()
    batch = needle_batch()
    loss, (_, nll) = task.compute_loss(batch)
    mask = batch["loss_mask"]
    torch.testing.assert_close(loss, nll[mask].mean())
    outside = {**batch, "target": batch["target"].masked_fill(~mask, 65)}  # change every non-answer target
    torch.testing.assert_close(task.compute_loss(outside)[0], loss)
    weighted = make_task(context_loss_weight=0.5)
    torch.testing.assert_close(weighted.compute_loss(batch)[0], loss + 0.5 * nll.mean())


def test_the_language_model_task_trains_on_needle_batches_as_they_are():
    torch.manual_seed(0)
    lm = LanguageModelingTask(TitansConfig(variant="swa", size="debug"), data_sizes={"vocab_size": 257})
    lm.configure_model()
    loss, _ = lm.compute_loss(needle_batch())
    loss.backward()
    assert torch.isfinite(loss) and lm.head.embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("variant", ["mac", "swa", "lmm"])
def test_streaming_answer_equals_greedy_recomputation(variant):
    task = make_task(variant, eval_chunk=13)  # pieces cut across segments, windows and memory chunks
    batch = needle_batch(length=140)
    generated, nll = task.answer(batch)
    prompt, answer = answer_span(batch)
    expected = generate_by_recomputation(task.head, task.backbone, prompt, answer.shape[1], temperature=0.0)
    assert torch.equal(generated, expected[:, prompt.shape[1]:])
    with torch.no_grad():  # teacher-forced answer loss == the same positions of one full forward
        _, (_, full_nll) = task.compute_loss(batch)
    torch.testing.assert_close(nll, full_nll[batch["loss_mask"]].view_as(nll), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("variant,reaches", [("mac", True), ("lmm", True), ("swa", False)])
def test_only_a_memory_carries_the_needle_past_the_window(variant, reaches):
    """The first pass-key digits sit ~100 tokens before the answer, far past the debug window
    (8 tokens, 2 layers): changing them moves the answer's logits through the memory (MAC, LMM)
    and cannot move them at all through sliding-window attention alone (SWA)."""
    task = make_task(variant)
    batch = needle_batch(length=200, n=1)
    prompt, _ = answer_span(batch)
    digit = int(batch["needle_start"][0]) + len("The pass key is ")
    assert prompt.shape[1] - digit > 90
    other = prompt.clone()
    other[0, digit:digit + 2] = torch.tensor([ord("0"), ord("0")]) + (other[0, digit:digit + 2] - ord("0") + 5) % 10
    logits = [task.head.logits(read_prompt(task.head, task.backbone, p, chunk=64)[0]) for p in (prompt, other)]
    assert (logits[0] - logits[1]).abs().max() > 1e-4 if reaches else torch.equal(logits[0], logits[1])


def test_read_prompt_in_pieces_equals_one_call():
    task = make_task("mag")
    tokens = needle_batch(length=130)["input"]
    whole, _ = read_prompt(task.head, task.backbone, tokens, chunk=1000)
    pieces, _ = read_prompt(task.head, task.backbone, tokens, chunk=9)
    torch.testing.assert_close(pieces, whole, rtol=1e-4, atol=1e-5)


def test_debug_fit_logs_the_grid_and_writes_the_heatmap_png(debug_run: Path):
    png = debug_run / "figures" / "needle_val-step2.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (debug_run / "figures" / "needle_val-step2.md").read_text().splitlines()
    assert table[0] == "| length | depth 0 | depth 1 | mean |"
    assert [r.split("|")[1].strip() for r in table[2:]] == ["110", "130"]
    header = (debug_run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val/needle_acc", "val/needle_acc/110", "val/needle_acc/130", "val/loss"} <= set(header)
