"""NIAH table: train each variant's recipe for the same number of steps (capped in wall time),
then score exact match by context length x needle depth through the streaming state, with the
seconds and samples per cell.

    OMP_NUM_THREADS=1 python experiments/longctx/niah.py --variants mac swa lmm --steps 2000 \\
        --train-minutes 45 --lengths 128 256 512 1024 2048 --samples 8 --out runs/longctx/bench
    python experiments/longctx/niah.py --checkpoint runs/longctx/mac/csv/version_0/checkpoints/last.ckpt \\
        --lengths 1024 4096 16384 65536 262144 1048576 --samples 8 8 4 2 1 1 --batch 1 --eval-chunk 4096

For each variant: ``titans fit -c recipes/longctx/<variant>.yaml`` in a fresh process for
``--steps`` steps (the recipe's cosine schedule follows them), stopped earlier by
``--trainer.max_time`` if ``--train-minutes`` run out (no validation during the fit, so all the
time trains), then the test grid of the recipe's DataModule (its task, needle and haystack) at
``--lengths`` (``--samples`` per cell: one count, or one per length) is read ``--eval-chunk``
tokens at a time (default: the checkpoint's ``eval_chunk``) from the last checkpoint and answered
greedily (``NeedleTask.answer``). ``--skip-fit`` scores the newest existing runs; ``--checkpoint``
scores one given checkpoint (in its ``titans fit`` run folder) and trains nothing; ``--haystack``
tests on another haystack than the run's (``text``: the shipped Shakespeare, up to ~505K tokens).
The transformer (its KV cache grows with the context) is read only up to
``--max-full-attention-length`` tokens; longer lengths are marked "not run (memory)".

Prints, per variant, the steps and minutes trained, the markdown table (exact match % and the
seconds per cell: reading and decoding, a batch's time shared equally by its samples; the samples
per cell), the chance level of an exact match and the teacher-forced answer loss per length (ln 10
= 2.303 nats per digit is a uniform guess); then one summary row per variant (accuracy by length,
with the length as a multiple of the attention window). Results are merged into
``<out>/niah.json`` (a later call with other variants adds to it), with the table in
``<out>/niah_<name>.md`` and a heatmap in ``<out>/niah_<name>.png``. Variants train one after
another unless ``--parallel`` (one process each, side by side).
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
from titans_lightning.tasks.longctx import NeedleAccuracy, exact_match, format_timed_table, heatmap

REPO = Path(__file__).resolve().parents[2]
CHANCE = {"number": 10.0, "word": None, "uuid": 16.0}  # symbols per answer character, for the chance level
DATA_KEYS = ("needle", "needle_len", "haystack", "haystack_path", "train_length", "train_lengths", "data_seed",
             "task", "num_needles", "num_values")


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


def training_summary(checkpoint: Path) -> dict:
    """Steps trained, wall minutes of the fit (from the config the CLI saves as the fit starts to
    the checkpoint), the mean of the last five logged training losses, the backbone variant and
    its attention window (MAC: its segment), read from the checkpoint's run folder."""
    run = checkpoint.parent.parent
    logged = (run / "metrics.csv").exists()  # written once a step is logged
    tail = list(series(read_metrics(run), "train/loss").values())[-5:] if logged else []
    steps = load_checkpoint(checkpoint)["global_step"]
    backbone = yaml.safe_load((run / "config.yaml").read_text())["model"]["init_args"]["backbone"]
    # the attention span a needle must be carried past: MAC's segment, the sliding window; none for
    # the memory alone (LMM) or full attention (Transformer++)
    window = {"mac": backbone["segment_len"], "mag": backbone["window"], "mal": backbone["window"],
              "swa": backbone["window"]}.get(backbone["variant"])
    minutes = (checkpoint.stat().st_mtime - (run / "config.yaml").stat().st_mtime) / 60
    return {"steps": steps, "final_train_loss": sum(tail) / len(tail) if tail else float("nan"),
            "fit_minutes": minutes, "window": window, "variant": backbone["variant"]}


def runnable(variant: str, lengths: list[int], max_full_attention: int) -> tuple[list[int], list[int]]:
    """``(lengths to evaluate, lengths not run)``: full attention (the transformer, whose KV cache
    grows with the context) stops at ``max_full_attention`` tokens; every other variant runs all."""
    if variant != "transformer":
        return list(lengths), []
    return [n for n in lengths if n <= max_full_attention], [n for n in lengths if n > max_full_attention]


def test_grid(checkpoint: Path, lengths: list[int], depths: list[float], samples: list[int],
              batch: int, haystack: Optional[str] = None) -> NeedleDataModule:
    """The test grid of the run's DataModule (its task, needle, haystack unless ``haystack`` names
    another) at ``lengths``, with ``samples[i]`` samples per cell of ``lengths[i]``."""
    config = yaml.safe_load((checkpoint.parent.parent / "config.yaml").read_text())["data"]["init_args"]
    config = {**config, "haystack": haystack or config.get("haystack", "noise")}
    dm = NeedleDataModule(**{k: config[k] for k in DATA_KEYS if k in config}, eval_lengths=lengths[:1],
                          test_lengths=lengths, test_samples_per_cell=samples, depths=depths, batch_size=batch)
    dm.setup("test")
    return dm


def score(task, dm: NeedleDataModule, device: str) -> tuple[NeedleAccuracy, dict[int, list[torch.Tensor]]]:
    """Exact match and seconds per sample of every test batch, and the answer loss by length."""
    metric, nll_by_length = NeedleAccuracy(), {}
    for item in dm.test_dataloader():
        item = {k: v.to(device) for k, v in item.items()}
        start = time.perf_counter()
        generated, nll = task.answer(item)
        if generated.is_cuda:
            torch.cuda.synchronize(generated.device)
        seconds = torch.full((generated.shape[0],), (time.perf_counter() - start) / generated.shape[0])
        metric.update(exact_match(generated, item["answer"]).cpu(), item["length"].cpu(), item["depth"].cpu(), seconds)
        nll_by_length.setdefault(int(item["length"][0]), []).append(nll.mean(1).cpu())
    return metric, nll_by_length


def evaluate(checkpoint: Path, variant: str, args: argparse.Namespace) -> dict:
    """Exact-match grid of ``checkpoint`` on its run's test needles at ``args.lengths`` (the
    transformer only up to ``args.max_full_attention_length``), timed per cell."""
    lengths, not_run = runnable(variant, args.lengths, args.max_full_attention_length)
    per_length = dict(zip(args.lengths, args.samples * len(args.lengths) if len(args.samples) == 1 else args.samples))
    samples = [per_length[n] for n in lengths]
    task = load_lm(checkpoint, args.device)
    task.eval_chunk = args.eval_chunk or task.eval_chunk
    result = {"eval_chunk": task.eval_chunk, "not_run": not_run, "lengths": [], "depths": args.depths,
              "accuracy": [], "counts": [], "seconds": [], "overall": float("nan"), "eval_seconds": 0.0,
              "answer_nll_by_length": {}}
    if lengths:
        dm = test_grid(checkpoint, lengths, args.depths, samples, args.batch, args.haystack)
        start = time.perf_counter()
        metric, nll_by_length = score(task, dm, args.device)
        lengths_, depths_, accuracy, counts = metric.table()
        result.update(task=dm.task, haystack=dm.haystack_kind, needle=dm.needle, needle_len=dm.needle_len,
                      lengths=lengths_, depths=depths_,
                      accuracy=accuracy.tolist(), counts=counts.tolist(), seconds=metric.seconds_table().tolist(),
                      overall=float(metric.compute()), eval_seconds=time.perf_counter() - start,
                      values=dm.spec.num_values if dm.task == "multivalue" else 1,
                      answer_nll_by_length={n: float(torch.cat(v).mean()) for n, v in nll_by_length.items()})
    result["table"] = format_timed_table(result["lengths"], result["depths"], torch.tensor(result["accuracy"]),
                                         torch.tensor(result["counts"]), torch.tensor(result["seconds"]), not_run)
    return result


def summary_table(results: dict[str, dict]) -> str:
    """Markdown: one row per variant, exact match (%, every depth) per context length, with the
    length as a multiple of the variant's attention window (segment for MAC; none for LMM and
    Transformer++); ``not run (memory)`` where full attention was not read that far."""
    lengths = sorted({n for r in results.values() for n in [*r["lengths"], *r.get("not_run", [])]})
    head = "| variant | steps | minutes | " + " | ".join(f"{n:,}" for n in lengths) + " |"
    rows = [head, "|---|---:|---:|" + "---:|" * len(lengths)]
    for name, r in results.items():
        by_length = dict(zip(r["lengths"], r["accuracy"]))
        times = (lambda n, r=r: f" ({n // r['window']}x)") if r["window"] else (lambda n: "")
        cells = [f"{100 * sum(by_length[n]) / len(by_length[n]):.1f}{times(n)}" if n in by_length
                 else "not run (memory)" if n in r.get("not_run", []) else "-" for n in lengths]
        rows.append(f"| {name} | {r['steps']} | {r['fit_minutes']:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["mac", "swa"])
    parser.add_argument("--steps", type=int, default=None, help="training steps per variant (default: the recipe's)")
    parser.add_argument("--train-minutes", type=float, default=45.0, help="wall-time cap of each fit")
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
    parser.add_argument("--depths", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--samples", type=int, nargs="+", default=[8],
                        help="samples per (length, depth) cell: one count, or one per length")
    parser.add_argument("--batch", type=int, default=8, help="samples per evaluation batch")
    parser.add_argument("--eval-chunk", type=int, default=None, help="tokens per backbone call (default: the task's)")
    parser.add_argument("--max-full-attention-length", type=int, default=16384,
                        help="longest context the transformer reads (its KV cache grows); longer: not run")
    parser.add_argument("--haystack", choices=["noise", "text"], default=None,
                        help="the test haystack (default: the run's own); text: the shipped Shakespeare (~505K tokens)")
    parser.add_argument("--device", default="cpu", help="where the checkpoints are evaluated: cpu, cuda, ...")
    parser.add_argument("--out", type=Path, default=Path("runs/longctx/bench"))
    parser.add_argument("--parallel", action="store_true", help="train the variants side by side")
    parser.add_argument("--skip-fit", action="store_true", help="evaluate the newest existing runs only")
    parser.add_argument("--checkpoint", type=Path, default=None, help="evaluate this checkpoint only (no fit)")
    parser.add_argument("--name", default=None, help="its name in the results (default: its backbone variant)")
    parser.add_argument("fit_args", nargs="*", help="extra `titans fit` options after --, e.g. -- --data.needle word")
    args = parser.parse_args(argv)
    if len(args.samples) not in (1, len(args.lengths)) or min(args.samples) < 1:
        parser.error(f"--samples: one count >= 1 or one per length ({len(args.lengths)}), got {args.samples}")
    return args


def report(name: str, r: dict, out: Path) -> None:
    """Print one evaluation; write its table (``niah_<name>.md``) and heatmap (``niah_<name>.png``)."""
    symbols = CHANCE.get(r.get("needle"))
    chance = f"{symbols ** -(r['needle_len'] * r['values']):.0e}" if symbols and r["lengths"] else "n/a"
    head = (f"## {name}: {r.get('task', 'single')} task, {r.get('haystack', 'noise')} haystack, {r['steps']} steps "
            f"in {r['fit_minutes']:.1f} min (last train loss {r['final_train_loss']:.3f}), grid evaluated in "
            f"{r['eval_seconds']:.0f} s reading {r['eval_chunk']} tokens per call, overall "
            f"{100 * r['overall']:.1f}% (chance {chance})")
    losses = ", ".join(f"{int(n):,}: {v:.3f}" for n, v in r["answer_nll_by_length"].items())
    print(f"\n{head}\n{r['table']}\nanswer loss per token (nats) by length: {losses}", flush=True)
    (out / f"niah_{name}.md").write_text(f"{head}\n\nexact match % (seconds per cell)\n\n{r['table']}\n")
    if r["lengths"]:
        figure = heatmap(r["lengths"], r["depths"], torch.tensor(r["accuracy"]),
                         f"{name}: {r['task']} NIAH exact match after {r['steps']} steps")
        figure.savefig(out / f"niah_{name}.png", dpi=100)


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.checkpoint is None and not args.skip_fit:
        with ThreadPoolExecutor(len(args.variants) if args.parallel else 1) as pool:
            list(pool.map(lambda v: fit(v, args.out, args.train_minutes, args.steps, args.fit_args), args.variants))
    if args.checkpoint is not None:
        targets = [(args.name, args.checkpoint)]
    else:
        targets = [(v, newest_version(args.out / v / "csv") / "checkpoints" / "last.ckpt") for v in args.variants]
    args.out.mkdir(parents=True, exist_ok=True)
    saved = args.out / "niah.json"
    results = json.loads(saved.read_text()) if saved.exists() else {}
    for name, checkpoint in targets:
        summary = training_summary(checkpoint)
        name = name or summary["variant"]
        results[name] = {**summary, **evaluate(checkpoint, summary["variant"], args), "run": str(checkpoint)}
        report(name, results[name], args.out)
        saved.write_text(json.dumps(results, indent=1))  # after every variant: a later failure keeps it
    print("\n## exact match (%) by context length (multiple of the attention window)\n" + summary_table(results))


if __name__ == "__main__":
    main()
