"""S-NIAH table: train each variant's recipe for the same number of steps (capped in wall time),
then score exact match by context length x needle depth through the streaming state.

    OMP_NUM_THREADS=1 python experiments/longctx/niah.py --variants mac swa lmm --steps 2000 \\
        --train-minutes 45 --lengths 128 256 512 1024 2048 --samples 8 --out runs/longctx/bench

For each variant: ``titans fit -c recipes/longctx/<variant>.yaml`` in a fresh process for
``--steps`` steps (the recipe's cosine schedule follows them), stopped earlier by
``--trainer.max_time`` if ``--train-minutes`` run out (no validation during the fit, so all the
time trains), then the test grid of the recipe's DataModule at ``--lengths`` is read
``eval_chunk`` tokens at a time from the last checkpoint and answered greedily
(``NeedleTask.answer``). Prints, per variant, the steps and minutes trained, the evaluation time,
the markdown accuracy table, the chance level of an exact match and the teacher-forced answer loss
per length (ln 10 = 2.303 nats per digit is a uniform guess); then one summary row per variant
(accuracy by length, with the length as a multiple of the attention window). Results are merged
into ``<out>/niah.json`` (a later call with other variants adds to it, ``--skip-fit`` re-scores),
with a heatmap per variant in ``<out>/niah_<variant>.png``. Variants train one after another
unless ``--parallel`` (one process each, side by side: on a shared machine each gets its own core
share).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import torch
import yaml

from datamodules.text import NeedleDataModule
from titans_lightning.runs import QUIET, newest_version, read_metrics, run_titans, series
from titans_lightning.safe_load import load_checkpoint
from titans_lightning.streaming import load_lm
from titans_lightning.tasks.longctx import NeedleAccuracy, exact_match, format_table, heatmap

REPO = Path(__file__).resolve().parents[2]
CHANCE = {"number": 10.0, "word": None, "uuid": 16.0}  # symbols per answer character, for the chance level


def fit_args(variant: str, out: Path, minutes: float, steps: Optional[int], extra: list[str]) -> list[str]:
    """``titans fit`` of the variant's recipe for ``steps`` steps (None: the recipe's), stopped
    after ``minutes`` of wall time if it is not done by then; checkpoint at the end."""
    hours, rest = divmod(int(minutes * 60), 3600)
    step_args = [] if steps is None else ["--trainer.max_steps", str(steps)]
    return ["fit", "-c", str(REPO / f"recipes/longctx/{variant}.yaml"),
            "--trainer.default_root_dir", str(out / variant), "--trainer.max_time",
            f"00:{hours:02d}:{rest // 60:02d}:{rest % 60:02d}", "--trainer.limit_val_batches", "0",
            *QUIET, *step_args, *extra]


def fit(variant: str, out: Path, minutes: float, steps: Optional[int], extra: list[str]) -> None:
    """One variant's fit in a fresh process, its output in ``<out>/<variant>_fit.log``."""
    out.mkdir(parents=True, exist_ok=True)
    run_titans(fit_args(variant, out, minutes, steps, extra), cwd=REPO, log=out / f"{variant}_fit.log")


def training_summary(run: Path) -> dict:
    """Steps trained, wall minutes of the fit (from the config the CLI saves as the fit starts to
    the last checkpoint), the mean of the last five logged training losses and the attention
    window of the recipe (MAC: its segment)."""
    logged = (run / "metrics.csv").exists()  # written once a step is logged
    tail = list(series(read_metrics(run), "train/loss").values())[-5:] if logged else []
    steps = load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"]
    backbone = yaml.safe_load((run / "config.yaml").read_text())["model"]["init_args"]["backbone"]
    # the attention span a needle must be carried past: MAC's segment, the sliding window; none for
    # the memory alone (LMM) or full attention (Transformer++)
    window = {"mac": backbone["segment_len"], "mag": backbone["window"], "mal": backbone["window"],
              "swa": backbone["window"]}.get(backbone["variant"])
    minutes = ((run / "checkpoints" / "last.ckpt").stat().st_mtime - (run / "config.yaml").stat().st_mtime) / 60
    return {"steps": steps, "final_train_loss": sum(tail) / len(tail) if tail else float("nan"),
            "fit_minutes": minutes, "window": window}


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
            "answer_nll_by_length": {n: float(torch.cat(v).mean()) for n, v in nll_by_length.items()},
            "table": format_table(lengths_, depths_, accuracy)}


def summary_table(results: dict[str, dict]) -> str:
    """Markdown: one row per variant, exact match (%, every depth) per context length, with the
    length as a multiple of the variant's attention window (segment for MAC; none for LMM and
    Transformer++)."""
    lengths = sorted({n for r in results.values() for n in r["lengths"]})
    head = "| variant | steps | minutes | " + " | ".join(f"{n:,}" for n in lengths) + " |"
    rows = [head, "|---|---:|---:|" + "---:|" * len(lengths)]
    for variant, r in results.items():
        by_length = dict(zip(r["lengths"], r["accuracy"]))
        times = (lambda n, r=r: f" ({n // r['window']}x)") if r["window"] else (lambda n: "")
        cells = [f"{100 * sum(by_length[n]) / len(by_length[n]):.1f}{times(n)}" if n in by_length else "-"
                 for n in lengths]
        rows.append(f"| {variant} | {r['steps']} | {r['fit_minutes']:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["mac", "swa"])
    parser.add_argument("--steps", type=int, default=None, help="training steps per variant (default: the recipe's)")
    parser.add_argument("--train-minutes", type=float, default=45.0, help="wall-time cap of each fit")
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
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
        with ThreadPoolExecutor(len(args.variants) if args.parallel else 1) as pool:
            list(pool.map(lambda v: fit(v, args.out, args.train_minutes, args.steps, args.fit_args), args.variants))
    saved = args.out / "niah.json"
    results = json.loads(saved.read_text()) if saved.exists() else {}
    for variant in args.variants:
        run = newest_version(args.out / variant / "csv")
        results[variant] = {**training_summary(run),
                            **evaluate(run, args.lengths, args.depths, args.samples, args.batch), "run": str(run)}
        r = results[variant]
        symbols = CHANCE.get(r["needle"])
        chance = f"{symbols ** -r['needle_len']:.0e}" if symbols else "n/a"
        print(f"\n## {variant}: {r['steps']} steps in {r['fit_minutes']:.1f} min (last train loss "
              f"{r['final_train_loss']:.3f}), grid evaluated in {r['eval_seconds']:.0f} s, overall "
              f"{100 * r['overall']:.1f}% (chance {chance})\n{r['table']}\nanswer loss per token (nats) by length: "
              + ", ".join(f"{n:,}: {v:.3f}" for n, v in r["answer_nll_by_length"].items()), flush=True)
        figure = heatmap(r["lengths"], r["depths"], torch.tensor(r["accuracy"]),
                         f"{variant}: S-NIAH exact match after {r['steps']} steps")
        figure.savefig(args.out / f"niah_{variant}.png", dpi=100)
        saved.write_text(json.dumps(results, indent=1))  # after every variant: a later failure keeps it
    print("\n## exact match (%) by context length (multiple of the attention window)\n" + summary_table(results))


if __name__ == "__main__":
    main()
