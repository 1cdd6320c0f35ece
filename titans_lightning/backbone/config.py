"""Typed configuration of the Titans backbone, with one size dial.

``TitansConfig(variant=..., size=...)`` fills every size-coupled field left ``None`` from the named
size (``debug``, ``small``, ``base``), so a recipe states only what it changes. Field docstrings
become the command-line help through jsonargparse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Literal, Optional, get_args

Variant = Literal["mac", "mag", "mal", "lmm", "transformer", "swa"]
Size = Literal["debug", "small", "base"]

#: every variant, in the order of the Variant type (its one definition)
VARIANTS: tuple[str, ...] = get_args(Variant)
#: variants whose blocks hold a neural long-term memory
MEMORY_VARIANTS = ("mac", "mag", "mal", "lmm")

# Size-coupled fields per named size. debug is tiny so tests and recipes run in seconds on CPU;
# base follows the paper's setting (segment 512, window 2048, 128 persistent tokens, chunk 16).
SIZES: dict[str, dict[str, int]] = {
    "debug": dict(dim=32, depth=2, heads=2, chunk_size=4, segment_len=8, window=8,
                  persistent_tokens=2, memory_heads=2, memory_depth=2, memory_expansion=2),
    "small": dict(dim=256, depth=4, heads=4, chunk_size=16, segment_len=256, window=512,
                  persistent_tokens=16, memory_heads=4, memory_depth=2, memory_expansion=4),
    "base": dict(dim=768, depth=12, heads=12, chunk_size=16, segment_len=512, window=2048,
                 persistent_tokens=128, memory_heads=12, memory_depth=2, memory_expansion=4),
}


def _swiglu_hidden(dim: int) -> int:
    """Llama's SwiGLU width: 8/3 * dim rounded up to a multiple of 32 (same FLOPs as a 4x MLP)."""
    return 32 * math.ceil(8 * dim / 3 / 32)


@dataclass
class TitansConfig:
    """Configuration of :class:`~titans_lightning.backbone.TitansBackbone`.

    Example::

        TitansConfig(variant="mac", size="debug")
        TitansConfig.from_name("small", variant="lmm", depth=6)
    """

    variant: Variant = "mac"
    """Token mixer of every block: mac (memory as context), mag (memory as gate), mal (memory as
    layer), lmm (memory only), transformer (full causal attention), swa (sliding window only)."""
    size: Size = "debug"
    """Named size that fills every size-coupled field left None: debug, small or base."""
    dim: Optional[int] = None
    """Model width (embedding dimension of the (B, T, dim) hidden states)."""
    depth: Optional[int] = None
    """Number of blocks."""
    heads: Optional[int] = None
    """Attention heads; dim must be divisible by heads and dim / heads must be even (RoPE)."""
    mlp_hidden: Optional[int] = None
    """SwiGLU hidden width; None = 8/3 * dim rounded up to a multiple of 32."""
    chunk_size: Optional[int] = None
    """Memory chunk size b: inside a chunk every surprise gradient is taken at the chunk-start
    weights (docs/method.md section 1.1); 1 is the pure recurrence."""
    segment_len: Optional[int] = None
    """MAC segment length C: attention runs within a segment, memory is read before it."""
    memory_tokens: Optional[int] = None
    """MAC long-term memory tokens per segment; None = segment_len (one retrieval per token).
    A smaller value averages the retrievals of segment_len / memory_tokens consecutive tokens;
    it must divide segment_len."""
    window: Optional[int] = None
    """Sliding-window size (keys per query, itself included) for mag, mal and swa."""
    persistent_tokens: Optional[int] = None
    """Learnable persistent-memory tokens per attention layer, visible to every query; 0 = none."""
    memory_heads: Optional[int] = None
    """Heads of the neural memory; dim must be divisible by memory_heads."""
    memory_depth: Optional[int] = None
    """Layers of the memory MLP (1 = matrix memory)."""
    memory_expansion: Optional[int] = None
    """Hidden expansion of the memory MLP (used when memory_depth >= 2)."""
    memory_max_lr: float = 0.1
    """Upper bound of the data-dependent inner learning rate theta."""
    memory_max_decay: float = 1.0
    """Upper bound of the data-dependent forget gate: alpha = max_decay * sigmoid(.); 1 = the
    paper's gate. A smaller bound (1e-4) keeps every write for at least about 1 / max_decay tokens
    whatever the gate learns on short training haystacks (docs/longctx.md)."""
    memory_init_lr_bias: float = 0.0
    """Initial logit of the inner learning-rate gate: theta starts at max_lr * sigmoid(this)."""
    memory_init_momentum_bias: float = 2.0
    """Initial logit of the momentum gate eta (sigmoid(2) = 0.88)."""
    memory_init_decay_bias: float = -6.0
    """Initial logit of the forget gate alpha: sigmoid(-6) = 0.0025 per token keeps a write for
    about 400 tokens (1 / alpha); -12 (6e-6) for about 160K. The gates stay learnable; this sets
    where training starts (docs/longctx.md)."""
    memory_activation: Literal["gelu", "silu", "relu"] = "gelu"
    """Non-linearity between the memory MLP's layers."""
    memory_conv_kernel: int = 4
    """Width of the memory's causal depthwise conv on q, k, v; 1 disables it (an ablation)."""
    memory_residual: bool = True
    """Residual memory M(x) = x + MLP(x)."""
    memory_norm: bool = True
    """LayerNorm on the memory MLP's output inside M (the NeurIPS form)."""
    memory_per_channel_decay: bool = False
    """Per-channel forget gate alpha (the NeurIPS option): one per output row of every memory
    layer instead of one per token; more expressive, slower (a b x b mixing per channel)."""
    memory_backend: Literal["auto", "torch", "triton"] = "auto"
    """The memory's chunk step: "torch", "triton" (fused Triton kernels: depth 2, gelu, one decay
    per token; raises on anything else) or "auto" (Triton on CUDA when it imports and the memory
    is covered, torch otherwise). See docs/scale-out.md, "GPU kernels (Triton)"."""
    mac_memory_input: Literal["attention", "residual"] = "attention"
    """What MAC writes into its memory and queries it with for the gate: "attention" = the
    attention output y (docs/method.md section 3, literally); "residual" = norm(x) + y, the attention
    sub-layer's output with its (normed) input, as the residual stream carries it. At
    initialisation y is close to an average over the segment, so "attention" writes nearly the
    same key for every token; "residual" keeps each token's own identity in the write."""
    gate: Literal["sigmoid", "silu"] = "sigmoid"
    """MAG and MAC: non-linearity applied to the normalised memory branch before it gates attention."""
    gated_output_init: float = 1.0
    """MAG and MAC: initial weight of the RMSNorm on the attention side of the gated output
    ``norm(y) * s(norm(M))``, so the branch added to the residual stream starts at about this
    times the gate (0.5) in RMS. 1.0: every norm's usual start. A small value (0.1) starts the
    branch small beside the residual stream, as the backbone's init does for the attention and MLP
    output projections; with recommendation's N(0, 0.02) item embeddings the branch at 1.0
    outweighs the input 25 to 1, and MAC learned slower than SASRec (docs/recsys.md)."""
    dropout: float = 0.0
    """Dropout on attention probabilities and on each residual branch (training only)."""
    rope_base: float = 10000.0
    """RoPE base frequency."""
    norm_eps: float = 1e-6
    """RMSNorm epsilon."""

    def __post_init__(self) -> None:
        _check_choice("variant", self.variant, VARIANTS)
        _check_choice("size", self.size, tuple(SIZES))
        for name, value in SIZES[self.size].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.mlp_hidden is None:
            self.mlp_hidden = _swiglu_hidden(self.dim)
        if self.memory_tokens is None:
            self.memory_tokens = self.segment_len
        self._validate()

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> TitansConfig:
        """The named size ``name`` with ``overrides`` applied (any field, e.g. ``variant="lmm"``)."""
        _check_choice("size", name, tuple(SIZES))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"TitansConfig has no field(s) {unknown}; known: {sorted(known)}")
        return cls(size=name, **overrides)

    @property
    def head_dim(self) -> int:
        """Width of one attention head (dim // heads)."""
        return self.dim // self.heads


    def _validate(self) -> None:
        for name in ("dim", "depth", "heads", "mlp_hidden", "chunk_size", "segment_len",
                     "memory_tokens", "window", "memory_heads", "memory_depth", "memory_expansion"):
            _check_positive_int(name, getattr(self, name))
        if not isinstance(self.persistent_tokens, int) or self.persistent_tokens < 0:
            raise ValueError(f"TitansConfig.persistent_tokens: expected an int >= 0, "
                             f"got {self.persistent_tokens!r}")
        if self.dim % self.heads or self.head_dim % 2:
            raise ValueError(f"TitansConfig.heads: dim ({self.dim}) must split into heads "
                             f"({self.heads}) of even width, got head width {self.dim / self.heads}")
        if self.dim % self.memory_heads:
            raise ValueError(f"TitansConfig.memory_heads: dim ({self.dim}) must be divisible by "
                             f"memory_heads, got {self.memory_heads}")
        if self.memory_tokens > self.segment_len or self.segment_len % self.memory_tokens:
            raise ValueError(f"TitansConfig.memory_tokens: expected a divisor of segment_len "
                             f"({self.segment_len}), got {self.memory_tokens}")
        _check_choice("gate", self.gate, ("sigmoid", "silu"))
        _check_choice("mac_memory_input", self.mac_memory_input, ("attention", "residual"))
        _check_choice("memory_activation", self.memory_activation, ("gelu", "silu", "relu"))
        _check_choice("memory_backend", self.memory_backend, ("auto", "torch", "triton"))
        _check_positive_int("memory_conv_kernel", self.memory_conv_kernel)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TitansConfig.dropout: expected 0 <= dropout < 1, got {self.dropout}")
        for name in ("memory_max_lr", "rope_base", "norm_eps", "gated_output_init"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TitansConfig.{name}: expected a positive number, "
                                 f"got {getattr(self, name)!r}")
        if not 0.0 < self.memory_max_decay <= 1.0:
            raise ValueError(f"TitansConfig.memory_max_decay: expected 0 < memory_max_decay <= 1, "
                             f"got {self.memory_max_decay!r}")


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"TitansConfig.{name}: expected one of {list(choices)}, got {value!r}")


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"TitansConfig.{name}: expected a positive int, got {value!r}")
