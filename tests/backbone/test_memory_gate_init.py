"""``TitansConfig.memory_init_{lr,momentum,decay}_bias``: where every memory's gates start, in
every memory variant (the gate weights start at zero, so each gate is the sigmoid of its bias for
any input)."""

from __future__ import annotations

import math

import pytest
import torch

from titans_lightning.backbone import TitansBackbone, TitansConfig
from titans_lightning.memory.layer import NeuralMemory


def _memories(model: TitansBackbone) -> list[NeuralMemory]:
    return [m for m in model.modules() if isinstance(m, NeuralMemory)]


@pytest.mark.parametrize("variant", ["mac", "mag", "mal", "lmm"])
def test_every_memory_starts_at_the_configured_gates(variant):
    cfg = TitansConfig(variant=variant, size="debug", memory_max_lr=0.2, memory_init_lr_bias=-1.0,
                       memory_init_momentum_bias=3.0, memory_init_decay_bias=-12.0)
    memories = _memories(TitansBackbone(cfg))
    assert len(memories) == cfg.depth
    x = torch.randn(2, 5, cfg.dim, generator=torch.Generator().manual_seed(0))
    for memory in memories:
        lr, momentum, decay = memory._gates(x)
        assert lr.shape == (2 * cfg.memory_heads, 5)
        torch.testing.assert_close(lr, torch.full_like(lr, 0.2 / (1 + math.e)))
        torch.testing.assert_close(momentum, torch.full_like(momentum, 1 / (1 + math.exp(-3.0))))
        torch.testing.assert_close(decay, torch.full_like(decay, 1 / (1 + math.exp(12.0))))


def test_per_channel_decay_starts_at_the_configured_decay():
    cfg = TitansConfig(variant="lmm", size="debug", memory_per_channel_decay=True, memory_init_decay_bias=-9.0)
    x = torch.randn(1, 3, cfg.dim)
    for memory in _memories(TitansBackbone(cfg)):
        for decay in memory._gates(x)[2]:
            torch.testing.assert_close(decay, torch.full_like(decay, 1 / (1 + math.exp(9.0))))


def test_the_defaults_are_the_memory_layers_own():
    cfg = TitansConfig(variant="mag", size="debug")
    memory = _memories(TitansBackbone(cfg))[0]
    default = NeuralMemory(cfg.dim, heads=cfg.memory_heads)
    torch.testing.assert_close(memory.to_gates.bias, default.to_gates.bias)
