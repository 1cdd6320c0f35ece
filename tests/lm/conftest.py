"""Fixtures of the language-modelling tests: small corpora written to tmp_path, one thread."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


def document(k: int) -> str:
    """Text of the k-th synthetic document: a marker that names it, then ordinary prose."""
    return f"<doc {k:02d}>\n" + f"Line {k} of a small play, spoken twice.\n" * 6


@pytest.fixture
def make_corpus(tmp_path: Path) -> Callable[..., Path]:
    """``make_corpus(n)``: a folder of ``n`` .txt documents (``document(k)``) under tmp_path."""

    def make(n: int = 12, name: str = "corpus") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        for k in range(n):
            (folder / f"doc{k:02d}.txt").write_text(document(k), encoding="utf-8")
        return folder

    return make
