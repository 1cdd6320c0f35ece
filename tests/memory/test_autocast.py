"""The memory's backward under an active autocast: `loss.backward()` called inside a bf16 region.

The memory runs its recurrence in float32 whatever the autocast (`precision.autocast_off`); its
hand-written backward (`ChunkStep.backward`) must too, or bf16 products meet its float32
accumulators. The reference is the same bf16-autocast forward with backward outside the region.
"""

import pytest
import torch

from titans_lightning.memory import NeuralMemory


def _parameter_grads(layer: NeuralMemory, x: torch.Tensor, backward_in_autocast: bool) -> dict:
    """Gradients of a squared-output loss, forward under bf16 autocast, backward inside it or not."""
    layer.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, _ = layer(x)
        loss = y.float().square().mean()
        if backward_in_autocast:
            loss.backward()
    if not backward_in_autocast:
        loss.backward()
    return {name: p.grad.clone() for name, p in layer.named_parameters()}


@pytest.mark.parametrize("options, checkpoint_segment", [
    pytest.param({}, 0, id="chunk-step"),
    pytest.param({}, 2, id="checkpointed-chunks"),
    pytest.param({"per_channel_decay": True}, 0, id="per-channel-decay"),
])
def test_backward_inside_bf16_autocast_matches_backward_outside(options, checkpoint_segment):
    torch.manual_seed(0)
    layer = NeuralMemory(16, heads=2, chunk_size=4, memory_depth=2, memory_expansion=2, **options)
    layer.checkpoint_segment = checkpoint_segment
    x = torch.randn(2, 19, 16, generator=torch.Generator().manual_seed(1))  # 5 chunks, the last partial
    outside = _parameter_grads(layer, x, backward_in_autocast=False)
    inside = _parameter_grads(layer, x, backward_in_autocast=True)
    for name, g in inside.items():
        assert torch.isfinite(g).all(), name
        # the forward is the same bf16 computation; only bf16 rounding of the layers' own
        # backward ops (autocast changes none of the memory's float32 backward) may differ
        scale = outside[name].abs().max().item()
        torch.testing.assert_close(g, outside[name], rtol=2e-2, atol=1e-2 * scale, msg=name)
