"""The sequential-recommendation benchmark: Amazon Beauty, Sports_and_Outdoors and Yelp.

Every contender is its recipe ``recipes/recsys/<dataset>_<model>.yaml`` (Titans MAC, MAG, LMM,
SASRec at equal width, depth, heads, backbone parameters within 2%, data, optimiser and epochs;
most popular). Each neural run is ``titans fit`` (validation every epoch), then two ``titans test``
of the checkpoint with the best ``val/ndcg@10``: the protocol's full ranking (HR@K, NDCG@K for
K = 5, 10, 20, HR@200, HR@500, MRR; the user's history excluded) and, beside it, the SASRec
paper's sampled protocol (the target among 100 sampled unseen items: ``sampled100_hr@10``,
``sampled100_ndcg@10``). Neural models run once per seed (initialisation, dropout, shuffling; the
split is fixed); most popular once.

Resumable: each finished run is a row ``<results>/runs/<dataset>-<model>-seed<s>.json`` (kept in
the repository: ``experiments/recsys/amazon/``); a later call skips it, so an interrupted table
continues where it stopped, in this checkout or a fresh one. After every run
``<results>/results.json`` and ``<results>/results.md`` (mean [min, max] over seeds, epochs per
second) are rewritten from all the finished rows. Training runs (checkpoints, logs) go under
``--work``. Yelp is not shipped: ``--yelp-path`` (default ``data/recsys/Yelp.txt``); a dataset
whose file is missing is skipped with a message.

    OMP_NUM_THREADS=1 python experiments/recsys/amazon.py [--datasets beauty sports yelp] \\
        [--models mac mag lmm sasrec popular] [--seeds 0 1 2] [--jobs 2] [--epochs N] \\
        [--results experiments/recsys/amazon] [--work runs/bench/recsys-amazon] [--yelp-path PATH] \
        [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from threading import Lock
from typing import Optional

from titans_lightning.runs import QUIET, evaluate_checkpoint, fit_best, read_metrics

try:
    from experiments.recsys.movielens import best_validation, parameters, titans
except ModuleNotFoundError:  # run as a script, python experiments/recsys/amazon.py: its folder is on the path
    from movielens import best_validation, parameters, titans

REPO = Path(__file__).resolve().parents[2]
DATASETS = {"beauty": "data/recsys/Beauty.txt", "sports": "data/recsys/Sports_and_Outdoors.txt",
            "yelp": "data/recsys/Yelp.txt"}
MODELS = ("mac", "mag", "lmm", "sasrec", "popular")
FULL = ["hr@5", "ndcg@5", "hr@10", "ndcg@10", "hr@20", "ndcg@20", "hr@200", "hr@500", "mrr"]
SAMPLED = ["sampled100_hr@10", "sampled100_ndcg@10"]
REPORTED = FULL + SAMPLED
NAMES = {"mac": "Titans MAC", "mag": "Titans MAG", "lmm": "Titans LMM", "sasrec": "SASRec", "popular": "most popular"}
#: ICLRec's README, its released models, full ranking (HR@10, NDCG@10).
ICLREC = {"beauty": (0.0744, 0.0403), "sports": (0.0437, 0.0238), "yelp": (0.0409, 0.0207)}


def run_file(out: Path, dataset: str, model: str, seed: int) -> Path:
    return out / "runs" / f"{dataset}-{model}-seed{seed}.json"


def epochs_run(fit_dir: Path) -> int:
    """Epochs the fit completed (validation rows, one an epoch)."""
    return len({r["epoch"] for r in read_metrics(fit_dir) if r.get("val/ndcg@10")})


def run(dataset: str, model: str, seed: int, data_path: str, work: Path, results: Path, extra: list[str]) -> dict:
    """Fit under ``work``, then test the best checkpoint fully and sampled; the run's row (also
    written to its file under ``results``)."""
    root, log = work / f"{dataset}-{model}-seed{seed}", work / f"{dataset}-{model}-seed{seed}.log"
    recipe = str(REPO / "recipes" / "recsys" / f"{dataset}_{model}.yaml")
    common = ["-c", recipe, "--trainer.default_root_dir", str(root), "--seed_everything", str(seed),
              "--data.init_args.seed", str(seed), "--data.init_args.path", data_path, *QUIET]
    run_in_log = partial(titans, log=log)
    fit = fit_best(run_in_log, [*common, *extra], root, "best-*.ckpt" if model != "popular" else "last.ckpt")
    tested = {}
    for negatives in ("null", "100"):
        ks = ["--model.init_args.ks", "[10]"] if negatives != "null" else []
        args = [*common, *extra, "--model.init_args.eval_negatives", negatives, *ks]
        tested.update(evaluate_checkpoint(run_in_log, args, fit.checkpoint, root))
    row = {"dataset": dataset, "model": model, "seed": seed, "params": parameters(fit.checkpoint),
           "fit_seconds": round(fit.seconds, 1), **{k: tested[k] for k in REPORTED}}
    if model != "popular":
        epochs = epochs_run(fit.run)
        best_epoch, best_val = best_validation(fit.run)  # the row keeps what chose the checkpoint
        row.update(epochs=epochs, epochs_per_second=epochs / fit.seconds, best_epoch=best_epoch,
                   **{"val_ndcg@10": best_val})
    path = run_file(results, dataset, model, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".tmp").write_text(json.dumps(row, indent=1))
    os.replace(path.with_suffix(".tmp"), path)  # a half-written row never counts as done
    return row


def finished(out: Path) -> list[dict]:
    """Every finished run's row, in a stable order."""
    rows = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    return sorted(rows, key=lambda r: (list(DATASETS).index(r["dataset"]), MODELS.index(r["model"]), r["seed"]))


def summary(rows: list[dict], dataset: str, model: str) -> Optional[dict]:
    """Mean over seeds of every reported metric with its [min, max]; None without runs."""
    runs = [r for r in rows if r["dataset"] == dataset and r["model"] == model]
    if not runs:
        return None
    mean = {k: sum(r[k] for r in runs) / len(runs) for k in REPORTED}
    spread = {k: (min(r[k] for r in runs), max(r[k] for r in runs)) for k in REPORTED}
    speed = [r["epochs_per_second"] for r in runs if "epochs_per_second" in r]
    return {"dataset": dataset, "model": model, "seeds": [r["seed"] for r in runs], "params": runs[0]["params"],
            "mean": mean, "range": spread, "epochs_per_second": sum(speed) / len(speed) if speed else None,
            "best_epochs": [r.get("best_epoch") for r in runs]}


def table(summaries: list[dict]) -> str:
    """The markdown tables: full ranking, then the sampled protocol and cost."""
    lines = []
    for dataset in DATASETS:
        rows = [s for s in summaries if s["dataset"] == dataset]
        if not rows:
            continue
        hr, ndcg = ICLREC[dataset]
        lines += [f"### {dataset}", "", "| model | seeds | " + " | ".join(FULL) + " |",
                  "|---|---|" + "---|" * len(FULL)]
        for s in rows:
            cells = " | ".join(f"{s['mean'][k]:.4f} [{s['range'][k][0]:.4f}, {s['range'][k][1]:.4f}]"
                               if len(s["seeds"]) > 1 else f"{s['mean'][k]:.4f}" for k in FULL)
            lines.append(f"| {NAMES[s['model']]} | {len(s['seeds'])} | {cells} |")
        lines += [f"| ICLRec (published) | | | | {hr} | {ndcg} | | | | | |", "",
                  "| model | backbone + embeddings parameters | sampled-100 HR@10 | sampled-100 NDCG@10 "
                  "| epochs/s | best epochs |", "|---|---|---|---|---|---|"]
        for s in rows:
            speed = f"{s['epochs_per_second']:.4f}" if s["epochs_per_second"] else ""
            lines.append(f"| {NAMES[s['model']]} | {s['params']:,} | {s['mean'][SAMPLED[0]]:.4f} | "
                         f"{s['mean'][SAMPLED[1]]:.4f} | {speed} | {s['best_epochs']} |")
        lines.append("")
    return "\n".join(lines)


def write_results(out: Path, args: list[str]) -> str:
    """results.json and results.md from every finished run; the markdown."""
    rows = finished(out)
    summaries = [s for d in DATASETS for m in MODELS if (s := summary(rows, d, m))]
    (out / "results.json").write_text(json.dumps({"args": args, "runs": rows, "summary": summaries}, indent=1))
    markdown = table(summaries)
    (out / "results.md").write_text(markdown + "\n")
    return markdown


def jobs(datasets: list[str], models: list[str], seeds: list[int]) -> list[tuple[str, str, int]]:
    """(dataset, model, seed) of every run: seeds outermost, so that a partial table has every
    contender's first seed; most popular with the first seed only."""
    return [(d, m, s) for s in seeds for d in datasets for m in models if m != "popular" or s == seeds[0]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="override every neural recipe's max_epochs")
    parser.add_argument("--jobs", type=int, default=2, help="runs at the same time, one thread each")
    parser.add_argument("--results", type=Path, default=REPO / "experiments" / "recsys" / "amazon",
                        help="finished rows and tables (resumed from)")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench" / "recsys-amazon",
                        help="training runs: checkpoints and logs")
    parser.add_argument("--yelp-path", default=DATASETS["yelp"], help="Yelp.txt (not shipped)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra overrides for every neural model, e.g. model.init_args.embedding_dropout=0.3")
    args = parser.parse_args()
    paths = {**DATASETS, "yelp": args.yelp_path}
    datasets = [d for d in args.datasets if (REPO / paths[d]).is_file() or Path(paths[d]).is_file()]
    for missing in sorted(set(args.datasets) - set(datasets)):
        print(f"skipping {missing}: no file at {paths[missing]} (see data/recsys/NOTICE.md)")
    neural = [f"--{kv}" for kv in args.set] + (["--trainer.max_epochs", str(args.epochs)] if args.epochs else [])
    todo = [j for j in jobs(datasets, args.models, args.seeds) if not run_file(args.results, *j).exists()]
    print(f"{len(todo)} runs to do ({len(jobs(datasets, args.models, args.seeds)) - len(todo)} already finished)")
    lock, start = Lock(), time.perf_counter()

    def one(job: tuple[str, str, int]) -> None:
        dataset, model, seed = job
        path = paths[dataset] if Path(paths[dataset]).is_absolute() else str(REPO / paths[dataset])
        run(dataset, model, seed, path, args.work, args.results, neural if model != "popular" else [])
        with lock:
            write_results(args.results, sys.argv[1:])
            print(f"done {dataset} {model} seed {seed} ({time.perf_counter() - start:.0f} s)", flush=True)

    args.work.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        for future in [pool.submit(one, j) for j in todo]:
            future.result()
    print(write_results(args.results, sys.argv[1:]))
    print(f"{time.perf_counter() - start:.0f} s wall")


if __name__ == "__main__":
    main()
