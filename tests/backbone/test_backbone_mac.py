"""MAC against its slow, literal reference (titans_lightning/backbone/reference.py)."""

import pytest
import torch
from backbone_cases import make_backbone, randn, stream

from titans_lightning.backbone.mixers import StreamContext
from titans_lightning.backbone.reference import mac_reference


@pytest.mark.parametrize("overrides", [
    dict(),
    dict(memory_tokens=2),
    dict(memory_tokens=1, persistent_tokens=0),
    dict(segment_len=5, chunk_size=2),
    dict(segment_len=5, chunk_size=2, mac_memory_input="residual"),
], ids=["per-token", "pooled-2", "pooled-1-no-persistent", "segment-5-chunk-2", "residual-input"])
def test_mac_mixer_matches_reference(overrides):
    mixer = make_backbone("mac", **overrides).blocks[0].mixer
    x = randn(2, 13, 16)
    ctx = StreamContext(0, torch.arange(13), torch.ones(2, 13, dtype=torch.bool))
    out, _ = mixer(x, ctx, mixer.initial_state(2, x))
    expected = mac_reference(mixer, mixer.norm(x))
    torch.testing.assert_close(out - x, expected, rtol=1e-9, atol=1e-10)


def test_mac_pooled_streams_token_by_token():
    model = make_backbone("mac", memory_tokens=2)
    x = randn(1, 13, 16)
    h, _ = model(x)
    h2, _ = stream(model, x, list(range(1, 13)))
    torch.testing.assert_close(h2, h, rtol=1e-10, atol=1e-10)


def test_mac_reads_the_memory_of_earlier_segments():
    """Attention stays inside a segment and the memory's causal convs reach 3 tokens back, so
    token 0 reaches segment 2 (tokens 8-11) only through the memory's weights; with the write
    switched off (theta = 0; the gates' weights start at zero) that path is cut."""
    model = make_backbone("mac", depth=1)
    x = randn(1, 12, 16)
    x2 = x.clone()
    x2[:, 0] += 1.0
    moved = (model(x2)[0][:, 8:] - model(x)[0][:, 8:]).abs().max()
    assert moved > 1e-6
    for block in model.blocks:
        block.mixer.memory.max_lr = 0.0
    frozen = (model(x2)[0][:, 8:] - model(x)[0][:, 8:]).abs().max()
    assert frozen < 1e-12 < moved
