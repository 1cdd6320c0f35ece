"""Properties every variant must hold (docs/method.md section 5): causality, pieces == whole, batch
independence, bounded state, gradients everywhere, padding."""

import pytest
import torch
from backbone_cases import CASES, PERIOD, make_backbone, randn, stream

T = 13  # crosses window/segment (4) and chunk (3) boundaries


@pytest.mark.parametrize("variant, overrides", CASES)
def test_causality(variant, overrides):
    """Perturbing tokens after t leaves hidden states up to t unchanged, at every t."""
    model = make_backbone(variant, **overrides)
    x = randn(1, T, 16)
    h, _ = model(x)
    for t in (0, 2, 3, 4, 5, 7, 8, 11):  # both sides of window/segment/chunk boundaries
        x2 = x.clone()
        x2[:, t + 1:] += randn(1, T - t - 1, 16, seed=t + 10)
        h2, _ = model(x2)
        torch.testing.assert_close(h2[:, : t + 1], h[:, : t + 1], rtol=0, atol=1e-12)
        assert (h2[:, t + 1:] - h[:, t + 1:]).abs().max() > 1e-6, "the future must matter"


@pytest.mark.parametrize("variant, overrides", CASES)
@pytest.mark.parametrize("cuts", [[1, 2, 7], [5, 6], [3, 4, 9, 12]], ids=["1-1-5-6", "5-1-7", "3-1-5-3-1"])
def test_pieces_equal_whole(variant, overrides, cuts):
    model = make_backbone(variant, **overrides)
    x = randn(2, T, 16)
    h, state = model(x)
    h2, state2 = stream(model, x, cuts)
    torch.testing.assert_close(h2, h, rtol=1e-10, atol=1e-10)
    assert state2.position == state.position == T


@pytest.mark.parametrize("variant, overrides", CASES)
def test_token_by_token_equals_whole(variant, overrides):
    model = make_backbone(variant, **overrides)
    x = randn(2, T, 16)
    h, _ = model(x)
    h2, _ = stream(model, x, list(range(1, T)))
    torch.testing.assert_close(h2, h, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variant, overrides", CASES)
def test_batch_independence(variant, overrides):
    model = make_backbone(variant, **overrides)
    x = randn(3, T, 16)
    perm = torch.tensor([2, 0, 1])
    h, _ = model(x)
    h_perm, _ = model(x[perm])
    torch.testing.assert_close(h_perm, h[perm], rtol=1e-10, atol=1e-12)
    h_alone, _ = model(x[1:2])
    torch.testing.assert_close(h_alone, h[1:2], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("variant, overrides", CASES)
def test_state_size_bounded(variant, overrides):
    """The state holds the same number of elements after 1 and after 6 stream periods, and
    token-by-token it never exceeds its largest size within the first period plus one.
    Only the transformer's KV cache grows."""
    model = make_backbone(variant, **overrides)
    x = randn(1, 6 * PERIOD, 16)
    _, state = model(x[:, :PERIOD])
    sizes = [state.numel()]
    for i in range(1, 6):
        _, state = model(x[:, i * PERIOD:(i + 1) * PERIOD], state)
        sizes.append(state.numel())
    if variant == "transformer":
        assert sizes == sorted(sizes) and sizes[-1] == 6 * sizes[0]
        return
    assert len(set(sizes)) == 1, sizes
    state, per_token = None, []
    for t in range(3 * PERIOD):
        _, state = model(x[:, t:t + 1], state)
        per_token.append(state.numel())
    assert max(per_token[2 * PERIOD:]) == max(per_token[:2 * PERIOD]) <= max(per_token[:PERIOD + 1])


@pytest.mark.parametrize("variant, overrides", CASES)
def test_gradients_reach_every_parameter(variant, overrides):
    model = make_backbone(variant, **overrides).train()
    x = randn(2, T, 16).requires_grad_()
    h, _ = model(x)
    h.pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("variant, overrides", CASES)
def test_detached_state_continues_the_stream(variant, overrides):
    model = make_backbone(variant, **overrides)
    x = randn(1, T, 16, seed=3).requires_grad_()
    h, _ = model(x)
    _, state = model(x[:, :6])
    state = state.detach()
    h2, _ = model(x[:, 6:], state)
    torch.testing.assert_close(h2, h[:, 6:], rtol=1e-10, atol=1e-10)
    h2.sum().backward()
    assert x.grad[:, :6].abs().sum() == 0 and x.grad[:, 6:].abs().sum() > 0


@pytest.mark.parametrize("variant, overrides", CASES)
def test_masked_tokens_do_not_matter(variant, overrides):
    """Changing the content of padded tokens leaves every real token's hidden state unchanged,
    in one call and streamed."""
    model = make_backbone(variant, **overrides)
    x = randn(2, T, 16)
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[0, [1, 5, 6, 10]] = False
    mask[1, 9:] = False  # right padding
    h, _ = model(x, mask=mask)
    x2 = torch.where(mask[..., None], x, randn(2, T, 16, seed=7) * 10)
    h2, _ = model(x2, mask=mask)
    torch.testing.assert_close(h2[mask], h[mask], rtol=1e-10, atol=1e-10)
    h3, _ = stream(model, x2, [4, 5, 11], mask)
    torch.testing.assert_close(h3[mask], h[mask], rtol=1e-10, atol=1e-10)
    assert torch.isfinite(h2).all()


@pytest.mark.parametrize("variant, overrides", CASES)
def test_left_padding_by_a_period_is_invisible(variant, overrides):
    """Left padding by a whole period (boundaries stay aligned) gives the unpadded result."""
    model = make_backbone(variant, **overrides)
    x = randn(1, T, 16)
    h, _ = model(x)
    padded = torch.cat((randn(1, PERIOD, 16, seed=5), x), 1)
    mask = torch.ones(1, PERIOD + T, dtype=torch.bool)
    mask[:, :PERIOD] = False
    h2, _ = model(padded, mask=mask)
    torch.testing.assert_close(h2[:, PERIOD:], h, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("variant", ["mac", "mag", "mal"])
def test_dropout_acts_in_training_only(variant):
    model = make_backbone(variant, dropout=0.5)
    x = randn(1, T, 16)
    torch.testing.assert_close(model(x)[0], model(x)[0])
    model.train()
    torch.manual_seed(0)
    h_train, _ = model(x)
    assert torch.isfinite(h_train).all() and (h_train - model.eval()(x)[0]).abs().max() > 1e-3
