"""The architecture of MobileNet v1 as data (Table 1 of the paper): the stem and the
thirteen depthwise-separable blocks, the variants and the paper's multipliers.

No Keras or TensorFlow here: the builder (``builder.py``) and the cost counter
(``costs.py``) read this table, and the command lines validate their flags against it
before TensorFlow is imported. The rules of the model's options live here too
(``option_rule``), so the builder and ``TrainConfig`` check the same ones.
"""

from __future__ import annotations

import dataclasses

VARIANTS = ("mobilenet", "conv", "shallow")
POOLINGS = (None, "avg", "max")
MIN_RESOLUTION = 32
# What a valid input size is, as every command words it (train, export, evaluate, predict).
RESOLUTION_RULE = f"must be >= {MIN_RESOLUTION} (the network halves its input five times)"
PAPER_ALPHAS = (1.0, 0.75, 0.5, 0.25)
PAPER_RESOLUTIONS = (224, 192, 160, 128)


@dataclasses.dataclass(frozen=True)
class Block:
    """One depthwise-separable block of Table 1: 3x3 depthwise conv, then 1x1 conv."""

    block_id: int  # the N in Keras' conv_dw_N / conv_pw_N names
    filters: int  # pointwise output channels at alpha = 1
    stride: int  # stride of the depthwise conv
    shallow_removed: bool = False  # one of the five 14x14x512 blocks Table 5 removes


# Table 1: "Conv / s2, 3x3x3x32" then thirteen "Conv dw / Conv 1x1" pairs.
STEM_FILTERS = 32
STEM_STRIDE = 2
BLOCKS: tuple[Block, ...] = (
    Block(1, 64, 1),
    Block(2, 128, 2),
    Block(3, 128, 1),
    Block(4, 256, 2),
    Block(5, 256, 1),
    Block(6, 512, 2),
    *(Block(i, 512, 1, shallow_removed=True) for i in range(7, 12)),
    Block(12, 1024, 2),
    Block(13, 1024, 1),
)


# name -> (test, what a valid value is): the rules that the builder's arguments and the
# training flags of the same name share. Each caller words the message in its own form.
_OPTION_RULES = {
    "alpha": (lambda a: isinstance(a, (int, float)) and a > 0,
              f"must be > 0 (paper: {', '.join(map(str, PAPER_ALPHAS))})"),
    "variant": (lambda v: v in VARIANTS, f"allowed values: {list(VARIANTS)}"),
    "depth_multiplier": (lambda d: isinstance(d, int) and d >= 1,
                         "must be an integer >= 1"),
    "dropout": (lambda p: 0 <= p < 1, "must be in [0, 1)"),
    "bn_momentum": (lambda m: 0 <= m < 1, "must be in [0, 1)"),
}
MODEL_OPTIONS = tuple(_OPTION_RULES)


def option_rule(name: str, value) -> str | None:
    """The rule that ``value`` breaks as the model option ``name`` (one of
    ``MODEL_OPTIONS``), or None when it is valid."""
    test, rule = _OPTION_RULES[name]
    return None if test(value) else rule


def blocks_for(variant: str) -> tuple[Block, ...]:
    """The separable blocks that a variant keeps (all but Table 5's five for shallow)."""
    check_choice("variant", variant, VARIANTS)
    if variant == "shallow":
        return tuple(b for b in BLOCKS if not b.shallow_removed)
    return BLOCKS


def activation_values(alpha: float, resolution: int, variant: str = "mobilenet") -> int:
    """How many values the layer outputs of one image hold (the stem's, then each block's
    depthwise and pointwise outputs at the ``round(alpha * filters)`` widths the builder
    uses): a lower bound on what training keeps for the backward pass."""
    size = -(-resolution // STEM_STRIDE)
    channels = max(1, round(alpha * STEM_FILTERS))
    total = size * size * channels
    for block in blocks_for(variant):
        size = -(-size // block.stride)
        total += size * size * channels  # the depthwise output
        channels = max(1, round(alpha * block.filters))
        total += size * size * channels
    return total


def check_choice(arg, value, allowed):
    if value not in allowed:
        raise ValueError(f"{arg}={value!r} is not valid; allowed values: {list(allowed)}")
