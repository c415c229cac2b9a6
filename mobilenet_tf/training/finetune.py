"""The fine-tuning schedule: which layers train at which step, and at what rate.

Two phases (docs/finetuning.md, "The fine-tuning schedule"):

- ``HEAD`` (the first ``--freeze_backbone_epochs``): only the classifier
  (``conv_preds``) trains; every other layer has ``trainable=False``, which in Keras 3
  also puts batch norm into inference mode, so the backbone's weights and BN statistics
  stay bit-identical.
- ``WHOLE``: every layer trains, but the batch-norm layers when ``--freeze_bn`` (then
  they stay in inference mode with fixed gamma/beta throughout) and, with
  ``--frozen_blocks=N``, the stem and blocks 1..N of Table 1 (they stay as in the head
  phase: the backward pass stops at block N+1, which makes fine-tuning steps cheaper).

The phase is a function of the optimizer step (``phase_at``), so a resumed run picks
its phase from the restored step and nothing new is checkpointed for it. With
``--backbone_lr_scale`` below 1 the backbone has its own optimizer whose rate is the
scaled schedule (``ScaledRate``): RMSprop and Adam are invariant to the scale of the
gradient, so scaling the gradient would not lower their step.
"""

from __future__ import annotations

import re

import keras
import tensorflow as tf

from mobilenet_tf.model.builder import CLASSIFIER_LAYER

HEAD = "head"  # the classifier alone, the backbone frozen (BN in inference mode)
WHOLE = "whole"  # the whole network (BN frozen with --freeze_bn)


def head_steps(freeze_backbone_epochs: float, steps_per_epoch: int) -> int:
    """Optimizer steps of the head phase."""
    return int(round(freeze_backbone_epochs * steps_per_epoch))


def phase_at(step: int, num_head_steps: int) -> str:
    return HEAD if step < num_head_steps else WHOLE


def is_classifier(layer) -> bool:
    return layer.name == CLASSIFIER_LAYER


_BLOCK_LAYER = re.compile(r"^conv(?:_dw|_pw|_pad)?_(\d+)(?:_|$)")


def block_of(layer) -> int | None:
    """Table 1 block of a builder layer: 0 for the stem (``conv1*``), N for ``conv_dw_N*``,
    ``conv_pw_N*``, ``conv_pad_N`` and ``conv_N*``; None for the rest (input, top)."""
    if layer.name.startswith("conv1"):
        return 0
    match = _BLOCK_LAYER.match(layer.name)
    return int(match.group(1)) if match else None


def set_phase(model: keras.Model, phase: str, freeze_bn: bool,
              frozen_blocks: int = 0) -> None:
    """Sets every layer's ``trainable`` for ``phase`` (before tracing the train step)."""
    if phase not in (HEAD, WHOLE):
        raise ValueError(f"phase={phase!r}: allowed values: {HEAD!r}, {WHOLE!r}")
    for layer in model.layers:
        block = block_of(layer)
        if is_classifier(layer):
            layer.trainable = True
        elif phase == HEAD or (frozen_blocks and block is not None and block <= frozen_blocks):
            layer.trainable = False
        else:
            layer.trainable = not (freeze_bn and isinstance(
                layer, keras.layers.BatchNormalization))


def variable_groups(model: keras.Model, freeze_bn: bool, frozen_blocks: int = 0):
    """(classifier variables, backbone variables): every variable either phase ever
    trains (the optimizers are built over these, so a checkpoint has the same slots in
    both phases). Leaves the model in the ``WHOLE`` phase."""
    set_phase(model, WHOLE, freeze_bn, frozen_blocks)
    head_ids = {id(v) for layer in model.layers if is_classifier(layer)
                for v in layer.trainable_variables}
    if not head_ids:
        raise ValueError(f"the model has no trainable classifier layer {CLASSIFIER_LAYER!r} "
                         "(--freeze_backbone_epochs needs a model with a top)")
    variables = model.trainable_variables
    return ([v for v in variables if id(v) in head_ids],
            [v for v in variables if id(v) not in head_ids])


def trainable_subset(variables, model: keras.Model) -> list:
    """The members of ``variables`` that are trainable now (in the current phase)."""
    now = {id(v) for v in model.trainable_variables}
    return [v for v in variables if id(v) in now]


class ScaledRate(keras.optimizers.schedules.LearningRateSchedule):
    """``scale * schedule(step + offset)``: the backbone's rate. Its optimizer only steps
    after the head phase, so ``offset = head steps`` makes ``step + offset`` the run's
    optimizer step, and one schedule spans both phases."""

    def __init__(self, schedule, scale: float, offset: int):
        self.schedule = schedule
        self.scale = float(scale)
        self.offset = int(offset)

    def __call__(self, step):
        step = tf.cast(step, tf.int64) + self.offset
        return self.scale * self.schedule(step)

    def get_config(self):
        return {"schedule": self.schedule.get_config(), "scale": self.scale,
                "offset": self.offset}


def switch_message(epoch: int, backbone_lr_scale: float, freeze_bn: bool,
                   frozen_blocks: int = 0) -> str:
    """The one line printed when the backbone unfreezes."""
    rate = ("at the classifier's learning rate" if backbone_lr_scale == 1
            else f"at {backbone_lr_scale:g}x the learning rate")
    bn = "batch norm frozen (inference mode)" if freeze_bn else "batch norm training"
    which = (f"backbone from block {frozen_blocks + 1} on" if frozen_blocks
             else "backbone")
    return f"Epoch {epoch}: {which} unfrozen {rate}, {bn}."
