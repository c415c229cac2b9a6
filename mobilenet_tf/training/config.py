"""``TrainConfig``: every option of a training run, and its flags text.

No TensorFlow here: ``python -m mobilenet_tf.train`` defines its flags from these fields
and validates them before TensorFlow is imported. Each field's metadata holds its help
text and its topic (``group``), which the command line's help is organized by.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

from mobilenet_tf.model.architecture import (BLOCKS, MIN_RESOLUTION, MODEL_OPTIONS,
                                             RESOLUTION_RULE, VARIANTS, option_rule)
from mobilenet_tf.options import option as _field, require_valid, require_finite

OPTIMIZERS = ("rmsprop", "sgd", "adamw")
CLASSIFIER_INITS = ("zeros", "source", "linear_probe")
SCHEDULES = ("exponential", "cosine", "constant")
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
DEFAULT_STARTUP_TIMEOUT = 600.0  # seconds a multi-worker task waits for the others


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run depends on. The field names are the flag names of
    ``python -m mobilenet_tf.train`` (the data options come from ``data.DataConfig``)."""

    data: Any = None  # mobilenet_tf.data.DataConfig (image_size is set from `resolution`)
    train_split: str = _field("train", "Split to train on, e.g. 'train' or 'train[:90%]'.", "data")
    eval_split: str = _field("validation", "Split to evaluate on after each epoch, e.g. "
                             "'validation' or 'train[90%:]'; empty: no evaluation.", "data")
    # Model.
    alpha: float = _field(1.0, "Width multiplier (paper: 1.0, 0.75, 0.5, 0.25).", "model")
    resolution: int = _field(224, "Input resolution, square (paper: 224, 192, 160, 128).", "model")
    variant: str = _field("mobilenet", f"Architecture: one of {list(VARIANTS)}.", "model")
    depth_multiplier: int = _field(1, "Depthwise channel multiplier.", "model")
    dropout: float = _field(1e-3, "Dropout rate before the classifier.", "model")
    bn_momentum: float = _field(0.99, "Batch-norm moving-statistics momentum (Keras: "
                                "0.99, slim: 0.9997; short runs need less, e.g. 0.9).", "model")
    initial_weights: str = _field("", "Start from these weights: a .keras/.weights.h5/.h5 "
                                  "file or 'imagenet'; layers whose shapes differ (e.g. the "
                                  "classifier for another class count) keep their init.", "model")
    classifier_init: str = _field("zeros", "How a classifier that --initial_weights cannot "
                                  "fill (another class count) starts: 'zeros' (uniform "
                                  "predictions) or 'source' (the file's own classifier, "
                                  "mapped onto the new classes by what it predicts on "
                                  "~50 training images per class, 4,096 at most; for "
                                  "'imagenet', Keras' file with the classifier) or "
                                  "'linear_probe' (the head-only baseline's logistic "
                                  "regression on the training photos' frozen features: "
                                  "LP-FT).", "model")
    freeze_bn: bool = _field(False, "Keep every batch-norm layer in inference mode with "
                             "fixed gamma/beta throughout (fine-tuning small datasets; "
                             "BN-folded pretrained weights need it). Needs "
                             "--initial_weights.", "model")
    recompute_bn: bool = _field(False, "Fine-tuning: before the first step, measure each "
                                "batch-norm layer's statistics on up to 512 training "
                                "photos and rewrite the layer so the network computes "
                                "exactly what it did (docs/finetuning.md): batch norm can "
                                "then train over BN-folded weights. Needs "
                                "--initial_weights.", "model")
    baseline: bool = _field(True, "Fine-tuning with a new classifier: fit the head-only "
                            "baseline (logistic regression on the starting weights' frozen "
                            "features of the training photos) and report its held-out "
                            "top-1 beside the run's (--nobaseline: skip it).", "model")
    refit_head: bool = _field(False, "After the last epoch, fit the classifier again as a "
                              "logistic regression (the baseline's solver, C by "
                              "cross-validation) on the trained network's features of the "
                              "whole training photos, the preprocessing evaluation uses "
                              "(FixRes' fix of the train-test discrepancy; "
                              "docs/finetuning.md).", "model")
    frozen_blocks: int = _field(0, "Fine-tuning: the stem and the first N of Table 1's 13 "
                                "blocks stay frozen (as in the head phase) while the rest "
                                "fine-tunes: fewer weights to fit, a shorter backward "
                                "pass. 0: the whole network trains. Needs "
                                "--initial_weights.", "model")
    # Schedule of the run.
    epochs: float = _field(1, "Number of epochs to train (> 0; may be fractional).", "schedule")
    batch_size: int = _field(64, "Global batch size (over all replicas and workers).", "schedule")
    steps_per_epoch: int = _field(0, "Steps per epoch; 0: train examples // batch_size.",
                                  "schedule")
    freeze_backbone_epochs: float = _field(0.0, "Fine-tuning: train only the classifier "
                                           "for this many epochs (backbone frozen, its "
                                           "batch norm in inference mode), then the whole "
                                           "network. Needs --initial_weights.", "schedule")
    eval_every_epochs: int = _field(1, "Evaluate every N epochs (and after the last).", "schedule")
    # Optimization.
    optimizer: str = _field("rmsprop", f"One of {list(OPTIMIZERS)}.", "optimization")
    learning_rate: float = _field(0.045, "Peak learning rate at `lr_reference_batch_size`.",
                                  "optimization")
    backbone_lr_scale: float = _field(1.0, "Fine-tuning: the backbone (every layer but the "
                                      "classifier) learns at this times the learning rate "
                                      "(its own optimizer), in (0, 1].", "optimization")
    lr_reference_batch_size: int = _field(0, "Batch size `learning_rate` is meant for; the "
                                          "rate is scaled linearly by batch_size / this "
                                          "(0: no scaling).", "optimization")
    lr_schedule: str = _field("exponential", f"One of {list(SCHEDULES)}.", "schedule")
    warmup_epochs: float = _field(0.0, "Linear warmup from 0 over this many epochs.", "schedule")
    lr_decay_rate: float = _field(0.94, "exponential: factor per `lr_decay_epochs`.", "schedule")
    lr_decay_epochs: float = _field(2.5, "exponential: epochs per decay (staircase).", "schedule")
    momentum: float = _field(0.9, "rmsprop/sgd momentum.", "optimization")
    nesterov: bool = _field(False, "sgd: Nesterov momentum (the gradient taken at the "
                            "point momentum leads to).", "optimization")
    rmsprop_rho: float = _field(0.9, "rmsprop decay of the squared-gradient average.",
                                "optimization")
    rmsprop_epsilon: float = _field(1.0, "rmsprop epsilon (slim/Inception: 1.0).", "optimization")
    label_smoothing: float = _field(0.1, "Label smoothing in [0, 1).", "optimization")
    weight_decay: float = _field(4e-5, "L2 weight decay (rmsprop/sgd: coefficient of "
                                 "sum(w^2)/2 in the loss, as slim; adamw: decoupled decay) "
                                 "on conv and classifier kernels.", "optimization")
    depthwise_weight_decay: float = _field(0.0, "Weight decay on depthwise filters "
                                           "(paper: very little or none). adamw: any value "
                                           "> 0 decays them at --weight_decay.", "optimization")
    weight_decay_to_start: float = _field(0.0, "Fine-tuning, L2-SP (Li et al. 2018): "
                                          "coefficient of sum((w - w0)^2)/2 over the "
                                          "backbone's conv kernels, pulling them towards "
                                          "their starting values w0 (the loaded "
                                          "--initial_weights) instead of towards zero. 0: off. "
                                          "Needs --initial_weights.", "optimization")
    ema_decay: float = _field(0.0, "Moving average of weights used for eval and the saved "
                              "models, e.g. 0.9999; 0: off.", "optimization")
    # Runtime.
    strategy: str = _field("auto", f"One of {list(STRATEGIES)}.", "runtime")
    tpu_address: str = _field("", "TPU name or grpc:// address for strategy=tpu.", "runtime")
    startup_timeout: float = _field(DEFAULT_STARTUP_TIMEOUT, "multi_worker_mirrored: "
                                    "seconds to wait for every task in TF_CONFIG to answer "
                                    "at start-up; then exit naming the missing ones.",
                                    "runtime")
    precision: str = _field("float32", f"Keras dtype policy: one of {list(PRECISIONS)}.", "runtime")
    jit_compile: bool = _field(False, "XLA-compile the train step (off: XLA made MobileNet "
                               "training ~10x slower on CPU here; try it on GPU/TPU).", "runtime")
    fused_batch_norm: bool = _field(True, "Train batch norm through TensorFlow's fused kernel "
                                    "(mobilenet_tf.model.batchnorm: ~1.5x faster training on "
                                    "CPU; same variables and inference outputs); "
                                    "--nofused_batch_norm: Keras' unfused layer.", "runtime")
    seed: int = _field(0, "Random seed (init, dropout, data order).", "runtime")
    steps_per_loop: int = _field(20, "Training steps per tf.function call.", "runtime")
    checkpoint_every_steps: int = _field(500, "Save a checkpoint every N steps (and at each "
                                         "epoch end).", "checkpointing")
    keep_checkpoints: int = _field(3, "Number of recent checkpoints to keep.", "checkpointing")
    profile_steps: str = _field("", "Profile steps 'START,END' into the TensorBoard logs.",
                                "output")
    tag: str = _field("", "A label for the run, shown first in TensorBoard's HParams table "
                      "to group and filter runs (e.g. 'sgd-screen'); empty: none.", "output")
    log_images: bool = _field(True, "Log a grid of augmented training images.", "output")
    verbose: int = _field(1, "0: quiet, 1: progress bar and epoch lines, 2: epoch lines.", "output")

    def validate(self):
        """Raises ValueError naming the first invalid option. Called once per way in: by
        the command line (before TensorFlow is imported) and by ``train_and_evaluate``."""
        need = functools.partial(require_valid, self)
        require_finite(self)
        for flag in MODEL_OPTIONS:  # the builder's rules (alpha, variant, ...)
            rule = option_rule(flag, getattr(self, flag))
            need(rule is None, flag, rule)
        need(self.resolution >= MIN_RESOLUTION, "resolution", RESOLUTION_RULE)
        need(self.epochs > 0, "epochs", "must be > 0")
        need(self.batch_size >= 1, "batch_size", "must be >= 1 (the global batch size)")
        need(self.steps_per_epoch >= 0, "steps_per_epoch", "must be >= 0 (0: derived)")
        need(self.eval_every_epochs >= 1, "eval_every_epochs", "must be >= 1")
        need(self.optimizer in OPTIMIZERS, "optimizer",
             f"allowed values: {list(OPTIMIZERS)}")
        need(self.learning_rate > 0, "learning_rate", "must be > 0")
        need(self.lr_reference_batch_size >= 0, "lr_reference_batch_size", "must be >= 0")
        need(self.lr_schedule in SCHEDULES, "lr_schedule",
             f"allowed values: {list(SCHEDULES)}")
        need(self.warmup_epochs >= 0, "warmup_epochs", "must be >= 0")
        need(0 < self.lr_decay_rate <= 1, "lr_decay_rate", "must be in (0, 1]")
        need(self.lr_decay_epochs > 0, "lr_decay_epochs", "must be > 0")
        need(0 <= self.momentum < 1, "momentum", "must be in [0, 1)")
        need(not self.nesterov or self.optimizer == "sgd", "nesterov",
             "applies to --optimizer=sgd only")
        need(0 <= self.rmsprop_rho < 1, "rmsprop_rho", "must be in [0, 1)")
        need(self.rmsprop_epsilon > 0, "rmsprop_epsilon", "must be > 0")
        need(0 <= self.label_smoothing < 1, "label_smoothing", "must be in [0, 1)")
        need(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        need(self.depthwise_weight_decay >= 0, "depthwise_weight_decay", "must be >= 0")
        need(self.weight_decay_to_start >= 0, "weight_decay_to_start", "must be >= 0")
        need(0 <= self.ema_decay < 1, "ema_decay", "must be in [0, 1) (0: off)")
        need(self.strategy in STRATEGIES, "strategy",
             f"allowed values: {list(STRATEGIES)}")
        need(self.startup_timeout > 0, "startup_timeout", "must be > 0 (seconds)")
        need(self.precision in PRECISIONS, "precision", f"allowed values: {list(PRECISIONS)}")
        need(self.steps_per_loop >= 1, "steps_per_loop", "must be >= 1")
        need(self.checkpoint_every_steps >= 1, "checkpoint_every_steps", "must be >= 1")
        need(self.keep_checkpoints >= 1, "keep_checkpoints", "must be >= 1")
        need(self.verbose in (0, 1, 2), "verbose", "allowed values: 0, 1, 2")
        self.parsed_profile_steps()
        self._validate_finetuning(need)
        if self.initial_weights and self.initial_weights != "imagenet":
            need(os.path.exists(self.initial_weights), "initial_weights",
                 "no such file; use a .keras, .weights.h5 or .h5 file, or 'imagenet'")

    def _validate_finetuning(self, need):
        need(0 <= self.freeze_backbone_epochs <= self.epochs, "freeze_backbone_epochs",
             f"must be in [0, --epochs={self.epochs:g}] (equal: train the classifier only)")
        need(0 < self.backbone_lr_scale <= 1, "backbone_lr_scale", "must be in (0, 1]")
        need(0 <= self.frozen_blocks <= BLOCKS[-1].block_id, "frozen_blocks",
             f"must be in [0, {BLOCKS[-1].block_id}] (the blocks of Table 1)")
        need(self.classifier_init in CLASSIFIER_INITS, "classifier_init",
             f"allowed values: {list(CLASSIFIER_INITS)}")
        for flag, on in (("freeze_backbone_epochs", self.freeze_backbone_epochs > 0),
                         ("classifier_init", self.classifier_init != "zeros"),
                         ("freeze_bn", self.freeze_bn),
                         ("recompute_bn", self.recompute_bn),
                         ("weight_decay_to_start", self.weight_decay_to_start > 0),
                         ("frozen_blocks", self.frozen_blocks > 0)):
            need(not on or self.initial_weights, flag,
                 "needs --initial_weights (a pretrained network to fine-tune)")

    def parsed_profile_steps(self):
        if not self.profile_steps:
            return None
        try:
            start, end = (int(s) for s in self.profile_steps.split(","))
        except ValueError:
            start = end = -1
        require_valid(self, 0 <= start < end, "profile_steps",
                      "use 'START,END' with 0 <= START < END (optimizer steps)")
        return start, end

    def learning_rate_for_batch(self) -> float:
        if not self.lr_reference_batch_size:
            return self.learning_rate
        return self.learning_rate * self.batch_size / self.lr_reference_batch_size

    def model_config(self, num_classes: int) -> dict:
        return {"alpha": self.alpha, "input_shape": [self.resolution, self.resolution, 3],
                "variant": self.variant, "depth_multiplier": self.depth_multiplier,
                "dropout": self.dropout, "num_classes": num_classes}

    def data_config(self):
        """The data config with the fields training owns (DERIVED_DATA_FIELDS) set from it:
        images of ``resolution``, and the one ``seed``."""
        return dataclasses.replace(self.data, image_size=(self.resolution,) * 2,
                                   seed=self.seed)

    def flag_values(self) -> dict:
        """{flag name: value} of every option, data options included (flags.txt)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name != "data"}
        if self.data is not None:
            for f in dataclasses.fields(self.data):
                if f.name not in DERIVED_DATA_FIELDS:
                    out[f.name] = getattr(self.data, f.name)
        return out


# DataConfig fields that the trainer sets itself rather than exposing as flags.
DERIVED_DATA_FIELDS = ("image_size", "seed")  # set from TrainConfig (data_config)


def flags_text(config: TrainConfig) -> str:
    """flags.txt: one ``--name=value`` per option, usable as ``--flagfile``."""
    lines = []
    for name, value in config.flag_values().items():
        if isinstance(value, bool):
            lines.append(f"--{name}" if value else f"--no{name}")
        elif value is None:
            continue
        elif isinstance(value, (list, tuple)):
            lines.append(f"--{name}={','.join(str(v) for v in value)}")
        else:
            lines.append(f"--{name}={value}")
    return "\n".join(lines) + "\n"
