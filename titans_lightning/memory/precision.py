"""The memory's precision policy: its recurrence runs in float32 (float64 kept) under any autocast.

The fast weights are summed over thousands of tokens and the hand-written backward accumulates
into float32 buffers in place (`baddbmm_`), so a bf16/fp16 autocast must not reach either: the
forward (`neural_memory`, `NeuralMemory.retrieve`) and `ChunkStep.backward` run inside
`autocast_off`. Backward needs its own guard: `loss.backward()` called inside an autocast region
runs the Functions' backward under it.
"""

from __future__ import annotations

import contextlib

import torch


def autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    """A context that disables autocast on ``device``'s type; a no-op where autocast does not
    exist (the ``meta`` device, on which the tests trace the model without data)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()
