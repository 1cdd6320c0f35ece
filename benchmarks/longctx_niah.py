"""S-NIAH table: train each variant's recipe for a fixed wall time, then score exact match by
context length x needle depth through the streaming state.

    OMP_NUM_THREADS=1 python benchmarks/longctx_niah.py --variants mac swa --train-minutes 5 \\
        --lengths 128 256 1024 --samples 8 --out runs/longctx/bench

For each variant: ``titans fit -c recipes/longctx/<variant>.yaml`` in a fresh process, stopped by
``--trainer.max_time`` (no validation during the fit, so all the time trains), then the test grid of
the recipe's DataModule at ``--lengths`` is read ``eval_chunk`` tokens at a time from the last
checkpoint and answered greedily (``NeedleTask.answer``). Prints, per variant, the steps trained,
the evaluation time, the markdown accuracy table, the chance level of an exact match and the
teacher-forced answer loss per length (ln 10 = 2.303 nats per digit is a uniform guess), and
writes everything to ``<out>/niah.json`` and a heatmap per variant to ``<out>/niah_<variant>.png``. Variants train one after another unless ``--parallel``
(one process each, side by side: on a shared machine each gets its own core share).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from datamodules.niah import NeedleDataModule
from titans_lightning.streaming import load_lm
from titans_lightning.tasks.longctx import NeedleAccuracy, exact_match, format_table, heatmap

REPO = Path(__file__).resolve().parents[1]
CHANCE = {"number": 10.0, "word": None, "uuid": 16.0}  # symbols per answer character, for the chance level


def fit_command(variant: str, out: Path, minutes: float, extra: list[str]) -> list[str]:
    """``titans fit`` of the variant's recipe for ``minutes`` of wall time, checkpoint at the end."""
    hours, rest = divmod(int(minutes * 60), 3600)
    return [sys.executable, "-m", "titans_lightning.cli", "fit", "-c", str(REPO / f"recipes/longctx/{variant}.yaml"),
            "--trainer.default_root_dir", str(out / variant), "--trainer.max_time",
            f"00:{hours:02d}:{rest // 60:02d}:{rest % 60:02d}", "--trainer.limit_val_batches", "0",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra]


def start_fit(variant: str, out: Path, minutes: float, extra: list[str]) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / f"{variant}_fit.log", "w")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.Popen(fit_command(variant, out, minutes, extra), cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def last_run(out: Path, variant: str) -> Path:
    runs = sorted((out / variant / "csv").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    if not runs:
        raise FileNotFoundError(f"no run of {variant} under {out / variant / 'csv'}; see {out / f'{variant}_fit.log'}")
    return runs[-1]


def training_summary(run: Path) -> dict:
    """Steps trained and the mean of the last five logged training losses."""
    with open(run / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    tail = [float(r["train/loss"]) for r in rows[-5:]]
    return {"steps": int(rows[-1]["step"]) + 1 if rows else 0, "final_train_loss": sum(tail) / max(len(tail), 1)}


def evaluate(run: Path, lengths: list[int], depths: list[float], samples: int, batch: int) -> dict:
    """Exact-match grid of the run's last checkpoint on the recipe's test needles at ``lengths``."""
    task = load_lm(run / "checkpoints" / "last.ckpt", "cpu")
    config = yaml.safe_load((run / "config.yaml").read_text())["data"]["init_args"]
    keep = ("needle", "needle_len", "haystack", "haystack_path", "train_length", "data_seed")
    dm = NeedleDataModule(**{k: config[k] for k in keep if k in config}, eval_lengths=lengths, depths=depths,
                          samples_per_cell=samples, batch_size=batch)
    dm.setup("test")
    metric, nll_by_length, start = NeedleAccuracy(), {}, time.perf_counter()
    for item in dm.test_dataloader():
        generated, nll = task.answer(item)
        metric.update(exact_match(generated, item["answer"]), item["length"], item["depth"])
        nll_by_length.setdefault(int(item["length"][0]), []).append(nll.mean(1))
    lengths_, depths_, accuracy, counts = metric.table()
    return {"needle": dm.needle, "needle_len": dm.needle_len, "lengths": lengths_, "depths": depths_,
            "accuracy": accuracy.tolist(), "counts": counts.tolist(), "overall": float(metric.compute()),
            "eval_seconds": time.perf_counter() - start,
            "answer_nll_by_length": {n: float(torch.cat(v).mean()) for n, v in nll_by_length.items()}, "table": format_table(lengths_, depths_, accuracy)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["mac", "swa"])
    parser.add_argument("--train-minutes", type=float, default=5.0)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 1024])
    parser.add_argument("--depths", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--samples", type=int, default=8, help="samples per (length, depth) cell")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("runs/longctx/bench"))
    parser.add_argument("--parallel", action="store_true", help="train the variants side by side")
    parser.add_argument("--skip-fit", action="store_true", help="evaluate the newest existing runs only")
    parser.add_argument("fit_args", nargs="*", help="extra `titans fit` options after --, e.g. -- --data.needle word")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if not args.skip_fit:
        procs = {}
        for variant in args.variants:
            procs[variant] = start_fit(variant, args.out, args.train_minutes, args.fit_args)
            if not args.parallel:
                procs[variant].wait()
        for variant, proc in procs.items():
            if proc.wait():
                raise SystemExit(f"{variant}: titans fit failed, see {args.out / f'{variant}_fit.log'}")
    results = {}
    for variant in args.variants:
        run = last_run(args.out, variant)
        results[variant] = {**training_summary(run), **evaluate(run, args.lengths, args.depths, args.samples, args.batch),
                            "run": str(run), "train_minutes": args.train_minutes}
        r = results[variant]
        symbols = CHANCE.get(r["needle"])
        chance = f"{symbols ** -r['needle_len']:.0e}" if symbols else "n/a"
        print(f"\n## {variant}: {r['steps']} steps in {args.train_minutes:g} min (last train loss "
              f"{r['final_train_loss']:.3f}), grid evaluated in {r['eval_seconds']:.0f} s, overall "
              f"{100 * r['overall']:.1f}% (chance {chance})\n{r['table']}\nanswer loss per token (nats) by length: "
              + ", ".join(f"{n:,}: {v:.3f}" for n, v in r["answer_nll_by_length"].items()), flush=True)
        figure = heatmap(r["lengths"], r["depths"], torch.tensor(r["accuracy"]),
                         f"{variant}: S-NIAH exact match after {r['steps']} steps")
        figure.savefig(args.out / f"niah_{variant}.png", dpi=100)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "niah.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
