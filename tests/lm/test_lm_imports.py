"""The arrows of HOUSE_STYLE for this domain: the head never imports Lightning, the DataModule
never imports the model (one fresh interpreter, since the test process has imported everything)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import titans_lightning.heads.lm
lightning = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning', 'torchmetrics'))
import datamodules.text
model = sorted(m for m in sys.modules if m.startswith(('titans_lightning.backbone', 'titans_lightning.memory',
                                                       'titans_lightning.heads', 'titans_lightning.tasks')))
model.remove('titans_lightning.heads.lm')  # imported on purpose above
model = [m for m in model if m != 'titans_lightning.heads']
print('head imports', lightning, '| datamodule imports', model)
sys.exit(1 if lightning or model else 0)
"""


def test_head_without_lightning_and_datamodule_without_model():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
