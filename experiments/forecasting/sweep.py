"""A fast validation sweep of the ETTh1 forecasters: how validation and test rank the same choices.

Every configuration of a grid (lookback x RevIN on/off) is trained at every horizon by a plain loop
(no Lightning: seconds for DLinear, minutes for the Titans forecaster) that follows the recipe
``recipes/forecasting/etth1_<model>_<H>.yaml``: its model arguments, optimizer, schedule (a
cosine runs to zero over the run; a step schedule's step is one epoch), gradient clipping,
epochs, validation interval and early-stopping patience. The checkpoint with the lowest
validation MSE is tested on the standard test windows (2881 - H of them at any lookback).

Printed: validation and test MSE per configuration and horizon; per horizon, the configuration
validation selects and its test MSE; and, only to measure how far the two splits disagree, the
configuration test would have selected. Results are appended to ``--out`` (JSON lines).

    OMP_NUM_THREADS=1 python experiments/forecasting/sweep.py --model dlinear --lookbacks 96 336 720

Shape legend: B windows, L lookback, H horizon, C channels.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import math
import time
from itertools import product
from pathlib import Path
from typing import Any, Optional

import torch
import yaml

from datamodules.timeseries import TimeSeriesDataModule
from titans_lightning.backbone import TitansConfig
from titans_lightning.tasks.forecasting import DLinearTask, ForecastingTask

REPO = Path(__file__).resolve().parents[2]
TASKS = {"ForecastingTask": ForecastingTask, "DLinearTask": DLinearTask}
EVAL_BATCH = 512


def load_recipe(model: str, horizon: int) -> dict[str, Any]:
    return yaml.safe_load((REPO / "recipes" / "forecasting" / f"etth1_{model}_{horizon}.yaml").read_text())


def class_from(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def all_windows(dataset) -> dict[str, torch.Tensor]:
    """A split's windows stacked: ``x`` (B, L, C), ``y`` (B, H, C), ``covariates``, ``start``."""
    items = [dataset[i] for i in range(len(dataset))]
    return {key: torch.stack([item[key] for item in items]) for key in ("x", "y", "covariates", "start")}


def build_task(recipe: dict, revin: bool, data_sizes: dict[str, int]):
    """The recipe's task with ``revin`` set, its layers built; optimizer and schedule are separate."""
    spec = recipe["model"]
    args = {k: v for k, v in spec["init_args"].items() if k not in ("optimizer", "lr_scheduler")}
    args["revin"] = revin
    if "backbone" in args:
        args["backbone"] = TitansConfig(**args["backbone"])
    task = TASKS[spec["class_path"].rpartition(".")[2]](**args, data_sizes=data_sizes)
    task.configure_model()
    return task


def build_optimization(recipe: dict, task, steps_per_epoch: int, epochs: int):
    """The recipe's optimizer and its schedule (stepped every optimizer step) over ``task``'s
    parameter groups: a ``total_steps`` schedule spans the whole run; a ``StepLR``'s step size
    becomes one epoch's steps at any lookback."""
    spec = recipe["model"]["init_args"]
    optimizer = class_from(spec["optimizer"]["class_path"])(task.parameter_groups(), **spec["optimizer"]["init_args"])
    sched = spec.get("lr_scheduler")
    if sched is None:
        return optimizer, None
    init = dict(sched.get("init_args", {}))
    cls = class_from(sched["class_path"])
    if cls is torch.optim.lr_scheduler.StepLR:
        init["step_size"] = steps_per_epoch
    elif "total_steps" in inspect.signature(cls).parameters:
        init["total_steps"] = steps_per_epoch * epochs
    return optimizer, cls(optimizer, **init)


@torch.no_grad()
def evaluate(task, windows: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(MSE, MAE) over every element of every window, standardised scale."""
    task.eval()
    squared = absolute = count = 0.0
    for i in range(0, windows["x"].shape[0], EVAL_BATCH):
        batch = {k: v[i:i + EVAL_BATCH] for k, v in windows.items()}
        error = task.forecast(batch).float() - batch["y"]
        squared += error.square().sum().item()
        absolute += error.abs().sum().item()
        count += error.numel()
    task.train()
    return squared / count, absolute / count


def patience_of(recipe: dict) -> Optional[int]:
    for callback in recipe["trainer"].get("callbacks", []):
        if callback["class_path"].endswith("EarlyStopping"):
            return callback["init_args"]["patience"]
    return None


def train_one(model: str, lookback: int, horizon: int, revin: bool, seed: int, data: Path) -> dict[str, Any]:
    """Train one configuration as its recipe does; the best-validation state's val and test scores."""
    recipe = load_recipe(model, horizon)
    data_args = recipe["data"]["init_args"]
    torch.manual_seed(seed)
    module = TimeSeriesDataModule(path=str(data), date_column=data_args["date_column"], target=data_args["target"],
                                  lookback=lookback, horizon=horizon, batch_size=data_args["batch_size"])
    module.setup("fit")
    module.setup("test")
    splits = [all_windows(loader().dataset) for loader in
              (module.train_dataloader, module.val_dataloader, module.test_dataloader)]
    began = time.perf_counter()
    best = fit_selecting_on_validation(recipe, build_task(recipe, revin, module.data_sizes), *splits)
    return {**best, "seconds": time.perf_counter() - began}


def fit_selecting_on_validation(recipe: dict, task, train: dict, val: dict, test: dict) -> dict[str, Any]:
    """The recipe's training loop: shuffled batches, clipping, the schedule every step, validation
    at the recipe's interval, early stopping; test is scored only for a new best validation state."""
    trainer, batch_size = recipe["trainer"], recipe["data"]["init_args"]["batch_size"]
    epochs, steps_per_epoch = trainer["max_epochs"], math.ceil(train["x"].shape[0] / batch_size)
    optimizer, schedule = build_optimization(recipe, task, steps_per_epoch, epochs)
    interval = trainer.get("val_check_interval", 1.0)
    checks = {round(steps_per_epoch * interval * k) for k in range(1, int(1 / interval) + 1)}
    clip, patience = trainer.get("gradient_clip_val"), patience_of(recipe)
    best, stale, step = {"val_mse": math.inf}, 0, 0
    for _ in range(epochs):
        order = torch.randperm(train["x"].shape[0])
        for j in range(steps_per_epoch):
            loss, _ = task.compute_loss({k: v[order[j * batch_size:(j + 1) * batch_size]] for k, v in train.items()})
            optimizer.zero_grad()
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(task.parameters(), clip)
            optimizer.step()
            if schedule is not None:  # every step, as the tasks configure it for Lightning
                schedule.step()
            step += 1
            if j + 1 not in checks:
                continue
            val_mse, val_mae = evaluate(task, val)
            if val_mse < best["val_mse"]:
                test_mse, test_mae = evaluate(task, test)
                best, stale = {"val_mse": val_mse, "val_mae": val_mae, "test_mse": test_mse,
                               "test_mae": test_mae, "step": step}, 0
            else:
                stale += 1
            if patience is not None and stale >= patience:
                return best
    return best


def summary(rows: list[dict[str, Any]], horizons: list[int]) -> str:
    """Markdown: val / test MSE per configuration and horizon, then each split's selection."""
    configs = sorted({(r["lookback"], r["revin"]) for r in rows})
    at = {(r["lookback"], r["revin"], r["horizon"]): r for r in rows}
    lines = ["| lookback | RevIN | " + " | ".join(f"H={h} val / test" for h in horizons) + " | average val / test |",
             "|" + " --- |" * (len(horizons) + 3)]
    for lookback, revin in configs:
        cells = [at.get((lookback, revin, h)) for h in horizons]
        done = [c for c in cells if c]
        mean = (f"{sum(c['val_mse'] for c in done) / len(done):.3f}"
                f" / {sum(c['test_mse'] for c in done) / len(done):.3f}"
                if len(done) == len(horizons) else "-")
        lines.append(f"| {lookback} | {'on' if revin else 'off'} | "
                     + " | ".join(f"{c['val_mse']:.3f} / {c['test_mse']:.3f}" if c else "-" for c in cells)
                     + f" | {mean} |")
    for split in ("val", "test"):
        picks = [min((r for r in rows if r["horizon"] == h), key=lambda r: r[f"{split}_mse"]) for h in horizons]
        label = "validation selects" if split == "val" else "test would select (not a selection: the disagreement)"
        lines.append(f"\n{label}: "
                     + ", ".join(f"H={p['horizon']} L={p['lookback']} RevIN {'on' if p['revin'] else 'off'}"
                                 f" (test {p['test_mse']:.3f})" for p in picks)
                     + f"; average test MSE {sum(p['test_mse'] for p in picks) / len(picks):.3f}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("titans", "transformer", "dlinear"), default="dlinear")
    parser.add_argument("--lookbacks", nargs="+", type=int, default=None,
                        help="default: 96 336 720 to train; every lookback in --out with --report")
    parser.add_argument("--revin", nargs="+", choices=("off", "on"), default=["off", "on"])
    parser.add_argument("--horizons", nargs="+", type=int, choices=(96, 192, 336, 720), default=[96, 192, 336, 720])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=REPO / "data" / "timeseries" / "ETTh1.csv")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "forecasting_sweep.jsonl")
    parser.add_argument("--report", action="store_true",
                        help="train nothing: print the table of the --model's rows already in --out")
    args = parser.parse_args(argv)
    if args.report:
        rows = [json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r["model"] == args.model and r["lookback"] in (args.lookbacks or [r["lookback"]])
                and r["horizon"] in args.horizons and ("on" if r["revin"] else "off") in args.revin]
        print(summary(rows, sorted({r["horizon"] for r in rows})))
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for lookback, revin, horizon in product(args.lookbacks or [96, 336, 720], args.revin, args.horizons):
        result = train_one(args.model, lookback, horizon, revin == "on", args.seed, args.data)
        row = {"model": args.model, "lookback": lookback, "revin": revin == "on", "horizon": horizon,
               "seed": args.seed, **result}
        rows.append(row)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{args.model} L={lookback} RevIN {revin} H={horizon}: val MSE {row['val_mse']:.4f} "
              f"test MSE {row['test_mse']:.4f} MAE {row['test_mae']:.4f} ({row['seconds']:.0f}s)", flush=True)
    print(f"\n{args.model} on {args.data.name}, seed {args.seed}, MSE on the standardised scale:\n")
    print(summary(rows, args.horizons))


if __name__ == "__main__":
    main()
