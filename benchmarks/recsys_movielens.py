"""Titans vs SASRec vs most-popular on MovieLens latest-small: test HR@10, NDCG@10, HR@200, HR@500.

Each model is its recipe in recipes/recsys/ (equal width, depth, heads, history, data, optimiser
and epochs), trained with ``titans fit`` and evaluated with ``titans test`` on the checkpoint
with the best ``val/ndcg@10`` (leave-one-out, full ranking over all movies, unseen items only).
Runs go in fresh processes, ``--jobs`` at a time, one thread each; a table and ``results.json``
are written at the end.

    OMP_NUM_THREADS=1 python benchmarks/recsys_movielens.py [--models popular sasrec mac] \
        [--epochs 10] [--jobs 2] [--out runs/bench/recsys-movielens] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RECIPES = {"popular": "movielens_popular.yaml", "sasrec": "movielens_sasrec.yaml",
           "mac": "movielens_mac.yaml", "lmm": "movielens_lmm.yaml"}
REPORTED = ["hr@10", "ndcg@10", "hr@200", "hr@500", "mrr"]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def titans(args: list[str], log: Path) -> None:
    """``python -m titans_lightning.cli *args`` in the repository root; output appended to ``log``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    with open(log, "a") as out:
        proc = subprocess.run([sys.executable, "-m", "titans_lightning.cli", *args], cwd=REPO, env=env,
                              stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError(f"titans {args[0]} failed (exit {proc.returncode}); see {log}")


def last_metrics(run_dir: Path, prefix: str) -> dict[str, float]:
    """The last logged value of every ``<prefix>/...`` key in a CSVLogger's metrics.csv."""
    values: dict[str, float] = {}
    with open(run_dir / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            values.update({k[len(prefix) + 1:]: float(v) for k, v in row.items() if k.startswith(prefix + "/") and v})
    return values


def best_validation(run_dir: Path) -> tuple[int, float]:
    """(epoch, val/ndcg@10) of the best validation."""
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/ndcg@10")]
    best = max(rows, key=lambda r: float(r["val/ndcg@10"]))
    return int(best["epoch"]), float(best["val/ndcg@10"])


def parameters(checkpoint: Path) -> int:
    """Trained parameters in a checkpoint (buffers such as popularity counts not counted)."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    names = [k for k in ckpt["state_dict"] if not k.endswith(("counts", "pending")) and "metrics" not in k]
    return sum(ckpt["state_dict"][k].numel() for k in names)


def run(model: str, out: Path, extra: list[str]) -> dict:
    """Fit then test one recipe; returns its row of the table."""
    root, log = out / model, out / f"{model}.log"
    recipe = str(REPO / "recipes" / "recsys" / RECIPES[model])
    common = ["-c", recipe, "--trainer.default_root_dir", str(root), *QUIET]
    start = time.perf_counter()
    titans(["fit", *common, *extra], log)
    fit_seconds = time.perf_counter() - start
    fit_dir = max((root / "csv").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    best = next((fit_dir / "checkpoints").glob("best-*.ckpt"))
    titans(["test", *common, *extra, "--ckpt_path", str(best)], log)
    test_dir = max((root / "csv").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    epoch, val_ndcg = best_validation(fit_dir)
    return {"model": model, "params": parameters(best), "fit_seconds": round(fit_seconds, 1), "best_epoch": epoch,
            "val_ndcg@10": val_ndcg, **{k: last_metrics(test_dir, "test")[k] for k in REPORTED}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["popular", "sasrec", "mac"], choices=list(RECIPES))
    parser.add_argument("--epochs", type=int, default=None, help="override every recipe's max_epochs")
    parser.add_argument("--jobs", type=int, default=2, help="models trained at the same time")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "recsys-movielens")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra overrides for every neural model, e.g. data.init_args.max_len=100")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    extra = ["--trainer.max_epochs", str(args.epochs)] if args.epochs is not None else []
    neural = [f"--{kv}" for kv in args.set]
    start = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {m: pool.submit(run, m, args.out, extra + (neural if m != "popular" else [])) for m in args.models}
        rows = [futures[m].result() for m in args.models]
    print(f"MovieLens latest-small, test split (leave-one-out, full ranking over 9,066 movies, unseen only); "
          f"epochs {args.epochs or 'as in the recipes'}, {time.perf_counter() - start:.0f} s wall in all")
    print(f"{'model':8s} {'params':>9s} {'fit s':>7s} {'best ep':>7s} " + " ".join(f"{k:>8s}" for k in REPORTED))
    for r in rows:
        print(f"{r['model']:8s} {r['params']:9,d} {r['fit_seconds']:7.0f} {r['best_epoch']:7d} "
              + " ".join(f"{r[k]:8.4f}" for k in REPORTED))
    by_model = {r["model"]: r for r in rows}
    for titan in ("mac", "lmm"):
        if titan in by_model and "sasrec" in by_model:
            ratios = {k: by_model[titan][k] / max(by_model["sasrec"][k], 1e-12) for k in REPORTED}
            print(f"{titan}/sasrec " + " ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    (args.out / "results.json").write_text(json.dumps({"args": sys.argv[1:], "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
