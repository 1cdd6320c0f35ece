"""The panel forecasting benchmark: 148 monthly US employment series
(``data/timeseries/us_employment.csv``), lookback 48 months, horizon 12: the Titans forecaster
and DLinear (10/50/90 % quantiles) against the seasonal-naive forecast, on the test split of
every series.

Each contender is its recipe ``recipes/forecasting/us_employment_<model>.yaml``; each run is two
``titans`` commands in fresh processes, what a user runs::

    titans fit  -c recipes/forecasting/us_employment_<model>.yaml --seed_everything S \\
        --data.init_args.seed S [setting]
    titans test -c recipes/forecasting/us_employment_<model>.yaml [setting] --ckpt_path <best checkpoint>

The protocol: every series split 0.7 / 0.1 / 0.2 on its own time axis (val and test windows reach
48 months back into the split before), scaled by its own training rows; every test window of
every series counted. Model selection on validation only: each learned model first runs a small
search (``SEARCH``: four learning rates for both, x0.5 to x4 the recipe's) with seed 0; the
setting with the lowest validation quantile loss (the training loss, and the checkpoint monitor
of every run) is chosen, and runs again with the other seeds (initialisation, dropout and the
shuffling of the training windows). Seasonal naive has no setting and no seed: it runs once.
Reported on the test split: MASE (season 12), sMAPE, quantile loss and CRPS (standardised scale),
coverage of the 10-90 % interval, MSE and MAE (standardised scale), mean and [min, max] over
seeds, and the fit's wall time.

Resumable: each finished run is a row ``<results>/runs/<model>-<setting>-seed<s>.json`` (kept in
the repository, written atomically); a later call skips it, so an interrupted benchmark continues
where it stopped. After every run ``<results>/results.json`` and ``<results>/results.md`` are
rewritten from all finished rows. Training runs (checkpoints, logs) go under ``--work``
(``runs/``, not kept).

    OMP_NUM_THREADS=1 python experiments/forecasting/panel.py [--models snaive dlinear titans] \\
        [--seeds 0 1 2] [--jobs 1] [--results experiments/forecasting/panel] \\
        [--work runs/bench/forecasting-panel]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from threading import Lock
from typing import Optional

from titans_lightning.runs import QUIET, best_validation, evaluate_checkpoint, fit_best, run_titans

REPO = Path(__file__).resolve().parents[2]
MODELS = ("snaive", "dlinear", "titans")
NAMES = {"snaive": "seasonal naive", "dlinear": "DLinear", "titans": "Titans (LMM)"}
#: The validation search of each model: setting name -> recipe overrides (fit and test). The same
#: budget for both learned models: four learning rates, x0.5, x1, x2 and x4 the recipe's.
LR = "--model.init_args.optimizer.init_args.lr"
SEARCH: dict[str, dict[str, list[str]]] = {
    "snaive": {"default": []},
    "dlinear": {f"lr{lr}": [LR, lr] for lr in ("0.0025", "0.005", "0.01", "0.02")},
    "titans": {f"lr{lr}": [LR, lr] for lr in ("0.001", "0.002", "0.004", "0.008")},
}
SELECT = "quantile_loss"  # validation metric that chooses the checkpoint and the setting (lower is better)
REPORTED = ("mase", "smape", "quantile_loss", "crps", "coverage", "mse", "mae")
Job = tuple[str, str, int]  # (model, setting, seed)


def titans(args: list[str], log: Path) -> None:
    """``titans *args`` in a fresh process in the repository root, output appended to ``log``."""
    run_titans(args, cwd=REPO, log=log)


def run_name(model: str, setting: str, seed: int) -> str:
    return f"{model}-{setting}-seed{seed}"


def row_file(results: Path, job: Job) -> Path:
    return results / "runs" / f"{run_name(*job)}.json"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename: a half-written file never
    counts as a finished row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when inside it (rows stay valid in another checkout)."""
    return str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


def run_one(job: Job, work: Path, results: Path) -> dict:
    """Fit one (model, setting, seed) under ``work``, test its best-validation checkpoint; its row
    (also written to its file under ``results``)."""
    model, setting, seed = job
    name = run_name(*job)
    root, log = work / name, work / f"{name}.log"
    recipe = REPO / "recipes" / "forecasting" / f"us_employment_{model}.yaml"
    common = ["-c", str(recipe), "--trainer.default_root_dir", str(root), *QUIET, *SEARCH[model][setting]]
    run = partial(titans, log=log)
    # the seed of initialisation and dropout, and the DataModule's own seed of the shuffling
    fit = fit_best(run, [*common, "--seed_everything", str(seed), "--data.init_args.seed", str(seed)], root)
    test = evaluate_checkpoint(run, common, fit.checkpoint, root)
    val = {k: v for k, v in best_validation(fit.run, SELECT).items() if k != "epoch"}
    row = {"model": model, "setting": setting, "seed": seed, "overrides": " ".join(SEARCH[model][setting]),
           "fit_seconds": round(fit.seconds, 1), "val": val,
           "test": {k: test[k] for k in REPORTED}, "checkpoint": shown_path(fit.checkpoint)}
    write_atomic(row_file(results, job), json.dumps(row, indent=1))
    return row


def finished(results: Path) -> list[dict]:
    """Every finished run's row, in a stable order (model, setting, seed); rows of a setting no
    longer in ``SEARCH`` (an older grid) stay on disk but are left out."""
    rows = [json.loads(p.read_text()) for p in sorted((results / "runs").glob("*.json"))]
    rows = [r for r in rows if r["setting"] in SEARCH.get(r["model"], {})]
    return sorted(rows, key=lambda r: (MODELS.index(r["model"]), list(SEARCH[r["model"]]).index(r["setting"]),
                                       r["seed"]))


def chosen(rows: list[dict], model: str, seed: int) -> Optional[str]:
    """The setting of ``model`` with the lowest validation ``SELECT`` among its search runs (seed
    ``seed``); None until every setting of its search has run."""
    search = {r["setting"]: r["val"][SELECT] for r in rows if r["model"] == model and r["seed"] == seed}
    if set(search) != set(SEARCH[model]):
        return None
    return min(search, key=search.get)


def search_jobs(models: Sequence[str], seeds: Sequence[int]) -> list[Job]:
    """Every setting of every model with the first seed: cheapest models first, so that a partial
    table has its baselines."""
    return [(m, s, seeds[0]) for m in MODELS if m in models for s in SEARCH[m]]


def seed_jobs(rows: list[dict], models: Sequence[str], seeds: Sequence[int]) -> list[Job]:
    """The other seeds of each learned model's chosen setting (none for seasonal naive, which
    has no randomness, nor for a model whose search is unfinished)."""
    jobs = []
    for model in (m for m in MODELS if m in models and m != "snaive"):
        setting = chosen(rows, model, seeds[0])
        jobs += [(model, setting, s) for s in seeds[1:]] if setting is not None else []
    return jobs


def summary(rows: list[dict], model: str, seed: int) -> Optional[dict]:
    """Mean, [min, max] over the seeds of ``model``'s chosen setting of every reported metric,
    and the mean fit time; None before its search has finished."""
    setting = chosen(rows, model, seed)
    runs = [r for r in rows if r["model"] == model and r["setting"] == setting]
    if setting is None or not runs:
        return None
    values = {k: [r["test"][k] for r in runs] for k in REPORTED}
    return {"model": model, "setting": setting, "seeds": [r["seed"] for r in runs],
            "mean": {k: sum(v) / len(v) for k, v in values.items()},
            "range": {k: (min(v), max(v)) for k, v in values.items()},
            "fit_seconds": sum(r["fit_seconds"] for r in runs) / len(runs)}


def cell(s: dict, key: str) -> str:
    if len(s["seeds"]) == 1:
        return f"{s['mean'][key]:.4f}"
    low, high = s["range"][key]
    return f"{s['mean'][key]:.4f} [{low:.4f}, {high:.4f}]"


def table(summaries: list[dict], rows: list[dict]) -> str:
    """Markdown: the test table (chosen settings), then every search run's validation scores."""
    names = ("MASE", "sMAPE", "quantile loss", "CRPS", "coverage (80 %)", "MSE", "MAE")
    lines = ["| model | setting | seeds | " + " | ".join(names) + " | fit s |",
             "|---|---|---|" + "---|" * (len(names) + 1)]
    for s in summaries:
        lines.append(f"| {NAMES[s['model']]} | {s['setting']} | {len(s['seeds'])} | "
                     + " | ".join(cell(s, k) for k in REPORTED) + f" | {s['fit_seconds']:.0f} |")
    lines += ["", f"Validation (chosen by the lowest val {SELECT}):", "",
              "| model | setting | seed | val quantile loss | val MASE | val coverage | best step | fit s |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {NAMES[r['model']]} | {r['setting']} | {r['seed']} | {r['val'][SELECT]:.4f} | "
                     f"{r['val']['mase']:.4f} | {r['val']['coverage']:.4f} | {r['val']['step']} | "
                     f"{r['fit_seconds']:.0f} |")
    return "\n".join(lines)


def write_results(results: Path, seeds: Sequence[int], argv: Sequence[str]) -> str:
    """``results.json`` and ``results.md`` from every finished row; the markdown."""
    rows = finished(results)
    summaries = [s for m in MODELS if (s := summary(rows, m, seeds[0]))]
    write_atomic(results / "results.json", json.dumps({"argv": list(argv), "runs": rows, "summary": summaries},
                                                      indent=1))
    markdown = table(summaries, rows)
    write_atomic(results / "results.md", markdown + "\n")
    return markdown


def run_all(jobs: list[Job], results: Path, work: Path, workers: int, seeds: Sequence[int], argv: Sequence[str],
            runner: Callable[[Job, Path, Path], dict]) -> None:
    """Run the jobs without a row yet, ``workers`` at a time; the tables rewritten after each."""
    todo = [j for j in jobs if not row_file(results, j).exists()]
    print(f"{len(todo)} runs to do ({len(jobs) - len(todo)} already finished)", flush=True)
    lock, start = Lock(), time.perf_counter()

    def one(job: Job) -> None:
        runner(job, work, results)
        with lock:
            write_results(results, seeds, argv)
            print(f"done {run_name(*job)} ({time.perf_counter() - start:.0f} s)", flush=True)

    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(one, j) for j in todo]:
            future.result()


def benchmark(models: Sequence[str], seeds: Sequence[int], results: Path, work: Path, workers: int = 1,
              argv: Sequence[str] = (), runner: Optional[Callable[[Job, Path, Path], dict]] = None) -> str:
    """The search (first seed), then the other seeds of each chosen setting; the markdown.
    ``runner(job, work, results)`` runs one job and writes its row (default ``run_one``)."""
    runner = runner or run_one
    work.mkdir(parents=True, exist_ok=True)
    run_all(search_jobs(models, seeds), results, work, workers, seeds, argv, runner)
    run_all(seed_jobs(finished(results), models, seeds), results, work, workers, seeds, argv, runner)
    return write_results(results, seeds, argv)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                        help="the first runs the search; the others only the chosen setting")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side (one process, one thread each)")
    parser.add_argument("--results", type=Path, default=REPO / "experiments" / "forecasting" / "panel",
                        help="finished rows and tables (resumed from)")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench" / "forecasting-panel",
                        help="training runs: checkpoints and logs")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    shown = sys.argv[1:] if argv is None else argv
    print(benchmark(args.models, args.seeds, args.results, args.work, args.jobs, shown))
    print(f"{time.perf_counter() - start:.0f} s wall")


if __name__ == "__main__":
    main()
