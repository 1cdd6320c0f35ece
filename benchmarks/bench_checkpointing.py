"""Activation checkpointing: peak memory and step time of one long sequence, side by side.

    MALLOC="MALLOC_MMAP_THRESHOLD_=1099511627776 MALLOC_TRIM_THRESHOLD_=1099511627776"
    env $MALLOC python benchmarks/bench_checkpointing.py --seq 8192 --steps 2 --rounds 2

One ``small`` backbone (MAC by default) trains on one (1, seq, 256) sequence on one thread, once
per mode, each mode in a fresh process (a process's peak RSS is a high-water mark):

- ``none``: every activation and every memory chunk state kept for backward;
- ``memory``: the memory keeps one chunk state per ``--segment`` chunks (``checkpoint_segment``);
- ``blocks``: each block recomputed in backward (``parallelize.checkpoint_blocks`` with the memory
  keeping every chunk state);
- ``both``: blocks recomputed and the memory's chunk states checkpointed
  (``--model.activation_checkpointing true``): the block recompute keeps the memory segments'
  outputs (``--policy segments``, the default), or does so through torch's selective
  checkpointing (``sac-segments``), or also keeps the blocks' matmuls (``sac-matmuls``).

Peak = the process's peak RSS during the first training step minus its RSS just before it (model
and input built). Step time = the median of the following ``--steps`` steps. Modes run interleaved
for ``--rounds`` rounds; each figure is the median over rounds and each ratio the median of the
per-round ratios to ``none``. With the MALLOC settings (docs/benchmarking.md) freed memory stays
in the process, as in a GPU's caching allocator: no page faults in the timed steps, and the peak is
what the allocator had to hold.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.bench_backbone import build, rss_mib, train_step  # noqa: E402
from titans_lightning.backbone.config import VARIANTS  # noqa: E402
from titans_lightning.memory import NeuralMemory  # noqa: E402
from titans_lightning.parallelize import (  # noqa: E402
    checkpoint_blocks,
    save_chunk_segments,
    save_segments_and_matmuls,
)

MODES = ("none", "memory", "blocks", "both")
# --policy: how the block recompute of `both` keeps what it keeps (see parallelize.checkpoint_blocks):
# the memory segments' outputs by plain contexts (the default), or by torch's selective checkpointing,
# with or without the blocks' matmuls and attention
POLICIES = {"segments": None, "sac-segments": save_chunk_segments, "sac-matmuls": save_segments_and_matmuls}


def apply_mode(model: torch.nn.Module, mode: str, segment: int, policy: str = "segments") -> None:
    if mode in ("blocks", "both"):
        checkpoint_blocks(model.blocks, memory_segment=segment if mode == "both" else 0, policy=POLICIES[policy])
    elif mode == "memory":
        for module in model.modules():
            if isinstance(module, NeuralMemory):
                module.checkpoint_segment = segment


def measure(variant: str, mode: str, seq: int, steps: int, segment: int, policy: str = "segments") -> dict:
    """One mode in this process: peak RSS growth of the first step (MiB) and later step times (s)."""
    torch.set_num_threads(1)
    model = build(variant)
    apply_mode(model, mode, segment, policy)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(1, seq, model.dim, generator=torch.Generator().manual_seed(0))
    before, _ = rss_mib()
    first = train_step(model, opt, x)
    _, peak = rss_mib()
    times = [train_step(model, opt, x) for _ in range(steps)]
    return {"mode": mode, "peak_mib": peak - before, "first_s": first,
            "step_s": statistics.median(times) if times else first}


def run_modes(args: argparse.Namespace) -> list[list[dict]]:
    """Every mode in a fresh interpreter of this script, interleaved: rounds x modes rows."""
    rounds = []
    for r in range(args.rounds):
        rows = []
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--worker", mode, "--variant", args.variant, "--seq", str(args.seq),
                   "--steps", str(args.steps), "--segment", str(args.segment), "--policy", args.policy]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(f"  round {r + 1} {mode}: {rows[-1]}", file=sys.stderr, flush=True)
        rounds.append(rows)
    return rounds


def report(rounds: list[list[dict]], args: argparse.Namespace) -> None:
    """Per mode: median peak and step time over rounds, and the median of per-round ratios to
    ``none`` (the first mode when ``none`` was not run)."""
    base = args.modes.index("none") if "none" in args.modes else 0
    print(f"{args.variant} small, one sequence of {args.seq} tokens, 1 thread, memory segment {args.segment} chunks, "
          f"policy {args.policy}, {args.rounds} round(s) x {args.steps} timed step(s), torch {torch.__version__}")
    print(f"{'mode':8} {'peak MiB':>9} {'x ' + args.modes[base]:>9} {'step s':>8} {'x ' + args.modes[base]:>9}")
    for i, mode in enumerate(args.modes):
        rows = [r[i] for r in rounds]
        peak = statistics.median(r["peak_mib"] for r in rows)
        step = statistics.median(r["step_s"] for r in rows)
        peak_ratio = statistics.median(r[i]["peak_mib"] / r[base]["peak_mib"] for r in rounds)
        step_ratio = statistics.median(r[i]["step_s"] / r[base]["step_s"] for r in rounds)
        print(f"{mode:8} {peak:9.0f} {peak_ratio:9.2f} {step:8.2f} {step_ratio:9.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="mac", choices=VARIANTS)
    parser.add_argument("--seq", type=int, default=8192, help="tokens of the one training sequence")
    parser.add_argument("--steps", type=int, default=2, help="timed steps after the first (median)")
    parser.add_argument("--segment", type=int, default=8, help="memory chunks per kept state in memory/both")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--policy", default="segments", choices=POLICIES,
                        help="what the block recompute of `both` keeps: the memory segments' outputs (the default "
                             "of --model.activation_checkpointing); the same through torch's selective checkpointing; "
                             "or with the blocks' matmuls and attention as well")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (A B C D A B C D ...)")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)  # one mode, JSON out
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.variant, args.worker, args.seq, args.steps, args.segment, args.policy)))
        return
    report(run_modes(args), args)


if __name__ == "__main__":
    main()
