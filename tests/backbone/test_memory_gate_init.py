"""``TitansConfig.memory_init_{lr,momentum,decay}_bias``: where every memory's gates start, in
every memory variant (the gate weights start at zero, so each gate is the sigmoid of its bias for
any input); ``memory_max_decay``: the forget gate's upper bound."""

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


@pytest.mark.parametrize("per_channel", [False, True])
def test_max_decay_bounds_the_forget_gate_for_any_input(per_channel):
    """alpha = max_decay * sigmoid(.): even a gate driven to its top stays under the bound."""
    cfg = TitansConfig(variant="lmm", size="debug", memory_max_decay=1e-4, memory_init_decay_bias=-6.0,
                       memory_per_channel_decay=per_channel)
    memory = _memories(TitansBackbone(cfg))[0]
    x = torch.randn(2, 7, cfg.dim, generator=torch.Generator().manual_seed(1))
    decays = memory._gates(x)[2]
    for decay in decays if per_channel else [decays]:
        torch.testing.assert_close(decay, torch.full_like(decay, 1e-4 / (1 + math.exp(6.0))))
    with torch.no_grad():  # the gate's logit pushed far up for every input: alpha -> max_decay, not 1
        memory.to_gates.bias.fill_(40.0)
        if per_channel:
            memory.to_channel_decay.bias.fill_(40.0)
    decays = memory._gates(x)[2]
    for decay in decays if per_channel else [decays]:
        torch.testing.assert_close(decay, torch.full_like(decay, 1e-4))


def test_a_bounded_forget_gate_keeps_what_the_free_gate_erases():
    """The same memory and stream: after a write, 400 tokens with the forget gate at its top shrink
    the fast weights to nearly nothing with the paper's gate (alpha -> 1) and keep them with
    max_decay = 1e-4 (a factor (1 - 1e-4)^400 = 0.96)."""
    kept = []
    for max_decay in (1.0, 1e-4):
        torch.manual_seed(0)
        memory = NeuralMemory(16, heads=1, chunk_size=8, max_decay=max_decay)
        _, written = memory(torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(2)))
        with torch.no_grad():
            memory.to_gates.bias[2].fill_(40.0)  # from here on, forget as hard as the gate allows
            _, after = memory(torch.zeros(1, 400, 16), written)
        norm = lambda state: sum(w.norm() for w in state.fast.weights)  # noqa: E731
        kept.append(float(norm(after) / norm(written)))
    assert kept[0] < 0.05 and kept[1] > 0.9, kept  # (momentum still adds to the kept weights)


@pytest.mark.parametrize("bound", [0.0, -1e-4, 1.5])
def test_max_decay_outside_the_unit_interval_is_refused(bound):
    with pytest.raises(ValueError, match="memory_max_decay"):
        TitansConfig(variant="lmm", size="debug", memory_max_decay=bound)
    with pytest.raises(ValueError, match="max_decay"):
        NeuralMemory(16, heads=1, max_decay=bound)
