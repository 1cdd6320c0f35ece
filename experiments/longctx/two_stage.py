"""Two-stage needle training: short haystacks first, then long ones from that model, then the test grid.

    OMP_NUM_THREADS=1 python experiments/longctx/two_stage.py --variant lmm --decay-init -12 \\
        --stage1-steps 1200 --stage2-steps 400 --seeds 0 1

Per seed, three ``titans`` commands in fresh processes (``recipes/longctx/<variant>.yaml``):

1. ``titans fit`` for ``--stage1-steps`` at the recipe's 128-token haystacks (validation at 128 /
   512 / 2,048 tokens halfway and at the end);
2. ``titans fit`` with the fragment ``recipes/longctx/stage2_2048.yaml`` composed after the
   recipe, ``--model.pretrained <stage 1's last.ckpt>``: ``--stage2-steps`` at ``--stage2-length``
   tokens, batch ``--stage2-batch``, lr ``--stage2-lr`` (20 warm-up steps, cosine), the gradient
   cut every ``--tbptt`` tokens (the state carried across the cut); validation at 2,048 / 4,096 /
   16,384 tokens halfway and at the end (each option's default is the fragment's value);
3. ``titans test`` of stage 2's last checkpoint at ``--test-lengths`` (``--test-samples`` per
   length and depth, depths 0, 0.25, 0.5, 0.75, 1) through the streaming state, with the long
   stage's data settings (the fragment, ``--stage2-length``), so that multi-needle tasks fit.

``--decay-init`` (the forget gate's initial logit, ``memory_init_decay_bias``) and ``--set``
overrides reach all three commands; ``--stage1-set`` ones the short stage only (e.g. its length,
for needles that do not fit in 128 tokens); ``--stage2-set`` ones the long stage and the test of
its model (a model setting given there, such as ``model.backbone.memory_max_decay``, holds for
both). ``--stage1-from NAME`` starts stage 2 from row ``NAME``'s stage 1 (run first if missing), so
stage-2 settings are compared from one start. ``--continue-from NAME`` skips stage 1: the long
stage starts from row ``NAME``'s finished model (its stage 2, same seed), e.g. multi-key needles
trained from a single-needle model; the row's first stage is then ``NAME``'s whole training (its
steps and minutes). A stage whose run folder holds a checkpoint of all
its steps is not run again (one stopped early is), and a seed with a finished row is skipped, so an
interrupted call resumes. Rows go to ``<results>/<name>-seed<N>.json`` (minutes and validation of
each stage, test exact match by length) and the table of every row to ``<results>/results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Optional

import yaml

from titans_lightning.runs import (
    QUIET,
    Runner,
    cli_overrides,
    evaluate_checkpoint,
    read_metrics,
    run_titans,
    series,
)
from titans_lightning.safe_load import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
STAGE2 = REPO / "recipes" / "longctx" / "stage2_2048.yaml"  # the long stage's settings (a recipe fragment)


def titans(args: list[str], log: Path) -> None:
    """``titans *args`` in the repository root, one thread unless set; output appended to ``log``."""
    run_titans(args, cwd=REPO, log=log)


def base_args(a: argparse.Namespace, root: Path, seed: int) -> list[str]:
    """What every command of a seed shares: the variant's recipe, the run folder, seed, gate start."""
    return ["-c", str(REPO / "recipes" / "longctx" / f"{a.variant}.yaml"), "--trainer.default_root_dir", str(root),
            "--seed_everything", str(seed), "--model.backbone.memory_init_decay_bias", str(a.decay_init), *QUIET]


def long_stage_args(common: list[str]) -> list[str]:
    """``common`` (from :func:`base_args`) with the long stage's fragment composed after the recipe."""
    return [*common[:2], "-c", str(STAGE2), *common[2:]]


def stage_args(a: argparse.Namespace, stage: int, root: Path, seed: int, start: Optional[Path]) -> list[str]:
    """The ``titans fit`` arguments of one stage (1: short haystacks; 2: long ones from ``start``)."""
    common = base_args(a, root, seed)
    steps = a.stage1_steps if stage == 1 else a.stage2_steps
    schedule = ["--trainer.max_steps", str(steps), "--trainer.val_check_interval", str(max(1, steps // 2))]
    if stage == 1:
        return [*common, *schedule, "--data.eval_lengths", "[128, 512, 2048]", "--data.samples_per_cell", "4", *a.set,
                *a.stage1_set]
    return [*long_stage_args(common), *schedule, "--model.pretrained", str(start),
            "--data.train_length", str(a.stage2_length), "--data.batch_size", str(a.stage2_batch),
            "--model.optimizer.init_args.lr", str(a.stage2_lr), "--model.tbptt_segment", str(a.tbptt), *a.set,
            *a.stage2_set]


def accuracy_by_length(rows: list[dict[str, str]], prefix: str) -> dict[str, dict[int, float]]:
    """``{length: accuracy %}`` of every ``<prefix>/needle_acc/<length>`` by step (as a string)."""
    keys = {k for r in rows for k in r if k.startswith(f"{prefix}/needle_acc/")}
    keys = sorted(keys, key=lambda k: int(k.split("/")[-1]))
    by_step: dict[str, dict[int, float]] = {}
    for key in keys:
        for step, value in series(rows, key).items():
            by_step.setdefault(str(step), {})[int(key.split("/")[-1])] = round(100 * value, 1)
    return by_step


def finished_checkpoint(root: Path, steps: int) -> Optional[Path]:
    """The newest ``last.ckpt`` under ``root`` that reached ``steps`` optimizer steps, or None (a
    run still going, or stopped early, has a ``last.ckpt`` of fewer steps: not a finished stage)."""
    found = sorted(root.glob("csv/version_*/checkpoints/last.ckpt"), key=lambda p: int(p.parents[1].name[8:]))
    return next((c for c in reversed(found) if load_checkpoint(c, mmap=True).get("global_step", 0) >= steps), None)


def fit_stage(run: Runner, args: list[str], root: Path) -> dict:
    """Run one stage unless its folder holds a finished ``last.ckpt``; its checkpoint, minutes and validation."""
    steps = int(args[args.index("--trainer.max_steps") + 1])
    if finished_checkpoint(root, steps) is None:
        run(["fit", *args])
    checkpoint = finished_checkpoint(root, steps)
    if checkpoint is None:
        raise FileNotFoundError(f"{root}: the stage ended without a last checkpoint at step {steps}")
    version = checkpoint.parents[1]
    config, metrics = version / "config.yaml", version / "metrics.csv"
    minutes = (os.path.getmtime(checkpoint) - os.path.getmtime(config)) / 60 if config.exists() else None
    return {"checkpoint": str(checkpoint.relative_to(REPO) if checkpoint.is_relative_to(REPO) else checkpoint),
            "minutes": None if minutes is None else round(minutes, 1),
            "val": accuracy_by_length(read_metrics(version), "val") if metrics.exists() else {}}


def continued_row(a: argparse.Namespace, seed: int) -> tuple[dict, int]:
    """``(first stage, its steps)`` of a row continued from row ``a.continue_from``'s finished model:
    that row's stage-2 checkpoint, with the minutes and steps of both its stages."""
    path = Path(a.results) / f"{a.continue_from}-seed{seed}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: --continue-from {a.continue_from} needs that row's seed {seed} "
                                f"finished first (two_stage.py --name {a.continue_from} ...)")
    prior = json.loads(path.read_text())
    minutes = [prior[s]["minutes"] for s in ("stage1", "stage2")]
    first = {"checkpoint": prior["stage2"]["checkpoint"], "from_row": a.continue_from,
             "minutes": None if None in minutes else round(sum(minutes), 1), "val": {}}
    return first, prior["stage1_steps"] + prior["stage2_steps"]


def run_seed(a: argparse.Namespace, seed: int, run: Optional[Runner] = None) -> dict:
    """Both stages and the test of one seed; the row (also written under ``a.results``)."""
    work = Path(a.work) / f"{a.name}-seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    run = run or partial(titans, log=work / "commands.log")
    stage1 = Path(a.work) / f"{a.stage1_from or a.name}-seed{seed}" / "stage1"  # shared by rows that name it
    if a.continue_from:
        first, stage1_steps = continued_row(a, seed)
    else:
        first, stage1_steps = fit_stage(run, stage_args(a, 1, stage1, seed, None), stage1), a.stage1_steps
    start = REPO / first["checkpoint"]  # an absolute path stays as it is
    second = fit_stage(run, stage_args(a, 2, work / "stage2", seed, start), work / "stage2")
    checkpoint = REPO / second["checkpoint"]
    test_root = work / "test"
    # with the long stage's data settings, which every task fits
    test_args = [*long_stage_args(base_args(a, test_root, seed)), "--data.train_length", str(a.stage2_length),
                 "--data.test_lengths", json.dumps(a.test_lengths), "--data.test_samples_per_cell",
                 str(a.test_samples), *a.set, *a.stage2_set]
    test = evaluate_checkpoint(run, test_args, checkpoint, test_root)
    row = {"name": a.name, "variant": a.variant, "seed": seed, "decay_init": a.decay_init,
           "stage1_steps": stage1_steps, "stage2_steps": a.stage2_steps, "stage2_length": a.stage2_length,
           "tbptt": a.tbptt, "overrides": " ".join(a.set), "stage1_from": a.stage1_from,
           "continue_from": a.continue_from, "stage1_overrides": " ".join(a.stage1_set),
           "stage2_overrides": " ".join(a.stage2_set), "stage1": first, "stage2": second,
           "test_samples_per_length": 5 * a.test_samples,  # the recipes' five depths
           "test": {str(n): round(100 * test[f"needle_acc/{n}"], 1) for n in a.test_lengths}}
    path = Path(a.results) / f"{a.name}-seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row, indent=1) + "\n")
    return row


def table(results: Path) -> str:
    """Markdown: one line per finished row, test exact match by length, stage minutes."""
    rows = [json.loads(p.read_text()) for p in sorted(results.glob("*-seed*.json"))]
    lengths = sorted({int(n) for r in rows for n in r["test"]})
    head = ["name", "variant", "seed", "decay init", "steps (stage 1 + 2)", "test samples per length",
            *[f"{n:,}" for n in lengths], "minutes (1 + 2)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 5 + "---:|" * (1 + len(lengths)) + "---|"]
    for r in rows:
        cells = [f"{r['test'][str(n)]:g} %" if str(n) in r["test"] else "" for n in lengths]
        minutes = f"{r['stage1']['minutes']} + {r['stage2']['minutes']}"
        lines.append(f"| {r['name']} | {r['variant']} | {r['seed']} | {r['decay_init']:g} | "
                     f"{r['stage1_steps']} + {r['stage2_steps']} | {r.get('test_samples_per_length', '')} | "
                     + " | ".join(cells) + f" | {minutes} |")
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variant", default="lmm", choices=["mac", "mag", "mal", "lmm", "swa", "transformer"])
    p.add_argument("--name", default=None, help="row name (default: <variant>_d<decay init>)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--decay-init", type=float, default=-12.0)
    p.add_argument("--stage1-steps", type=int, default=1200)
    stage2 = yaml.safe_load(STAGE2.read_text())
    model, data = stage2["model"]["init_args"], stage2["data"]["init_args"]
    p.add_argument("--stage1-from", default=None, metavar="NAME",
                   help="start stage 2 from row NAME's stage 1 (run first if missing), to compare stage-2 settings")
    p.add_argument("--continue-from", default=None, metavar="NAME",
                   help="no stage 1: the long stage starts from row NAME's finished model (same seed)")
    p.add_argument("--stage2-steps", type=int, default=stage2["trainer"]["max_steps"])
    p.add_argument("--stage2-length", type=int, default=data["train_length"])
    p.add_argument("--stage2-batch", type=int, default=data["batch_size"])
    p.add_argument("--stage2-lr", type=float, default=model["optimizer"]["init_args"]["lr"])
    p.add_argument("--tbptt", type=int, default=model["tbptt_segment"], help="tokens between gradient cuts in stage 2")
    p.add_argument("--test-lengths", type=int, nargs="+", default=data["test_lengths"])
    p.add_argument("--test-samples", type=int, default=data["test_samples_per_cell"], help="per length and depth")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra overrides for all three commands, e.g. model.backbone.memory_init_lr_bias=-2")
    p.add_argument("--stage1-set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra overrides for stage 1 only, e.g. data.train_length=512")
    p.add_argument("--stage2-set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra overrides for stage 2 and its test, e.g. model.context_loss_weight=0")
    p.add_argument("--results", default=str(REPO / "experiments" / "longctx" / "two_stage"))
    p.add_argument("--work", default="runs/longctx/two_stage")
    a = p.parse_args(argv)
    if a.continue_from and a.stage1_from:
        p.error("--continue-from and --stage1-from both name the long stage's start: give one")
    a.name = a.name or f"{a.variant}_d{a.decay_init:g}"
    a.set, a.stage2_set = cli_overrides(a.set), cli_overrides(a.stage2_set, "--stage2-set")
    a.stage1_set = cli_overrides(a.stage1_set, "--stage1-set")
    a.work = str(REPO / a.work) if not Path(a.work).is_absolute() else a.work
    return a


def main(argv: Optional[Sequence[str]] = None) -> None:
    a = parse_args(argv)
    for seed in a.seeds:
        if (Path(a.results) / f"{a.name}-seed{seed}.json").exists():
            print(f"{a.name} seed {seed}: finished row kept", flush=True)
            continue
        row = run_seed(a, seed)
        print(f"{a.name} seed {seed}: test {row['test']}", flush=True)
    text = table(Path(a.results))
    (Path(a.results) / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
