"""The backbone sections of ``benchmarks/gpu_check.py``: every variant under the sync debug mode,
training tokens/s against the transformer, and decode latency."""

from __future__ import annotations

import functools
import statistics

import torch

from benchmarks.gpu_common import SectionTimeout, autocast, build_backbone, interleaved, sync, timed, triton_usable


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
