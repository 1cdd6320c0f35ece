"""``compile_backbone`` (``--model.compile true``): every variant gives eager's outputs and
gradients in float32, through compiled code, and decoding does not recompile token by token.

Compiled graphs are shared by all tests in the process (one compiled chunk step, one graph per
module kind and shape), so the variants after the first mostly reuse them.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch._dynamo.utils import counters

from titans_lightning.backbone import TitansBackbone, TitansConfig
from titans_lightning.backbone.config import MEMORY_VARIANTS, VARIANTS
from titans_lightning.memory import NeuralMemory
from titans_lightning.parallelize import checkpoint_blocks, compile_backbone, compiled_chunk_step

T = 19  # debug size: five chunks of 4 (the last one ragged), three MAC segments of 8
RTOL = 1e-5  # float32: ||compiled - eager|| / ||eager||, per tensor
# gradients: eager's first memory chunk takes the shared-M_0 products (memory/shared_start.py, autograd),
# the compiled one the hand-written step: the same formulas summed in another order
# (their float64 agreement is tests/memory/test_shared_start.py's)
GRAD_RTOL = 3e-5


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def build(variant: str) -> tuple[TitansBackbone, TitansBackbone]:
    """An eager debug backbone and a compiled copy with the same weights."""
    torch.manual_seed(0)
    eager = TitansBackbone(TitansConfig(variant=variant, size="debug"))
    return eager, compile_backbone(copy.deepcopy(eager))


def output_and_grads(model: TitansBackbone, x: torch.Tensor):
    h, _ = model(x)
    probe = torch.linspace(-1, 1, h.numel()).view_as(h)
    return h, torch.autograd.grad((h * probe).sum(), list(model.parameters()))


@pytest.mark.parametrize("variant", VARIANTS)
def test_compiled_equals_eager_forward_and_backward(variant):
    eager, compiled = build(variant)
    x = torch.randn(2, T, eager.dim, generator=torch.Generator().manual_seed(1))
    h, grads = output_and_grads(eager, x)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        h_compiled, grads_compiled = output_and_grads(compiled, x)
    ran = {e.name for e in prof.events()}
    assert any(n.startswith("Torch-Compiled Region") for n in ran), "the forward ran no compiled code"
    assert any("CompiledFunctionBackward" in n for n in ran), "the backward ran no compiled code"
    assert relative_error(h_compiled, h) < RTOL
    for (name, _), g, g_compiled in zip(eager.named_parameters(), grads, grads_compiled):
        assert g.abs().sum() > 0, name
        assert relative_error(g_compiled, g) < GRAD_RTOL, name
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    memories = [m for m in compiled.modules() if isinstance(m, NeuralMemory)]
    assert len(memories) == (eager.config.depth if variant in MEMORY_VARIANTS else 0)
    assert all(m.chunk_step is compiled_chunk_step() for m in memories)


def ancestors(event):
    """The names of the profiler events enclosing ``event``."""
    while (event := event.cpu_parent) is not None:
        yield event.name


def test_compiled_step_inside_checkpointed_memory_segments():
    """``--model.compile true`` with ``--model.activation_checkpointing true`` (checkpointing first,
    as ``TitansTask.parallelize`` does): the memory's ``titans::chunk_segment`` ops run the
    compiled chunk step, forward and in their backward's rerun, and give eager's outputs and
    gradients."""
    torch.manual_seed(0)
    eager = TitansBackbone(TitansConfig(variant="mac", size="debug"))
    compiled = copy.deepcopy(eager)
    checkpoint_blocks(compiled.blocks, memory_segment=2)
    compile_backbone(compiled)
    x = torch.randn(2, T, eager.dim, generator=torch.Generator().manual_seed(1))
    h, grads = output_and_grads(eager, x)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        h_compiled, grads_compiled = output_and_grads(compiled, x)
    # the names of the events each compiled region ran inside
    regions = [set(ancestors(e)) for e in prof.events() if e.name.startswith("Torch-Compiled Region")]
    assert any("titans::chunk_segment" in a for a in regions), "the segments' forward ran no compiled step"
    assert any("GeneratedBackwardFor_titans_chunk_segment_defaultBackward" in a for a in regions), \
        "the segments' backward ran no compiled step"
    assert relative_error(h_compiled, h) < RTOL
    for (name, _), g, g_compiled in zip(eager.named_parameters(), grads, grads_compiled):
        assert relative_error(g_compiled, g) < GRAD_RTOL, name


@torch.no_grad()
def test_decoding_compiles_no_graph_per_token():
    """A prefill (chunks of 4), then single tokens: each call is one chunk of width 1, with
    reference weights mid-chunk and without them on a chunk boundary (positions 12, 16). Once
    the first three tokens (10, 11, 12) have met every such form, the next six compile nothing,
    and the hidden states equal eager's."""
    eager, compiled = build("lmm")
    x = torch.randn(1, T, eager.dim, generator=torch.Generator().manual_seed(2))
    outputs, new_graphs = {}, 0
    for name, model in (("eager", eager), ("compiled", compiled)):
        h, state = model(x[:, :10])
        steps = [h]
        for t in range(10, T):
            before = counters["stats"]["unique_graphs"]
            h, state = model(x[:, t : t + 1], state)
            steps.append(h)
            new_graphs += counters["stats"]["unique_graphs"] - before if t >= 13 else 0
        outputs[name] = torch.cat(steps, 1)
    assert relative_error(outputs["compiled"], outputs["eager"]) < RTOL
    assert new_graphs == 0
