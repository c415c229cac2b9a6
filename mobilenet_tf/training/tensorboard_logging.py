"""What training writes for TensorBoard: grouped scalars, images (a labelled grid of
augmented training inputs, the confusion matrix), the hparams session, the model graph,
profiles.

One event directory, ``WORKDIR/logs``, holds everything, with the tags grouped by their
prefix: ``train/...`` (raw weights, training mode; ``train/epoch`` too, so that Time
Series, which opens the first two groups, opens both) and ``val/...`` (the evaluated
weights: the weight average when ``--ema_decay`` is on); top-5 only above 5 classes
(``metric_names``). One directory is what
makes the hparams dashboard find its metrics whether ``--logdir`` is the run, its
``logs/`` folder or a folder of runs: the plugin looks a metric up in the run of the
session (``logs``, or ``.`` when ``--logdir`` is ``logs/`` itself) joined with the
metric's group, and a group of ``validation`` resolved to ``./validation``, which is no
run name TensorBoard uses, so those columns stayed empty with ``--logdir RUN/logs``.
The hparams metrics (``HPARAMS_METRICS``) are tags written here, group "".
"""

from __future__ import annotations

import dataclasses
import os
import typing

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import summary as hp_summary

from mobilenet_tf.training import tensorboard_images
from mobilenet_tf.model.architecture import VARIANTS
from mobilenet_tf.data.config import BAD_IMAGE_POLICIES
from mobilenet_tf.training.config import OPTIMIZERS, PRECISIONS, SCHEDULES, STRATEGIES

LOGS_DIR = "logs"
METRICS = ("loss", "top1", "top5")

_TRAIN = ("Training batches: the raw (not averaged) weights in training mode (dropout, "
          "batch statistics) on augmented images")
_VAL = ("Validation split, evaluated at epoch ends with the weights that are saved: the "
        "moving average of the weights when --ema_decay > 0, else the raw weights; "
        "inference mode, centre crop")
_TRAIN_LOSS = (_TRAIN + "; the loss is the cross-entropy against label-smoothed (and "
               "mixup/cutmix-mixed, when on) targets, without the weight decay term. So "
               "it sits above the validation loss, which has none of these.")
_TRAIN_ACC = (_TRAIN + " (mixup/cutmix: a hit is the class with the largest share). "
              "Compare it with val top-1: augmentation and dropout keep it lower.")
DESCRIPTIONS = {
    "train/loss": "Mean training loss over the last --steps_per_loop steps. " + _TRAIN_LOSS,
    "train/top1": "Top-1 accuracy (the highest-scoring class is the label) of the last "
                  "--steps_per_loop training steps. " + _TRAIN_ACC,
    "train/top5": "Top-5 accuracy (the label is among the 5 highest-scoring classes) of "
                  "the last --steps_per_loop training steps; logged above 5 classes. "
                  + _TRAIN_ACC,
    "train/learning_rate": "Learning rate of the optimizer (schedule and warmup applied).",
    "train/images_per_second": "Training throughput of the last loop call (the first "
                               "call includes tracing).",
    "train/epoch_loss": "Mean training loss of the epoch. " + _TRAIN_LOSS,
    "train/epoch_top1": "Top-1 accuracy over the epoch's training steps. " + _TRAIN_ACC,
    "train/epoch_top5": "Top-5 accuracy over the epoch's training steps; logged above 5 "
                        "classes. " + _TRAIN_ACC,
    "train/epoch": "Epochs trained at this optimizer step, to read a step as an epoch "
                   "(the x axis of every card is the step).",
    "train/augmented_images": "The first images of a training batch after augmentation "
                              "(crop, flip, ...), as the network sees them, each "
                              "captioned with its label (mixup/cutmix: the largest "
                              "share). Logged at the start, the middle and the last epoch.",
    "val/loss": "Validation loss: plain (unsmoothed) cross-entropy, no weight decay. "
                + _VAL + ".",
    "val/top1": "Validation top-1 accuracy; the last point is the run's final top-1. "
                + _VAL + ".",
    "val/top5": "Validation top-5 accuracy (the label among the 5 highest-scoring "
                "classes); logged above 5 classes. " + _VAL + ".",
    "val/best_top1": "Best validation top-1 so far (best.keras holds those weights).",
    "val/baseline_top1": "Fine-tuning: the head-only baseline's top-1 on the same "
                         "validation photos (logistic regression on the starting "
                         "weights' frozen features; a flat line to beat).",
    "val/confusion_matrix": "Validation confusion matrix: rows are the true classes, "
                            "columns the predicted ones; each row normalized (blue: "
                            "correct, red: confusions), counts drawn when the cells are "
                            "large enough. Above 30 classes, the 30 most confused. "
                            + _VAL + ".",
}
# The hparams table's metric columns: (tag, display name); validation ones need eval.
HPARAMS_METRICS = (("val/top1", "val top-1 (final)"), ("val/best_top1", "val top-1 (best)"),
                   ("val/baseline_top1", "val top-1 (head-only baseline)"),
                   ("val/top5", "val top-5 (final)"), ("val/loss", "val loss (final)"),
                   ("train/epoch_loss", "train loss (last epoch)"),
                   ("train/epoch_top1", "train top-1 (last epoch)"))
# The hparams the dashboard shows, in this order (it ticks the first 5 and sorts by name,
# so each is named with its rank, "01 learning_rate", and displayed as the flag): the
# options a practitioner compares runs by. The others are in config.json, flags.txt and
# the "flags" text summary. Flags a config lacks (data options) are left out. New ones
# go at the end, so older runs keep their columns (the rank is part of the name).
HPARAMS = ("tag", "learning_rate", "optimizer", "epochs", "batch_size", "alpha",
           "resolution", "initial_weights", "dataset", "classifier_init", "lr_schedule",
           "warmup_epochs", "momentum", "nesterov", "weight_decay", "weight_decay_to_start",
           "label_smoothing", "dropout", "bn_momentum", "ema_decay", "min_area",
           "steps_per_epoch", "num_classes", "num_replicas", "seed", "randaugment",
           "randaugment_magnitude", "mixup_alpha", "cutmix_alpha", "color_jitter")
# String options with a fixed set of values (a Discrete domain of them all); other strings
# (paths, dataset names) get a Discrete domain of their value, which makes them filterable.
CHOICES = {"variant": tuple(VARIANTS), "optimizer": OPTIMIZERS, "lr_schedule": SCHEDULES,
           "strategy": STRATEGIES, "precision": PRECISIONS,
           "bad_images": BAD_IMAGE_POLICIES}
STATUSES = {"success": api_pb2.STATUS_SUCCESS, "failure": api_pb2.STATUS_FAILURE}


class Writers:
    """The summary writer of one run (a no-op writer on non-chief workers)."""

    def __init__(self, workdir: str, enabled: bool, num_classes: int | None = None):
        self.enabled = enabled
        self.metrics = metric_names(num_classes)
        self.logdir = os.path.join(workdir, LOGS_DIR) if enabled else None
        self._before = set(self._event_files())
        self.writer = (tf.summary.create_file_writer(self.logdir) if enabled
                       else tf.summary.create_noop_writer())

    def _event_files(self) -> list[str]:
        if not self.enabled:
            return []
        return tf.io.gfile.glob(os.path.join(self.logdir, "events.out.tfevents.*"))

    def remove_own_files(self) -> None:
        """Deletes the event files this writer created (after ``close``): for a run that
        stopped before keeping anything, whose steps the next attempt logs again; a
        retry on a full disk then does not leave another file (the model graph alone is
        megabytes) each time."""
        for path in set(self._event_files()) - self._before:
            try:
                tf.io.gfile.remove(path)
            except (OSError, tf.errors.OpError):
                pass

    def flush(self):
        self.writer.flush()

    def close(self):
        self.writer.close()


def metric_names(num_classes: int | None) -> tuple[str, ...]:
    """The metrics logged for ``num_classes`` classes: top-5 only above 5 classes (with 5
    or fewer it is always 1)."""
    return METRICS if num_classes is None or num_classes > 5 else ("loss", "top1")


# ------------------------------------------------------------------- scalars
def scalars(writers: Writers, values: dict, step: int):
    """Scalars by tag (a key of ``DESCRIPTIONS``) at optimizer step ``step``."""
    with writers.writer.as_default(step=step):
        for tag, value in values.items():
            if value is not None:
                tf.summary.scalar(tag, float(value), description=DESCRIPTIONS[tag])


def train_scalars(writers, metrics: dict, learning_rate, images_per_second, epoch, step):
    """The scalars of one training loop call (``metrics``: its mean loss, top1, top5)."""
    scalars(writers, {**{f"train/{m}": metrics[m] for m in writers.metrics},
                      "train/learning_rate": learning_rate,
                      "train/images_per_second": images_per_second, "train/epoch": epoch},
            step)


def epoch_scalars(writers, epoch: int, step: int, train=None, val=None, best_top1=None,
                  baseline_top1=None):
    """An epoch end: the epoch's training means and/or the evaluation, the best
    validation top-1 so far and the head-only baseline's (fine-tuning)."""
    values = {"train/epoch": epoch}
    if train is not None:
        values.update({f"train/epoch_{m}": train[m] for m in writers.metrics})
    if val is not None:
        values.update({f"val/{m}": val[m] for m in writers.metrics})
        values["val/best_top1"] = best_top1
        if baseline_top1 is not None:
            values["val/baseline_top1"] = baseline_top1
    scalars(writers, values, step)


# ------------------------------------------------------------------- hparams
def hparam_domains(config, used: dict | None = None) -> dict:
    """{name: (value, hp domain)} of the ``HPARAMS`` flags of ``config`` (a TrainConfig,
    data options included), ``used`` overriding or adding values (the steps per epoch
    used, num_replicas), typed by the fields' annotations or the value: bools Discrete,
    ints IntInterval, floats RealInterval, strings Discrete (over their allowed values
    when fixed, else their value); None becomes ''."""
    types = dict(typing.get_type_hints(type(config)))
    if config.data is not None:
        types.update(typing.get_type_hints(type(config.data)))
    values = {**config.flag_values(), **(used or {})}
    out = {}
    for name in HPARAMS:
        if name not in values:
            continue
        value = values[name]
        kind = type(value) if name in (used or {}) else types.get(name)
        if kind is bool:
            out[name] = (bool(value), hp.Discrete([False, True]))
        elif kind is int:
            out[name] = (int(value), hp.IntInterval(min(int(value), 0), max(int(value), 1)))
        elif kind is float:
            out[name] = (float(value),
                         hp.RealInterval(min(float(value), 0.0), max(float(value), 1.0)))
        else:
            value = "" if value is None else str(value)
            out[name] = (value, hp.Discrete(sorted({value, *CHOICES.get(name, ())})))
    return out


def hparam_name(flag: str) -> str:
    """The hparam's name: its rank in ``HPARAMS`` and the flag (the dashboard sorts by
    name), e.g. ``01 learning_rate``; its display name is the flag."""
    return f"{HPARAMS.index(flag) + 1:02d} {flag}"


def flags_markdown(config, used: dict) -> str:
    """Every flag of the run and its value as a markdown table (the "flags" text summary),
    ``used`` values after the flag's own (``steps_per_epoch``: 0 = auto, 41 used)."""
    rows = ["| flag | value |", "| --- | --- |"]
    for name, value in sorted(config.flag_values().items()):
        shown = f"{value!r}" if isinstance(value, str) else str(value)
        if name in used and used[name] != value:
            shown += f" ({used[name]} used)"
        rows.append(f"| {name} | {shown} |")
    return "\n".join(rows)


def write_hparams(writers: Writers, config, run_name: str, has_validation: bool,
                  used: dict | None = None, has_baseline: bool = False):
    """The run's hparams session (its row in the hparams dashboard): the ``HPARAMS``
    flags, typed, with ``used`` values (e.g. steps_per_epoch, num_replicas), the metric
    columns whose tags exist, and every flag in the "flags" text summary."""
    if not writers.enabled:
        return
    used = used or {}
    helps = {f.name: f.metadata.get("help", "") for obj in (config, config.data)
             if obj is not None for f in dataclasses.fields(obj)}
    helps.update(num_classes="Number of classes of the training data.",
                 num_replicas="Replicas training in sync (devices x workers).",
                 steps_per_epoch="Optimizer steps per epoch, as used (--steps_per_epoch or "
                                 "the training examples // --batch_size).")
    params = {hp.HParam(hparam_name(name), domain, display_name=name,
                        description=helps.get(name)): value
              for name, (value, domain) in hparam_domains(config, used).items()}
    metrics = [hp.Metric(tag, display_name=name, description=DESCRIPTIONS[tag])
               for tag, name in HPARAMS_METRICS
               if (has_validation or tag.startswith("train/"))
               and (has_baseline or tag != "val/baseline_top1")
               and ("top5" in writers.metrics or "top5" not in tag)]
    with writers.writer.as_default(step=0):
        hp.hparams_config(hparams=list(params), metrics=metrics)
        hp.hparams(params, trial_id=run_name)
        tf.summary.text("flags", flags_markdown(config, used),
                        description="Every flag of the run (config.json, flags.txt).")
    writers.flush()


def end_session(logdir: str | None, status: str):
    """Records how the run ended (``STATUSES``: success, failure) in its hparams session,
    with a writer of its own (the run's writer may be closed). TensorBoard keeps the first
    status written for a run, so a run that failed and was then resumed to the end still
    shows failure."""
    if logdir is None:
        return
    writer = tf.summary.create_file_writer(logdir)
    try:
        with writer.as_default():
            pb = hp_summary.session_end_pb(STATUSES[status])
            tf.summary.experimental.write_raw_pb(pb.SerializeToString(), step=0)
    finally:
        writer.close()


# -------------------------------------------------------------------- images
def image_epochs(num_epochs: int) -> set[int]:
    """The (0-based) epochs at whose start the augmented-image grid is logged: the
    first, the middle and the last."""
    return {0, num_epochs // 2, max(num_epochs - 1, 0)}


def log_training_images(writers: Writers, images, labels, class_names, step: int,
                        max_images: int = 6):
    """A grid of augmented training images (what the network sees), each captioned with
    its class."""
    images, labels = np.asarray(images)[:max_images], np.asarray(labels)[:max_images]
    with writers.writer.as_default(step=step):
        tf.summary.image("train/augmented_images",
                         tensorboard_images.image_grid(images, labels, class_names),
                         step=step, description=DESCRIPTIONS["train/augmented_images"])


def log_confusion_matrix(writers: Writers, matrix, class_names, step: int):
    with writers.writer.as_default(step=step):
        tf.summary.image("val/confusion_matrix",
                         tensorboard_images.confusion_matrix_image(matrix, class_names),
                         step=step, description=DESCRIPTIONS["val/confusion_matrix"])


# -------------------------------------------------------------------- graphs
def write_model_graph(writers: Writers, model, resolution: int, warn=print):
    """The Keras model's inference graph (the Graphs tab's default graph of the run),
    traced once from ``model(x, training=False)``; layers are its name scopes. A model
    that cannot be traced outside its strategy (e.g. on TPU) gets a warning, not an
    error: the graph is a view, not part of the run."""
    if not writers.enabled:
        return
    fn = tf.function(lambda x: model(x, training=False))
    try:
        graph = fn.get_concrete_function(
            tf.TensorSpec([1, resolution, resolution, 3], tf.float32)).graph
    except (ValueError, TypeError, RuntimeError, tf.errors.OpError) as err:
        warn(f"The model graph was not written to TensorBoard: {err}")
        return
    with writers.writer.as_default():
        tf.summary.graph(graph)


class GraphTrace:
    """Writes the graph of the first training call (the Graphs tab, tag ``train_step``)."""

    def __init__(self, writers: Writers):
        self.writers = writers
        self.active = False

    def start(self):
        if self.writers.enabled:
            tf.summary.trace_on(graph=True, profiler=False)
            self.active = True

    def stop(self, step: int):
        if self.active:
            with self.writers.writer.as_default():
                tf.summary.trace_export("train_step", step=step)
            self.active = False


class Profiler:
    """The TF profiler over an optimizer-step range ``[start, end)`` (``--profile_steps``)."""

    def __init__(self, writers: Writers, steps: tuple[int, int] | None):
        self.logdir = writers.logdir
        self.steps = steps if writers.enabled else None
        self.running = False

    def boundaries(self):
        return () if not self.steps else self.steps

    def maybe_toggle(self, step: int):
        if not self.steps:
            return
        start, end = self.steps
        if not self.running and start <= step < end:
            tf.profiler.experimental.start(self.logdir)
            self.running = True
        elif self.running and step >= end:
            tf.profiler.experimental.stop()
            self.running = False

    def close(self):
        if self.running:
            tf.profiler.experimental.stop()
            self.running = False
