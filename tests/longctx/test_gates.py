"""``experiments/longctx/gates.py`` on a real (debug, MAC) needle checkpoint: one row per memory,
each gate within its range, means and maxima over hand-made masks; a model's
forget-gate bound shows in what it reads; the text haystack is the held-out Shakespeare; a model
without memory is refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.text.niah import TRAIN_SHARE
from datamodules.text.niah_samples import read_corpus
from experiments.longctx import gates
from titans_lightning.backbone import TitansConfig
from titans_lightning.memory.layer import NeuralMemory


def test_every_memory_s_gates_on_filler_and_needle(debug_run: Path, tmp_path: Path, capsys) -> None:
    checkpoint = debug_run / "checkpoints" / "last.ckpt"
    rows = gates.main([str(checkpoint), "--length", "256", "--skip", "10", "--json", str(tmp_path / "g.json")])
    config = TitansConfig(variant="mac", size="debug")
    assert [r["memory"] for r in rows] == list(range(config.depth))  # one memory per MAC block
    for row in rows:
        for part in ("filler", "needle"):
            theta, eta, alpha = (row[g][part] for g in gates.GATES)
            assert 0 < theta["mean"] <= theta["max"] <= config.memory_max_lr
            assert 0 < eta["mean"] <= eta["max"] < 1 and 0 < alpha["mean"] <= alpha["max"] < 1
    assert json.loads((tmp_path / "g.json").read_text()) == rows
    assert "| 0 | alpha |" in capsys.readouterr().out


def test_summarise_takes_mean_and_max_over_each_mask() -> None:
    theta = torch.arange(10.0)[None]  # one stream, gate value = position
    filler = torch.tensor([False, True, True, False, False, True, True, False, False, False])
    needle = torch.tensor([False, False, False, True, True, False, False, False, False, False])
    out = gates.summarise((theta, theta, theta), filler, needle)
    assert out["theta"]["filler"] == {"mean": 3.5, "max": 6.0} and out["alpha"]["needle"] == {"mean": 3.5, "max": 4.0}


def test_recorded_alpha_is_the_bounded_gate() -> None:
    memory = NeuralMemory(16, heads=2, max_decay=1e-4)
    with torch.no_grad():
        memory.to_gates.bias.fill_(40.0)
    calls = gates.record_gates([memory])
    memory(torch.randn(1, 5, 16))
    theta, eta, alpha = calls[0][0]
    assert alpha.shape == (2, 5) and torch.allclose(alpha, torch.full_like(alpha, 1e-4))


def test_a_model_without_memory_is_refused(tmp_path: Path, monkeypatch) -> None:
    class NoMemory(torch.nn.Module):
        backbone = torch.nn.Linear(2, 2)

    monkeypatch.setattr(gates, "load_lm", lambda path, device: NoMemory())
    with pytest.raises(ValueError, match="swa.ckpt: the model has no neural memory"):
        gates.read_gates(tmp_path / "swa.ckpt", 256, 0.5)


def test_text_haystack_reads_the_held_out_shakespeare(debug_run: Path) -> None:
    filler = gates.evaluation_haystack("text", 256).filler(200, np.random.default_rng(0))
    corpus = read_corpus("data/text/shakespeare")
    held_out = corpus[int(corpus.size * TRAIN_SHARE):].tobytes()
    assert filler.size == 200 and filler.tobytes() in held_out
    rows = gates.main([str(debug_run / "checkpoints" / "last.ckpt"), "--length", "256", "--skip", "10",
                       "--haystack", "text"])
    assert len(rows) == TitansConfig(variant="mac", size="debug").depth
