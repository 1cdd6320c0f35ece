"""Model code (memory/, backbone/, heads/) never imports Lightning (HOUSE_STYLE)."""

import subprocess
import sys

CHECK = """
import sys
import titans_lightning.backbone, titans_lightning.heads, titans_lightning.memory
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning',
             'lightning_fabric', 'torchmetrics', 'datamodules'))
print(bad)
sys.exit(1 if bad else 0)
"""


def test_model_packages_do_not_import_lightning():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
