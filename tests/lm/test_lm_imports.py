"""The arrows of HOUSE_STYLE for this domain: the head never imports Lightning, the DataModule
never imports the model."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import sys
import {module}
bad = sorted(m for m in sys.modules if m.split('.')[0] in {forbidden_roots!r}
             or m.startswith({forbidden_prefixes!r}))
print(bad)
sys.exit(1 if bad else 0)
"""
MODEL = ("titans_lightning.backbone", "titans_lightning.memory", "titans_lightning.heads", "titans_lightning.tasks")


@pytest.mark.parametrize("module, roots, prefixes", [
    pytest.param("titans_lightning.heads.lm", ("lightning", "pytorch_lightning", "torchmetrics", "datamodules"), (),
                 id="head-without-lightning"),
    pytest.param("datamodules.text", (), MODEL, id="datamodule-without-model"),
])
def test_import_arrows(module, roots, prefixes):
    code = CHECK.format(module=module, forbidden_roots=roots, forbidden_prefixes=prefixes or ("\0",))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
