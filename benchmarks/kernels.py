"""Kernel counts of the memory's chunk step, eager and compiled: the launches a GPU would pay.

On a GPU the chunk step of a small memory is launch-bound: each kernel costs a few microseconds
to launch whatever its arithmetic. Eager launches one kernel per ATen op that computes (views and
bare allocations launch none); inductor launches its fused kernels plus the library calls it
keeps (``bmm``, ``baddbmm``), which its generated ``call`` function lists one per line.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch._inductor.utils import run_and_get_code
from torch.utils._python_dispatch import TorchDispatchMode


class KernelCounter(TorchDispatchMode):
    """Counts the ATen ops dispatched inside it that launch a kernel (not views, not ``empty*``)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view and not func.__name__.startswith(("empty", "new_empty")):
            self.count += 1
        return func(*args, **(kwargs or {}))


def launches(code: str) -> int:
    """Kernel calls in the ``call`` function of inductor's generated code: fused kernels
    (``cpp_fused_*(``, or a Triton kernel's ``.run(``) and extern calls (``extern_kernels.*(``)."""
    body = code[code.index("def call("):]
    return len(re.findall(r"^\s+(?:cpp_fused_\w+\(|\w+\.run\(|extern_kernels\.\w+\()", body, re.M))


def eager_kernels(step: Callable, args: tuple, inputs: list[torch.Tensor]) -> tuple[int, int]:
    """(forward, backward) kernels of one eager ``step(*args)``; gradients reach ``inputs``."""
    with KernelCounter() as forward:
        outputs = step(*args)
    probes = [torch.ones_like(o) for o in outputs]  # made outside the counter: not the step's
    with KernelCounter() as backward:
        torch.autograd.grad(outputs, inputs, probes)
    return forward.count, backward.count


def compiled_kernels(step: Callable, args: tuple, inputs: list[torch.Tensor]) -> tuple[int, int]:
    """(forward, backward) kernel launches of ``torch.compile(step, fullgraph=True)``.

    ``step`` must not have been compiled in this process yet with these shapes (its generated
    code is captured while it compiles): pass a function of its own.
    """

    def forward_backward() -> None:
        outputs = torch.compile(step, fullgraph=True)(*args)
        torch.autograd.grad(outputs, inputs, [torch.ones_like(o) for o in outputs])

    _, codes = run_and_get_code(forward_backward)
    if len(codes) != 2:
        raise RuntimeError(f"expected a forward and a backward graph, got {len(codes)}")
    return launches(codes[0]), launches(codes[1])
