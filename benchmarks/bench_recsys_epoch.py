"""Training cost of a recommendation epoch: each contender's recipe, the same batches, side by side.

    OMP_NUM_THREADS=1 python benchmarks/bench_recsys_epoch.py --dataset beauty --batches 40 --rounds 3

For each batch order (``random``: the shuffled windows, as without ``--data.group_by_length``;
``grouped``: length-grouped, as with it) the first ``--batches`` training batches of epoch 0 (a
random sample of the epoch's batches: both samplers shuffle the batch order) are drawn once; every
model of ``--models`` (built from ``recipes/recsys/<dataset>_<model>.yaml``: backbone, head, AdamW
at the recipe's learning rate) then takes one forward + backward + optimizer step on each, models
interleaved (A B C ... A B C ...) for ``--rounds`` rounds. Printed per order and model: the median
seconds per step, the estimated epoch (that times the epoch's batch count), and the ratio to the
first model's epoch (median of per-round ratios). Pads are computed as in training (batches are
padded to their longest window).

``--eval``: also one whole validation pass (every user scored against every item, no gradient) per
model, users in user order (``random``) and sorted by history length (``grouped``, what the
DataModule does), models interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datamodules.recsys import InteractionDataModule  # noqa: E402
from titans_lightning.backbone import TitansConfig  # noqa: E402
from titans_lightning.tasks.recsys import NextItemTask  # noqa: E402


def recipe(dataset: str, model: str) -> dict:
    return yaml.safe_load((REPO / "recipes" / "recsys" / f"{dataset}_{model}.yaml").read_text())


def sample_batches(data_args: dict, group: bool, count: int, seed: int) -> tuple[list[dict], int]:
    """The first ``count`` training batches of epoch 0 and the epoch's number of batches."""
    data = InteractionDataModule(**{**data_args, "group_by_length": group, "seed": seed})
    data.setup("fit")
    loader = data.train_dataloader()
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == count:
            break
    return batches, len(loader)


def build(spec: dict, num_items: int, seed: int) -> tuple[NextItemTask, torch.optim.Optimizer]:
    """The recipe's task (train mode) and an AdamW at its learning rate."""
    torch.manual_seed(seed)
    args = {k: v for k, v in spec["model"]["init_args"].items() if k not in ("optimizer", "lr_scheduler")}
    task = NextItemTask(**{**args, "backbone": TitansConfig(**args["backbone"])}, data_sizes={"num_items": num_items})
    task.configure_model()
    task.train()
    optim = spec["model"]["init_args"]["optimizer"]["init_args"]
    return task, torch.optim.AdamW(task.parameters(), lr=optim["lr"], weight_decay=optim["weight_decay"])


def step_seconds(task: NextItemTask, optimizer: torch.optim.Optimizer, batches: list[dict]) -> float:
    """Median seconds of one training step over ``batches``."""
    times = []
    for batch in batches:
        start = time.perf_counter()
        loss = task.training_loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(task.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return sum(times) / len(times)


def validation_seconds(task: NextItemTask, batches: list[dict]) -> float:
    """Seconds to score every validation user (the full ranking's scores, no gradient)."""
    task.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            task.item_scores(batch)
    task.train()
    return time.perf_counter() - start


def validation_batches(data_args: dict, by_length: bool) -> list[dict]:
    data = InteractionDataModule(**data_args)
    data.setup("fit")
    histories = data.datasets["val"]
    if not by_length:
        histories.order = np.arange(len(histories))
    return list(data.val_dataloader())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--models", nargs="+", default=["sasrec", "mac", "mag", "lmm"])
    parser.add_argument("--orders", nargs="+", default=["random", "grouped"], choices=["random", "grouped"])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval", action="store_true", help="also time a validation pass per model")
    args = parser.parse_args(argv)
    specs = {m: recipe(args.dataset, m) for m in args.models}
    data_args = specs[args.models[0]]["data"]["init_args"]
    print(f"# {args.dataset}: {args.batches} batches of epoch 0, {args.rounds} rounds, "
          f"{torch.get_num_threads()} thread(s), torch {torch.__version__}")
    print("| order | model | real positions | s/step | epoch s (est.) | epoch vs first |")
    print("|---|---|---|---|---|---|")
    for order in args.orders:
        batches, per_epoch = sample_batches(data_args, order == "grouped", args.batches, args.seed)
        real = sum(int(b["mask"].sum()) for b in batches) / sum(b["mask"].numel() for b in batches)
        num_items = InteractionDataModule(**data_args).data_sizes["num_items"]
        models = {m: build(specs[m], num_items, args.seed) for m in args.models}
        for task, optimizer in models.values():  # warm-up: first-call allocations
            step_seconds(task, optimizer, batches[:2])
        rounds = [{m: step_seconds(*models[m], batches) for m in args.models} for _ in range(args.rounds)]
        for m in args.models:
            seconds = statistics.median(r[m] for r in rounds)
            ratio = statistics.median(r[m] / r[args.models[0]] for r in rounds)
            print(f"| {order} | {m} | {real:.0%} | {seconds:.4f} | {seconds * per_epoch:.0f} | {ratio:.2f}x |",
                  flush=True)
    if args.eval:
        num_items = InteractionDataModule(**data_args).data_sizes["num_items"]
        models = {m: build(specs[m], num_items, args.seed)[0] for m in args.models}
        print("\n| validation users | model | real positions | seconds per pass |\n|---|---|---|---|")
        for order in args.orders:
            batches = validation_batches(data_args, order == "grouped")
            real = sum(int(b["mask"].sum()) for b in batches) / sum(b["mask"].numel() for b in batches)
            for m in args.models:
                print(f"| {'by length' if order == 'grouped' else 'user order'} | {m} | {real:.0%} | "
                      f"{validation_seconds(models[m], batches):.1f} |", flush=True)


if __name__ == "__main__":
    main()
