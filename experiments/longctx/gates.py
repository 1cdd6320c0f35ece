"""What a trained needle model's memories do on a haystack: the gates each memory computes, on the
filler and on the needle.

    OMP_NUM_THREADS=1 python experiments/longctx/gates.py \\
        runs/longctx/two_stage/lmm_d-12-seed0/stage2/csv/version_0/checkpoints/last.ckpt --length 2048 --depth 0.5

One haystack of ``--length`` tokens (the 5-digit pass key at ``--depth``; ``--haystack noise``:
RULER's filler, ``text``: a slice of the shipped Shakespeare's held-out last 10 %, as the needle
DataModule's test grid cuts it) is read through the checkpoint's backbone; every ``NeuralMemory``'s
gates are recorded as it computes them: theta (inner learning rate), eta (momentum) and alpha (the
forget gate; a write fades to 1/e in about 1 / alpha tokens). Printed per memory (in block order):
their mean and max over the filler (every haystack token but the needle sentence's and the first
``--skip`` tokens) and over the needle sentence. ``--json`` writes the same numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from datamodules.text.niah import NeedleDataModule
from datamodules.text.niah_samples import TEMPLATES, Haystack, make_sample
from datamodules.text.tokenizer import ByteTokenizer
from titans_lightning.memory.layer import NeuralMemory
from titans_lightning.streaming import load_lm

GATES = ("theta", "eta", "alpha")


def record_gates(memories: list[NeuralMemory]) -> list[list[tuple[Tensor, Tensor, Tensor]]]:
    """Wrap each memory's ``_gates`` so that every call's ``(theta, eta, alpha)`` (B*H, T) is kept
    (per channel alpha: its first layer's, averaged over channels); one list per memory."""
    calls: list[list[tuple[Tensor, Tensor, Tensor]]] = [[] for _ in memories]
    for memory, kept in zip(memories, calls):
        def wrapped(x: Tensor, gates=memory._gates, kept=kept):
            lr, momentum, decay = gates(x)
            alpha = decay if isinstance(decay, Tensor) else decay[0].mean(-1)
            kept.append((lr.detach(), momentum.detach(), alpha.detach()))
            return lr, momentum, decay
        memory._gates = wrapped
    return calls


def summarise(gates: tuple[Tensor, Tensor, Tensor], filler: Tensor, needle: Tensor) -> dict:
    """``{gate: {"filler": {"mean", "max"}, "needle": {...}}}`` of (B*H, T) gates over the (T,)
    token masks ``filler`` and ``needle``."""
    out = {}
    for name, gate in zip(GATES, gates):
        out[name] = {part: {"mean": float(gate[:, mask].mean()), "max": float(gate[:, mask].max())}
                     for part, mask in (("filler", filler), ("needle", needle))}
    return out


def evaluation_haystack(kind: str, length: int) -> Haystack:
    """The filler the needle DataModule's test grid reads ``length``-token haystacks from: the noise,
    or (``text``) the held-out part of the shipped Shakespeare (raises if it is shorter)."""
    return NeedleDataModule(haystack=kind, eval_lengths=[length]).haystacks("test")[1]


def read_gates(checkpoint: Path, length: int, depth: float, skip: int = 100, seed: int = 0,
               haystack: str = "noise") -> list[dict]:
    """The gates of every memory of ``checkpoint`` on one haystack (see the module docstring)."""
    task = load_lm(checkpoint, "cpu")
    memories = [m for m in task.backbone.modules() if isinstance(m, NeuralMemory)]
    if not memories:
        raise ValueError(f"{checkpoint}: the model has no neural memory (a transformer or SWA checkpoint?)")
    source = evaluation_haystack(haystack, length)
    sample = make_sample(source, length, depth, "number", 5, np.random.default_rng(seed), ByteTokenizer.eod_id)
    tokens = torch.from_numpy(sample.tokens[:sample.prompt_len])[None]
    calls = record_gates(memories)
    with torch.no_grad():
        task.backbone(task.head.embed(tokens))
    needle_len = len(TEMPLATES["number"][0].format(v=sample.answer).encode())
    positions = torch.arange(tokens.shape[1])
    needle = (positions >= sample.needle_start) & (positions < sample.needle_start + needle_len)
    question = positions >= tokens.shape[1] - len(TEMPLATES["number"][1].encode())
    filler = (positions >= skip) & ~needle & ~question
    rows = []
    for index, kept in enumerate(calls):
        gates = tuple(torch.cat([call[g] for call in kept], 1) for g in range(3))  # MAC calls per segment
        rows.append({"memory": index, **summarise(gates, filler, needle)})
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: one line per memory and gate, mean / max over filler and needle."""
    lines = ["| memory | gate | filler mean | filler max | needle mean | needle max |",
             "|---:|---|---:|---:|---:|---:|"]
    for row in rows:
        for name in GATES:
            g = row[name]
            lines.append(f"| {row['memory']} | {name} | {g['filler']['mean']:.2e} | {g['filler']['max']:.2e} | "
                         f"{g['needle']['mean']:.2e} | {g['needle']['max']:.2e} |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--depth", type=float, default=0.5)
    parser.add_argument("--skip", type=int, default=100, help="first filler tokens left out (the memory warming up)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--haystack", choices=["noise", "text"], default="noise",
                        help="text: the shipped Shakespeare's held-out slice (as niah.py --haystack text)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = read_gates(args.checkpoint, args.length, args.depth, args.skip, args.seed, args.haystack)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
