"""Splice-junction classification: Titans LMM vs the transformer baseline at equal size.

Trains each recipe with ``titans fit``, tests its best checkpoint (highest ``val/mcc``) with
``titans test`` on the held-out stratified test split (638 of 3,190 sequences), and prints test
accuracy, MCC, macro-F1 and AUROC side by side, per seed and as mean +- standard deviation.
Each run is a fresh process on one thread; the contenders alternate within every seed.

    OMP_NUM_THREADS=1 python experiments/dna/splice.py                     # from scratch, both, seed 0
    OMP_NUM_THREADS=1 python experiments/dna/splice.py --seeds 0 1 2       # mean +- std over seeds
    OMP_NUM_THREADS=1 python experiments/dna/splice.py --only --pretrain   # pretrain -> finetune only
    OMP_NUM_THREADS=1 python experiments/dna/splice.py --max-epochs 1 --out runs/dna-bench-quick

The recipes' own settings are used unless an option here overrides them; the command lines run
are printed so every number can be reproduced by hand.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from titans_lightning.runs import QUIET, last_values, newest_version, read_metrics, run_titans
from titans_lightning.safe_load import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
CONTENDERS = {"titans-lmm": "recipes/dna/splice_lmm.yaml", "transformer": "recipes/dna/splice_transformer.yaml"}
METRICS = ("accuracy", "mcc", "macro_f1", "auroc")


def titans(args: list[str], log: Path) -> float:
    """Run ``titans <args>`` in a fresh process (one thread), output to ``log``; wall seconds."""
    print("  titans " + " ".join(args), flush=True)
    start = time.perf_counter()
    run_titans(args, cwd=REPO, log=log)
    return time.perf_counter() - start


def newest_values(root: Path, prefix: str) -> dict[str, float]:
    """The last ``<prefix>/*`` values of the newest run under ``root``."""
    return last_values(read_metrics(newest_version(root / "csv")), prefix)


def best_checkpoint(run: Path) -> Path:
    (best,) = (run / "checkpoints").glob("best-*.ckpt")
    return best


def fit_and_test(name: str, recipe: str, out: Path, extra: list[str]) -> dict[str, float]:
    """Train ``recipe``, test its best checkpoint; the test metrics, fit wall time, parameters.

    The result is also written to ``<run>/result.json``; a run that has one is not repeated
    (delete its folder to train it again), so an interrupted benchmark resumes where it stopped.
    """
    root = out / name
    done = root / "result.json"
    if done.is_file():
        print(f"{name}: reusing {done}", flush=True)
        return json.loads(done.read_text())
    root.parent.mkdir(parents=True, exist_ok=True)
    print(f"{name}: {recipe}", flush=True)
    common = ["-c", recipe, "--trainer.default_root_dir", str(root), *QUIET, *extra]
    fit_seconds = titans(["fit", *common], root.with_suffix(".fit.log"))
    best = best_checkpoint(newest_version(root / "csv"))
    titans(["test", *common, "--ckpt_path", str(best)], root.with_suffix(".test.log"))
    result = newest_values(root, "test")
    result.update(fit_seconds=fit_seconds, best=str(best.relative_to(out)), params=parameters(best))
    done.write_text(json.dumps(result, indent=1))
    print("  test " + ", ".join(f"{m} {result[m]:.4f}" for m in METRICS) + f"; fit {fit_seconds:.0f} s", flush=True)
    return result


def parameters(checkpoint: Path) -> int:
    """Trainable parameters of the backbone and head stored in a checkpoint."""
    state = load_checkpoint(checkpoint)["state_dict"]
    return sum(v.numel() for k, v in state.items() if k.startswith(("backbone.", "head.")))


def pretrain(out: Path, extra: list[str]) -> Path:
    """Pretrain on the shipped FASTA (the splice training split only); the last checkpoint."""
    root = out / "pretrain"
    root.parent.mkdir(parents=True, exist_ok=True)
    print("pretrain: recipes/dna/pretrain.yaml", flush=True)
    titans(["fit", "-c", "recipes/dna/pretrain.yaml", "--trainer.default_root_dir", str(root), *QUIET, *extra],
           root.with_suffix(".fit.log"))
    values = newest_values(root, "val")
    print(f"  val/bpn {values.get('bpn', float('nan')):.4f} bits per nucleotide", flush=True)
    return root / "checkpoints" / "last.ckpt"


def table(rows: list[tuple[str, dict[str, float]]]) -> str:
    head = f"{'model':<22}{'seed':>5}{'params':>9}" + "".join(f"{m:>10}" for m in METRICS) + f"{'fit s':>8}"
    lines = [f"{name:<22}{int(r['seed']):>5}{int(r['params']):>9,}" + "".join(f"{r[m]:>10.4f}" for m in METRICS)
             + f"{r['fit_seconds']:>8.0f}" for name, r in rows]
    return "\n".join([head, *lines])


def summary(rows: list[tuple[str, dict[str, float]]]) -> str:
    """Mean and (with several seeds) sample standard deviation of every metric, per model."""
    lines = []
    for name in dict.fromkeys(n for n, _ in rows):
        runs = [r for n, r in rows if n == name]
        cells = []
        for metric in METRICS:
            values = [r[metric] for r in runs]
            spread = f" +- {statistics.stdev(values):.4f}" if len(values) > 1 else ""
            cells.append(f"{metric} {statistics.mean(values):.4f}{spread}")
        lines.append(f"{name:<22}({len(runs)} seed{'s' * (len(runs) > 1)}) " + ", ".join(cells))
    return "\n".join(lines)


def verdict(rows: list[tuple[str, dict[str, float]]]) -> str:
    """The issue's targets on the mean test accuracy over seeds."""
    mean = {name: statistics.mean(r["accuracy"] for n, r in rows if n == name)
            for name in dict.fromkeys(n for n, _ in rows)}
    mcc = {name: statistics.mean(r["mcc"] for n, r in rows if n == name) for name in mean}
    lmm, transformer = mean["titans-lmm"], mean["transformer"]
    return (f"Titans LMM - transformer (means): accuracy {lmm - transformer:+.4f}, "
            f"MCC {mcc['titans-lmm'] - mcc['transformer']:+.4f}; "
            f"targets: LMM accuracy >= 0.95 {'met' if lmm >= 0.95 else 'NOT met'} ({lmm:.4f}), "
            f">= transformer {'met' if lmm >= transformer else 'NOT met'} ({transformer:.4f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/dna-bench", help="folder of the runs (relative to the repo)")
    parser.add_argument("--max-epochs", type=int, default=None, help="override the recipes' max_epochs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seed_everything of each round")
    parser.add_argument("--pretrain", action="store_true", help="also pretrain the LMM and fine-tune it")
    parser.add_argument("--only", choices=list(CONTENDERS), nargs="*", default=list(CONTENDERS),
                        help="contenders trained from scratch (none: only the --pretrain path)")
    args = parser.parse_args()
    out = (REPO / args.out).resolve()
    epochs = ["--trainer.max_epochs", str(args.max_epochs)] if args.max_epochs else []
    rows = []
    for seed in args.seeds:  # interleaved: A B A B ..., so that load drifts hit both alike
        extra = [*epochs, "--seed_everything", str(seed)]
        for name in args.only:
            rows.append((name, {**fit_and_test(name, CONTENDERS[name], out / f"seed{seed}", extra), "seed": seed}))
        if args.pretrain:
            checkpoint = pretrain(out / f"seed{seed}", ["--seed_everything", str(seed)])
            finetuned = fit_and_test("titans-lmm-finetuned", "recipes/dna/finetune.yaml", out / f"seed{seed}",
                                     [*extra, "--model.init_args.pretrained", str(checkpoint)])
            rows.append(("titans-lmm-finetuned", {**finetuned, "seed": seed}))
    print("\nsplice test split (638 sequences), best checkpoint by val/mcc; params = backbone + head")
    print(table(rows) + "\n\n" + summary(rows))
    if {"titans-lmm", "transformer"} <= {n for n, _ in rows}:
        print(verdict(rows))


if __name__ == "__main__":
    main()
