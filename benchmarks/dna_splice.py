"""Splice-junction classification: Titans LMM vs the transformer baseline at equal size.

Trains each recipe with ``titans fit``, tests its best checkpoint (highest ``val/mcc``) with
``titans test`` on the held-out stratified test split (638 of 3,190 sequences), and prints test
accuracy, MCC, macro-F1 and AUROC side by side. Each run is a fresh process on one thread.

    OMP_NUM_THREADS=1 python benchmarks/dna_splice.py                       # from scratch, both
    OMP_NUM_THREADS=1 python benchmarks/dna_splice.py --pretrain            # + pretrain -> finetune
    OMP_NUM_THREADS=1 python benchmarks/dna_splice.py --max-epochs 2 --out runs/dna-bench-quick

The recipes' own settings are used unless an option here overrides them; the command lines run
are printed so every number can be reproduced by hand.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONTENDERS = {"titans-lmm": "recipes/dna/splice_lmm.yaml", "transformer": "recipes/dna/splice_transformer.yaml"}
METRICS = ("accuracy", "mcc", "macro_f1", "auroc")
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def titans(args: list[str], log: Path) -> float:
    """Run ``titans <args>`` in a fresh process (one thread), output to ``log``; wall seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    print("  titans " + " ".join(args), flush=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run([sys.executable, "-m", "titans_lightning.cli", *args], cwd=REPO, env=env,
                              stdout=out, stderr=subprocess.STDOUT).returncode
    if code:
        raise SystemExit(f"exit {code}; see {log}")
    return time.perf_counter() - start


def newest_run(root: Path) -> Path:
    return max((root / "csv").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))


def last_values(run: Path, prefix: str) -> dict[str, float]:
    """The last logged value of every ``<prefix>/<name>`` column of a CSVLogger run."""
    values: dict[str, float] = {}
    with open(run / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            values.update({k.split("/", 1)[1]: float(v) for k, v in row.items() if k.startswith(prefix + "/") and v})
    return values


def best_checkpoint(run: Path) -> Path:
    (best,) = (run / "checkpoints").glob("best-*.ckpt")
    return best


def fit_and_test(name: str, recipe: str, out: Path, extra: list[str]) -> dict[str, float]:
    """Train ``recipe``, test its best checkpoint; the test metrics plus wall time and epochs."""
    root = out / name
    print(f"{name}: {recipe}", flush=True)
    common = ["-c", recipe, "--trainer.default_root_dir", str(root), *QUIET, *extra]
    fit_seconds = titans(["fit", *common], root.with_suffix(".fit.log"))
    run = newest_run(root)
    best = best_checkpoint(run)
    titans(["test", *common, "--ckpt_path", str(best)], root.with_suffix(".test.log"))
    result = last_values(newest_run(root), "test")
    result.update(fit_seconds=fit_seconds, best=str(best.relative_to(out)), params=parameters(best))
    return result


def parameters(checkpoint: Path) -> int:
    """Trainable parameters of the backbone and head stored in a checkpoint."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    return sum(v.numel() for k, v in state.items() if k.startswith(("backbone.", "head.")))


def pretrain(out: Path, extra: list[str]) -> Path:
    """Pretrain on the shipped FASTA (the splice training split only); the last checkpoint."""
    root = out / "pretrain"
    print("pretrain: recipes/dna/pretrain.yaml", flush=True)
    titans(["fit", "-c", "recipes/dna/pretrain.yaml", "--trainer.default_root_dir", str(root), *QUIET, *extra],
           root.with_suffix(".fit.log"))
    values = last_values(newest_run(root), "val")
    print(f"  val/bpn {values.get('bpn', float('nan')):.4f} bits per nucleotide", flush=True)
    return root / "checkpoints" / "last.ckpt"


def table(results: dict[str, dict[str, float]]) -> str:
    head = f"{'model':<22}{'params':>9}" + "".join(f"{m:>10}" for m in METRICS) + f"{'fit s':>8}"
    rows = [f"{name:<22}{r['params']:>9,}" + "".join(f"{r.get(m, float('nan')):>10.4f}" for m in METRICS)
            + f"{r['fit_seconds']:>8.0f}" for name, r in results.items()]
    return "\n".join([head, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/dna-bench", help="folder of the runs (relative to the repo)")
    parser.add_argument("--max-epochs", type=int, default=None, help="override the recipes' max_epochs")
    parser.add_argument("--seed", type=int, default=None, help="override seed_everything")
    parser.add_argument("--pretrain", action="store_true", help="also pretrain the LMM and fine-tune it")
    parser.add_argument("--only", choices=list(CONTENDERS), nargs="*", default=list(CONTENDERS))
    args = parser.parse_args()
    out = (REPO / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    extra = (["--trainer.max_epochs", str(args.max_epochs)] if args.max_epochs else []) + (
        ["--seed_everything", str(args.seed)] if args.seed is not None else [])
    results = {name: fit_and_test(name, CONTENDERS[name], out, extra) for name in args.only}
    if args.pretrain:
        checkpoint = pretrain(out, ["--seed_everything", str(args.seed)] if args.seed is not None else [])
        results["titans-lmm-finetuned"] = fit_and_test(
            "titans-lmm-finetuned", "recipes/dna/finetune.yaml", out, [*extra, "--model.init_args.pretrained", str(checkpoint)])
    print("\nsplice test split (638 sequences), best checkpoint by val/mcc\n" + table(results))
    if {"titans-lmm", "transformer"} <= set(results):
        lmm, transformer = results["titans-lmm"], results["transformer"]
        print(f"\nTitans LMM - transformer: accuracy {lmm['accuracy'] - transformer['accuracy']:+.4f}, "
              f"MCC {lmm['mcc'] - transformer['mcc']:+.4f}; target: LMM accuracy >= 0.95 "
              f"({'met' if lmm['accuracy'] >= 0.95 else 'NOT met'}) and >= transformer "
              f"({'met' if lmm['accuracy'] >= transformer['accuracy'] else 'NOT met'})")


if __name__ == "__main__":
    main()
