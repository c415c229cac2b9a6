"""Options declared once: a config dataclass field carries its flag's help and topic.

``TrainConfig``, ``DataConfig`` and ``ExportConfig`` declare every field with ``option``;
``mobilenet_tf.cli`` turns the fields into absl flags and prints ``--help`` by topic. The
three configs state their rules in one form, a ``require`` or ``require_valid`` call per
rule, checked in order. No TensorFlow here (the command lines check their flags before
importing it).
"""

from __future__ import annotations

import dataclasses
import math

# The topics of --help, in order: the training topics, the export's, then the flags that
# every command has.
TOPICS = ("model", "data", "augmentation", "optimization", "schedule", "runtime",
          "checkpointing", "output", "export", "verification", "metadata", "general")


def option(default, help_text: str, group: str):
    """A dataclass field with its ``--help`` text and topic (one of ``TOPICS``)."""
    if group not in TOPICS:
        raise ValueError(f"option group {group!r}; valid groups: {TOPICS}")
    return dataclasses.field(default=default, metadata={"help": help_text, "group": group})


def require(ok, message: str) -> None:
    """Raises ValueError(message) unless ``ok``: one rule of a config."""
    if not ok:
        raise ValueError(message)


def require_valid(config, ok, flag: str, rule: str) -> None:
    """``require`` with the usual message, ``--FLAG=VALUE is not valid: RULE``."""
    if not ok:
        raise ValueError(f"--{flag}={getattr(config, flag)!r} is not valid: {rule}")


def require_finite(config) -> None:
    """Every float option of ``config`` is a finite number (absl's float flags take
    ``inf`` and ``nan``, which no option means)."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--{field.name}={value} is not valid: it must be a finite "
                             "number")
