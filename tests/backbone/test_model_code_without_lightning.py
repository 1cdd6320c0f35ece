"""Model code (memory/, backbone/, heads/) never imports Lightning (HOUSE_STYLE)."""

import subprocess
import sys

CHECK = """
import importlib, pkgutil, sys
import titans_lightning
for package in ("memory", "backbone", "heads"):  # every module, not only the packages' __init__
    path = [f"{titans_lightning.__path__[0]}/{package}"]
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"titans_lightning.{package}.{module.name}")
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning',
             'lightning_fabric', 'torchmetrics', 'datamodules'))
print(bad)
sys.exit(1 if bad else 0)
"""


def test_model_packages_do_not_import_lightning():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
