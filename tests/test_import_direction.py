"""The arrow between the library and the data side points nowhere (HOUSE_STYLE): no module under
``titans_lightning/`` imports ``datamodules`` and no module under ``datamodules/`` imports
``titans_lightning``. They meet only through the CLI's ``class_path`` and the batch contract.

The source is read, not imported (an AST of every ``.py``): an import inside a function or under
``TYPE_CHECKING`` counts too, and nothing has to be importable for the check to run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {"titans_lightning": "datamodules", "datamodules": "titans_lightning"}


def imported_packages(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, top-level package) of every import in ``path``, a module of ``package`` (relative
    imports resolve inside ``package``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, package if node.level else (node.module or "").split(".")[0]))
    return found


def violations(package: str) -> list[str]:
    banned = FORBIDDEN[package]
    return [f"{path.relative_to(REPO)}:{line} imports {banned}"
            for path in sorted((REPO / package).rglob("*.py"))
            for line, name in imported_packages(path, package) if name == banned]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_the_other_side(package):
    assert list((REPO / package).rglob("*.py")), f"no source found under {package}/"
    assert violations(package) == []


def test_the_scan_sees_imports_of_every_form(tmp_path):
    """The scanner itself: absolute, dotted, from-, nested and relative imports."""
    module = tmp_path / "m.py"
    module.write_text("import os\nimport datamodules.text as t\nfrom datamodules import base\n"
                      "def f():\n    from titans_lightning.callbacks import run_directory\n"
                      "from . import sibling\n")
    assert sorted(name for _, name in imported_packages(module, "pkg")) == [
        "datamodules", "datamodules", "os", "pkg", "titans_lightning"]
