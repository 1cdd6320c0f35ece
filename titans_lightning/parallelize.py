"""Parallelism and memory savings applied from outside the model (torchtitan's ``parallelize.py``).

The model code is single-device and never branches on DDP, FSDP, checkpointing or compilation.
This file names the one unit that FSDP shards and activation checkpointing recomputes (each block
of ``TitansBackbone.blocks``), what ``torch.compile`` compiles (``compile_backbone``), and provides
the strategy that the ``recipes/trainer/fsdp.yaml`` fragment selects: FSDP2 (``fully_shard``) over
every rank, which runs on CPUs over gloo as well as on GPUs over NCCL (Lightning's
``strategy="fsdp"`` refuses CPUs).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Optional

import torch
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn
from torch.distributed._composable import checkpoint
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

from titans_lightning.backbone.attention import RMSNorm, SwiGLU
from titans_lightning.memory import NeuralMemory
from titans_lightning.memory.chunk import chunk_step
from titans_lightning.memory.functional import keep_segment_outputs

DATA_PARALLEL = "data_parallel"
TENSOR_PARALLEL = "tensor_parallel"


def fully_shard_blocks(
    root: nn.Module,
    blocks: Iterable[nn.Module],
    mesh: DeviceMesh,
    mp_policy: Optional[MixedPrecisionPolicy] = None,
) -> nn.Module:
    """Shard every block, then the root (which takes the remaining parameters: embeddings,
    head, final norm), over the data-parallel dimension of ``mesh``.

    Per-block units bound peak memory to one gathered block at a time and let the all-gather of
    block i+1 overlap the compute of block i. The root must be entered through ``forward`` for its
    own parameters to be gathered (``TitansTask`` routes every step through ``forward``).
    """
    if mesh.mesh_dim_names and DATA_PARALLEL in mesh.mesh_dim_names:
        if TENSOR_PARALLEL in mesh.mesh_dim_names and mesh[TENSOR_PARALLEL].size() > 1:
            raise ValueError("Titans blocks have no tensor-parallel plan: use a mesh with "
                             "tensor_parallel size 1 (FullyShardedStrategy does).")
        mesh = mesh[DATA_PARALLEL]
    mp_policy = mp_policy or MixedPrecisionPolicy()  # the default policy: no casting
    for block in blocks:
        fully_shard(block, mesh=mesh, mp_policy=mp_policy)
    fully_shard(root, mesh=mesh, mp_policy=mp_policy)
    return root


_SEGMENT = torch.ops.titans.chunk_segment.default  # registered by memory/functional.py
# what `save_segments_and_matmuls` also keeps: the blocks' projections and attention (not aten.bmm,
# which the memory's retrieval and chunk steps use)
_MATMULS = {
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,
    torch.ops.aten._scaled_dot_product_flash_attention.default,
    torch.ops.aten._scaled_dot_product_efficient_attention.default,
    torch.ops.aten._scaled_dot_product_cudnn_attention.default,
}


def save_chunk_segments(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    """Selective-checkpointing policy: keep the outputs of every memory segment
    (``titans::chunk_segment``: its K chunk outputs and segment-end WS'), recompute all else."""
    return CheckpointPolicy.MUST_SAVE if op is _SEGMENT else CheckpointPolicy.PREFER_RECOMPUTE


def save_segments_and_matmuls(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    """``save_chunk_segments``, and also keep the blocks' matmul and attention outputs: only
    pointwise ops, norms, views and each memory call's last chunk are recomputed."""
    keep = op is _SEGMENT or op in _MATMULS
    return CheckpointPolicy.MUST_SAVE if keep else CheckpointPolicy.PREFER_RECOMPUTE


def checkpoint_blocks(blocks: Iterable[nn.Module], memory_segment: int = 8,
                      policy: Optional[Callable[..., CheckpointPolicy]] = None) -> None:
    """Activation checkpointing of every block, and of the memory's chunk recurrence inside it.

    Each block keeps its input during the forward and recomputes its activations in the
    backward (non-reentrant ``torch.utils.checkpoint`` through the composable API, so parameter
    names, state dicts and FSDP wrapping are unchanged; apply before ``fully_shard_blocks``).
    Every ``NeuralMemory`` inside also keeps one chunk state in ``memory_segment``
    (``neural_memory``'s ``checkpoint_segment``): each run of that many chunks is one
    ``titans::chunk_segment`` op, whose backward reruns its chunks. Gradients are unchanged.

    Selective: the segments' outputs (y and one WS' per segment, about 1/K of the chunk states)
    are kept through the block's recompute, which therefore skips the chunk recurrence (a large
    part of a memory block's forward): each chunk's forward runs twice a step, not three times.
    ``policy`` None does this with ``keep_segment_outputs``, two plain contexts around the
    forward and the recompute. A policy function (``save_chunk_segments``: the same choice;
    ``save_segments_and_matmuls``: also the blocks' matmuls and attention) runs torch's selective
    checkpointing with it instead, whose dispatch mode adds Python time to every op of the
    block, forward and recompute; on the small MAC at 8K tokens (``bench_checkpointing.py``) only
    the default meets the target of at most 1/3 of the peak memory at most 1.3x the step time,
    and keeping the matmuls cost memory without a faster step. ``memory_segment`` = 0 leaves
    the recurrence whole and the blocks plainly checkpointed.
    """
    if not memory_segment:
        context_fn = None
    elif policy is None:
        context_fn = keep_segment_outputs
    else:
        context_fn = functools.partial(create_selective_checkpoint_contexts, policy)
    for block in blocks:
        checkpoint(block, context_fn=context_fn)
        for module in block.modules():
            if isinstance(module, NeuralMemory):
                module.checkpoint_segment = memory_segment


@functools.cache
def compiled_chunk_step() -> Callable:
    """``torch.compile(chunk_step, fullgraph=True)``, made once per process and shared by every
    memory layer, so that layers of the same shapes reuse one compiled graph.

    Dynamo traces ``ChunkStep`` (an ``autograd.Function``) forward and hand-written backward into
    one graph pair; inductor fuses each (a depth-2 chunk: 47 + 205 eager kernels, forward +
    backward, become 18 + 39 launches; ``benchmarks/bench_compile.py``). Default dynamic
    shapes: a run's chunks are all ``b`` wide and compile once with static shapes; the first call
    of another width (a decode step inside one chunk, a smaller last batch) recompiles once with
    symbolic sizes, which then serve every width. Guards also separate grad / no-grad and the
    first chunk of a stream resumed mid-chunk (extra reference weights): a handful of graphs.
    """
    return torch.compile(chunk_step, fullgraph=True)


def compile_memory(module: nn.Module) -> int:
    """Give every ``NeuralMemory`` inside ``module`` the compiled chunk step; returns how many.

    Only the step of one chunk is compiled, not the layer: the loop over a sequence's chunks
    (512 at 8K tokens and b = 16) stays in Python, calling the same small graph each time.
    Compiling the layer or its block instead would unroll that loop into one graph per sequence
    length. The per-channel-decay path (``per_channel_decay=True``) keeps its eager autograd step.
    """
    memories = [m for m in module.modules() if isinstance(m, NeuralMemory)]
    for memory in memories:
        memory.chunk_step = compiled_chunk_step()
    return len(memories)


def compile_backbone(backbone: nn.Module) -> nn.Module:
    """Compile what pays off in a backbone, in place (``--model.compile true``); returns it.

    - every memory's chunk step (``compile_memory``): one graph per chunk, loop kept in Python;
    - every ``RMSNorm`` and ``SwiGLU`` (``Module.compile``, fullgraph): pointwise chains that
      inductor fuses into one or two kernels; all blocks share one graph per module kind and
      shape, and parameter names (state dicts, FSDP) are unchanged.

    Whole blocks are not compiled: a memory block would unroll its chunk loop, and for the
    attention-only variants a compiled block measured slower than compiled norms and MLP on CPU
    (small transformer, T = 1024: 1.045x against 1.065x over eager). Apply before
    ``fully_shard_blocks``.
    """
    compile_memory(backbone)
    for module in backbone.modules():
        if isinstance(module, (RMSNorm, SwiGLU)):
            module.compile(fullgraph=True)
    return backbone


class FullyShardedStrategy(ModelParallelStrategy):
    """FSDP2 over all ranks: ``ModelParallelStrategy`` with one data-parallel dimension spanning
    every device of every node and no tensor parallelism.

    ``ModelParallelStrategy``'s ``"auto"`` sizes mean (data = nodes, tensor = devices per node):
    every device of a node would then receive the same batch. Here each rank gets its own share
    of the data and holds ``1 / world_size`` of every parameter and optimizer state. The model
    applies the sharding in ``configure_model`` (see ``fully_shard_blocks``).

    Args:
        save_distributed_checkpoint: each rank writes its own shard (the checkpoint is a folder);
            ``False`` gathers a single file on rank 0.
        process_group_backend: ``None`` picks NCCL on GPUs and gloo on CPUs.
    """

    def __init__(self, save_distributed_checkpoint: bool = True, process_group_backend: Optional[str] = None) -> None:
        super().__init__(
            data_parallel_size="auto",
            tensor_parallel_size=1,
            save_distributed_checkpoint=save_distributed_checkpoint,
            process_group_backend=process_group_backend,
        )

    def setup_environment(self) -> None:
        # Known before the process group exists: the trainer has set nodes and local devices.
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()
