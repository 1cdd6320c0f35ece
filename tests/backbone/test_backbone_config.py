"""TitansConfig: named sizes fill the coupled fields; bad values fail with the field's name."""

import pytest

from titans_lightning.backbone import TitansBackbone, TitansConfig


def test_sizes_fill_every_coupled_field():
    for size in ("debug", "small", "base"):
        cfg = TitansConfig(size=size)
        assert all(getattr(cfg, f) is not None for f in cfg.__dataclass_fields__), size
    debug = TitansConfig(size="debug")
    assert debug.dim <= 64 and debug.depth == 2
    assert debug.memory_tokens == debug.segment_len


def test_from_name_applies_overrides_and_keeps_explicit_fields():
    cfg = TitansConfig.from_name("small", variant="lmm", depth=6)
    assert (cfg.size, cfg.variant, cfg.depth, cfg.dim) == ("small", "lmm", 6, 256)
    assert cfg.mlp_hidden == 704  # derived from dim
    with pytest.raises(TypeError, match="no field"):
        TitansConfig.from_name("debug", layers=3)


@pytest.mark.parametrize("overrides, field", [
    (dict(variant="rnn"), "variant"),
    (dict(size="huge"), "size"),
    (dict(dim=30, heads=4), "heads"),
    (dict(dim=36, heads=4), "heads"),  # odd head width: no RoPE pairs
    (dict(depth=0), "depth"),
    (dict(memory_tokens=3), "memory_tokens"),
    (dict(persistent_tokens=-1), "persistent_tokens"),
    (dict(dropout=1.0), "dropout"),
    (dict(dim=36, heads=2, memory_heads=8), "memory_heads"),
    (dict(gate="tanh"), "gate"),
    (dict(memory_activation="tanh"), "memory_activation"),
    (dict(memory_conv_kernel=0), "memory_conv_kernel"),
    (dict(mac_memory_input="input"), "mac_memory_input"),
], ids=["variant", "size", "heads-split", "heads-odd-width", "depth", "memory-tokens", "persistent",
        "dropout", "memory-heads", "gate", "memory-activation", "memory-conv", "mac-memory-input"])
def test_validation_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"TitansConfig.{field}"):
        TitansConfig(**overrides)


@pytest.mark.parametrize("variant, count", [("mac", 42_828), ("mag", 42_828), ("mal", 42_764),
                                            ("lmm", 34_380), ("transformer", 26_912), ("swa", 26_912)])
def test_debug_parameter_counts_match_docstring(variant, count):
    assert TitansBackbone(TitansConfig(variant=variant)).num_parameters() == count


def test_block_class_is_the_unit_of_the_backbone():
    model = TitansBackbone(TitansConfig.from_name("small", variant="transformer"))
    assert model.num_parameters() == 3_229_952
    assert TitansBackbone.block_class.__name__ == "TitansBlock"
    assert all(isinstance(b, TitansBackbone.block_class) for b in model.blocks)
