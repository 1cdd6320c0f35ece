"""What one long-context training step costs: the ``recipes/longctx/`` models at a haystack length.

    OMP_NUM_THREADS=1 python benchmarks/bench_longctx_step.py --cases mac:512:4 lmm:2048:4 mac:2048:4:64 mac:512:4:16:64

Each case is ``variant:length:batch[:segment[:chunk]]``: the backbone and task (answer loss plus
the haystack loss) of the recipe ``recipes/longctx/<variant>.yaml``; when given, the MAC segment
and the window set to ``segment`` and the memory chunk to ``chunk`` (default ``segment``); one
batch of the recipe's needle data at that length. Every case takes ``--warmup`` untimed steps,
then ``--repeats`` timed ones (forward, backward; no optimizer); the best is printed, in seconds
per step, as a markdown table. Cases run one after another in this process: compare cases of one
run only.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Optional

import torch
import yaml

from datamodules.text import NeedleDataModule
from titans_lightning.backbone import TitansConfig
from titans_lightning.tasks.longctx import NeedleTask

REPO = Path(__file__).resolve().parents[1]


Case = tuple[str, int, int, Optional[int], Optional[int]]  # variant, length, batch, segment, chunk


def parse_case(text: str) -> Case:
    """``"mac:512:4"`` -> ("mac", 512, 4, None, None); ``"mac:2048:4:64"`` -> (..., 64, 64);
    ``"mac:512:4:16:64"`` -> (..., 16, 64)."""
    parts = text.split(":")
    if len(parts) not in (3, 4, 5) or not all(p.isdigit() for p in parts[1:]):
        raise SystemExit(f"--cases: expected variant:length:batch[:segment[:chunk]] (mac:512:4), got {text!r}")
    numbers = [int(p) for p in parts[1:]] + [None] * (5 - len(parts))
    length, batch, segment, chunk = numbers
    return parts[0], length, batch, segment, chunk if chunk is not None else segment


def build(variant: str, segment: Optional[int], chunk: Optional[int] = None) -> NeedleTask:
    """The recipe's task (backbone, context loss weight) at the recipe's seed, layers built."""
    recipe = yaml.safe_load((REPO / "recipes" / "longctx" / f"{variant}.yaml").read_text())
    args = dict(recipe["model"]["init_args"])
    backbone = dict(args["backbone"])
    if segment is not None:
        backbone.update(segment_len=segment, window=segment, chunk_size=chunk or segment)
    torch.manual_seed(recipe.get("seed_everything", 0))
    task = NeedleTask(TitansConfig(**backbone), data_sizes={"vocab_size": 257},
                      context_loss_weight=args.get("context_loss_weight", 0.0))
    task.configure_model()
    return task


def seconds_per_step(variant: str, length: int, batch_size: int, segment: Optional[int], chunk: Optional[int],
                     warmup: int, repeats: int) -> float:
    data = NeedleDataModule(train_length=length, train_samples=batch_size, batch_size=batch_size, eval_lengths=[length])
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    task = build(variant, segment, chunk)
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        loss, _ = task.compute_loss(batch)
        loss.backward()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return min(times)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["mac:512:4", "lmm:512:4", "mac:2048:4", "lmm:2048:4"])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    cases = [parse_case(c) for c in args.cases]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)\n")
    print("| variant | segment / chunk | haystack x batch | s per step |\n|---|---:|---|---:|")
    for variant, length, batch_size, segment, chunk in cases:
        seconds = seconds_per_step(variant, length, batch_size, segment, chunk, args.warmup, args.repeats)
        shown = f"{segment} / {chunk}" if segment is not None else "recipe"
        print(f"| {variant} | {shown} | {length:,} x {batch_size} | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
