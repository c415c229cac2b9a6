"""The train and eval steps, as module-level functions that return named metrics.

A step returns ``{"loss", "top1", "top5", "count"}``: sums over its examples (the loss is
the per-example cross-entropy, without weight decay), so that sums over replicas and
steps divide by ``count`` into means (``mean_metrics``). ``train_step`` applies one
update per ``(optimizer, variables)`` pair of ``updates`` (one pair today; fine-tuning
passes a head and a backbone optimizer, or a subset of the variables).
``make_train_loop`` / ``make_eval_loop`` wrap the steps for a ``tf.distribute``
strategy: ``strategy.run`` inside one ``tf.function`` per call.

The loss is the per-example cross-entropy summed and divided by the global batch size,
plus the L2 weight decay divided by the number of replicas, so the all-reduced (summed)
gradients are those of the global-batch mean.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from mobilenet_tf.training import optim

METRICS = ("loss", "top1", "top5", "count")


@dataclasses.dataclass(frozen=True)
class Objective:
    """What the train step minimizes."""

    global_batch_size: int
    num_classes: int
    label_smoothing: float = 0.0
    # ((variables, coefficient), ...): slim's L2 (coefficient * sum(w^2) / 2) in the loss.
    l2_terms: tuple = ()
    # L2-SP: (optim.StartingPoint, coefficient) or None.
    towards_start: tuple | None = None

    def targets(self, labels):
        labels = tf.cast(labels, tf.float32)
        s = self.label_smoothing
        return labels * (1.0 - s) + s / self.num_classes if s else labels

    def regularization(self):
        terms = [optim.l2_loss(v, c) for v, c in self.l2_terms if c and v]
        if self.towards_start is not None:
            start, coefficient = self.towards_start
            terms.append(start.loss(coefficient))
        return tf.nn.scale_regularization_loss(tf.add_n(terms)) if terms else 0.0


def batch_metrics(logits, labels, per_example_loss) -> dict:
    """Sums over a batch: cross-entropy, top-1 and top-5 hits, number of examples.
    ``labels``: int class ids [n]."""
    k = min(5, int(logits.shape[-1]))
    return {
        "loss": tf.reduce_sum(per_example_loss),
        "top1": tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, 1), tf.float32)),
        "top5": tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, k), tf.float32)),
        "count": tf.cast(tf.shape(labels)[0], tf.float32),
    }


def train_step(model, updates, objective: Objective, images, labels) -> dict:
    """One optimization step on one replica's batch (one-hot ``labels``)."""
    with tf.GradientTape(persistent=len(updates) > 1) as tape:
        logits = tf.cast(model(images, training=True), tf.float32)
        per_example = tf.nn.softmax_cross_entropy_with_logits(
            objective.targets(labels), logits)
        loss = tf.nn.compute_average_loss(per_example,
                                          global_batch_size=objective.global_batch_size)
        loss += objective.regularization()
        scaled = [optimizer.scale_loss(loss) for optimizer, _ in updates]
    for (optimizer, variables), scaled_loss in zip(updates, scaled):
        grads = tape.gradient(scaled_loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
    true = tf.argmax(labels, axis=-1, output_type=tf.int32)
    return batch_metrics(logits, true, per_example)


def eval_step(model, images, labels, num_classes: int):
    """(metric sums, confusion matrix) of one replica's batch (int ``labels``)."""
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    logits = tf.cast(model(images, training=False), tf.float32)
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    confusion = tf.math.confusion_matrix(labels, tf.argmax(logits, -1, tf.int32),
                                         num_classes=num_classes, dtype=tf.float32)
    return batch_metrics(logits, labels, per_example), confusion


def _zeros():
    return {name: tf.zeros([], tf.float32) for name in METRICS}


def _sum(strategy, per_replica):
    return tf.nest.map_structure(
        lambda v: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None), per_replica)


def make_train_loop(strategy, step_fn, global_step, ema=None):
    """A tf.function ``loop(iterator, num_steps) -> metric sums`` running ``step_fn(images,
    labels)`` on every replica ``num_steps`` times, counting ``global_step`` and updating
    the weight average ``ema`` after each step."""

    @tf.function
    def train_loop(iterator, num_steps):
        totals = _zeros()
        for _ in tf.range(num_steps):
            images, labels = next(iterator)
            out = _sum(strategy, strategy.run(step_fn, args=(images, labels)))
            totals = {k: totals[k] + out[k] for k in METRICS}
            global_step.assign_add(1)
            if ema is not None:
                ema.update(global_step)
        return totals

    return train_loop


def make_eval_loop(strategy, model, num_classes: int):
    """A tf.function ``evaluate(dist_dataset) -> (metric sums, confusion matrix)``."""

    def replica_eval(images, labels):
        return eval_step(model, images, labels, num_classes)

    @tf.function
    def evaluate(dist_dataset):
        totals = _zeros()
        confusion = tf.zeros([num_classes, num_classes], tf.float32)
        for images, labels in dist_dataset:
            sums, conf = _sum(strategy, strategy.run(replica_eval, args=(images, labels)))
            totals = {k: totals[k] + sums[k] for k in METRICS}
            confusion += conf
        return totals, confusion

    return evaluate


def mean_metrics(sums) -> dict:
    """Metric sums (tensors or numbers) -> {"loss", "top1", "top5" (means), "count"}."""
    values = {k: float(np.asarray(v)) for k, v in sums.items()}
    n = max(values["count"], 1.0)
    return {"loss": values["loss"] / n, "top1": values["top1"] / n,
            "top5": values["top5"] / n, "count": int(values["count"])}


def finite(sums) -> bool:
    return all(np.all(np.isfinite(np.asarray(v))) for v in sums.values())
