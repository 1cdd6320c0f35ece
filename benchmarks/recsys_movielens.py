"""Titans vs SASRec vs most-popular on MovieLens latest-small: test HR@10, NDCG@10, HR@200, HR@500.

Each model is its recipe in recipes/recsys/ (equal width, depth, heads, backbone parameters
within 2%, history, data, optimiser and epochs), trained with ``titans fit`` and evaluated with
``titans test`` on the checkpoint with the best ``val/ndcg@10`` (leave-one-out, full ranking over
every movie of the recipe's data, unseen items only). Neural models run once per ``--seeds``
value (initialisation and shuffling; the split is fixed); the table gives the mean over seeds
and, per metric, the range. Runs go in fresh processes, ``--jobs`` at a time, one thread each;
``results.json`` keeps every run.

    OMP_NUM_THREADS=1 python benchmarks/recsys_movielens.py [--models popular sasrec mac] \
        [--seeds 0 1 2] [--epochs 10] [--jobs 2] [--out runs/bench/recsys-movielens] [--set key=value ...]
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
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
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


def run(model: str, seed: int, out: Path, extra: list[str]) -> dict:
    """Fit then test one recipe with one seed; returns its row of ``results.json``."""
    root, log = out / f"{model}-seed{seed}", out / f"{model}-seed{seed}.log"
    recipe = str(REPO / "recipes" / "recsys" / RECIPES[model])
    common = ["-c", recipe, "--trainer.default_root_dir", str(root), "--seed_everything", str(seed),
              "--data.init_args.seed", str(seed), *QUIET]  # initialisation, dropout and shuffling
    start = time.perf_counter()
    titans(["fit", *common, *extra], log)
    fit_seconds = time.perf_counter() - start
    fit_dir = max((root / "csv").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    best = next((fit_dir / "checkpoints").glob("best-*.ckpt"))
    titans(["test", *common, *extra, "--ckpt_path", str(best)], log)
    test_dir = max((root / "csv").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    epoch, val_ndcg = best_validation(fit_dir)
    return {"model": model, "seed": seed, "params": parameters(best), "fit_seconds": round(fit_seconds, 1),
            "best_epoch": epoch, "val_ndcg@10": val_ndcg, **{k: last_metrics(test_dir, "test")[k] for k in REPORTED}}


def summary(rows: list[dict], model: str) -> dict:
    """Mean over seeds of every reported metric, with its range and the number of seeds."""
    runs = [r for r in rows if r["model"] == model]
    mean = {k: sum(r[k] for r in runs) / len(runs) for k in REPORTED}
    spread = {k: (min(r[k] for r in runs), max(r[k] for r in runs)) for k in REPORTED}
    return {"model": model, "seeds": len(runs), "params": runs[0]["params"], "mean": mean, "range": spread,
            "fit_seconds": sum(r["fit_seconds"] for r in runs) / len(runs),
            "best_epochs": [r["best_epoch"] for r in runs]}


def print_table(summaries: list[dict], seconds: float, epochs) -> None:
    print(f"MovieLens latest-small, test split (leave-one-out, full ranking, unseen only); epochs "
          f"{epochs or 'as in the recipes'}; {seconds:.0f} s wall in all. Mean over seeds [min, max]:")
    print(f"{'model':8s} {'params':>9s} {'seeds':>5s} {'fit s':>6s} " + " ".join(f"{k:>23s}" for k in REPORTED))
    for s in summaries:
        cells = " ".join(f"{s['mean'][k]:.4f} [{s['range'][k][0]:.4f},{s['range'][k][1]:.4f}]" for k in REPORTED)
        print(f"{s['model']:8s} {s['params']:9,d} {s['seeds']:5d} {s['fit_seconds']:6.0f} {cells}   "
              f"best epochs {s['best_epochs']}")
    by_model = {s["model"]: s["mean"] for s in summaries}
    for other in ("mac", "lmm", "popular"):
        if other in by_model and "sasrec" in by_model:
            print(f"{other}/sasrec " + " ".join(f"{k} {by_model[other][k] / max(by_model['sasrec'][k], 1e-12):.3f}"
                                                for k in REPORTED))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mac", "sasrec", "popular"], choices=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="one run per seed (popular: the first only)")
    parser.add_argument("--epochs", type=int, default=None, help="override every recipe's max_epochs")
    parser.add_argument("--jobs", type=int, default=2, help="runs at the same time")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "recsys-movielens")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra overrides for every neural model, e.g. data.init_args.max_len=100")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    extra = ["--trainer.max_epochs", str(args.epochs)] if args.epochs is not None else []
    neural = [f"--{kv}" for kv in args.set]
    jobs = [(m, seed) for seed in args.seeds for m in args.models if m != "popular" or seed == args.seeds[0]]
    start = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run, m, seed, args.out, extra + (neural if m != "popular" else [])) for m, seed in jobs]
        rows = [f.result() for f in futures]
    summaries = [summary(rows, m) for m in args.models]
    print_table(summaries, time.perf_counter() - start, args.epochs)
    (args.out / "results.json").write_text(json.dumps({"args": sys.argv[1:], "runs": rows, "summary": summaries},
                                                      indent=1))


if __name__ == "__main__":
    main()
