"""What is trained: the model, its optimizer and schedule, the loss, the weight average.

``build_task`` makes them under a strategy's scope from a ``TrainConfig``; the loop
(``mobilenet_tf.trainer``) only drives them. ``Task.updates`` is the train step's list
of ``(optimizer, variables)`` pairs.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from mobilenet_tf import optim
from mobilenet_tf.model import mobilenet_v1
from mobilenet_tf.train_config import TrainConfig
from mobilenet_tf.train_steps import Objective


@dataclasses.dataclass
class Task:
    model: keras.Model
    optimizer: keras.Optimizer
    schedule: optim.LearningRate
    objective: Objective
    ema: optim.WeightAverage | None
    loaded_layers: list  # layers whose weights came from --initial_weights

    @property
    def updates(self):
        return [(self.optimizer, self.model.trainable_variables)]

    def learning_rate(self) -> float:
        return float(self.schedule(self.optimizer.iterations))


def synchronized_bn(strategy) -> bool:
    """Batch-norm statistics synchronised over replicas (multi-worker, several GPUs)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or (
        isinstance(strategy, tf.distribute.MirroredStrategy)
        and strategy.num_replicas_in_sync > 1)


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
        loaded = (load_matching_weights(model, cfg)
                  if cfg.initial_weights and initial_weights else [])
        regular, depthwise = optim.decay_groups(model)
        schedule = optim.LearningRate(
            cfg.learning_rate_for_batch(), cfg.lr_schedule, total_steps=total_steps,
            warmup_steps=int(round(cfg.warmup_epochs * spe)),
            decay_steps=max(1, int(round(cfg.lr_decay_epochs * spe))),
            decay_rate=cfg.lr_decay_rate)
        excluded, l2_terms = None, ()
        if cfg.optimizer == "adamw":  # decoupled decay inside the optimizer
            decayed = {id(v) for v in regular}
            if cfg.depthwise_weight_decay:
                decayed |= {id(v) for v in depthwise}
            excluded = [v for v in model.trainable_variables if id(v) not in decayed]
        else:
            l2_terms = ((tuple(regular), cfg.weight_decay),
                        (tuple(depthwise), cfg.depthwise_weight_decay))
        optimizer = optim.build_optimizer(
            cfg.optimizer, schedule, momentum=cfg.momentum, rmsprop_rho=cfg.rmsprop_rho,
            rmsprop_epsilon=cfg.rmsprop_epsilon, weight_decay=cfg.weight_decay,
            excluded_variables=excluded)
        if cfg.precision == "mixed_float16":
            optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
        ema = optim.WeightAverage(model.weights, cfg.ema_decay) if cfg.ema_decay else None
    objective = Objective(cfg.batch_size, num_classes, cfg.label_smoothing, l2_terms)
    return Task(model, optimizer, schedule, objective, ema, loaded)


def saved_model_for(config: TrainConfig, num_classes: int) -> keras.Model:
    """The architecture of best/final.keras: float32, plain batch norm, softmax output."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        return mobilenet_v1(**config.model_config(num_classes),
                            classifier_activation="softmax", bn_momentum=config.bn_momentum)
    finally:
        keras.config.set_dtype_policy(previous)


def load_matching_weights(model: keras.Model, config: TrainConfig) -> list[str]:
    """Copies weights layer by layer (by name) where the shapes match; returns the names
    of the layers copied."""
    spec = config.initial_weights
    if spec == "imagenet":
        source = mobilenet_v1((config.resolution, config.resolution, 3), alpha=config.alpha,
                              include_top=False, weights="imagenet")
    elif spec.endswith(".keras"):
        source = keras.models.load_model(spec, compile=False)
    else:
        source = mobilenet_v1((config.resolution, config.resolution, 3), alpha=config.alpha,
                              depth_multiplier=config.depth_multiplier,
                              variant=config.variant, include_top=False)
        source.load_weights(spec, skip_mismatch=True)
    by_name = {layer.name: layer for layer in source.layers}
    copied = []
    for layer in model.layers:
        src = by_name.get(layer.name)
        if src is None or not layer.weights:
            continue
        values = src.get_weights()
        if [v.shape for v in values] == [tuple(w.shape) for w in layer.weights]:
            layer.set_weights(values)
            copied.append(layer.name)
    if not copied:
        raise ValueError(f"--initial_weights={spec!r}: no layer of that model matches this "
                         "one (check --alpha, --variant, --depth_multiplier)")
    return copied
