"""The Triton chunk step (forward and backward kernels) on CPU, through Triton's interpreter.

Triton decides at import whether its functions run interpreted (its own library when `triton`
is imported, our kernels when `triton_forward`/`triton_backward` are): TRITON_INTERPRET=1 must be
set before either. If nothing has imported triton when this module is collected, it imports it
under the interpreter here (restoring the environment after) and the tests run in this process;
if something already has (lightning imports triton, so a whole-suite run usually has), the tests
are skipped here and `test_in_a_fresh_process` runs this file in a subprocess instead.

Sizes are tiny and mostly not powers of two (masked tiles), with a hidden width of 40 walked in
two blocks of 32. Everything is float32: against the torch `ChunkStep` and the float64
token-by-token reference, outputs, final states and every gradient agree to ~1e-4 relative.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from titans_lightning.memory import NeuralMemory, neural_memory, neural_memory_reference
from titans_lightning.memory.chunk import chunk_step
from titans_lightning.memory.triton_step import BLOCK_H, triton_chunk_step

from .conftest import make_problem

HAVE_TRITON = importlib.util.find_spec("triton") is not None
DIFFERENTIABLE = ("q", "k", "v", "lr", "momentum", "decay")
DIM, HIDDEN = 6, 40  # 40 > BLOCK_H: two hidden blocks, the second partial


def _triton_interpreted() -> bool:
    """Import triton under its interpreter unless this process already has it; whether its
    library runs interpreted here."""
    if not HAVE_TRITON:
        return False
    if "triton" not in sys.modules:
        previous = os.environ.get("TRITON_INTERPRET")
        os.environ["TRITON_INTERPRET"] = "1"
        try:
            import triton.language  # noqa: F401
        finally:
            if previous is None:
                del os.environ["TRITON_INTERPRET"]
            else:
                os.environ["TRITON_INTERPRET"] = previous
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(tl.sum, InterpretedFunction)


IN_PROCESS = _triton_interpreted()
pytestmark = pytest.mark.skipif(not HAVE_TRITON, reason="triton is not installed (pip install triton)")
in_process = pytest.mark.skipif(not IN_PROCESS, reason="triton was imported without its interpreter in this "
                                "process: test_in_a_fresh_process runs these tests")


@pytest.mark.skipif(IN_PROCESS, reason="the tests run in this process")
def test_in_a_fresh_process():
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:warnings", __file__]
    out = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert " passed" in out.stdout, out.stdout[-2000:]


@pytest.fixture(autouse=True)
def interpret(monkeypatch):
    """TRITON_INTERPRET=1 while this module's tests run (our kernel modules are imported inside
    them); the other tests see the environment unchanged."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def _rel_close(actual, expected, rtol=1e-4, name=""):
    """|actual - expected| <= rtol * max|expected| (+ a floor for all-zero tensors)."""
    err = (actual.double() - expected.double()).abs().max().item()
    scale = expected.double().abs().max().item()
    assert err <= rtol * scale + 1e-7, f"{name}: max error {err:.3g} against scale {scale:.3g}"


def _chunk_inputs(b, D, H, V, ref, seed=0, N=3):
    """One chunk's float32 tensors (`ChunkStep`'s order), gates in (0, 1), all requiring grad."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(N, b, D), (N, b, D), (N, b, V), (N, b), (N, b), (N, b, b), (N,), (N, b), (N, H, 2 * D), (N, V, 2 * H)]
    shapes += [(N, H, D), (N, V, H)] if ref else []
    tensors = [torch.rand(s, generator=g) if len(s) < 3 or i == 5 else 0.5 * torch.randn(s, generator=g)
               for i, s in enumerate(shapes)]
    return [t.requires_grad_() for t in tensors]


CHUNK_CASES = [  # (output_norm, ref, b, D, H, V, used outputs)
    pytest.param(True, False, 5, DIM, HIDDEN, DIM, (0, 1, 2), id="norm-ragged"),
    pytest.param(False, True, 5, DIM, HIDDEN, DIM, (0, 1, 2), id="plain-separate-ref"),
    pytest.param(True, True, 1, 8, 16, 8, (0, 1, 2), id="norm-separate-ref-one-token"),
    pytest.param(False, False, 16, 16, 64, 8, (0, 1, 2), id="pow2-widths-out-narrower"),
    pytest.param(True, False, 7, DIM, HIDDEN, DIM, (1, 2), id="state-only"),
    pytest.param(False, False, 7, DIM, HIDDEN, DIM, (0, 2), id="output-and-top-layer"),
]


@in_process
@pytest.mark.parametrize("output_norm, ref, b, D, H, V, used", CHUNK_CASES)
def test_chunk_step_matches_torch_chunk_step(output_norm, ref, b, D, H, V, used):
    results = []
    for step in (triton_chunk_step, chunk_step):
        inputs = _chunk_inputs(b, D, H, V, ref)
        outputs = step("gelu", 2, output_norm, *inputs)
        probes = [torch.linspace(-1, 1, outputs[i].numel()).view_as(outputs[i]) for i in used]
        results.append((outputs, torch.autograd.grad([outputs[i] for i in used], inputs, probes)))
    (fast, fast_grads), (slow, slow_grads) = results
    for i, (a, e) in enumerate(zip(fast, slow)):
        _rel_close(a, e, 1e-5, f"output {i}")
    for i, (a, e) in enumerate(zip(fast_grads, slow_grads)):
        _rel_close(a, e, 1e-5, f"gradient of input {i}")


def _problem(tokens, dtype):
    """`make_problem` drawn in float64 (the same numbers whatever dtype) and cast to dtype."""
    p = make_problem(tokens=tokens, dim=DIM, hidden=HIDDEN)
    return {n: x.to(dtype) if torch.is_tensor(x) else [w.to(dtype) for w in x] for n, x in p.items()}


def _leaves(problem):
    for name in DIFFERENTIABLE:
        problem[name] = problem[name].clone().requires_grad_()
    problem["weights"] = [w.clone().requires_grad_() for w in problem["weights"]]
    return [problem[n] for n in DIFFERENTIABLE] + problem["weights"]


def _run(fn, dtype, tokens, mask=None, **kwargs):
    """(y, state, gradients of q, k, v, lr, momentum, decay, weights) of a probe loss."""
    p = _problem(tokens, dtype)
    leaves = _leaves(p)
    y, state = fn(**p, mask=mask, **kwargs)
    return y, state, torch.autograd.grad(_probe_loss(y, state), leaves)


def _probe_loss(y, state):
    """A fixed linear probe of y plus the squared final state. (Not y.square(): with the output
    norm, sum LN(u)^2 is nearly constant, so its gradient is a cancellation even in float64.)"""
    probe = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    return (y * probe).sum() + sum((w**2).sum() for w in state.weights + state.momentum)


def _assert_runs_agree(fast, slow, rtol=1e-4):
    _rel_close(fast[0], slow[0], rtol, "y")
    for i, (a, e) in enumerate(zip(fast[1].weights + fast[1].momentum, slow[1].weights + slow[1].momentum)):
        _rel_close(a, e, rtol, f"state tensor {i}")
    for name, a, e in zip(DIFFERENTIABLE + ("W0", "W1"), fast[2], slow[2]):
        assert a.abs().sum() > 0, f"no gradient reaches {name}"
        _rel_close(a, e, rtol, f"gradient of {name}")


def _mask(tokens):
    mask = torch.ones(2, tokens, dtype=torch.bool)
    mask[0, 3:9] = False  # a hole across a chunk boundary
    mask[1, tokens - 4 :] = False  # right padding
    return mask


MEMORY_CASES = [  # (chunk_size, tokens, output_norm, masked)
    pytest.param(5, 23, False, False, id="b5-ragged"),
    pytest.param(4, 18, True, True, id="b4-norm-masked"),
    pytest.param(16, 11, True, False, id="b16-longer-than-call"),
]


@in_process
@pytest.mark.parametrize("chunk_size, tokens, output_norm, masked", MEMORY_CASES)
def test_neural_memory_matches_reference_and_torch(chunk_size, tokens, output_norm, masked):
    """float32 Triton vs the float64 token-by-token reference and the float32 torch path."""
    mask = _mask(tokens) if masked else None
    kwargs = dict(chunk_size=chunk_size, output_norm=output_norm)
    fast = _run(neural_memory, torch.float32, tokens, mask, backend="triton", **kwargs)
    _assert_runs_agree(fast, _run(neural_memory_reference, torch.float64, tokens, mask, **kwargs))
    _assert_runs_agree(fast, _run(neural_memory, torch.float32, tokens, mask, backend="torch", **kwargs), 1e-5)


def _in_pieces(fn, p, cuts, **kwargs):
    """Feed p's tokens in pieces cut at `cuts`, carrying the state. -> (y, final state)."""
    state, ys = None, []
    for lo, hi in zip([0] + cuts, cuts + [p["q"].shape[1]]):
        piece = {n: p[n][:, lo:hi] for n in DIFFERENTIABLE}
        y, state = fn(**piece, weights=p["weights"], state=state, **kwargs)
        ys.append(y)
    return torch.cat(ys, dim=1), state


@in_process
def test_pieces_equal_whole():
    """A stream cut mid-chunk (the next call's first chunk has a separate reference R) and on a
    chunk boundary gives one call's outputs, states and gradients."""
    results = []
    for cuts in ([], [7, 10]):
        p = _problem(17, torch.float32)
        leaves = _leaves(p)
        y, state = _in_pieces(neural_memory, p, cuts, chunk_size=5, output_norm=True, backend="triton")
        loss = _probe_loss(y, state)
        results.append((y, state, torch.autograd.grad(loss, leaves)))
    (y, state, grads), (y_cut, state_cut, grads_cut) = results
    _rel_close(y_cut, y, 1e-5, "y")
    for a, e in zip(state_cut.weights + state_cut.momentum + state_cut.ref_weights,
                    state.weights + state.momentum + state.ref_weights):
        _rel_close(a, e, 1e-5, "state")
    for name, a, e in zip(DIFFERENTIABLE + ("W0", "W1"), grads_cut, grads):
        _rel_close(a, e, 1e-4, f"gradient of {name}")


@in_process
def test_gradients_through_a_state_cut_mid_chunk_match_reference():
    grads = []
    for fn, dtype, extra in ((neural_memory, torch.float32, {"backend": "triton"}),
                             (neural_memory_reference, torch.float64, {})):
        p = _problem(13, dtype)
        leaves = _leaves(p)
        y, end = _in_pieces(fn, p, [6], chunk_size=4, **extra)
        grads.append(torch.autograd.grad(_probe_loss(y, end), leaves))
    for name, a, e in zip(DIFFERENTIABLE + ("W0", "W1"), *grads):
        _rel_close(a, e, 1e-4, f"gradient of {name}")


def _layer_grads(backend, checkpoint_segment=0, autocast=False):
    torch.manual_seed(0)
    layer = NeuralMemory(12, heads=2, chunk_size=4, memory_expansion=3, backend=backend)  # d 6, hidden 18
    layer.checkpoint_segment = checkpoint_segment
    x = torch.randn(2, 13, 12, generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y, state = layer(x)
        y.float().square().mean().backward()
    return y, state, {name: p.grad for name, p in layer.named_parameters()}


@in_process
@pytest.mark.parametrize("checkpoint_segment, autocast", [
    pytest.param(0, False, id="float32"),
    pytest.param(2, False, id="checkpointed-chunks"),
    pytest.param(0, True, id="bf16-autocast"),
])
def test_layer_triton_backend_matches_torch(checkpoint_segment, autocast):
    """The layer end to end: parameter gradients equal the torch backend's (bf16 autocast: the
    same bf16 projections either way, the memory in float32 inside both)."""
    fast_y, fast_state, fast = _layer_grads("triton", checkpoint_segment, autocast)
    slow_y, slow_state, slow = _layer_grads("torch", checkpoint_segment, autocast)
    assert all(w.dtype == torch.float32 for w in fast_state.fast.weights)
    rtol = 1e-2 if autocast else 1e-4  # bf16 rounding of the projections' backward may differ
    _rel_close(fast_y.float(), slow_y.float(), rtol, "y")
    for name, g in fast.items():
        _rel_close(g, slow[name], rtol, name)


@in_process
def test_block_h_is_smaller_than_the_hidden_width():
    """The tiling over the hidden width is exercised: the tests' hidden width spans two blocks."""
    assert BLOCK_H < HIDDEN <= 2 * BLOCK_H
