"""Every variant traces forward, backward and a streamed continuation on the ``meta`` device.

A meta tensor has a shape and no data, so whatever would stall or break a GPU step raises here on
CPU: a host sync (``.item()``, ``bool(tensor)``, ``.tolist()``, ``torch.nonzero``) and a tensor made
on the CPU without a device argument meeting the model's (``Tensor on device cpu is not on the
expected device meta``). The model is built under ``torch.device("meta")`` but called outside it,
so a factory call that forgets its device really lands on the CPU.
"""

import pytest
import torch

from titans_lightning.backbone import TitansBackbone, TitansConfig
from titans_lightning.backbone.config import VARIANTS
from titans_lightning.parallelize import checkpoint_blocks

META = torch.device("meta")
# debug size: chunk 4, segment 8, window 8. 21 tokens cross several of each and end mid-way;
# the 7-token continuation starts mid-chunk and crosses a boundary, then one decoding token.
PIECES = (21, 7, 1)


def meta_backbone(variant: str, **overrides) -> TitansBackbone:
    with META:
        return TitansBackbone(TitansConfig(variant=variant, size="debug", **overrides)).train()


def run_stream(model: TitansBackbone, padded: bool) -> torch.Tensor:
    """Feed (2, 21 + 7 + 1, D) meta embeddings in three calls, backpropagate the sum of every
    hidden state through the carried states; returns the input embeddings (with their grad)."""
    x = torch.randn(2, sum(PIECES), model.dim, device=META, requires_grad=True)
    mask = torch.ones(2, sum(PIECES), dtype=torch.bool, device=META) if padded else None
    state, start, total = None, 0, 0
    for n in PIECES:
        piece_mask = None if mask is None else mask[:, start:start + n]
        h, state = model(x[:, start:start + n], state, piece_mask)
        assert h.device == META and h.shape == (2, n, model.dim)
        total, start = total + h.sum(), start + n
    assert state.position == sum(PIECES)
    total.backward()
    return x


@pytest.mark.parametrize("padded", [False, True], ids=["no-mask", "padding-mask"])
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANTS)
def test_forward_backward_and_stream_on_meta(variant, padded):
    model = meta_backbone(variant)
    x = run_stream(model, padded)
    assert x.grad is not None and x.grad.device == META
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient reached {missing}"


@pytest.mark.parametrize("variant, overrides, memory_segment", [
    pytest.param("mal", {"memory_per_channel_decay": True}, 0, id="mal-per-channel-decay"),
    pytest.param("mac", {}, 2, id="mac-activation-checkpointing"),
])
def test_other_memory_paths_on_meta(variant, overrides, memory_segment):
    """The per-channel path and checkpointed blocks recompute chunks under torch.utils.checkpoint."""
    model = meta_backbone(variant, **overrides)
    if memory_segment:
        checkpoint_blocks(model.blocks, memory_segment=memory_segment)
    x = run_stream(model, padded=True)
    assert x.grad is not None and x.grad.device == META
