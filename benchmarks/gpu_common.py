"""What the sections of ``benchmarks/gpu_check.py`` share: the section timeout, device sync and
bf16 autocast, whether Triton can run, the models they build, and interleaved timing."""

from __future__ import annotations

import importlib.util
import statistics
import time

import torch


class SectionTimeout(Exception):
    pass


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


def build_backbone(variant, size, device, backend="auto"):
    from titans_lightning.backbone import TitansBackbone, TitansConfig

    torch.manual_seed(0)
    extra = {"persistent_tokens": 0} if variant == "transformer" else {}
    return TitansBackbone(TitansConfig.from_name(size, variant=variant, memory_backend=backend, **extra)).to(device)


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
