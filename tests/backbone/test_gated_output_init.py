"""``TitansConfig.gated_output_init``: the initial weight of MAC's and MAG's attention-side norm, so
the gated branch added to the residual stream starts at about half of it in RMS."""

from __future__ import annotations

import pytest
import torch

from titans_lightning.backbone import TitansBackbone, TitansConfig
from titans_lightning.backbone.mixers import StreamContext


@pytest.mark.parametrize("variant", ["mac", "mag"])
def test_the_gated_branch_starts_at_the_configured_scale(variant):
    x = torch.randn(2, 16, 32, generator=torch.Generator().manual_seed(0))
    branch_rms = {}
    for init in (1.0, 0.1):
        torch.manual_seed(0)
        model = TitansBackbone(TitansConfig(variant=variant, size="debug", gated_output_init=init)).eval()
        norms = [b.mixer.norm_attn.weight for b in model.blocks]
        assert all(torch.equal(w, torch.full_like(w, init)) for w in norms)
        mixer = model.blocks[0].mixer
        ctx = StreamContext(0, torch.arange(16), torch.ones(2, 16, dtype=torch.bool), padded=False)
        out, _ = mixer(x, ctx, mixer.initial_state(2, x))
        branch_rms[init] = (out - x).pow(2).mean().sqrt().item()
    assert branch_rms[0.1] == pytest.approx(0.1 * branch_rms[1.0], rel=1e-4)


def test_a_non_positive_init_is_refused():
    with pytest.raises(ValueError, match=r"TitansConfig.gated_output_init: expected a positive number, got 0.0"):
        TitansConfig(variant="mac", size="debug", gated_output_init=0.0)
