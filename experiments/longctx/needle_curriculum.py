"""RULER's multi-key (MK-NIAH) or multi-value (MV-NIAH) needles by a needle-count curriculum.

    OMP_NUM_THREADS=1 python experiments/longctx/needle_curriculum.py --variant mac --seed 1 --task multikey \\
        --start runs/longctx/two_stage/mac_cap1e-4_both-seed1/stage1/csv/version_0/checkpoints/last.ckpt

From a single-needle model (``--start``: e.g. the 128-token stage of ``two_stage.py``), one
``titans fit`` of ``recipes/longctx/<variant>.yaml`` + ``recipes/longctx/long_memory.yaml`` per
needle count of ``--counts`` (default 1, 2, 4: ``num_needles`` for multi-key, ``num_values`` for
multi-value), each started from the one before (``--model.pretrained``, a fresh optimizer and
schedule), at ``--lengths`` tokens (default 384, 512, 512) for ``--steps`` (300, 500, 800), batch
``--batch`` (8), validated at 512 / 1,024 / 2,048 tokens (4 samples per cell) at its end.
``--set KEY=VALUE`` overrides reach every stage. Stage ``n<count>`` runs in ``<out>/n<count>``; one
whose folder holds a last checkpoint of all its steps is not run again, so an interrupted call
resumes. ``<out>/curriculum.json`` gets each stage's checkpoint, minutes and validation (exact
match % by length). Test the last stage's checkpoint with ``niah.py --checkpoint`` (its run's
task, needle count and haystack, or ``--haystack``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):  # run as a script: its sibling two_stage.py is importable from here
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from two_stage import REPO, fit_stage, titans
else:
    from .two_stage import REPO, fit_stage, titans
from titans_lightning.runs import QUIET, Runner, cli_overrides

COUNT_KEY = {"multikey": "num_needles", "multivalue": "num_values"}


def stage_args(a: argparse.Namespace, count: int, length: int, steps: int, root: Path, start: Path) -> list[str]:
    """The ``titans fit`` arguments of the stage with ``count`` needles (or values)."""
    recipes = REPO / "recipes" / "longctx"
    return ["-c", str(recipes / f"{a.variant}.yaml"), "-c", str(recipes / "long_memory.yaml"),
            "--trainer.default_root_dir", str(root), "--seed_everything", str(a.seed),
            "--model.pretrained", str(start), "--data.task", a.task, f"--data.{COUNT_KEY[a.task]}", str(count),
            "--data.train_length", str(length), "--data.batch_size", str(a.batch),
            "--data.eval_lengths", "[512, 1024, 2048]", "--data.samples_per_cell", "4",
            "--trainer.max_steps", str(steps), "--trainer.val_check_interval", str(steps),
            "--trainer.num_sanity_val_steps", "0", *QUIET, *a.set]


def run_curriculum(a: argparse.Namespace, run: Optional[Runner] = None) -> dict:
    """Every stage in turn; ``{"n<count>": {checkpoint, minutes, val}}`` (also in ``<out>/curriculum.json``)."""
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    run = run or partial(titans, log=out / "commands.log")
    start, stages = Path(a.start), {}
    for count, length, steps in zip(a.counts, a.lengths, a.steps):
        root = out / f"n{count}"
        stages[f"n{count}"] = fit_stage(run, stage_args(a, count, length, steps, root, start), root)
        start = REPO / stages[f"n{count}"]["checkpoint"]  # an absolute path stays as it is
    summary = {"variant": a.variant, "seed": a.seed, "task": a.task, "start": str(a.start), "counts": a.counts,
               "lengths": a.lengths, "steps": a.steps, "batch": a.batch, "overrides": " ".join(a.set),
               "stages": stages}
    (out / "curriculum.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variant", default="mac", choices=["mac", "mag", "mal", "lmm"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", default="multikey", choices=sorted(COUNT_KEY))
    p.add_argument("--start", required=True, help="the single-needle checkpoint the first stage starts from")
    p.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4], help="needles (or values) per stage")
    p.add_argument("--lengths", type=int, nargs="+", default=[384, 512, 512], help="training tokens per stage")
    p.add_argument("--steps", type=int, nargs="+", default=[300, 500, 800], help="optimizer steps per stage")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra overrides for every stage")
    p.add_argument("--out", default=None, help="default: runs/longctx/needle_count/<variant>-<task>-seed<seed>")
    a = p.parse_args(argv)
    if not len(a.counts) == len(a.lengths) == len(a.steps):
        p.error(f"--counts, --lengths and --steps need one value per stage, got {a.counts}, {a.lengths}, {a.steps}")
    a.set = cli_overrides(a.set)
    a.out = a.out or str(REPO / "runs" / "longctx" / "needle_count" / f"{a.variant}-{a.task}-seed{a.seed}")
    return a


def main(argv: Optional[Sequence[str]] = None) -> None:
    summary = run_curriculum(parse_args(argv))
    for name, stage in summary["stages"].items():
        print(f"{name}: {stage['minutes']} min, validation {stage['val']}", flush=True)


if __name__ == "__main__":
    main()
