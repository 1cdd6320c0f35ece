"""The memory sections of ``benchmarks/gpu_check.py``: agreement with the float64 reference,
the memory layer's speed and peak memory, and kernels per chunk step."""

from __future__ import annotations

import functools
import importlib.util

import torch

from benchmarks.gpu_common import autocast, interleaved, layer_step, memory_contender, peak_mb, sync, triton_usable


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

    quick = cfg.get("quick", False)
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
