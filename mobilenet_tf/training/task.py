"""What is trained: the model, its optimizer and schedule, the loss, the weight average;
and the model a run saves (best/final.keras).

``build_task`` makes them under a strategy's scope from a ``TrainConfig``; the loop
(``mobilenet_tf.training.trainer``) only drives them. ``Task.updates`` is the train step's list
of ``(optimizer, variables)`` pairs.
"""

from __future__ import annotations

import dataclasses
import os

import keras
import tensorflow as tf

from mobilenet_tf.training import finetune, optim
from mobilenet_tf.model import pretrained
from mobilenet_tf.model.builder import CLASSIFIER_LAYER, mobilenet_v1
from mobilenet_tf.rundir.errors import writing
from mobilenet_tf.training.config import TrainConfig
from mobilenet_tf.training.steps import Objective


@dataclasses.dataclass
class Task:
    model: keras.Model
    optimizer: keras.Optimizer  # every trainable variable, or the classifier's (fine-tuning)
    schedule: optim.LearningRate
    objective: Objective
    ema: optim.WeightAverage | None
    # What --initial_weights loaded (pretrained.LoadReport); None without it or on resume.
    weights_report: object = None
    # --backbone_lr_scale < 1: (optimizer of the backbone, its variables); see finetune.py.
    backbone_optimizer: keras.Optimizer | None = None
    head_variables: list = dataclasses.field(default_factory=list)
    backbone_variables: list = dataclasses.field(default_factory=list)
    # --weight_decay_to_start > 0: the backbone kernels' starting values (L2-SP).
    starting_point: optim.StartingPoint | None = None

    @property
    def updates(self):
        """The train step's (optimizer, variables) pairs for the model's current
        trainability (read at trace time: ``finetune.set_phase`` first)."""
        if self.backbone_optimizer is None:
            return [(self.optimizer, self.model.trainable_variables)]
        pairs = [(self.optimizer, finetune.trainable_subset(self.head_variables, self.model)),
                 (self.backbone_optimizer,
                  finetune.trainable_subset(self.backbone_variables, self.model))]
        return [(opt, variables) for opt, variables in pairs if variables]

    def phase_objective(self) -> Objective:
        """The objective with L2 terms over the variables trainable now only."""
        terms = tuple((tuple(finetune.trainable_subset(v, self.model)), c)
                      for v, c in self.objective.l2_terms)
        return dataclasses.replace(self.objective, l2_terms=terms)

    def learning_rate(self) -> float:
        return float(self.schedule(self.optimizer.iterations))

    def backbone_learning_rate(self) -> float | None:
        opt = self.backbone_optimizer
        return None if opt is None else float(opt.learning_rate)


def synchronized_bn(strategy) -> bool:
    """Batch-norm statistics synchronised over replicas (multi-worker, several GPUs)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or (
        isinstance(strategy, tf.distribute.MirroredStrategy)
        and strategy.num_replicas_in_sync > 1)


def fine_tuning(config: TrainConfig) -> bool:
    """Whether the run uses the fine-tuning schedule (finetune.py)."""
    return (config.freeze_backbone_epochs > 0 or config.backbone_lr_scale != 1
            or config.freeze_bn or config.frozen_blocks > 0)


def build_task(config: TrainConfig, num_classes: int, steps_per_epoch: int,
               total_steps: int, strategy, initial_weights: bool = True) -> Task:
    """The task under ``strategy.scope()``; ``initial_weights``: load
    ``config.initial_weights`` (not when a checkpoint will be restored)."""
    cfg, spe = config, steps_per_epoch
    with strategy.scope():
        model = mobilenet_v1(**cfg.model_config(num_classes), classifier_activation=None,
                             synchronized_bn=synchronized_bn(strategy),
                             bn_momentum=cfg.bn_momentum,
                             fused_batch_norm=cfg.fused_batch_norm)
        report = (pretrained.load_initial_weights(
            model, cfg.initial_weights, cfg.alpha, cfg.resolution,
            include_top=cfg.classifier_init == "source")
            if cfg.initial_weights and initial_weights else None)
        head, backbone = ([], [])
        if fine_tuning(cfg):  # the optimizers cover what the whole phase trains
            head, backbone = finetune.variable_groups(model, cfg.freeze_bn,
                                                      cfg.frozen_blocks)
        trainable = model.trainable_variables
        schedule = optim.LearningRate(
            cfg.learning_rate_for_batch(), cfg.lr_schedule, total_steps=total_steps,
            warmup_steps=int(round(cfg.warmup_epochs * spe)),
            decay_steps=max(1, int(round(cfg.lr_decay_epochs * spe))),
            decay_rate=cfg.lr_decay_rate)
        excluded, l2_terms = _weight_decay(cfg, model, trainable)
        two = cfg.backbone_lr_scale != 1
        optimizer = _optimizer(cfg, schedule, excluded, head if two else trainable)
        backbone_optimizer = None
        if two:
            rate = finetune.ScaledRate(schedule, cfg.backbone_lr_scale,
                                       finetune.head_steps(cfg.freeze_backbone_epochs, spe))
            backbone_optimizer = _optimizer(cfg, rate, excluded, backbone)
        ema = optim.WeightAverage(model.weights, cfg.ema_decay) if cfg.ema_decay else None
        start = (optim.StartingPoint(backbone_kernels(model))
                 if cfg.weight_decay_to_start else None)
    objective = Objective(cfg.batch_size, num_classes, cfg.label_smoothing, l2_terms,
                          None if start is None else (start, cfg.weight_decay_to_start))
    return Task(model, optimizer, schedule, objective, ema, report, backbone_optimizer,
                head, backbone, start)


def backbone_kernels(model) -> list:
    """Every conv kernel (regular, pointwise, depthwise) but the classifier's: what L2-SP
    pulls towards its start (the new classifier has no start to be pulled to)."""
    regular, depthwise = optim.decay_groups(model)
    classifier = model.get_layer(CLASSIFIER_LAYER).kernel
    return [v for v in regular + depthwise if v is not classifier]


def _weight_decay(cfg: TrainConfig, model, trainable):
    """(variables AdamW must not decay, L2 loss terms for rmsprop/sgd)."""
    regular, depthwise = optim.decay_groups(model)
    if cfg.optimizer == "adamw":  # decoupled decay inside the optimizer
        decayed = {id(v) for v in regular}
        if cfg.depthwise_weight_decay:
            decayed |= {id(v) for v in depthwise}
        return [v for v in trainable if id(v) not in decayed], ()
    return None, ((tuple(regular), cfg.weight_decay),
                  (tuple(depthwise), cfg.depthwise_weight_decay))


def _optimizer(cfg: TrainConfig, schedule, excluded, variables):
    """One optimizer at ``schedule``, built over ``variables``."""
    if excluded is not None:
        ids = {id(v) for v in variables}
        excluded = [v for v in excluded if id(v) in ids]
    optimizer = optim.build_optimizer(
        cfg.optimizer, schedule, momentum=cfg.momentum, nesterov=cfg.nesterov,
        rmsprop_rho=cfg.rmsprop_rho, rmsprop_epsilon=cfg.rmsprop_epsilon,
        weight_decay=cfg.weight_decay, excluded_variables=excluded)
    if cfg.precision == "mixed_float16":  # each scales the loss for its own gradients
        optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
    optimizer.build(variables)
    return optimizer


def saved_model_for(config: TrainConfig, num_classes: int) -> keras.Model:
    """The architecture of best/final.keras: float32, plain batch norm, softmax output."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        return mobilenet_v1(**config.model_config(num_classes),
                            classifier_activation="softmax", bn_momentum=config.bn_momentum)
    finally:
        keras.config.set_dtype_policy(previous)


class SavedModel:
    """best.keras and final.keras: the current weights (the average when on) in
    ``saved_model_for``'s architecture, written atomically by the chief (``enabled``).
    The model is built at the first save, not before: building draws random numbers, and
    the seeded draws belong to the trained model, built first."""

    def __init__(self, config: TrainConfig, num_classes: int, enabled: bool):
        self.config, self.num_classes, self.enabled = config, num_classes, enabled
        self.model: keras.Model | None = None

    def current(self, task: Task) -> keras.Model:
        """The saved architecture holding ``task``'s current weights."""
        if self.model is None:
            self.model = saved_model_for(self.config, self.num_classes)
        values = (task.ema.averaged_values() if task.ema is not None
                  else [w.numpy() for w in task.model.weights])
        self.model.set_weights(values)
        return self.model

    def save(self, task: Task, path: str):
        """Writes ``path`` (a reader sees the old file or the new one); chief only."""
        if not self.enabled:
            return
        model = self.current(task)
        tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp.keras")
        try:
            with writing(path):
                model.save(tmp)
                os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
