"""Tiny float64 problems for the memory tests."""

import torch


def make_problem(batch=2, tokens=23, dim=4, hidden=6, depth=2, seed=0, dtype=torch.float64):
    """Random inputs in realistic ranges: unit keys and queries, small lr, gates in (0, 1)."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.rand(*shape, generator=g, dtype=dtype)  # noqa: E731
    randn = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype)  # noqa: E731
    unit = lambda x: torch.nn.functional.normalize(x, dim=-1)  # noqa: E731
    widths = [dim] + [hidden] * (depth - 1) + [dim]
    return dict(
        q=unit(randn(batch, tokens, dim)),
        k=unit(randn(batch, tokens, dim)),
        v=randn(batch, tokens, dim),
        lr=0.1 * rand(batch, tokens),
        momentum=0.3 + 0.7 * rand(batch, tokens),
        decay=0.2 * rand(batch, tokens),
        weights=[randn(batch, widths[i + 1], widths[i]) / widths[i] ** 0.5 for i in range(depth)],
    )


