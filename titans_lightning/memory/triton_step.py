"""The chunk step as Triton kernels, and the choice of backend (`neural_memory(..., backend=...)`).

`TritonChunkStep` has the contract of `chunk.ChunkStep` (same arguments, outputs and gradients,
including the meta-gradient through the inner update) for the layer's default memory: depth 2,
exact (erf) GELU, with or without the output LayerNorm, any widths, with or without a separate
gradient reference R. Its forward is one kernel launch per chunk (`triton_forward.py`) and its
backward one more (`triton_backward.py`), one program per memory, against a few hundred small
ATen kernels per chunk for the torch step. Everything runs in float32 (the memory's precision
policy: `neural_memory` upcasts bf16 inputs before any step sees them); float64 stays on torch.

Backends: "torch" is `chunk_step` (or the step given); "triton" is this step and raises when it
cannot run (a config it does not cover, no triton, CPU tensors outside Triton's interpreter);
"auto" takes it for CUDA tensors when triton imports and the config is covered, else torch.
On CPU the kernels run only under Triton's interpreter (`TRITON_INTERPRET=1` set before triton
and these kernels are first imported: both decide at import): that is how the tests check them,
slowly. Nothing here imports triton until a Triton step is chosen.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from typing import Optional

import torch
from torch import Tensor

from .chunk import chunk_step
from .precision import autocast_off

BACKENDS = ("auto", "torch", "triton")
#: hidden-width tile of the kernels for chunks of up to 32 tokens (a power of two >= 16; a narrower
#: hidden width uses one tile); wider chunks use half of it (`block_h`)
BLOCK_H = 32


def block_h(b: int) -> int:
    """The hidden tile for chunks of b tokens: shared memory and registers grow with b x BH tiles.
    Compiled for sm_90 (widths 64 in, 256 hidden; Triton 3.8, not run) the backward needs 66 KB
    of shared memory at b = 16 with 32 and 168 KB at b = 64 with 16; Hopper allows 227 KB."""
    return BLOCK_H if b <= 32 else BLOCK_H // 2


@functools.cache
def triton_available() -> bool:
    """Whether `import triton` works (tried once per process)."""
    try:
        importlib.import_module("triton")
    except ImportError:
        return False
    return True


def unsupported(depth: int, activation: str, per_channel: bool, dtype: torch.dtype) -> Optional[str]:
    """Why the Triton step cannot run this memory, or None when it can."""
    if depth != 2:
        return f"memory depth {depth} (the kernels cover depth 2)"
    if activation != "gelu":
        return f"activation {activation!r} (the kernels cover 'gelu')"
    if per_channel:
        return "per-channel decay (the kernels cover one decay per token)"
    if dtype != torch.float32:
        return f"compute dtype {dtype} (the kernels run float32)"
    return None


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def select_step(backend: str, step: Callable, device: torch.device, depth: int, activation: str,
                per_channel: bool, dtype: torch.dtype) -> Callable:
    """The chunk step `neural_memory` runs for `backend` (see the module docstring).

    `step` is the caller's step (`chunk_step` unless compiled or wrapped): "torch" keeps it,
    "triton" replaces it, "auto" replaces only the default `chunk_step` (a step chosen on
    purpose, such as `parallelize.compile_memory`'s compiled one, is kept).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return step
    reason = unsupported(depth, activation, per_channel, dtype)
    if backend == "auto":
        usable = device.type == "cuda" and reason is None and triton_available()
        return triton_chunk_step if usable and step is chunk_step else step
    if reason is not None:
        raise ValueError(f"backend='triton' does not support {reason}; use backend='torch' or 'auto'")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"backend='triton' runs on CUDA tensors (or CPU under TRITON_INTERPRET=1), "
                         f"got {device.type}")
    if device.type == "cpu" and not _interpreting():
        raise ValueError("backend='triton' on CPU tensors runs only under Triton's interpreter: set "
                         "TRITON_INTERPRET=1 before triton is first imported (slow; for tests)")
    if not triton_available():
        raise ValueError("backend='triton' needs the triton package (pip install triton)")
    return triton_chunk_step


def _kernels():
    """The kernel modules, imported on first use; refuses CPU tensors if they were compiled for a GPU."""
    from . import triton_backward, triton_forward

    return triton_forward, triton_backward


def _check_device(x: Tensor) -> None:
    """CPU tensors need Triton's interpreter for triton's own library (decorated when triton is
    imported) and for these kernels (decorated when their modules are)."""
    if x.device.type != "cpu":
        return
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    kernel = _kernels()[0].chunk_forward_kernel
    if not (isinstance(tl.sum, InterpretedFunction) and isinstance(kernel, InterpretedFunction)):
        raise RuntimeError("the Triton step got CPU tensors, but triton (or its kernels) was imported without "
                           "TRITON_INTERPRET=1 in this process: set it before anything imports triton")


class TritonChunkStep(torch.autograd.Function):
    """(q, k, v, gates, WS[, R]) of one chunk -> (y, WS'), as `chunk.ChunkStep`, in two kernels.

    Args (forward): activation ("gelu"), L (2), output_norm, then `ChunkStep`'s tensors, float32:
    q, k (N,b,i_0), v (N,b,o_1), beta, f (N,b), G (N,b,b), m_end (N,), m_mix (N,b), WS_0, WS_1
    (N,o_l,2i_l), optionally R_0, R_1 (N,o_l,i_l).
    """

    @staticmethod
    def forward(ctx, activation, L, output_norm, *tensors):
        if activation != "gelu" or L != 2:
            raise ValueError(f"the Triton chunk step covers depth 2 with gelu, got depth {L} with {activation!r}")
        if any(t.dtype != torch.float32 for t in tensors):
            raise TypeError("the Triton chunk step runs float32 tensors")
        _check_device(tensors[0])
        q, k, v, beta, f, G, m_end, m_mix, WS0, WS1, *R_given = tensors
        R = R_given or [WS0[..., : WS0.shape[-1] // 2], WS1[..., : WS1.shape[-1] // 2]]
        inputs = (q, k, v, beta, f, G, m_end, m_mix, WS0, WS1, *R)
        y, ws0, ws1, *saved = _kernels()[0].chunk_forward(output_norm, block_h(q.shape[1]), *inputs)
        ctx.output_norm, ctx.separate_ref = output_norm, bool(R_given)
        ctx.save_for_backward(*tensors, *saved)
        ctx.set_materialize_grads(False)  # absent gradients are skipped by the kernel, not zero-filled
        return y, ws0, ws1

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, dws0, dws1):
        saved = ctx.saved_tensors
        inputs, kernel_saved = list(saved[:-6]), saved[-6:]
        if not ctx.separate_ref:
            inputs += [inputs[8][..., : inputs[8].shape[-1] // 2], inputs[9][..., : inputs[9].shape[-1] // 2]]
        with autocast_off(saved[0].device):
            grads = _kernels()[1].chunk_backward(ctx.output_norm, block_h(inputs[0].shape[1]), inputs,
                                                 kernel_saved, dy, dws0, dws1, ctx.separate_ref)
        return (None, None, None, *grads)


def triton_chunk_step(activation: str, L: int, output_norm: bool, *tensors: Tensor) -> tuple[Tensor, ...]:
    """One chunk through the Triton kernels: `TritonChunkStep.apply`, `chunk.chunk_step`'s contract."""
    return TritonChunkStep.apply(activation, L, output_norm, *tensors)
