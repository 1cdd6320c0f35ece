"""One prepared GPU session (budgeted for 8 minutes on one H200): correctness, sync-freedom, speed.

    python -m benchmarks.gpu_check                                  # CUDA, full sizes, into $OUT
    python -m benchmarks.gpu_check --device cpu --quick --out DIR   # the CPU dry run (< ~60 s)

Writes DIR/gpu_check.json (every number, every error) and DIR/gpu_check.md (the same as tables);
DIR defaults to $OUT, else ./gpu_check_out. Sections, each in try/except with its own time budget
(a SIGALRM stops one that overruns; the next still runs):

- agreement: `neural_memory` on the device (torch and triton backends, float32 and bf16
  autocast) against the float64 token-by-token reference on CPU: y, final W and S, gradients of
  q, k, v, lr, momentum, decay and M_0 (max error / max magnitude).
- variants: every backbone variant's forward + backward in bf16 autocast under
  `torch.cuda.set_sync_debug_mode("error")` (after one unchecked warm-up run), per memory backend.
- memory_layer: `NeuralMemory` forward + backward tokens/s and peak allocated memory, torch vs
  triton backend (titans-pytorch when importable), the config of bench_memory.py, T = 2K/8K/32K.
- training: backbone training tokens/s (forward + backward + AdamW, bf16 autocast, small size)
  of each memory variant and the transformer at 8K and 32K tokens, and the ratio to the transformer.
- decode: per-token latency of a single-token step after a prefill of 1K and 64K tokens.
- kernels: kernels per chunk step (forward + backward): CUDA kernels seen by torch.profiler, and
  the Triton step's launches counted at its two launch functions; on CUDA also the kernels of one
  whole `NeuralMemory` forward + backward at T = 2048 per backend.

The CPU dry run uses tiny sizes and runs the Triton parts under Triton's interpreter
(TRITON_INTERPRET=1, set before triton is imported); profiler kernel counts and the sync debug
mode need CUDA and are recorded as not applicable there. Timings are medians of interleaved rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SECTIONS = ("agreement", "variants", "memory_layer", "training", "decode", "kernels")
#: seconds per section (full run; the quick run gets half, at least 10)
BUDGETS = {"env": 10, "agreement": 60, "variants": 70, "memory_layer": 110, "training": 90, "decode": 70,
           "kernels": 40}
FULL = dict(agree=dict(batch=4, tokens=200, dim=64, hidden=256, chunk=16), size="small", variant_tokens=1024,
            layer=dict(dim=256, heads=4, dim_head=64, chunk=64, batch=4), layer_seqs=(2048, 8192, 32768),
            train_seqs=(8192, 32768), contexts=(1024, 65536), piece=4096, steps=20, rounds=3)
QUICK = dict(agree=dict(batch=2, tokens=13, dim=6, hidden=40, chunk=4), size="debug", variant_tokens=12,
             layer=dict(dim=32, heads=2, dim_head=16, chunk=16, batch=1), layer_seqs=(32,),
             train_seqs=(16,), contexts=(8, 24), piece=8, steps=2, rounds=1)


class SectionTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise SectionTimeout inside the block after `seconds` (main thread, POSIX)."""
    def expire(signum, frame):
        raise SectionTimeout(f"section budget of {seconds:.0f} s exceeded")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, enabled: bool = True):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def triton_usable(device: torch.device) -> tuple[bool, str]:
    """Whether the Triton backend can run here, and why not."""
    if importlib.util.find_spec("triton") is None:
        return False, "triton is not installed"
    if device.type == "cpu":
        import triton.language as tl
        from triton.runtime.interpreter import InterpretedFunction

        if not isinstance(tl.sum, InterpretedFunction):
            return False, "triton was imported without TRITON_INTERPRET=1"
    return True, ""


# ---------------------------------------------------------------- agreement


def memory_problem(batch, tokens, dim, hidden, seed=0):
    """Float64 CPU inputs of `neural_memory` (unit q and k, gates in range, a padded tail)."""
    g = torch.Generator().manual_seed(seed)
    unit = lambda x: torch.nn.functional.normalize(x, dim=-1)  # noqa: E731
    rand = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64)  # noqa: E731
    randn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    mask = torch.ones(batch, tokens, dtype=torch.bool)
    mask[0, tokens - tokens // 4 :] = False
    return dict(q=unit(randn(batch, tokens, dim)), k=unit(randn(batch, tokens, dim)), v=randn(batch, tokens, dim),
                lr=0.1 * rand(batch, tokens), momentum=0.3 + 0.7 * rand(batch, tokens),
                decay=0.2 * rand(batch, tokens), mask=mask,
                weights=[randn(batch, hidden, dim) / dim**0.5, randn(batch, dim, hidden) / hidden**0.5])


def memory_run(fn, problem, chunk, device, dtype, bf16=False, **kwargs):
    """(y, W, S, gradients) of a probe loss, all back on CPU in float64."""
    p = {n: (x.to(device) if x.dtype == torch.bool else x.to(device, dtype)) if torch.is_tensor(x)
         else [w.to(device, dtype) for w in x] for n, x in problem.items()}
    leaves = [p[n].requires_grad_() for n in ("q", "k", "v", "lr", "momentum", "decay")]
    leaves += [w.requires_grad_() for w in p["weights"]]
    with autocast(device, bf16):
        q, k, v = (p[n].bfloat16() if bf16 else p[n] for n in ("q", "k", "v"))
        y, state = fn(q, k, v, p["lr"], p["momentum"], p["decay"], p["weights"], chunk, mask=p["mask"],
                      output_norm=True, **kwargs)
    probe = torch.linspace(-1, 1, y.numel(), device=device).view_as(y)
    loss = (y.float() * probe).sum() + sum(w.square().sum() for w in state.weights + state.momentum)
    grads = torch.autograd.grad(loss, leaves)
    out = [y, *state.weights, *state.momentum, *grads]
    return [x.detach().double().cpu() for x in out]


AGREEMENT_NAMES = ("y", "W0", "W1", "S0", "S1", "dq", "dk", "dv", "dlr", "dmomentum", "ddecay", "dW0", "dW1")


def section_agreement(device, cfg, budget):
    from titans_lightning.memory import neural_memory, neural_memory_reference

    a = cfg["agree"]
    problem = memory_problem(a["batch"], a["tokens"], a["dim"], a["hidden"])
    cpu = torch.device("cpu")
    reference = memory_run(neural_memory_reference, problem, a["chunk"], cpu, torch.float64)
    # bf16 rows: the reference of the same bf16-rounded q, k, v (the layer feeds bf16 projections;
    # the memory itself runs float32 under autocast); their gradients come back through a bf16 cast
    rounded = {**problem, **{n: problem[n].bfloat16().double() for n in ("q", "k", "v")}}
    reference_bf16 = memory_run(neural_memory_reference, rounded, a["chunk"], cpu, torch.float64)
    usable, why = triton_usable(device)
    rows = []
    for backend in ("torch", "triton"):
        for bf16 in (False, True):
            row = {"backend": backend, "precision": "bf16-autocast" if bf16 else "float32"}
            if backend == "triton" and not usable:
                rows.append({**row, "status": f"skipped: {why}"})
                continue
            got = memory_run(neural_memory, problem, a["chunk"], device, torch.float32, bf16, backend=backend)
            errors = {n: ((x - r).abs().max() / r.abs().max().clamp_min(1e-12)).item()
                      for n, x, r in zip(AGREEMENT_NAMES, got, reference_bf16 if bf16 else reference)}
            worst = max(errors.values())
            rows.append({**row, "status": "ok", "max_rel_error": worst, "pass": worst < (1e-2 if bf16 else 1e-4),
                         "errors": errors})
    return {"config": a, "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "rows": rows}


# ---------------------------------------------------------------- variants


def build_backbone(variant, size, device, backend="auto"):
    from titans_lightning.backbone import TitansBackbone, TitansConfig

    torch.manual_seed(0)
    extra = {"persistent_tokens": 0} if variant == "transformer" else {}
    return TitansBackbone(TitansConfig.from_name(size, variant=variant, memory_backend=backend, **extra)).to(device)


def forward_backward(model, x, device):
    with autocast(device):
        h, _ = model(x)
        loss = h.float().square().mean()
    loss.backward()
    model.zero_grad(set_to_none=True)


def section_variants(device, cfg, budget):
    from titans_lightning.backbone.config import MEMORY_VARIANTS, VARIANTS

    usable, why = triton_usable(device)
    quick_cpu = device.type == "cpu"
    rows = []
    for variant in VARIANTS:
        backends = ("torch", "triton") if variant in MEMORY_VARIANTS else ("none",)
        for backend in backends:
            row = {"variant": variant, "backend": backend}
            if backend == "triton" and (not usable or (quick_cpu and variant != "lmm")):
                rows.append({**row, "status": f"skipped: {why or 'CPU dry run: interpreter only for lmm'}"})
                continue
            try:
                model = build_backbone(variant, cfg["size"], device, "auto" if backend == "none" else backend)
                x = torch.randn(1, cfg["variant_tokens"], model.dim, device=device)
                forward_backward(model, x, device)  # warm-up: compiles Triton kernels, fills caches
                sync(device)
                mode = torch.cuda.set_sync_debug_mode if device.type == "cuda" else None
                if mode:
                    mode("error")
                try:
                    forward_backward(model, x, device)
                finally:
                    if mode:
                        mode("default")
                sync(device)
                rows.append({**row, "status": "ok", "sync_checked": bool(mode)})
            except Exception as e:  # one variant's failure is a result, not the end of the section
                if isinstance(e, SectionTimeout) or "SectionTimeout" in repr(e):
                    raise
                rows.append({**row, "status": f"error: {type(e).__name__}: {str(e)[:300]}"})
    note = "" if device.type == "cuda" else "sync debug mode needs CUDA: forward + backward only"
    return {"size": cfg["size"], "tokens": cfg["variant_tokens"], "note": note, "rows": rows}


# ---------------------------------------------------------------- timing helpers


def timed(fn, device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def peak_mb(fn, device) -> float | None:
    """Peak allocated memory above the start (MiB) over fn, on CUDA; None elsewhere."""
    if device.type != "cuda":
        return None
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def interleaved(contenders: dict, rounds: int, device, budget) -> dict:
    """Median seconds per contender over interleaved rounds (after one warm-up each); stops
    adding rounds when the section's time is nearly spent."""
    times = {n: [] for n in contenders}
    for fn in contenders.values():
        fn()
    for _ in range(rounds):
        if budget.left() < 5 and all(times.values()):
            break
        for n, fn in contenders.items():
            times[n].append(timed(fn, device))
    return {n: statistics.median(t) for n, t in times.items()}


# ---------------------------------------------------------------- memory layer


def memory_contender(name, lc, device):
    from titans_lightning.memory import NeuralMemory

    torch.manual_seed(0)
    if name == "titans-pytorch":
        from titans_pytorch import NeuralMemory as PeerMemory

        peer = PeerMemory(lc["dim"], chunk_size=lc["chunk"], heads=lc["heads"], dim_head=lc["dim_head"])
        for param in peer.parameters():  # its per-head initial weights are expanded views
            param.data = param.data.contiguous()
        return peer.to(device)
    return NeuralMemory(lc["dim"], heads=lc["heads"], dim_head=lc["dim_head"], chunk_size=lc["chunk"],
                        backend=name).to(device)


def layer_step(model, x) -> None:
    y, _ = model(x)
    y.float().square().mean().backward()
    model.zero_grad(set_to_none=True)


def section_memory_layer(device, cfg, budget):
    lc = cfg["layer"]
    usable, why = triton_usable(device)
    names = ["torch"] + (["triton"] if usable else [])
    skipped = {} if usable else {"triton": why}
    if importlib.util.find_spec("titans_pytorch") is not None:
        names.append("titans-pytorch")
    else:
        skipped["titans-pytorch"] = "not importable"
    rows = []
    for seq in cfg["layer_seqs"]:
        if budget.left() < 10:
            rows.append({"seq": seq, "status": "skipped: section budget"})
            continue
        models = {n: memory_contender(n, lc, device) for n in names}
        x = torch.randn(lc["batch"], seq, lc["dim"], device=device)
        contenders = {n: functools.partial(layer_step, m, x) for n, m in models.items()}
        seconds = interleaved(contenders, cfg["rounds"], device, budget)
        row = {"seq": seq, "status": "ok"}
        for n in names:
            row[f"{n}/tok_s"] = lc["batch"] * seq / seconds[n]
            row[f"{n}/peak_mb"] = peak_mb(contenders[n], device)
        if "triton" in seconds:
            row["triton_speedup"] = seconds["torch"] / seconds["triton"]
        rows.append(row)
        del models
    return {"config": lc, "dtype": "float32", "skipped": skipped, "rows": rows}


# ---------------------------------------------------------------- training and decode


def section_training(device, cfg, budget):
    variants = ("transformer", "mac", "mag", "mal", "lmm")
    rows = []
    for seq in cfg["train_seqs"]:
        if budget.left() < 10:
            rows.append({"seq": seq, "status": "skipped: section budget"})
            continue
        models = {v: build_backbone(v, cfg["size"], device) for v in variants}
        opts = {v: torch.optim.AdamW(m.parameters(), lr=1e-4) for v, m in models.items()}
        x = torch.randn(1, seq, models["transformer"].dim, device=device)
        steps = {v: functools.partial(train_step, models[v], opts[v], x, device) for v in variants}
        seconds = interleaved(steps, cfg["rounds"], device, budget)
        row = {"seq": seq, "status": "ok"}
        for v in variants:
            row[f"{v}/tok_s"] = seq / seconds[v]
            row[f"{v}/vs_transformer"] = seconds["transformer"] / seconds[v]
        rows.append(row)
        del models, opts
    return {"size": cfg["size"], "precision": "bf16-autocast", "memory_backend": "auto", "rows": rows}


def train_step(model, opt, x, device) -> None:
    """Forward + backward in bf16 autocast, then AdamW."""
    with autocast(device):
        h, _ = model(x)
        loss = h.float().square().mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


@torch.no_grad()
def section_decode(device, cfg, budget):
    from titans_lightning.backbone.config import VARIANTS

    rows = []
    for context in cfg["contexts"]:
        for variant in VARIANTS:
            if budget.left() < 8:
                rows.append({"context": context, "variant": variant, "status": "skipped: section budget"})
                continue
            model = build_backbone(variant, cfg["size"], device)
            state = None
            with autocast(device):
                for start in range(0, context, cfg["piece"]):
                    x = torch.randn(1, min(cfg["piece"], context - start), model.dim, device=device)
                    _, state = model(x, state)
                one = torch.randn(1, 1, model.dim, device=device)
                model(one, state)  # warm-up (compiles the one-token kernels)
                times = [timed(functools.partial(model, one, state), device) for _ in range(cfg["steps"])]
            rows.append({"context": context, "variant": variant, "status": "ok",
                         "ms_per_token": 1e3 * statistics.median(times)})
    return {"size": cfg["size"], "precision": "bf16-autocast", "memory_backend": "auto", "rows": rows}


# ---------------------------------------------------------------- kernels


def chunk_tensors(device, memories=16, b=16, d=64, hidden=256):
    """One chunk's inputs of the chunk step (float32, requiring grad), depth 2."""
    g = torch.Generator().manual_seed(0)
    shapes = [(memories, b, d)] * 3 + [(memories, b)] * 2 + [(memories, b, b), (memories,), (memories, b),
                                                              (memories, hidden, 2 * d), (memories, d, 2 * hidden)]
    return [(torch.rand(s, generator=g) if len(s) < 3 or s == (memories, b, b) else 0.3 * torch.randn(s, generator=g))
            .to(device).requires_grad_() for s in shapes]


def profiled_kernels(step, inputs, device) -> int | None:
    """CUDA kernels of one forward + backward of `step`, from torch.profiler; None off CUDA."""
    if device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    outputs = step("gelu", 2, True, *inputs)
    torch.autograd.grad(outputs, inputs, [torch.ones_like(o) for o in outputs])  # warm-up
    sync(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        outputs = step("gelu", 2, True, *inputs)
        torch.autograd.grad(outputs, inputs, [torch.ones_like(o) for o in outputs])
        sync(device)
    ones = len(outputs)  # the probes' fills (ones_like) are not the step's
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    return max(len(kernels) - ones, 0)


def section_kernels(device, cfg, budget):
    from titans_lightning.memory import triton_step
    from titans_lightning.memory.chunk import chunk_step

    quick = cfg is QUICK
    shape = dict(memories=2, b=4, d=6, hidden=40) if quick else {}
    result = {"chunk": shape or dict(memories=16, b=16, d=64, hidden=256), "output_norm": True}
    result["torch/profiler_kernels"] = profiled_kernels(chunk_step, chunk_tensors(device, **shape), device)
    if device.type == "cpu":
        from benchmarks.kernels import eager_kernels

        inputs = chunk_tensors(device, **shape)
        result["torch/aten_ops_cpu"] = sum(eager_kernels(chunk_step, ("gelu", 2, True, *inputs), inputs))
        result["note"] = "the profiler's CUDA kernel counts need CUDA; CPU counts ATen ops of the torch step"
    usable, why = triton_usable(device)
    if not usable:
        result["triton"] = f"skipped: {why}"
        return result
    from titans_lightning.memory import triton_backward, triton_forward

    launches = {"count": 0}
    originals = [(triton_forward, "chunk_forward"), (triton_backward, "chunk_backward")]
    originals = [(module, name, getattr(module, name)) for module, name in originals]
    for module, name, launch in originals:  # each launches exactly one kernel

        def counting(*args, launch=launch):
            launches["count"] += 1
            return launch(*args)

        setattr(module, name, counting)
    try:
        inputs = chunk_tensors(device, **shape)
        outputs = triton_step.triton_chunk_step("gelu", 2, True, *inputs)
        torch.autograd.grad(outputs, inputs, [torch.ones_like(o) for o in outputs])
    finally:
        for module, name, launch in originals:
            setattr(module, name, launch)
    result["triton/launches"] = launches["count"]
    result["triton/profiler_kernels"] = profiled_kernels(triton_step.triton_chunk_step,
                                                         chunk_tensors(device, **shape), device)
    if device.type == "cuda":  # a whole layer call: everything around the chunk steps too
        for backend in ("torch", "triton"):
            result[f"layer_T2048/{backend}/kernels"] = layer_kernels(cfg["layer"], 2048, backend, device)
    return result


def layer_kernels(lc, seq, backend, device) -> int:
    """CUDA kernels of one NeuralMemory forward + backward (the memory_layer config) at seq tokens."""
    from torch.profiler import ProfilerActivity, profile

    model = memory_contender(backend, lc, device)
    x = torch.randn(lc["batch"], seq, lc["dim"], device=device)
    layer_step(model, x)
    sync(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        layer_step(model, x)
        sync(device)
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


# ---------------------------------------------------------------- the run


def section_env(device, cfg, budget):
    info = {"torch": torch.__version__, "device": str(device), "python": sys.version.split()[0],
            "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET")}
    if importlib.util.find_spec("triton") is not None:
        import triton

        info["triton"] = triton.__version__
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    with contextlib.suppress(Exception):
        root = Path(__file__).resolve().parent.parent
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                        text=True, timeout=10).stdout.strip()
    info["command"] = " ".join(sys.argv)
    return info


class Budget:
    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


def run_section(name, fn, device, cfg, seconds) -> dict:
    """fn's result with status and seconds; an exception or overrun is recorded, not raised."""
    start = time.perf_counter()
    try:
        with time_limit(seconds):
            result = {"status": "ok", **fn(device, cfg, Budget(seconds))}
    except Exception as e:  # SectionTimeout too, also when a callee wraps it (Triton's interpreter)
        if isinstance(e, SectionTimeout) or "SectionTimeout" in repr(e):
            result = {"status": f"timeout: section budget of {seconds:.0f} s exceeded"}
        else:
            result = {"status": f"error: {type(e).__name__}: {str(e)[:500]}",
                      "traceback": traceback.format_exc()[-3000:]}
    result["seconds"] = round(time.perf_counter() - start, 2)
    print(f"[gpu_check] {name}: {result['status']} ({result['seconds']} s)", flush=True)
    return result


def markdown(report: dict) -> str:
    """The report as one table per section (rows), or key: value lines."""
    lines = ["# GPU check", ""]
    for name, section in report.items():
        lines += [f"## {name}", "", f"status: {section.get('status')}, {section.get('seconds')} s", ""]
        scalars = {k: v for k, v in section.items() if k not in ("rows", "status", "seconds", "traceback")}
        lines += [f"- {k}: {_fmt(v)}" for k, v in scalars.items()] + [""]
        rows = section.get("rows") or []
        if rows:
            keys = list(dict.fromkeys(k for row in rows for k in row if k != "errors"))
            lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(_fmt(row.get(k, "")) for k in keys) + " |" for row in rows] + [""]
        if "traceback" in section:
            lines += ["```", section["traceback"], "```", ""]
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the CPU dry run)")
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu" and "triton" not in sys.modules:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton's first import: its interpreter
    cfg, scale = (QUICK, 0.5) if args.quick else (FULL, 1.0)
    functions = {"env": section_env, "agreement": section_agreement, "variants": section_variants,
                 "memory_layer": section_memory_layer, "training": section_training, "decode": section_decode,
                 "kernels": section_kernels}
    report = {}
    for name in ["env", *args.sections]:
        report[name] = run_section(name, functions[name], device, cfg, max(BUDGETS[name] * scale, 10))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "gpu_check.md").write_text(markdown(report))
    print(f"[gpu_check] wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    return report


if __name__ == "__main__":
    main()
