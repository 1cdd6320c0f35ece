"""Fixtures of the foundation tests (helpers live in ``external_domain/runs.py``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """In-process tests run torch on one thread: the suite shares two cores (and the model tests
    are cheap); multi-process tests start their own interpreters with their own settings."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fit_external(tmp_path: Path) -> Callable[..., Path]:
    """``fit_external(*args)``: ``titans fit`` of the external recipe in this process under the
    test's tmp_path; returns the CSV run folder."""
    from external_domain.runs import fit_in_process  # imports Lightning: only for tests that fit

    return lambda *args: fit_in_process(tmp_path, *args)
