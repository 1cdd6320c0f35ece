"""The prepared GPU check (`benchmarks/gpu_check.py`) dry-runs on CPU and writes both reports."""

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.gpu_check import SECTIONS

ROOT = Path(__file__).resolve().parents[1]


def test_cpu_dry_run_writes_every_section(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--quick", "--out", str(tmp_path)]
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert list(report) == ["env", *SECTIONS]
    for name, section in report.items():
        assert section["status"] == "ok", (name, section)
    for row in report["agreement"]["rows"]:
        assert row.get("pass") or row["status"].startswith("skipped"), row
    assert all(row["status"] == "ok" or row["status"].startswith("skipped") for row in report["variants"]["rows"])
    text = (tmp_path / "gpu_check.md").read_text()
    assert all(f"## {name}" in text for name in report)
