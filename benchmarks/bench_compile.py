"""Compiled vs eager, side by side: one memory layer and the small MAC backbone's training step.

    OMP_NUM_THREADS=1 python benchmarks/bench_compile.py --seq 1024 --rounds 3

Contenders (``titans_lightning.parallelize``): the memory layer of ``bench_memory.py`` (dim 256,
4 heads of 64, depth-2 expansion-4 memory, chunk 16, batch 4) eager and with ``compile_memory``;
the ``small`` MAC backbone (batch 2) eager and with ``compile_backbone`` (``--model.compile``).
Each step is forward + backward. Compile time = the first compiled step minus a steady one,
with a fresh inductor cache (cold: what a new machine pays once). Steps run interleaved (eager,
compiled, eager, ...) on one thread; each time is a median over rounds and each ratio the median
of per-round ratios (docs/benchmarking.md). Kernels per chunk: ATen ops that launch a kernel
in eager against the kernels inductor's code launches (``benchmarks/kernels.py``).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from titans_lightning.backbone import TitansBackbone, TitansConfig
from titans_lightning.memory import NeuralMemory
from titans_lightning.memory.chunk import chunk_step
from titans_lightning.parallelize import compile_backbone, compile_memory

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.kernels import compiled_kernels, eager_kernels  # noqa: E402

DIM, HEADS, DIM_HEAD, CHUNK, LAYER_BATCH, BACKBONE_BATCH = 256, 4, 64, 16, 4, 2


def train_step(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Seconds of one forward + backward."""
    start = time.perf_counter()
    y, _ = model(x)
    y.square().mean().backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def contenders(name: str, seq: int) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    """(eager, compiled, input (B, seq, D)) of ``layer`` or ``backbone`` at the module's sizes."""
    torch.manual_seed(0)
    if name == "layer":
        eager = NeuralMemory(DIM, heads=HEADS, dim_head=DIM_HEAD, chunk_size=CHUNK)
        compiled = copy.deepcopy(eager)
        compile_memory(compiled)
        return eager, compiled, torch.randn(LAYER_BATCH, seq, DIM)
    eager = TitansBackbone(TitansConfig.from_name("small", variant="mac"))
    return eager, compile_backbone(copy.deepcopy(eager)), torch.randn(BACKBONE_BATCH, seq, DIM)


def compare(name: str, seq: int, rounds: int) -> dict[str, float]:
    """Compile seconds, eager and compiled step ms, and the eager/compiled ratio of one pair."""
    torch._dynamo.reset()  # each pair compiles its own graphs
    eager, compiled, x = contenders(name, seq)
    train_step(eager, x)  # warm-up: allocator, first-call paths
    first = train_step(compiled, x)
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(rounds):
        times["eager"].append(train_step(eager, x))
        times["compiled"].append(train_step(compiled, x))
    eager_s, compiled_s = (statistics.median(times[k]) for k in ("eager", "compiled"))
    ratio = statistics.median(e / c for e, c in zip(times["eager"], times["compiled"]))
    return {"compile_s": first - compiled_s, "eager_ms": eager_s * 1e3, "compiled_ms": compiled_s * 1e3,
            "ratio": ratio}


def _fresh_step(*args):
    """The chunk step under a name of its own: ``compiled_kernels`` must see it compile."""
    return chunk_step(*args)


def kernels_per_chunk() -> tuple[tuple[int, int], tuple[int, int]]:
    """(eager, compiled) (forward, backward) kernels of one chunk of the memory layer."""
    N, b, d, hidden = LAYER_BATCH * HEADS, CHUNK, DIM_HEAD, 4 * DIM_HEAD
    g = torch.Generator().manual_seed(0)
    gates = [torch.rand(s, generator=g) for s in ((N, b), (N, b), (N, b, b), (N,), (N, b))]
    qkv = [torch.randn(N, b, d, generator=g) for _ in range(3)]
    WS = [0.1 * torch.randn(N, hidden, 2 * d, generator=g), 0.1 * torch.randn(N, d, 2 * hidden, generator=g)]
    inputs = [t.requires_grad_() for t in qkv + gates + WS]
    args = ("gelu", 2, True, *inputs)
    chunk_step(*args)
    return eager_kernels(chunk_step, args, inputs), compiled_kernels(_fresh_step, args, inputs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", type=int, default=1024, help="tokens per sequence (T)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_compile_") as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # cold compiles, and nothing left behind
        run(args.seq, args.rounds)


def run(seq: int, rounds: int) -> None:
    """Print both pairs' timings, then the kernels per chunk."""
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, T = {seq}, rounds {rounds}, fresh inductor cache")
    print(f"{'forward + backward':<30} {'compile s':>9} {'eager ms':>9} {'compiled ms':>11} {'eager/compiled':>14}")
    labels = {"layer": f"memory layer (B={LAYER_BATCH}, chunk {CHUNK})",
              "backbone": f"small MAC backbone (B={BACKBONE_BATCH})"}
    for name, label in labels.items():
        r = compare(name, seq, rounds)
        print(f"{label:<30} {r['compile_s']:>9.1f} {r['eager_ms']:>9.0f} {r['compiled_ms']:>11.0f} "
              f"{r['ratio']:>13.2f}x", flush=True)
    eager, compiled = kernels_per_chunk()
    print(f"kernels per chunk ({LAYER_BATCH * HEADS} memories, b = {CHUNK}, depth 2): "
          f"eager ATen {eager[0]} forward + {eager[1]} backward = {sum(eager)}; "
          f"inductor {compiled[0]} + {compiled[1]} = {sum(compiled)}")


if __name__ == "__main__":
    main(sys.argv[1:])
