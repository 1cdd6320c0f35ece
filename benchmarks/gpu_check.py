"""One prepared GPU session (budgeted for 8 minutes on one H200): correctness, sync-freedom, speed.

    python -m benchmarks.gpu_check                                  # CUDA, full sizes, into $OUT
    python -m benchmarks.gpu_check --device cpu --quick --out DIR   # the CPU dry run (< ~60 s)

Writes DIR/gpu_check.json (every number, every error) and DIR/gpu_check.md (the same as tables);
DIR defaults to $OUT, else ./gpu_check_out. Sections, each in try/except with its own time budget
(a SIGALRM stops one that overruns; the next still runs):

- agreement: `neural_memory` on the device (torch and triton backends, float32 and bf16
  autocast) against the float64 token-by-token reference on CPU: y, final W and S, gradients of
  q, k, v, lr, momentum, decay and M_0 (max error / max magnitude).
- variants: every backbone variant's forward + backward in bf16 autocast under
  `torch.cuda.set_sync_debug_mode("error")` (after one unchecked warm-up run), per memory backend.
- memory_layer: `NeuralMemory` forward + backward tokens/s and peak allocated memory, torch vs
  triton backend (titans-pytorch when importable), the config of bench_memory.py, T = 2K/8K/32K.
- training: backbone training tokens/s (forward + backward + AdamW, bf16 autocast, small size)
  of each memory variant and the transformer at 8K and 32K tokens, and the ratio to the transformer.
- decode: per-token latency of a single-token step after a prefill of 1K and 64K tokens.
- kernels: kernels per chunk step (forward + backward): CUDA kernels seen by torch.profiler, and
  the Triton step's launches counted at its two launch functions; on CUDA also the kernels of one
  whole `NeuralMemory` forward + backward at T = 2048 per backend.

The CPU dry run uses tiny sizes and runs the Triton parts under Triton's interpreter
(TRITON_INTERPRET=1, set before triton is imported); profiler kernel counts and the sync debug
mode need CUDA and are recorded as not applicable there. Timings are medians of interleaved rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.gpu_common import SectionTimeout  # noqa: E402
from benchmarks.gpu_sections_memory import section_agreement, section_kernels, section_memory_layer  # noqa: E402
from benchmarks.gpu_sections_model import section_decode, section_training, section_variants  # noqa: E402

SECTIONS = ("agreement", "variants", "memory_layer", "training", "decode", "kernels")
#: seconds per section (full run; the quick run gets half, at least 10)
BUDGETS = {"env": 10, "agreement": 60, "variants": 70, "memory_layer": 110, "training": 90, "decode": 70,
           "kernels": 40}
FULL = dict(agree=dict(batch=4, tokens=200, dim=64, hidden=256, chunk=16), size="small", variant_tokens=1024,
            layer=dict(dim=256, heads=4, dim_head=64, chunk=64, batch=4), layer_seqs=(2048, 8192, 32768),
            train_seqs=(8192, 32768), contexts=(1024, 65536), piece=4096, steps=20, rounds=3)
QUICK = dict(agree=dict(batch=2, tokens=13, dim=6, hidden=40, chunk=4), size="debug", variant_tokens=12,
             layer=dict(dim=32, heads=2, dim_head=16, chunk=16, batch=1), layer_seqs=(32,),
             train_seqs=(16,), contexts=(8, 24), piece=8, steps=2, rounds=1, quick=True)


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise SectionTimeout inside the block after `seconds` (main thread, POSIX)."""
    def expire(signum, frame):
        raise SectionTimeout(f"section budget of {seconds:.0f} s exceeded")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def section_env(device, cfg, budget):
    info = {"torch": torch.__version__, "device": str(device), "python": sys.version.split()[0],
            "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET")}
    if importlib.util.find_spec("triton") is not None:
        import triton

        info["triton"] = triton.__version__
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    with contextlib.suppress(Exception):
        root = Path(__file__).resolve().parent.parent
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                        text=True, timeout=10).stdout.strip()
    info["command"] = " ".join(sys.argv)
    return info


class Budget:
    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


def run_section(name, fn, device, cfg, seconds) -> dict:
    """fn's result with status and seconds; an exception or overrun is recorded, not raised."""
    start = time.perf_counter()
    try:
        with time_limit(seconds):
            result = {"status": "ok", **fn(device, cfg, Budget(seconds))}
    except Exception as e:  # SectionTimeout too, also when a callee wraps it (Triton's interpreter)
        if isinstance(e, SectionTimeout) or "SectionTimeout" in repr(e):
            result = {"status": f"timeout: section budget of {seconds:.0f} s exceeded"}
        else:
            result = {"status": f"error: {type(e).__name__}: {str(e)[:500]}",
                      "traceback": traceback.format_exc()[-3000:]}
    result["seconds"] = round(time.perf_counter() - start, 2)
    print(f"[gpu_check] {name}: {result['status']} ({result['seconds']} s)", flush=True)
    return result


def markdown(report: dict) -> str:
    """The report as one table per section (rows), or key: value lines."""
    lines = ["# GPU check", ""]
    for name, section in report.items():
        lines += [f"## {name}", "", f"status: {section.get('status')}, {section.get('seconds')} s", ""]
        scalars = {k: v for k, v in section.items() if k not in ("rows", "status", "seconds", "traceback")}
        lines += [f"- {k}: {_fmt(v)}" for k, v in scalars.items()] + [""]
        rows = section.get("rows") or []
        if rows:
            keys = list(dict.fromkeys(k for row in rows for k in row if k != "errors"))
            lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(_fmt(row.get(k, "")) for k in keys) + " |" for row in rows] + [""]
        if "traceback" in section:
            lines += ["```", section["traceback"], "```", ""]
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the CPU dry run)")
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu" and "triton" not in sys.modules:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton's first import: its interpreter
    cfg, scale = (QUICK, 0.5) if args.quick else (FULL, 1.0)
    functions = {"env": section_env, "agreement": section_agreement, "variants": section_variants,
                 "memory_layer": section_memory_layer, "training": section_training, "decode": section_decode,
                 "kernels": section_kernels}
    report = {}
    for name in ["env", *args.sections]:
        report[name] = run_section(name, functions[name], device, cfg, max(BUDGETS[name] * scale, 10))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "gpu_check.md").write_text(markdown(report))
    print(f"[gpu_check] wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    return report


if __name__ == "__main__":
    main()
