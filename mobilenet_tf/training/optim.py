"""Optimizers, learning-rate schedules, weight decay and the moving average of weights.

The recipe of the paper (Sec. 4: "RMSprop with asynchronous gradient descent similar to
Inception V3", "very little or no weight decay on the depthwise filters") as slim's
``train_image_classifier.py`` runs it: RMSprop with decay (rho) 0.9, momentum 0.9 and
epsilon 1.0; the learning rate decayed x0.94 every 2.5 epochs (staircase); L2 weight decay
4e-5 on the conv/classifier kernels and none on the depthwise filters, batch norm or
biases; label smoothing 0.1; a moving average of the weights for evaluation.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from mobilenet_tf.training.config import OPTIMIZERS, SCHEDULES  # noqa: E402


class LearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup, then an exponential (staircase), cosine or constant schedule.

    A pure function of the optimizer step, so a resumed run (whose optimizer step is
    restored from the checkpoint) continues exactly where the schedule was.
    """

    def __init__(self, base: float, schedule: str, total_steps: int, warmup_steps: int = 0,
                 decay_steps: int = 1, decay_rate: float = 0.94, alpha: float = 0.0):
        if schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule={schedule!r} is not valid; allowed values: "
                             f"{list(SCHEDULES)}")
        self.base = float(base)
        self.schedule = schedule
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = max(0, int(warmup_steps))
        self.decay_steps = max(1, int(decay_steps))
        self.decay_rate = float(decay_rate)
        self.alpha = float(alpha)  # cosine: final lr as a fraction of base

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        base = tf.constant(self.base, tf.float32)
        after = tf.maximum(step - self.warmup_steps, 0.0)
        if self.schedule == "exponential":
            lr = base * tf.pow(self.decay_rate, tf.floor(after / self.decay_steps))
        elif self.schedule == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            frac = tf.minimum(after / span, 1.0)
            cosine = 0.5 * (1.0 + tf.cos(math.pi * frac))
            lr = base * ((1.0 - self.alpha) * cosine + self.alpha)
        else:
            lr = base
        if self.warmup_steps:
            warm = base * (step + 1.0) / self.warmup_steps
            lr = tf.where(step < self.warmup_steps, warm, lr)
        return lr

    def get_config(self):
        return dict(base=self.base, schedule=self.schedule, total_steps=self.total_steps,
                    warmup_steps=self.warmup_steps, decay_steps=self.decay_steps,
                    decay_rate=self.decay_rate, alpha=self.alpha)


def build_optimizer(name: str, learning_rate, *, momentum: float = 0.9,
                    nesterov: bool = False, rmsprop_rho: float = 0.9,
                    rmsprop_epsilon: float = 1.0, weight_decay: float = 0.0,
                    excluded_variables=None) -> keras.Optimizer:
    """The optimizer (``nesterov``: sgd only). ``weight_decay`` only matters for
    ``adamw`` (decoupled decay on every trainable variable but ``excluded_variables``);
    rmsprop and sgd get L2 decay as a loss term (``l2_loss``)."""
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate, rho=rmsprop_rho, momentum=momentum,
                                        epsilon=rmsprop_epsilon)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=nesterov)
    if name == "adamw":
        opt = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
        if excluded_variables:
            opt.exclude_from_weight_decay(var_list=list(excluded_variables))
        return opt
    raise ValueError(f"optimizer={name!r} is not valid; allowed values: {list(OPTIMIZERS)}")


def decay_groups(model: keras.Model):
    """(kernels that get ``weight_decay``, depthwise filters) of a MobileNet.

    As slim's ``mobilenet_v1_arg_scope``: the regular and pointwise conv kernels and the
    classifier get L2 decay; depthwise filters get ``depthwise_weight_decay`` (slim: none);
    batch-norm parameters and biases get none.
    """
    regular, depthwise = [], []
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            depthwise.append(layer.kernel)
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            regular.append(layer.kernel)
    return regular, depthwise


def l2_loss(variables, coefficient: float):
    """slim's ``l2_regularizer``: coefficient * sum(w**2) / 2."""
    if not coefficient or not variables:
        return tf.constant(0.0, tf.float32)
    return coefficient * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in variables])


class WeightAverage(tf.Module):
    """Exponential moving average of every model weight (as slim: trainable weights and
    the batch-norm moving statistics), in shadow variables kept beside the model.

    Why not Keras' ``use_ema``: it averages only trainable weights, and its average lives
    inside the optimizer with no public way to swap it in for an evaluation and back.
    Here ``swapped_in()`` puts the averages into the model for evaluation and saving
    (best.keras / final.keras hold the averaged weights) and restores the raw ones after.
    The decay ramps up as TF's ``ExponentialMovingAverage(num_updates=step)``:
    min(decay, (1 + step) / (10 + step)), so short runs are not dominated by the init.
    Create it under the strategy scope; call ``update`` in cross-replica context.
    """

    def __init__(self, model_weights, decay: float):
        super().__init__(name="weight_average")
        self.decay = float(decay)
        self._weights = list(model_weights)
        self.shadows = [tf.Variable(tf.identity(_value(w)), trainable=False,
                                    name=f"ema_{i}") for i, w in enumerate(self._weights)]

    @property
    def model_weights(self) -> list:
        """The model variables being averaged, in the order of ``shadows``."""
        return self._weights

    def update(self, step):
        step = tf.cast(step, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + step) / (10.0 + step))
        for shadow, w in zip(self.shadows, self._weights):
            value = tf.cast(_value(w), shadow.dtype)
            shadow.assign(shadow * decay + value * (1.0 - decay))

    def reset(self):
        """Shadows = the current weights (after setting weights outside training)."""
        for shadow, w in zip(self.shadows, self._weights):
            shadow.assign(tf.cast(_value(w), shadow.dtype))

    def averaged_values(self):
        return [s.numpy() for s in self.shadows]

    def swapped_in(self):
        return _Swap(self)


class _Swap:
    def __init__(self, ema: WeightAverage):
        self.ema = ema

    def __enter__(self):
        self.saved = [w.numpy() for w in self.ema.model_weights]
        for s, w in zip(self.ema.shadows, self.ema.model_weights):
            w.assign(s.numpy())
        return self

    def __exit__(self, *exc):
        for value, w in zip(self.saved, self.ema.model_weights):
            w.assign(value)
        return False


class StartingPoint(tf.Module):
    """L2-SP's anchor (Li, Grandvalet and Davoine 2018, "Explicit inductive bias for
    transfer learning with convolutional networks"): a copy of some variables' starting
    values w0, and the penalty ``coefficient * sum((w - w0)^2) / 2`` that pulls the
    fine-tuned weights towards them rather than towards zero. The copies are checkpointed
    with the run, so a resumed run keeps pulling towards the same start. Create it under
    the strategy scope; ``reset`` after changing the weights outside training."""

    def __init__(self, variables):
        super().__init__(name="starting_point")
        self._targets = list(variables)
        self.anchors = [tf.Variable(tf.identity(_value(v)), trainable=False,
                                    name=f"start_{i}") for i, v in enumerate(self._targets)]

    def reset(self):
        for anchor, v in zip(self.anchors, self._targets):
            anchor.assign(tf.cast(_value(v), anchor.dtype))

    def loss(self, coefficient: float):
        if not coefficient or not self._targets:
            return tf.constant(0.0, tf.float32)
        return coefficient * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32) - a)
                                       for v, a in zip(self._targets, self.anchors)])


def _value(w):
    return w.value if isinstance(w, keras.Variable) else w
