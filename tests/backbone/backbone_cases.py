"""Tiny float64 backbones shared by the backbone tests."""

import pytest
import torch

from titans_lightning.backbone import TitansBackbone, TitansConfig

# window 4, segment 4, chunk 3: a 13-token call crosses several window, segment and chunk
# boundaries, and the chunk boundaries fall mid-segment.
TINY = dict(size="debug", dim=16, depth=2, heads=2, mlp_hidden=24, chunk_size=3, segment_len=4,
            window=4, persistent_tokens=2, memory_heads=2, memory_depth=2, memory_expansion=2)
#: lcm of segment, window and chunk: the stream period after which every boundary repeats
PERIOD = 12


def make_backbone(variant: str, seed: int = 0, **overrides) -> TitansBackbone:
    torch.manual_seed(seed)
    cfg = TitansConfig(**{**TINY, "variant": variant, **overrides})
    return TitansBackbone(cfg).double().eval()


def randn(*shape, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)

#: (variant, config overrides): every variant, plus the options that take another code path
CASES = [
    pytest.param("mac", {}, id="mac"),
    pytest.param("mac", {"memory_tokens": 2}, id="mac-pooled"),
    pytest.param("mac", {"mac_memory_input": "residual"}, id="mac-residual-input"),
    pytest.param("mag", {}, id="mag"),
    pytest.param("mag", {"gate": "silu", "persistent_tokens": 0}, id="mag-silu-no-persistent"),
    pytest.param("mal", {}, id="mal"),
    pytest.param("mal", {"memory_per_channel_decay": True}, id="mal-per-channel-decay"),
    pytest.param("lmm", {}, id="lmm"),
    pytest.param("lmm", {"memory_conv_kernel": 1, "memory_depth": 1, "memory_norm": False,
                         "memory_residual": False, "memory_activation": "silu"}, id="lmm-matrix-no-conv"),
    pytest.param("transformer", {}, id="transformer"),
    pytest.param("transformer", {"persistent_tokens": 0}, id="transformer-no-persistent"),
    pytest.param("swa", {}, id="swa"),
]


def stream(model: TitansBackbone, x: torch.Tensor, cuts, mask=None):
    """Feed x (B, T, D) in pieces split at ``cuts``; return the concatenated hidden states and state."""
    bounds = [0, *cuts, x.shape[1]]
    state, outs = None, []
    for a, b in zip(bounds[:-1], bounds[1:]):
        h, state = model(x[:, a:b], state, None if mask is None else mask[:, a:b])
        outs.append(h)
    return torch.cat(outs, 1), state
