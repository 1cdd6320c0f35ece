"""Properties of the forecasting layers (pure torch): reversibility, channel independence,
scale equivariance, patch coverage, the cycle's phase, DLinear's decomposition."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from titans_lightning.backbone import TitansBackbone, TitansConfig
from titans_lightning.heads.forecasting import (
    Cycle,
    DLinear,
    ForecastingHead,
    MovingAverage,
    PatchEmbedding,
    RevIN,
    num_patches,
)


def forecaster(variant: str = "lmm", covariates: int = 0, **head):
    """A debug-size backbone between a ForecastingHead's encode and decode: (B, L, C) -> (B, H, C)."""
    torch.manual_seed(0)
    backbone = TitansBackbone(TitansConfig(variant=variant, size="debug"))
    layers = ForecastingHead(3, covariates, lookback=24, horizon=6, dim=32, **{"patch_len": 4, "stride": 2, **head})

    def run(x, covariates_=None, start=None):
        covariates_ = covariates_ if covariates_ is not None else x.new_zeros(x.shape[0], x.shape[1], covariates)
        start = start if start is not None else torch.zeros(x.shape[0], dtype=torch.long)
        tokens, context = layers.encode(x, covariates_, start)
        return layers.decode(backbone(tokens)[0], context)
    return run, layers


def test_revin_round_trip():
    revin = RevIN(3)
    with torch.no_grad():
        revin.weight.uniform_(0.5, 2.0)
        revin.bias.normal_()
    x = torch.randn(4, 24, 3) * 5 + 3
    normalised, stats = revin.normalize(x)
    torch.testing.assert_close(revin.denormalize(normalised, stats), x, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("variant", ["lmm", "transformer", "mac"])
def test_channels_are_independent(variant):
    """Changing channel 0's history moves channel 0's forecast only."""
    run, layers = forecaster(variant)
    layers.eval()
    x = torch.randn(2, 24, 3)
    changed = x.clone()
    changed[:, :, 0] += torch.randn(2, 24)
    a, b = run(x), run(changed)
    assert not torch.allclose(a[..., 0], b[..., 0])
    torch.testing.assert_close(a[..., 1:], b[..., 1:])


def test_covariates_reach_every_channel():
    run, layers = forecaster(covariates=2)
    layers.eval()
    x, cov = torch.randn(2, 24, 3), torch.randn(2, 24, 2)
    a, b = run(x, cov), run(x, cov + torch.randn(2, 24, 2))
    assert all(not torch.allclose(a[..., c], b[..., c]) for c in range(3))


def test_revin_makes_forecasts_scale_and_shift_equivariant():
    """With RevIN the model sees every window standardised: forecast(a x + b) = a forecast(x) + b."""
    run, layers = forecaster()
    layers.eval()
    x = torch.randn(2, 24, 3)
    torch.testing.assert_close(run(3.0 * x + 7.0), 3.0 * run(x) + 7.0, rtol=1e-4, atol=1e-3)


def test_cycle_phase_follows_the_window_start():
    cycle = Cycle(period=4, channels=1)
    with torch.no_grad():
        cycle.profile.copy_(torch.tensor([[0.0], [1.0], [2.0], [3.0]]))
    out = cycle(torch.tensor([0, 3]), length=6)[..., 0]
    assert out.tolist() == [[0, 1, 2, 3, 0, 1], [3, 0, 1, 2, 3, 0]]


def test_a_learned_cycle_is_removed_and_restored():
    """With the cycle on, shifting a window by one full period changes nothing (same phase); a
    shift by one row does once the profile is not flat."""
    run, layers = forecaster(cycle=4, linear_skip=True)
    layers.eval()
    with torch.no_grad():
        layers.cycle.profile.normal_()
    x = torch.randn(1, 24, 3)
    same = run(x, start=torch.tensor([0])), run(x, start=torch.tensor([4]))
    torch.testing.assert_close(*same)
    assert not torch.allclose(same[0], run(x, start=torch.tensor([1])))


@pytest.mark.parametrize("lookback, patch_len, stride, patches, pad", [
    pytest.param(96, 16, 8, 11, 0, id="patchtst-96"),
    pytest.param(96, 16, 16, 6, 0, id="non-overlapping"),
    pytest.param(96, 24, 10, 9, 8, id="padded-end"),
    pytest.param(96, 1, 1, 96, 0, id="points"),
])
def test_patches_cover_the_whole_lookback(lookback, patch_len, stride, patches, pad):
    embed = PatchEmbedding(lookback, patch_len, stride, dim=8)
    assert (embed.num_patches, embed.pad) == (patches, pad) == (num_patches(lookback, patch_len, stride), pad)
    series = torch.arange(lookback, dtype=torch.float32).view(1, lookback, 1)
    cut = embed.patches(series)
    assert cut.shape == (1, patches, patch_len)
    assert cut[0, 0, 0] == 0 and cut[0, -1, -1] == lookback - 1  # first and most recent steps inside
    assert embed(series[..., 0], series[..., :0]).shape == (1, patches, 8)


def test_moving_average_keeps_constants_and_length():
    x = torch.full((2, 10, 3), 4.0)
    torch.testing.assert_close(MovingAverage(5)(x), x)


@pytest.mark.parametrize("individual, revin, covariates", [
    pytest.param(False, False, 0, id="shared"),
    pytest.param(True, False, 0, id="individual"),
    pytest.param(False, True, 2, id="revin-covariates"),
])
def test_dlinear_shapes_and_initial_forecast(individual, revin, covariates):
    """At initialisation both maps average the lookback, so a constant series is forecast as itself."""
    model = DLinear(3, covariates, lookback=24, horizon=6, individual=individual, revin=revin)
    x = torch.full((2, 24, 3), 5.0)
    y = model(x, torch.zeros(2, 24, covariates))
    assert y.shape == (2, 6, 3)
    if not covariates:
        torch.testing.assert_close(y, torch.full((2, 6, 3), 5.0))


def test_forecasting_head_imports_no_lightning():
    code = ("import sys, titans_lightning.heads.forecasting; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'torchmetrics', 'datamodules')]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
