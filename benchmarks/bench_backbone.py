"""Backbone benchmarks: training throughput, decode latency vs context, RSS over a long stream.

    MALLOC="MALLOC_MMAP_THRESHOLD_=1099511627776 MALLOC_TRIM_THRESHOLD_=1099511627776"
    env $MALLOC python benchmarks/bench_backbone.py train --seqs 1024 4096 8192
    env $MALLOC python benchmarks/bench_backbone.py decode --contexts 1024 65536
    python benchmarks/bench_backbone.py stream --variant lmm --tokens 1000000

All at the ``small`` size (dim 256, depth 4, 4 heads, segment 256, window 512, chunk 16,
16 persistent tokens, 4 memory heads, depth-2 expansion-4 memory) on one thread
(docs/benchmarking.md). The transformer is Transformer++ (no persistent tokens), so it takes
the kernel's causal path. Contenders run interleaved (A B C ... A B C ...); each figure is the
median over rounds and each ratio the median of per-round ratios.

- train: tokens/s of forward + backward + AdamW, a fixed 8192 tokens per step (batch 8192 / seq;
  one sequence when seq is longer). `--flops` adds each variant's GFLOP per step (matmuls and
  attention, counted by `benchmarks/flops.py` after the timing) and the GFLOP/s it achieved,
  beside a same-run 2048^3 matmul. `--floor` adds, per memory variant, the same step with the
  memory's writes stubbed (`<variant>-nowrite`) and a lower bound on the real step: that time plus
  the writes' own GFLOP at the rate of the memory's chunk products alone.
- decode: per-token latency of one forward step (no grad) after a prefill of N tokens.
- stream: peak RSS while streaming N tokens in pieces (no grad), printed at checkpoints. Run it
  without the MALLOC settings: with trimming disabled, heap fragmentation alone adds ~160 MiB
  over the first 100k tokens (seen here), which is the allocator, not the model.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from titans_lightning.backbone import TitansBackbone, TitansConfig
from titans_lightning.backbone.config import MEMORY_VARIANTS, VARIANTS
from titans_lightning.memory import layer as memory_layer
from titans_lightning.memory.state import FastWeightState

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.flops import counted_flops, matmul_gflops, memory_chunk_bmm_gflops  # noqa: E402

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "1099511627776", "MALLOC_TRIM_THRESHOLD_": "1099511627776"}
TOKENS_PER_STEP = 8192


OVERRIDES: dict[str, int] = {}  # --set key=value, applied to every variant


def build(variant: str) -> TitansBackbone:
    """The ``small`` backbone of a variant (the transformer without persistent tokens)."""
    torch.manual_seed(0)
    extra = {"persistent_tokens": 0} if variant == "transformer" else {}
    return TitansBackbone(TitansConfig.from_name("small", variant=variant, **{**OVERRIDES, **extra}))


def cpu_seconds() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def chunk_products_gflops(config: TitansConfig, batch: int) -> float:
    """The rate of the memory's chunk-step matmuls alone at this config (`flops.memory_chunk_bmm_gflops`)."""
    d = config.dim // config.memory_heads
    widths = [d] + [config.memory_expansion * d] * (config.memory_depth - 1) + [d]
    return memory_chunk_bmm_gflops(batch * config.memory_heads, config.chunk_size, widths)


NO_WRITE = "-nowrite"  # suffix of a --floor contender: the variant with its memory writes stubbed


def _write_stand_in(q, k, v, lr, momentum, decay, weights, chunk_size, activation, state, mask, output_norm,
                    *options):
    """Stands in for `neural_memory` under --floor: one elementwise pass that keeps q, k, v and
    the gates in the graph (their projections still train); the memory state is not advanced.
    `options` (checkpoint_segment, step) do not apply to it."""
    fast = state if state is not None else FastWeightState.initial(list(weights))
    return q + k + v + (lr + momentum + decay)[..., None], fast


@contextlib.contextmanager
def memory_writes(stubbed: bool):
    """Within: every NeuralMemory write is the real one, or (stubbed) `_write_stand_in`."""
    real = memory_layer.neural_memory
    memory_layer.neural_memory = _write_stand_in if stubbed else real
    try:
        yield
    finally:
        memory_layer.neural_memory = real


def train_step(model: TitansBackbone, opt: torch.optim.Optimizer, x: torch.Tensor) -> float:
    """Seconds for forward + backward + AdamW step on x (B, T, D)."""
    start = time.perf_counter()
    h, _ = model(x)
    h.square().mean().backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def bench_train(variants: list[str], seqs: list[int], rounds: int, flops: bool = False, floor: bool = False) -> None:
    """Interleaved training steps of every contender at each length; with ``floor``, also each
    memory variant with its writes stubbed, and the lower bound that gives (see `print_floors`)."""
    models = {v: build(v) for v in variants}
    opts = {v: torch.optim.AdamW(m.parameters(), lr=1e-4) for v, m in models.items()}
    names = variants + [v + NO_WRITE for v in variants if floor and v in MEMORY_VARIANTS]
    flops = flops or floor
    print(f"train: fwd+bwd+AdamW, {TOKENS_PER_STEP} tokens/step (one sequence when longer), "
          f"rounds {rounds}, 1 thread")
    if flops:
        print(f"same-run fp32 2048^3 matmul: {matmul_gflops():.1f} GFLOP/s")
    print(f"{'seq':>6} {'variant':>12} {'tok/s':>9} {'vs transformer':>15}"
          + (f" {'GFLOP/step':>11} {'GFLOP/s':>8}" if flops else ""))

    def run(name: str, x: torch.Tensor, count: bool = False) -> float:
        variant = name.removesuffix(NO_WRITE)
        with memory_writes(stubbed=name.endswith(NO_WRITE)):
            if count:
                return counted_flops(models[variant], x) / 1e9
            return train_step(models[variant], opts[variant], x)

    for seq in seqs:
        x = torch.randn(max(1, TOKENS_PER_STEP // seq), seq, models[variants[0]].dim)
        chunk_rate = chunk_products_gflops(models[variants[0]].config, x.shape[0]) if flops else 0.0
        if flops:
            print(f"       memory chunk products alone (hot, batch {x.shape[0]}): {chunk_rate:.1f} GFLOP/s")
        for name in names:  # warm-up: allocator, first-call paths
            run(name, x)
        times: dict[str, list[float]] = {name: [] for name in names}
        user0, sys0 = cpu_seconds()
        for r in range(rounds):
            for name in names[r % len(names):] + names[: r % len(names)]:
                times[name].append(run(name, x))
        user1, sys1 = cpu_seconds()
        gflop = {}
        for name in names:
            seconds = statistics.median(times[name])
            ratio = "" if "transformer" not in times else (
                f"{statistics.median(t / a for t, a in zip(times['transformer'], times[name])):.2f}x")
            line = f"{seq:>6} {name:>12} {x.numel() / x.shape[-1] / seconds:>9.0f} {ratio:>15}"
            if flops:  # counted after the timing, so that counting never disturbs it
                gflop[name] = run(name, x, count=True)
                line += f" {gflop[name]:>11.1f} {gflop[name] / seconds:>8.1f}"
            print(line, flush=True)
        print(f"       (user {user1 - user0:.1f} s, sys {sys1 - sys0:.1f} s)")
        if floor:
            print_floors(times, gflop, chunk_rate)


def print_floors(times: dict[str, list[float]], gflop: dict[str, float], chunk_rate: float) -> None:
    """A lower bound on each memory variant's step: everything but the memory's writes as measured
    (the stubbed contender), plus the writes' own products (the GFLOP the stub removed) at the
    rate of the chunk products alone. No write can cost less than its matmuls run flat out."""
    print("       floor = step without the writes + the writes' GFLOP at the chunk-product rate:")
    transformer = statistics.median(times["transformer"]) if "transformer" in times else None
    for name in times:
        if not name.endswith(NO_WRITE):
            continue
        variant, rest = name.removesuffix(NO_WRITE), statistics.median(times[name])
        writes = gflop[variant] - gflop[name]
        bound = rest + writes / chunk_rate
        versus = "" if transformer is None else f"; transformer {transformer:.2f} s: at best {transformer / bound:.2f}x"
        print(f"       {variant:>5}: {rest:.2f} s + {writes:.1f} GFLOP / {chunk_rate:.1f} GFLOP/s"
              f" = {bound:.2f} s{versus}")


@torch.no_grad()
def prefill(model: TitansBackbone, tokens: int, piece: int = 4096):
    """State after streaming ``tokens`` random tokens in pieces."""
    state = None
    for start in range(0, tokens, piece):
        _, state = model(torch.randn(1, min(piece, tokens - start), model.dim), state)
    return state


@torch.no_grad()
def decode_time(model: TitansBackbone, state, steps: int) -> float:
    """Median seconds of one single-token step from ``state`` (the state is not advanced)."""
    x = torch.randn(1, 1, model.dim)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model(x, state)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_decode(variants: list[str], contexts: list[int], rounds: int, steps: int) -> None:
    print(f"decode: per-token latency (ms, median of {steps} steps x {rounds} rounds), 1 thread")
    models = {v: build(v).eval() for v in variants}
    states = {}
    for v in variants:
        for n in contexts:
            start = time.perf_counter()
            states[v, n] = prefill(models[v], n)
            print(f"  prefill {v} {n}: {time.perf_counter() - start:.1f} s, state "
                  f"{states[v, n].numel() * 4 / 2**20:.2f} MiB", flush=True)
    lat: dict[tuple[str, int], list[float]] = {key: [] for key in states}
    for _ in range(rounds):
        for v in variants:
            for n in contexts:
                lat[v, n].append(decode_time(models[v], states[v, n], steps))
    head = "".join(f"{n:>10}" for n in contexts)
    print(f"{'variant':>12}{head} {'ratio last/first':>17}")
    for v in variants:
        ms = [statistics.median(lat[v, n]) * 1e3 for n in contexts]
        ratio = statistics.median(b / a for a, b in zip(lat[v, contexts[0]], lat[v, contexts[-1]]))
        print(f"{v:>12}" + "".join(f"{m:>10.2f}" for m in ms) + f" {ratio:>16.2f}x", flush=True)


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident set size in MiB (Linux /proc)."""
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


@torch.no_grad()
def bench_stream(variant: str, tokens: int, piece: int) -> None:
    model = build(variant).eval()
    print(f"stream: {variant}, {tokens} tokens in pieces of {piece}, no grad, 1 thread")
    print(f"{'tokens':>9} {'rss MiB':>9} {'peak MiB':>9} {'state MiB':>10} {'tok/s':>8}")
    state, done, start = None, 0, time.perf_counter()
    checkpoint = piece
    while done < tokens:
        n = min(piece, tokens - done)
        _, state = model(torch.randn(1, n, model.dim), state)
        done += n
        if done >= checkpoint or done == tokens:
            rss, peak = rss_mib()
            rate = done / (time.perf_counter() - start)
            print(f"{done:>9} {rss:>9.0f} {peak:>9.0f} {state.numel() * 4 / 2**20:>10.2f} {rate:>8.0f}", flush=True)
            checkpoint *= 2


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    train = sub.add_parser("train")
    train.add_argument("--seqs", type=int, nargs="+", default=[1024, 4096, 8192])
    train.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    train.add_argument("--rounds", type=int, default=3)
    train.add_argument("--flops", action="store_true",
                       help="also count each variant's matmul and attention GFLOP per step (benchmarks/flops.py)")
    train.add_argument("--floor", action="store_true",
                       help="also time each memory variant with its memory writes stubbed, and print the "
                            "lower bound on its step that gives (implies --flops)")
    decode = sub.add_parser("decode")
    decode.add_argument("--contexts", type=int, nargs="+", default=[1024, 65536])
    decode.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    decode.add_argument("--rounds", type=int, default=3)
    decode.add_argument("--steps", type=int, default=16)
    stream = sub.add_parser("stream")
    stream.add_argument("--variant", default="lmm", choices=VARIANTS)
    stream.add_argument("--tokens", type=int, default=1_000_000)
    stream.add_argument("--piece", type=int, default=4096)
    for mode in (train, decode, stream):
        mode.add_argument("--set", nargs="*", default=[], metavar="KEY=INT",
                          help="override integer config fields, e.g. chunk_size=64")
    args = parser.parse_args(argv)
    OVERRIDES.update({k: int(v) for k, v in (item.split("=", 1) for item in args.set)})
    if OVERRIDES:
        print(f"config overrides: {OVERRIDES}")
    if args.mode != "stream" and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        print("note: MALLOC_*_THRESHOLD_ not set; page faults may inflate long sequences")
    torch.set_num_threads(1)
    if args.mode == "train":
        bench_train(args.variants, args.seqs, args.rounds, args.flops, args.floor)
    elif args.mode == "decode":
        bench_decode(args.variants, args.contexts, args.rounds, args.steps)
    else:
        bench_stream(args.variant, args.tokens, args.piece)


if __name__ == "__main__":
    main(sys.argv[1:])
