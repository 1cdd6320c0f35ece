"""ETTh1 test MSE/MAE per horizon and averaged: the Titans forecaster, the transformer and DLinear
baselines of ``recipes/forecasting/``, beside the paper's Titans row.

Each (model, horizon) is two ``titans`` commands in a fresh process, exactly what a user runs::

    titans fit  -c recipes/forecasting/etth1_<model>_<H>.yaml --trainer.default_root_dir <out>/<model>_<H>
    titans test -c recipes/forecasting/etth1_<model>_<H>.yaml --ckpt_path <best val/mse checkpoint>

The standard protocol throughout: lookback 96 (``--lookback`` changes it; the test windows stay
the same), the 12/4/4-month split, scaler fit on train, every test window counted, metrics on the
standardised scale. ``--set KEY=VALUE`` overrides a recipe field in both commands. Results go
to ``<out>/results.json`` and a Markdown table on stdout. Options shorten a run on a small
machine (fewer horizons, epochs or training batches); the table says what ran.

    OMP_NUM_THREADS=1 python experiments/forecasting/etth1.py --horizons 96 --max-epochs 2
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Optional

from titans_lightning.runs import QUIET, best_validation, cli_overrides, evaluate_checkpoint, fit_best, run_titans

REPO = Path(__file__).resolve().parents[2]
MODELS = ("titans", "dlinear", "transformer")
HORIZONS = (96, 192, 336, 720)
# Published ETTh1 averages (lookback 96, horizons 96-720; docs/method.md section 4).
PAPER = {"Titans (paper)": (0.420, 0.421), "DLinear (paper)": (0.456, 0.452)}


def titans(args: list[str], log: Path) -> None:
    """``titans *args`` in a fresh process in the repository root, output appended to ``log``."""
    run_titans(args, cwd=REPO, log=log)


def run_one(model: str, horizon: int, out: Path, extra: list[str], shared: Sequence[str] = ()) -> dict[str, float]:
    """Fit, then test the best-validation checkpoint, of one recipe; its test metrics and timing.

    ``extra``: command-line overrides of the fit only (seed, epochs); ``shared``: of both commands
    (the model and the data, which ``titans test`` builds again from the recipe)."""
    recipe = REPO / "recipes" / "forecasting" / f"etth1_{model}_{horizon}.yaml"
    root = out / f"{model}_{horizon}"
    log = out / f"{model}_{horizon}.log"
    common = ["-c", str(recipe), "--trainer.default_root_dir", str(root), *QUIET, *shared]
    start = time.perf_counter()
    run = partial(titans, log=log)
    fit = fit_best(run, [*common, *extra], root)
    val = best_validation(fit.run, "mse")  # the score that chose the checkpoint
    metrics = evaluate_checkpoint(run, common, fit.checkpoint, root)
    return {**metrics, "val_mse": val["mse"], "val_step": val["step"], "fit_s": fit.seconds,
            "total_s": time.perf_counter() - start, "checkpoint": str(fit.checkpoint),
            "overrides": " ".join([*shared, *extra]) or "none"}


def previous_results(path: Path) -> dict[str, dict[int, dict]]:
    """Results already in ``path`` (earlier invocations with the same ``--out``): a rerun of some
    models or horizons replaces only those entries, so the table can be built in pieces."""
    if not path.exists():
        return {}
    saved = json.loads(path.read_text())["results"]
    return {model: {int(h): r for h, r in by_h.items()} for model, by_h in saved.items()}


def report(model: str, horizon: int, r: dict) -> None:
    print(f"{model:12s} H={horizon:<4d} val MSE {r.get('val_mse', float('nan')):.4f} (selected) "
          f"test MSE {r['mse']:.4f} MAE {r['mae']:.4f} "
          f"(original units: MSE {r['mse_original']:.3f}) fit {r['fit_s']:.0f}s", flush=True)


def fmt(pair: Optional[tuple[float, float]]) -> str:
    return "-" if pair is None else f"{pair[0]:.3f} / {pair[1]:.3f}"


def table(results: dict[str, dict[int, dict]], horizons: list[int]) -> str:
    """Markdown: one row per model, MSE / MAE per horizon and their mean over the horizons run."""
    head = "| model | " + " | ".join(f"H={h}" for h in horizons) + " | average |"
    lines = [head, "|" + " --- |" * (len(horizons) + 2)]
    for model, by_h in results.items():
        cells = [fmt((by_h[h]["mse"], by_h[h]["mae"])) if h in by_h else None for h in horizons]
        done = [by_h[h] for h in horizons if h in by_h]
        mean = (sum(r["mse"] for r in done) / len(done), sum(r["mae"] for r in done) / len(done)) if done else None
        lines.append(f"| {model} | " + " | ".join(c or "-" for c in cells) + f" | {fmt(mean)} |")
    for name, pair in PAPER.items():
        lines.append(f"| {name} | " + " | ".join("" for _ in horizons) + f" | {fmt(pair)} (96-720) |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--horizons", nargs="+", type=int, choices=HORIZONS, default=list(HORIZONS))
    parser.add_argument("--max-epochs", nargs="+", default=[],
                        help="override the recipes' max_epochs: N for every model, or MODEL=N each")
    parser.add_argument("--limit-train-batches", default=None, help="per epoch: a fraction (0.5) or a count (20)")
    parser.add_argument("--seed", type=int, default=None,
                        help="override the recipes' seed_everything (0); use its own --out to keep runs apart")
    parser.add_argument("--lookback", type=int, default=None,
                        help="override the recipes' lookback (96); the test windows stay the same (2881 - H)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override recipe fields of fit and test alike: model.init_args.revin=true")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side (one process each)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_forecasting_etth1")
    args = parser.parse_args(argv)
    epochs = {m: v for m, _, v in (e.rpartition("=") for e in args.max_epochs)}
    extra = [] if args.seed is None else ["--seed_everything", str(args.seed)]
    if args.limit_train_batches is not None:
        extra += ["--trainer.limit_train_batches", str(args.limit_train_batches)]
    shared = cli_overrides(args.set + ([f"data.init_args.lookback={args.lookback}"] if args.lookback else []))
    args.out.mkdir(parents=True, exist_ok=True)
    results = previous_results(args.out / "results.json")
    for model in args.models:
        results.setdefault(model, {})
    # In the order given (Titans, the slowest, first), so that parallel workers end together.
    jobs = [(m, h) for m in args.models for h in args.horizons]
    lock = threading.Lock()

    def job(pair: tuple[str, int]) -> None:
        model, horizon = pair
        n = epochs.get(model, epochs.get(""))
        r = run_one(model, horizon, args.out, extra + (["--trainer.max_epochs", n] if n else []), shared)
        with lock:
            results[model][horizon] = r
            report(model, horizon, r)
            (args.out / "results.json").write_text(json.dumps(
                {"last_argv": sys.argv[1:], "results": results}, indent=1))

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(job, jobs))
    print(f"\nETTh1, lookback {args.lookback or 96}, test split (2881 - H windows); recipe overrides per run:")
    for model, by_h in results.items():
        print(f"  {model}: " + ", ".join(f"H={h} {r.get('overrides', 'none')} ({r['fit_s']:.0f}s fit)"
                                       for h, r in sorted(by_h.items())))
    print()
    print(table(results, sorted({h for by_h in results.values() for h in by_h})))


if __name__ == "__main__":
    main()
