"""Neural-memory layer throughput: titans-lightning vs titans-pytorch, side by side, as ratios.

    MALLOC_MMAP_THRESHOLD_=1099511627776 MALLOC_TRIM_THRESHOLD_=1099511627776 \
        python benchmarks/bench_memory.py --seqs 2048 8192

Configuration (issue 3): dim 256, 4 heads of 64, depth-2 expansion-4 memory MLP, chunk 64,
batch 4. Contenders run interleaved (A B A B ...) on one thread; each figure is the median over
rounds and each ratio the median of per-round ratios (docs/benchmarking.md). Peak memory is
measured in a fresh subprocess per contender (ru_maxrss growth over one forward+backward).
Needs the `bench` extra (`pip install -e .[bench]`) for titans-pytorch.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from titans_lightning.memory import NeuralMemory

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.flops import counted_flops, matmul_gflops  # noqa: E402

DIM, HEADS, DIM_HEAD, BATCH = 256, 4, 64, 4


def build(name: str) -> torch.nn.Module:
    """A contender by name: ours (chunk 64), ours-c16 (the paper's chunk), ours-c16-channel
    (per-channel alpha), titans-pytorch."""
    torch.manual_seed(0)
    if name == "ours":
        return NeuralMemory(DIM, heads=HEADS, dim_head=DIM_HEAD, chunk_size=64)
    if name == "ours-c16":
        return NeuralMemory(DIM, heads=HEADS, dim_head=DIM_HEAD, chunk_size=16)
    if name == "ours-c16-channel":  # per-channel alpha (the NeurIPS option)
        return NeuralMemory(DIM, heads=HEADS, dim_head=DIM_HEAD, chunk_size=16, per_channel_decay=True)
    from titans_pytorch import NeuralMemory as PeerMemory

    peer = PeerMemory(DIM, chunk_size=64, heads=HEADS, dim_head=DIM_HEAD)
    for param in peer.parameters():  # its per-head initial weights are expanded views
        param.data = param.data.contiguous()
    return peer


def step(model: torch.nn.Module, x: torch.Tensor, backward: bool) -> float:
    """Seconds for one forward (+ backward) pass."""
    start = time.perf_counter()
    if backward:
        y, _ = model(x)
        y.float().square().mean().backward()
        model.zero_grad(set_to_none=True)
    else:
        with torch.no_grad():
            model(x)
    return time.perf_counter() - start


def peak_memory_mb(name: str, seq: int) -> float:
    """Peak resident memory growth (MB) over one forward+backward, in a fresh interpreter.

    Read from /proc's VmHWM: ru_maxrss would carry the parent's peak across fork + exec.
    """
    code = (
        "import torch, sys; sys.path.insert(0, '.');"
        "from benchmarks.bench_memory import build, step, BATCH, DIM, high_water_mb;"
        f"torch.set_num_threads(1); m = build({name!r}); x = torch.randn(BATCH, {seq}, DIM);"
        "base = high_water_mb(); step(m, x, True); print(high_water_mb() - base)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def high_water_mb() -> float:
    """This process's peak resident set (VmHWM) in MB."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def compare(names: list[str], seq: int, rounds: int) -> dict:
    """Interleaved timing of every contender at one sequence length."""
    models = {n: build(n) for n in names}
    x = torch.randn(BATCH, seq, DIM)
    times = {(n, mode): [] for n in names for mode in ("train", "infer")}
    for n in names:  # warm-up
        step(models[n], x, True)
    for _ in range(rounds):
        for mode, backward in (("train", True), ("infer", False)):
            for n in names:
                times[n, mode].append(step(models[n], x, backward))
    result = {"seq": seq, "tokens": BATCH * seq}
    for (n, mode), ts in times.items():
        result[f"{n}/{mode}/tok_s"] = BATCH * seq / statistics.median(ts)
    for n in names[1:]:
        for mode in ("train", "infer"):
            ratios = [b / a for a, b in zip(times[names[0], mode], times[n, mode])]
            result[f"{names[0]}_vs_{n}/{mode}"] = statistics.median(ratios)
    for n in names:  # each contender's own arithmetic: the FLOP ratio bounds the speed ratio
        flops = counted_flops(models[n], x)
        result[f"{n}/train/gflop"] = flops / 1e9
        result[f"{n}/train/gflops"] = flops / statistics.median(times[n, "train"]) / 1e9
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seqs", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--contenders", nargs="+", default=["ours", "titans-pytorch", "ours-c16"])
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"threads={args.threads} torch={torch.__version__} matmul 2048^3: {matmul_gflops():.1f} GFLOP/s")
    for seq in args.seqs:
        result = compare(args.contenders, seq, args.rounds)
        if not args.no_memory:
            for n in args.contenders:
                result[f"{n}/peak_mb"] = peak_memory_mb(n, seq)
        result["matmul_gflops_after"] = matmul_gflops()
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}, indent=1))
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
