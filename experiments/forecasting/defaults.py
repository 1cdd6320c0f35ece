"""Forecaster defaults chosen on validation across datasets, not on one file's months.

Each candidate setting (recipe overrides applied alike to every dataset: RevIN on or off) of each
learned model runs every cell of every shipped dataset: ETTh1 at H = 96, 192, 336 and 720
(``recipes/forecasting/etth1_<model>_<H>.yaml``) and the US employment panel at H = 12
(``recipes/forecasting/us_employment_<model>.yaml`` with the learning rate the panel benchmark
chose on its validation split). A cell's score is the validation metric its recipe's checkpoint
monitor uses (ETTh1 ``val/mse``, the panel ``val/quantile_loss``), at the best checkpoint.

The rule, fixed before any run: a setting's relative score on a cell is its validation score over
the best validation score of the model's settings on that cell (1.0 = the best); its score on a
dataset is the mean over the dataset's cells; the setting with the lowest mean over the datasets
(each dataset weighs the same, whatever its number of horizons) is the model's default. Test
scores are reported for every setting and never choose.

Each run is ``titans fit`` then ``titans test`` of the best-validation checkpoint, in fresh
processes, what a user runs. Resumable: each finished run is a row
``<results>/runs/<model>-<dataset>-h<H>-<setting>-seed<s>.json``; a later call skips it, and
``<results>/results.md`` / ``.json`` are rewritten after every run.

    OMP_NUM_THREADS=1 python experiments/forecasting/defaults.py [--models dlinear titans] \\
        [--settings revin_on revin_off] [--seed 0] [--jobs 1] [--results experiments/forecasting/defaults] \\
        [--work runs/bench/forecasting-defaults]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from threading import Lock
from typing import Optional

from titans_lightning.runs import QUIET, best_validation, evaluate_checkpoint, fit_best, run_titans

try:
    from experiments.forecasting import panel
except ModuleNotFoundError:  # run as a script: its folder is on the path
    import panel

REPO = Path(__file__).resolve().parents[2]
MODELS = ("dlinear", "titans")
NAMES = {"dlinear": "DLinear", "titans": "Titans (LMM)"}
SETTINGS: dict[str, list[str]] = {"revin_on": ["--model.init_args.revin", "true"],
                                  "revin_off": ["--model.init_args.revin", "false"]}
#: dataset -> (its horizons, the validation metric that selects, the test metrics reported)
DATASETS: dict[str, tuple[tuple[int, ...], str, tuple[str, ...]]] = {
    "etth1": ((96, 192, 336, 720), "mse", ("mse", "mae")),
    "us_employment": ((12,), "quantile_loss", ("mase", "quantile_loss", "coverage", "mse")),
}
Job = tuple[str, str, int, str, int]  # (model, dataset, horizon, setting, seed)


def recipe(model: str, dataset: str, horizon: int) -> Path:
    name = f"etth1_{model}_{horizon}" if dataset == "etth1" else f"{dataset}_{model}"
    return REPO / "recipes" / "forecasting" / f"{name}.yaml"


def dataset_overrides(model: str, dataset: str) -> list[str]:
    """The panel's learning rate as its benchmark chose it on validation (seed 0); none for ETTh1,
    whose recipes carry theirs."""
    if dataset != "us_employment":
        return []
    setting = panel.chosen(panel.finished(REPO / "experiments" / "forecasting" / "panel"), model, 0)
    if setting is None:
        raise RuntimeError(f"the panel benchmark has not chosen {model}'s learning rate yet: run "
                           f"experiments/forecasting/panel.py --models {model} --seeds 0 first")
    return panel.SEARCH[model][setting]


def row_file(results: Path, job: Job) -> Path:
    model, dataset, horizon, setting, seed = job
    return results / "runs" / f"{model}-{dataset}-h{horizon}-{setting}-seed{seed}.json"


def run_one(job: Job, work: Path, results: Path) -> dict:
    """Fit one job under ``work``, test its best-validation checkpoint; its row (also written)."""
    model, dataset, horizon, setting, seed = job
    name = row_file(results, job).stem
    root, log = work / name, work / f"{name}.log"
    work.mkdir(parents=True, exist_ok=True)
    flags = [*dataset_overrides(model, dataset), *SETTINGS[setting]]
    common = ["-c", str(recipe(model, dataset, horizon)), "--trainer.default_root_dir", str(root), *QUIET, *flags]
    run = partial(run_titans, cwd=REPO, log=log)
    fit = fit_best(run, [*common, "--seed_everything", str(seed)], root)
    test = evaluate_checkpoint(run, common, fit.checkpoint, root)
    val = {k: v for k, v in best_validation(fit.run, DATASETS[dataset][1]).items() if k != "epoch"}
    row = {"model": model, "dataset": dataset, "horizon": horizon, "setting": setting, "seed": seed,
           "overrides": " ".join(flags), "fit_seconds": round(fit.seconds, 1),
           "val": val, "test": test, "checkpoint": panel.shown_path(fit.checkpoint)}
    panel.write_atomic(row_file(results, job), json.dumps(row, indent=1))
    return row


def jobs(models: Sequence[str], settings: Sequence[str], seed: int) -> list[Job]:
    """Every cell of every setting: DLinear before the Titans forecaster, the panel before ETTh1
    (cheapest first), the settings side by side per cell."""
    order = sorted(DATASETS, key=lambda d: d != "us_employment")
    return [(m, d, h, s, seed) for m in MODELS if m in models for d in order for h in DATASETS[d][0]
            for s in settings]


def finished(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / "runs").glob("*.json"))]


def selection(rows: list[dict], model: str, settings: Sequence[str], seed: int) -> Optional[dict]:
    """The rule of the module docstring: per setting its relative validation score on every cell,
    the mean per dataset and over datasets, and the chosen setting; None until every cell of every
    setting has run."""
    val = {(r["dataset"], r["horizon"], r["setting"]): r["val"][DATASETS[r["dataset"]][1]]
           for r in rows if r["model"] == model and r["seed"] == seed}
    cells = [(d, h) for d, (horizons, _, _) in DATASETS.items() for h in horizons]
    if any((d, h, s) not in val for d, h in cells for s in settings):
        return None
    relative = {s: {(d, h): val[d, h, s] / min(val[d, h, t] for t in settings) for d, h in cells} for s in settings}
    per_dataset = {s: {d: sum(relative[s][d, h] for h in DATASETS[d][0]) / len(DATASETS[d][0]) for d in DATASETS}
                   for s in settings}
    overall = {s: sum(per_dataset[s].values()) / len(DATASETS) for s in settings}
    return {"model": model, "relative": {s: {f"{d}-h{h}": v for (d, h), v in r.items()} for s, r in relative.items()},
            "per_dataset": per_dataset, "overall": overall, "chosen": min(overall, key=overall.get)}


def selection_table(choices: list[dict], rows: list[dict], seed: int) -> str:
    cells = [(d, h) for d, (horizons, _, _) in DATASETS.items() for h in horizons]
    lines = ["| model | setting | " + " | ".join(f"{d} H={h}" for d, h in cells)
             + " | " + " | ".join(f"{d} mean" for d in DATASETS) + " | over datasets |",
             "|---|---|" + "---|" * (len(cells) + len(DATASETS) + 1)]
    for c in choices:
        for s, overall in c["overall"].items():
            val = {(r["dataset"], r["horizon"]): r["val"][DATASETS[r["dataset"]][1]] for r in rows
                   if r["model"] == c["model"] and r["setting"] == s and r["seed"] == seed}
            mark = "**" if s == c["chosen"] else ""
            lines.append(f"| {NAMES[c['model']]} | {mark}{s}{mark} | "
                         + " | ".join(f"{val[d, h]:.4f} ({c['relative'][s][f'{d}-h{h}']:.3f})" for d, h in cells)
                         + " | " + " | ".join(f"{c['per_dataset'][s][d]:.3f}" for d in DATASETS)
                         + f" | {mark}{overall:.3f}{mark} |")
    return "\n".join(lines)


def test_table(rows: list[dict], choices: dict[str, str], seed: int) -> str:
    """Every run's test scores, the chosen setting of each model first and marked."""
    lines = []
    for dataset, (horizons, _, reported) in DATASETS.items():
        lines += ["", f"{dataset} (test):", "",
                  "| model | setting | " + " | ".join(f"H={h} {'/'.join(reported)}" for h in horizons) + " |",
                  "|---|---|" + "---|" * len(horizons)]
        for model in MODELS:
            order = sorted(SETTINGS, key=lambda s: s != choices.get(model))
            for s in order:
                at = {r["horizon"]: r["test"] for r in rows if (r["model"], r["dataset"], r["setting"], r["seed"])
                      == (model, dataset, s, seed)}
                if not at:
                    continue
                label = f"{s} (chosen)" if s == choices.get(model) else s
                lines.append(f"| {NAMES[model]} | {label} | " + " | ".join(
                    " / ".join(f"{at[h][k]:.4f}" for k in reported) if h in at else "-" for h in horizons) + " |")
    return "\n".join(lines)


def write_results(results: Path, models: Sequence[str], settings: Sequence[str], seed: int,
                  argv: Sequence[str]) -> str:
    rows = finished(results)
    choices = [c for m in models if (c := selection(rows, m, settings, seed))]
    markdown = ("Validation score of each cell (relative to the model's best setting there), means per "
                "dataset and over datasets; the lowest mean over datasets is chosen (bold):\n\n"
                + selection_table(choices, rows, seed) + "\n" + test_table(rows, {c["model"]: c["chosen"]
                                                                                for c in choices}, seed))
    panel.write_atomic(results / "results.json", json.dumps({"argv": list(argv), "runs": rows,
                                                             "selection": choices}, indent=1))
    panel.write_atomic(results / "results.md", markdown + "\n")
    return markdown


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side (one process, one thread each)")
    parser.add_argument("--results", type=Path, default=REPO / "experiments" / "forecasting" / "defaults")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench" / "forecasting-defaults")
    args = parser.parse_args(argv)
    shown = sys.argv[1:] if argv is None else argv
    todo = [j for j in jobs(args.models, args.settings, args.seed) if not row_file(args.results, j).exists()]
    print(f"{len(todo)} runs to do", flush=True)
    lock, start = Lock(), time.perf_counter()

    def one(job: Job) -> None:
        row = run_one(job, args.work, args.results)
        with lock:
            write_results(args.results, args.models, args.settings, args.seed, shown)
            print(f"done {row_file(args.results, job).stem}: val {row['val'][DATASETS[job[1]][1]]:.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)

    with ThreadPoolExecutor(args.jobs) as pool:
        for future in [pool.submit(one, j) for j in todo]:
            future.result()
    print(write_results(args.results, args.models, args.settings, args.seed, shown))


if __name__ == "__main__":
    main()
