"""The LM head and task: loss and metrics on a tiny batch, tied weights, sampling, streaming generation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from titans_lightning.backbone import TitansBackbone, TitansConfig
from titans_lightning.backbone.config import VARIANTS
from titans_lightning.heads.lm import LMHead, generate, generate_by_recomputation, sample_next
from titans_lightning.tasks.lm import BitsPerByte, LanguageModelingTask


def make_task(variant: str = "mac", vocab: int = 257, **kwargs) -> LanguageModelingTask:
    task = LanguageModelingTask(TitansConfig(variant=variant, size="debug"), data_sizes={"vocab_size": vocab}, **kwargs)
    task.configure_model()
    return task


def tiny_batch(vocab: int = 257, eod: int = 256) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    stream = torch.randint(0, 256, (2, 13), generator=generator)
    stream[0, 5] = eod  # a document boundary inside a window
    target = stream[:, 1:]
    return {"input": stream[:, :-1], "target": target, "target_bytes": (target != eod).long()}


def test_loss_is_mean_next_token_cross_entropy():
    torch.manual_seed(0)
    task = make_task()
    batch = tiny_batch()
    loss, (logits, nll) = task.compute_loss(batch)
    assert logits.shape == (2, 12, 257) and nll.shape == (2, 12)
    expected = F.cross_entropy(logits.flatten(0, 1), batch["target"].flatten())
    torch.testing.assert_close(loss, expected)
    assert abs(loss.item() - math.log(257)) < 1.5  # an untrained model is near uniform
    loss.backward()
    assert task.head.embedding.weight.grad is not None and task.head.embedding.weight.grad.abs().sum() > 0


def test_metrics_bits_per_byte_and_perplexity_on_a_tiny_batch():
    torch.manual_seed(0)
    task = make_task()
    batch = tiny_batch()
    loss, outputs = task.compute_loss(batch)
    metrics = task.metrics["val"]
    task.update_metrics(metrics, outputs, batch)
    values = metrics.compute()
    _, nll = outputs
    counted = batch["target_bytes"] > 0
    expected_bpb = nll[counted].sum() / math.log(2) / counted.sum()  # one byte per byte token, EOD excluded
    torch.testing.assert_close(values["val/bpb"], expected_bpb.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(values["val/ppl"], loss.exp(), rtol=1e-4, atol=1e-4)  # ppl over every token


def test_bits_per_byte_weights_multi_byte_tokens_by_their_bytes():
    metric = BitsPerByte()
    metric.update(torch.tensor([[math.log(2) * 6, math.log(2) * 2, 5.0]]), torch.tensor([[3, 1, 0]]))
    torch.testing.assert_close(metric.compute(), torch.tensor(2.0))  # 8 bits over 4 bytes, EOD out


@pytest.mark.parametrize("tie, extra", [pytest.param(True, 0, id="tied"), pytest.param(False, 257 * 32, id="untied")])
def test_tied_weights_share_the_embedding(tie, extra):
    head = LMHead(257, 32, tie_weights=tie)
    assert (head.output.weight is head.embedding.weight) == tie
    assert sum(p.numel() for p in head.parameters()) == 257 * 32 + extra


def test_task_requires_a_vocabulary_size():
    with pytest.raises(ValueError, match="vocab_size"):
        LanguageModelingTask(TitansConfig(variant="transformer", size="debug"), data_sizes={})


def test_top_k_and_temperature_restrict_sampling():
    logits = torch.tensor([[0.0, 3.0, 2.0, 1.0, -1.0]]).repeat(200, 1)
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(sample_next(logits, temperature=0.0), torch.ones(200, dtype=torch.long))
    assert set(sample_next(logits, 1.0, top_k=1, generator=generator).tolist()) == {1}
    assert set(sample_next(logits, 5.0, top_k=3, generator=generator).tolist()) == {1, 2, 3}
    with pytest.raises(ValueError, match="temperature"):
        sample_next(logits, temperature=-1.0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_streaming_generation_equals_recomputation(variant):
    """Greedy decoding through the streaming state (prompt read once, then one token per call)
    gives the same tokens as re-running the whole sequence for every token; the prompt (11
    tokens) and the 21 new ones cross chunk (4), segment (8) and window (8) boundaries."""
    torch.manual_seed(1)
    head, backbone = LMHead(257, 32), TitansBackbone(TitansConfig(variant=variant, size="debug")).eval()
    prompt = torch.randint(0, 256, (2, 11))
    streamed = generate(head, backbone, prompt, max_new_tokens=21, temperature=0.0)
    recomputed = generate_by_recomputation(head, backbone, prompt, max_new_tokens=21, temperature=0.0)
    assert streamed.shape == (2, 32) and torch.equal(streamed[:, :11], prompt)
    assert torch.equal(streamed, recomputed)


def test_generation_feeds_the_backbone_one_token_per_step():
    calls = []
    backbone = TitansBackbone(TitansConfig(variant="swa", size="debug")).eval()

    def counting(x, state=None):
        calls.append(x.shape[1])
        return backbone(x, state)

    generate(LMHead(257, 32), counting, torch.randint(0, 256, (1, 9)), max_new_tokens=5, temperature=0.0)
    assert calls == [9, 1, 1, 1, 1]


def test_predict_step_continues_each_prompt():
    torch.manual_seed(0)
    task = make_task("mal", max_new_tokens=7).eval()
    with torch.inference_mode():
        out = task.predict_step({"prompt": torch.tensor([[256, 72, 105]]), "index": torch.tensor([0])}, 0)
    assert out["prompt_len"] == 3 and out["tokens"].shape == (1, 10)
    assert out["tokens"][0, :3].tolist() == [256, 72, 105]
