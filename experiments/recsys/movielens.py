"""Titans vs SASRec vs most-popular on MovieLens latest-small: test HR@10, NDCG@10, HR@200, HR@500.

Each model is its recipe in recipes/recsys/ (equal width, depth, heads, backbone parameters
within 2%, history, data, optimiser and epochs), trained with ``titans fit`` and evaluated with
``titans test`` on the checkpoint with the best ``val/ndcg@10`` (leave-one-out, full ranking over
every movie of the recipe's data, unseen items only). Neural models run once per ``--seeds``
value (initialisation and shuffling; the split is fixed); the table gives the mean over seeds
and, per metric, the range. Runs go in fresh processes, ``--jobs`` at a time, one thread each;
``results.json`` keeps every run.

    OMP_NUM_THREADS=1 python experiments/recsys/movielens.py [--models popular sasrec mac] \
        [--seeds 0 1 2] [--epochs 10] [--jobs 2] [--out runs/bench/recsys-movielens] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from titans_lightning import runs
from titans_lightning.runs import QUIET, fresh_env, run_titans
from titans_lightning.safe_load import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
RECIPES = {"popular": "movielens_popular.yaml", "sasrec": "movielens_sasrec.yaml",
           "mac": "movielens_mac.yaml", "lmm": "movielens_lmm.yaml"}
REPORTED = ["hr@10", "ndcg@10", "hr@200", "hr@500", "mrr"]


def titans(args: list[str], log: Path) -> None:
    """``titans *args`` in the repository root on one thread; output appended to ``log``."""
    run_titans(args, cwd=REPO, env=fresh_env([REPO], OMP_NUM_THREADS="1"), log=log)


def best_validation(run_dir: Path) -> tuple[int, float]:
    """(epoch, val/ndcg@10) of the best validation."""
    best = runs.best_validation(run_dir, "ndcg@10", mode="max")
    return int(best["epoch"]), best["ndcg@10"]


def parameters(checkpoint: Path) -> int:
    """Trained parameters in a checkpoint (buffers such as popularity counts not counted)."""
    ckpt = load_checkpoint(checkpoint)
    names = [k for k in ckpt["state_dict"] if not k.endswith(("counts", "pending")) and "metrics" not in k]
    return sum(ckpt["state_dict"][k].numel() for k in names)


def run(model: str, seed: int, out: Path, extra: list[str]) -> dict:
    """Fit then test one recipe with one seed; returns its row of ``results.json``."""
    root, log = out / f"{model}-seed{seed}", out / f"{model}-seed{seed}.log"
    recipe = str(REPO / "recipes" / "recsys" / RECIPES[model])
    common = ["-c", recipe, "--trainer.default_root_dir", str(root), "--seed_everything", str(seed),
              "--data.init_args.seed", str(seed), *QUIET]  # initialisation, dropout and shuffling
    run_in_log = partial(titans, log=log)
    fit = runs.fit_best(run_in_log, [*common, *extra], root)
    tested = runs.evaluate_checkpoint(run_in_log, [*common, *extra], fit.checkpoint, root)
    epoch, val_ndcg = best_validation(fit.run)
    return {"model": model, "seed": seed, "params": parameters(fit.checkpoint), "fit_seconds": round(fit.seconds, 1),
            "best_epoch": epoch, "val_ndcg@10": val_ndcg, **{k: tested[k] for k in REPORTED}}


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
