"""Training and evaluation of MobileNet v1 under any tf.distribute strategy.

``train_and_evaluate(config, workdir)`` is the library entry point (``mobilenet_tf.train``
is its thin command line). One custom loop serves every strategy (one device, mirrored
GPUs, multi-worker, TPU): ``strategy.run`` inside a ``tf.function`` that runs
``steps_per_loop`` steps per call, over ``strategy.distribute_datasets_from_function``.
(Keras' ``model.fit`` fails under MultiWorkerMirroredStrategy in Keras 3,
keras-team/keras#20585.) The loss is the per-example cross-entropy summed and divided by
the global batch size, plus the L2 weight decay divided by the number of replicas, so
the all-reduced (summed) gradients are those of the global-batch mean.

The run directory is laid out as ``mobilenet_tf.rundir`` says (``RunFiles``); a run resumes
from its latest checkpoint when the same command is repeated after a crash, SIGTERM or
SIGKILL, and a completed run does nothing.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import shutil
import signal
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mobilenet_tf import distribute, fileio, optim
from mobilenet_tf import tensorboard_logging as tb
from mobilenet_tf.model import VARIANTS, mobilenet_v1
from mobilenet_tf.profiler import profile_model
from mobilenet_tf.rundir import RunFiles

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def _field(default, help_text, **kw):
    return dataclasses.field(default=default, metadata={"help": help_text}, **kw)


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run depends on. The field names are the flag names of
    ``python -m mobilenet_tf.train`` (the data options come from ``data.DataConfig``)."""

    data: Any = None  # mobilenet_tf.data.DataConfig (image_size is set from `resolution`)
    train_split: str = _field("train", "Split to train on, e.g. 'train' or 'train[:90%]'.")
    eval_split: str = _field("validation", "Split to evaluate on after each epoch, e.g. "
                             "'validation' or 'train[90%:]'; empty: no evaluation.")
    # Model.
    alpha: float = _field(1.0, "Width multiplier (paper: 1.0, 0.75, 0.5, 0.25).")
    resolution: int = _field(224, "Input resolution, square (paper: 224, 192, 160, 128).")
    variant: str = _field("mobilenet", f"Architecture: one of {list(VARIANTS)}.")
    depth_multiplier: int = _field(1, "Depthwise channel multiplier.")
    dropout: float = _field(1e-3, "Dropout rate before the classifier.")
    bn_momentum: float = _field(0.99, "Batch-norm moving-statistics momentum (Keras: "
                                "0.99, slim: 0.9997; short runs need less, e.g. 0.9).")
    initial_weights: str = _field("", "Start from these weights: a .keras/.weights.h5/.h5 "
                                  "file or 'imagenet'; layers whose shapes differ (e.g. the "
                                  "classifier for another class count) keep their init.")
    # Schedule of the run.
    epochs: float = _field(1, "Number of epochs to train (> 0; may be fractional).")
    batch_size: int = _field(64, "Global batch size (over all replicas and workers).")
    steps_per_epoch: int = _field(0, "Steps per epoch; 0: train examples // batch_size.")
    eval_every_epochs: int = _field(1, "Evaluate every N epochs (and after the last).")
    # Optimization.
    optimizer: str = _field("rmsprop", f"One of {list(optim.OPTIMIZERS)}.")
    learning_rate: float = _field(0.045, "Peak learning rate at `lr_reference_batch_size`.")
    lr_reference_batch_size: int = _field(0, "Batch size `learning_rate` is meant for; the "
                                          "rate is scaled linearly by batch_size / this "
                                          "(0: no scaling).")
    lr_schedule: str = _field("exponential", f"One of {list(optim.SCHEDULES)}.")
    warmup_epochs: float = _field(0.0, "Linear warmup from 0 over this many epochs.")
    lr_decay_rate: float = _field(0.94, "exponential: factor per `lr_decay_epochs`.")
    lr_decay_epochs: float = _field(2.5, "exponential: epochs per decay (staircase).")
    momentum: float = _field(0.9, "rmsprop/sgd momentum.")
    rmsprop_rho: float = _field(0.9, "rmsprop decay of the squared-gradient average.")
    rmsprop_epsilon: float = _field(1.0, "rmsprop epsilon (slim/Inception: 1.0).")
    label_smoothing: float = _field(0.1, "Label smoothing in [0, 1).")
    weight_decay: float = _field(4e-5, "L2 weight decay (rmsprop/sgd: coefficient of "
                                 "sum(w^2)/2 in the loss, as slim; adamw: decoupled decay) "
                                 "on conv and classifier kernels.")
    depthwise_weight_decay: float = _field(0.0, "Weight decay on depthwise filters "
                                           "(paper: very little or none). adamw: any value "
                                           "> 0 decays them at --weight_decay.")
    ema_decay: float = _field(0.0, "Moving average of weights used for eval and the saved "
                              "models, e.g. 0.9999; 0: off.")
    # Runtime.
    strategy: str = _field("auto", f"One of {list(distribute.STRATEGIES)}.")
    tpu_address: str = _field("", "TPU name or grpc:// address for strategy=tpu.")
    precision: str = _field("float32", f"Keras dtype policy: one of {list(PRECISIONS)}.")
    jit_compile: bool = _field(False, "XLA-compile the train step (off: XLA made MobileNet "
                               "training ~10x slower on CPU here; try it on GPU/TPU).")
    seed: int = _field(0, "Random seed (init, dropout, data order).")
    steps_per_loop: int = _field(20, "Training steps per tf.function call.")
    checkpoint_every_steps: int = _field(500, "Save a checkpoint every N steps (and at each "
                                         "epoch end).")
    keep_checkpoints: int = _field(3, "Number of recent checkpoints to keep.")
    profile_steps: str = _field("", "Profile steps 'START,END' into the TensorBoard logs.")
    log_images: bool = _field(True, "Log a grid of augmented training images.")
    verbose: int = _field(1, "0: quiet, 1: progress bar and epoch lines, 2: epoch lines.")

    def validate(self):
        """Raises ValueError naming the first invalid option."""
        def need(ok, flag, msg):
            if not ok:
                raise ValueError(f"--{flag}={getattr(self, flag)!r} is not valid: {msg}")

        need(self.alpha > 0, "alpha", "must be > 0 (paper: 1.0, 0.75, 0.5, 0.25)")
        need(self.resolution >= 32, "resolution", "must be an integer >= 32")
        need(self.variant in VARIANTS, "variant", f"allowed values: {list(VARIANTS)}")
        need(self.depth_multiplier >= 1, "depth_multiplier", "must be an integer >= 1")
        need(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")
        need(0 <= self.bn_momentum < 1, "bn_momentum", "must be in [0, 1)")
        need(self.epochs > 0, "epochs", "must be > 0")
        need(self.batch_size >= 1, "batch_size", "must be >= 1 (the global batch size)")
        need(self.steps_per_epoch >= 0, "steps_per_epoch", "must be >= 0 (0: derived)")
        need(self.eval_every_epochs >= 1, "eval_every_epochs", "must be >= 1")
        need(self.optimizer in optim.OPTIMIZERS, "optimizer",
             f"allowed values: {list(optim.OPTIMIZERS)}")
        need(self.learning_rate > 0, "learning_rate", "must be > 0")
        need(self.lr_reference_batch_size >= 0, "lr_reference_batch_size", "must be >= 0")
        need(self.lr_schedule in optim.SCHEDULES, "lr_schedule",
             f"allowed values: {list(optim.SCHEDULES)}")
        need(self.warmup_epochs >= 0, "warmup_epochs", "must be >= 0")
        need(0 < self.lr_decay_rate <= 1, "lr_decay_rate", "must be in (0, 1]")
        need(self.lr_decay_epochs > 0, "lr_decay_epochs", "must be > 0")
        need(0 <= self.momentum < 1, "momentum", "must be in [0, 1)")
        need(0 <= self.rmsprop_rho < 1, "rmsprop_rho", "must be in [0, 1)")
        need(self.rmsprop_epsilon > 0, "rmsprop_epsilon", "must be > 0")
        need(0 <= self.label_smoothing < 1, "label_smoothing", "must be in [0, 1)")
        need(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        need(self.depthwise_weight_decay >= 0, "depthwise_weight_decay", "must be >= 0")
        need(0 <= self.ema_decay < 1, "ema_decay", "must be in [0, 1) (0: off)")
        need(self.strategy in distribute.STRATEGIES, "strategy",
             f"allowed values: {list(distribute.STRATEGIES)}")
        need(self.precision in PRECISIONS, "precision", f"allowed values: {list(PRECISIONS)}")
        need(self.steps_per_loop >= 1, "steps_per_loop", "must be >= 1")
        need(self.checkpoint_every_steps >= 1, "checkpoint_every_steps", "must be >= 1")
        need(self.keep_checkpoints >= 1, "keep_checkpoints", "must be >= 1")
        need(self.verbose in (0, 1, 2), "verbose", "allowed values: 0, 1, 2")
        self.parsed_profile_steps()
        if self.initial_weights and self.initial_weights != "imagenet":
            need(os.path.exists(self.initial_weights), "initial_weights",
                 "no such file; use a .keras, .weights.h5 or .h5 file, or 'imagenet'")

    def parsed_profile_steps(self):
        if not self.profile_steps:
            return None
        try:
            start, end = (int(s) for s in self.profile_steps.split(","))
        except ValueError:
            start = end = -1
        if not 0 <= start < end:
            raise ValueError(f"--profile_steps={self.profile_steps!r} is not valid: use "
                             "'START,END' with 0 <= START < END (optimizer steps)")
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


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is left in place."""


class Preempted(RuntimeError):
    """SIGTERM arrived; a checkpoint was written and the same command resumes."""


METRICS_COLUMNS = ("epoch", "step", "train_loss", "train_top1", "train_top5", "val_loss",
                   "val_top1", "val_top5", "learning_rate", "images_per_second",
                   "wall_seconds")


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


_atomic_write = fileio.atomic_write_text


def _jsonable(value):
    if dataclasses.is_dataclass(value):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def is_complete(workdir: str, epochs: float) -> bool:
    """Whether ``workdir`` holds a run that finished ``epochs`` epochs."""
    path = RunFiles(workdir).summary
    if not os.path.exists(path):
        return False
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("epochs", 0) >= epochs


def build_inputs(config: TrainConfig):
    """The train and eval inputs from ``config.data`` (``mobilenet_tf.data.build_input``).

    A resumed run restarts the seeded example order (the input pipeline is not
    checkpointed: its shuffle buffer would be as large as the images it holds); the
    epoch, step and learning-rate position resume exactly.
    """
    from mobilenet_tf import data  # the input-pipeline package

    if config.data is None:
        raise ValueError("TrainConfig.data is None: set it to a data.DataConfig (the "
                         "--dataset flags), or pass train_input/eval_input objects")
    data_cfg = config.data_config()
    train = data.build_input(data_cfg, split=config.train_split, training=True,
                             global_batch_size=config.batch_size)
    evaluation = None
    if config.eval_split:
        evaluation = data.build_input(data_cfg, split=config.eval_split, training=False,
                                      global_batch_size=config.batch_size,
                                      class_names=train.class_names)
    return train, evaluation


def train_and_evaluate(config: TrainConfig, workdir: str, train_input=None, eval_input=None):
    """Trains ``config`` into ``workdir`` (resuming from it when it holds a checkpoint) and
    returns the summary dict (also written to summary.json).

    ``train_input`` / ``eval_input`` default to ``build_inputs(config)``; tests and
    benchmarks may pass any object with ``class_names``, ``num_examples`` and
    ``input_fn(input_context) -> tf.data.Dataset`` as ``data.build_input`` returns.
    """
    config.validate()
    files = RunFiles(workdir)
    if is_complete(workdir, config.epochs):
        with open(files.summary, encoding="utf-8") as f:
            summary = json.load(f)
        _say(config, f"The run in {workdir} is already complete ({summary['epochs']:g} epochs, "
                     f"top-1 {_pct(summary.get('top1'))}); nothing to do. Use a new "
                     "--workdir, or raise --epochs to train further.")
        return summary
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.precision)
    try:
        return Trainer(config, workdir, train_input, eval_input).run()
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _say(config, text):
    if config.verbose:
        print(text, flush=True)


def _pct(x):
    return "n/a" if x is None else f"{100 * x:.2f}%"


class Trainer:
    """One training run into ``workdir``; ``train_and_evaluate`` is the usual way in.

    After ``run()``, ``model`` is the trained (raw, not averaged) model, ``history`` the
    (optimizer step, mean training loss) and ``timing`` the (images, wall seconds,
    process CPU seconds) of every training loop call of this process (the first call
    includes tracing).
    """

    def __init__(self, config: TrainConfig, workdir: str, train_input=None, eval_input=None):
        config.validate()
        self.config = config
        self.files = RunFiles(workdir)
        self.history = []
        self.timing = []
        self.strategy = distribute.make_strategy(config.strategy, config.tpu_address)
        replicas = self.strategy.num_replicas_in_sync
        if config.batch_size % replicas:
            raise ValueError(f"--batch_size={config.batch_size} is not valid: it must be "
                             f"divisible by the number of replicas ({replicas})")
        self.chief = distribute.is_chief(self.strategy)
        keras.utils.set_random_seed(config.seed)
        if train_input is None:
            train_input, built_eval = build_inputs(config)
            eval_input = built_eval if eval_input is None else eval_input
        self.train_input, self.eval_input = train_input, eval_input
        self.class_names = list(train_input.class_names)
        self.num_classes = len(self.class_names)
        self.steps_per_epoch = config.steps_per_epoch or (
            train_input.num_examples // config.batch_size)
        if self.steps_per_epoch < 1:
            raise ValueError(f"--batch_size={config.batch_size} is not valid: it is larger "
                             f"than the {train_input.num_examples} training examples")
        self.total_steps = int(math.ceil(config.epochs * self.steps_per_epoch))
        self.num_epochs = int(math.ceil(config.epochs))

    # ----------------------------------------------------------------- set-up
    def _write_run_config(self):
        cfg = self.config
        model_cfg = cfg.model_config(self.num_classes)
        if not self.chief:
            return
        if os.path.exists(self.files.config):
            with open(self.files.config, encoding="utf-8") as f:
                old = json.load(f)["model"]
            if old != model_cfg:
                raise ValueError(f"--workdir={self.files.workdir} holds a run of another model "
                                 f"({old}); this command builds {model_cfg}. Use a new "
                                 "--workdir.")
        os.makedirs(self.files.workdir, exist_ok=True)
        from mobilenet_tf.data import write_labels

        write_labels(self.files.labels, self.class_names)
        _atomic_write(self.files.flags, flags_text(cfg))
        data_cfg = cfg.data_config() if cfg.data is not None else None
        run_cfg = {
            "model": model_cfg,
            "data": data_cfg.to_dict() if data_cfg is not None else None,
            "train": {k: _jsonable(v) for k, v in cfg.flag_values().items()
                      if not (data_cfg is not None and hasattr(data_cfg, k))},
            "class_names": self.class_names,
            "steps_per_epoch": self.steps_per_epoch,
            "num_train_examples": self.train_input.num_examples,
            "num_eval_examples": self.eval_input.num_examples if self.eval_input else 0,
            "num_replicas": self.strategy.num_replicas_in_sync,
        }
        _atomic_write(self.files.config, json.dumps(run_cfg, indent=2) + "\n")

    def _build_model(self, synchronized_bn: bool):
        cfg = self.config
        model = mobilenet_v1(**cfg.model_config(self.num_classes), classifier_activation=None,
                             synchronized_bn=synchronized_bn, bn_momentum=cfg.bn_momentum,
                             fused_batch_norm=True)
        if cfg.initial_weights:
            _load_matching_weights(model, cfg)
        return model

    def _setup(self):
        cfg = self.config
        replicas = self.strategy.num_replicas_in_sync
        sync_bn = isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy) or (
            isinstance(self.strategy, tf.distribute.MirroredStrategy) and replicas > 1)
        spe = self.steps_per_epoch
        with self.strategy.scope():
            self.model = self._build_model(sync_bn)
            regular, depthwise = optim.decay_groups(self.model)
            self.regular_kernels, self.depthwise_kernels = regular, depthwise
            schedule = optim.LearningRate(
                cfg.learning_rate_for_batch(), cfg.lr_schedule, total_steps=self.total_steps,
                warmup_steps=int(round(cfg.warmup_epochs * spe)),
                decay_steps=max(1, int(round(cfg.lr_decay_epochs * spe))),
                decay_rate=cfg.lr_decay_rate)
            self.schedule = schedule
            excluded = None
            if cfg.optimizer == "adamw":
                decayed = {id(v) for v in regular}
                if cfg.depthwise_weight_decay:
                    decayed |= {id(v) for v in depthwise}
                excluded = [v for v in self.model.trainable_variables if id(v) not in decayed]
            optimizer = optim.build_optimizer(
                cfg.optimizer, schedule, momentum=cfg.momentum, rmsprop_rho=cfg.rmsprop_rho,
                rmsprop_epsilon=cfg.rmsprop_epsilon, weight_decay=cfg.weight_decay,
                excluded_variables=excluded)
            if cfg.precision == "mixed_float16":
                optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
            optimizer.build(self.model.trainable_variables)
            self.optimizer = optimizer
            self.ema = (optim.WeightAverage(self.model.weights, cfg.ema_decay)
                        if cfg.ema_decay else None)
            self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False,
                                           name="global_step")
            self.evaluated_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.best_top1 = tf.Variable(-1.0, dtype=tf.float64, trainable=False)
            self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.wall_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        items = dict(model=self.model, optimizer=self.optimizer, global_step=self.global_step,
                     evaluated_epoch=self.evaluated_epoch, best_top1=self.best_top1,
                     best_epoch=self.best_epoch, wall_seconds=self.wall_seconds)
        if self.ema is not None:
            items["ema"] = self.ema
        self.checkpoint = tf.train.Checkpoint(**items)
        ckpt_dir = distribute.write_dir(self.files.workdir, self.strategy)
        self.scratch_dir = None if self.chief else ckpt_dir
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, RunFiles(ckpt_dir).checkpoints,
            max_to_keep=cfg.keep_checkpoints)
        latest = tf.train.latest_checkpoint(self.files.checkpoints)
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            _say(cfg, f"Resuming from {latest} (step {int(self.global_step.numpy())}, "
                      f"epoch {int(self.global_step.numpy()) // spe + 1}).")
        self.writers = tb.Writers(self.files.workdir, self.chief)

    # --------------------------------------------------------------- compiled steps
    def _make_train_loop(self):
        cfg, strategy = self.config, self.strategy
        model, optimizer = self.model, self.optimizer
        gb = cfg.batch_size
        k = min(5, self.num_classes)
        smoothing, n_cls = cfg.label_smoothing, self.num_classes

        def replica_step(images, labels):
            labels = tf.cast(labels, tf.float32)
            with tf.GradientTape() as tape:
                logits = tf.cast(model(images, training=True), tf.float32)
                targets = labels * (1.0 - smoothing) + smoothing / n_cls if smoothing else labels
                per_example = tf.nn.softmax_cross_entropy_with_logits(targets, logits)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=gb)
                if cfg.optimizer != "adamw":  # adamw decays inside the optimizer
                    reg = (optim.l2_loss(self.regular_kernels, cfg.weight_decay)
                           + optim.l2_loss(self.depthwise_kernels,
                                           cfg.depthwise_weight_decay))
                    loss += tf.nn.scale_regularization_loss(reg)  # reg / replicas
                scaled = optimizer.scale_loss(loss)
            variables = model.trainable_variables
            grads = tape.gradient(scaled, variables)
            optimizer.apply_gradients(zip(grads, variables))
            true = tf.argmax(labels, axis=-1, output_type=tf.int32)
            n = tf.cast(tf.shape(labels)[0], tf.float32)
            top1 = tf.reduce_sum(tf.cast(tf.math.in_top_k(true, logits, 1), tf.float32))
            topk = tf.reduce_sum(tf.cast(tf.math.in_top_k(true, logits, k), tf.float32))
            return tf.stack([tf.reduce_sum(per_example), top1, topk, n])

        step_fn = tf.function(replica_step, jit_compile=True) if cfg.jit_compile \
            else replica_step
        ema, global_step = self.ema, self.global_step

        @tf.function
        def train_loop(iterator, num_steps):
            totals = tf.zeros([4], tf.float32)
            for _ in tf.range(num_steps):
                images, labels = next(iterator)
                out = strategy.run(step_fn, args=(images, labels))
                totals += strategy.reduce(tf.distribute.ReduceOp.SUM, out, axis=None)
                global_step.assign_add(1)
                if ema is not None:
                    ema.update(global_step)
            return totals

        return train_loop

    def _make_eval(self):
        strategy, model = self.strategy, self.model
        n_cls = self.num_classes
        k = min(5, n_cls)

        def replica_eval(images, labels):
            labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
            logits = tf.cast(model(images, training=False), tf.float32)
            per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
            top1 = tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, 1), tf.float32))
            topk = tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, k), tf.float32))
            n = tf.cast(tf.shape(labels)[0], tf.float32)
            sums = tf.stack([tf.reduce_sum(per_example), top1, topk, n])
            confusion = tf.math.confusion_matrix(labels, tf.argmax(logits, -1, tf.int32),
                                                 num_classes=n_cls, dtype=tf.float32)
            return sums, confusion

        @tf.function
        def evaluate(dist_dataset):
            sums = tf.zeros([4], tf.float32)
            confusion = tf.zeros([n_cls, n_cls], tf.float32)
            for images, labels in dist_dataset:
                s, c = strategy.run(replica_eval, args=(images, labels))
                sums += strategy.reduce(tf.distribute.ReduceOp.SUM, s, axis=None)
                confusion += strategy.reduce(tf.distribute.ReduceOp.SUM, c, axis=None)
            return sums, confusion

        return evaluate

    # --------------------------------------------------------------- main loop
    def run(self):
        cfg = self.config
        t_start = time.time()
        self._write_run_config()
        self._setup()
        wall_before = float(self.wall_seconds.numpy())
        spe = self.steps_per_epoch
        step = int(self.global_step.numpy())
        self._trim_metrics(int(self.evaluated_epoch.numpy()))
        if self.chief:
            tb.write_hparams(self.writers, self._hparams(), os.path.basename(
                os.path.abspath(self.files.workdir)))
        dist_train = self.strategy.distribute_datasets_from_function(self.train_input.input_fn)
        iterator = iter(dist_train)
        self.dist_eval = (self.strategy.distribute_datasets_from_function(
            self.eval_input.input_fn) if self.eval_input is not None else None)
        train_loop = self._make_train_loop()
        self.evaluate_fn = self._make_eval() if self.eval_input is not None else None
        if cfg.log_images and self.chief and step < self.total_steps:
            self._log_images(iterator, step)
        profiler = tb.Profiler(self.writers, cfg.parsed_profile_steps())
        graph = tb.GraphTrace(self.writers)
        stop = _SigtermFlag()
        self.last_eval = None
        train_seconds, train_images = 0.0, 0
        first_call = True
        try:
            # An epoch whose last step ran but whose end (eval, checkpoint) did not; the
            # last epoch may be partial (fractional --epochs).
            ended = self.num_epochs if step >= self.total_steps else step // spe
            if step and ended > int(self.evaluated_epoch.numpy()):
                self._end_of_epoch(ended, None, None, t_start, wall_before)
            while step < self.total_steps:
                epoch = step // spe  # 0-based
                epoch_end = min((epoch + 1) * spe, self.total_steps)
                progbar = keras.utils.Progbar(epoch_end - epoch * spe, verbose=cfg.verbose == 1,
                                              stateful_metrics=["loss", "top1", "lr"],
                                              unit_name="step")
                if cfg.verbose:
                    print(f"Epoch {epoch + 1}/{self.num_epochs}", flush=True)
                totals = np.zeros(4)
                epoch_seconds, epoch_images = 0.0, 0
                while step < epoch_end:
                    n = min(cfg.steps_per_loop, epoch_end - step,
                            cfg.checkpoint_every_steps - step % cfg.checkpoint_every_steps)
                    for b in profiler.boundaries():
                        if step < b < step + n:
                            n = b - step
                    profiler.maybe_toggle(step)
                    if first_call:
                        graph.start()
                    t0, c0 = time.time(), time.process_time()
                    out = train_loop(iterator, tf.constant(n, tf.int32)).numpy()
                    dt = time.time() - t0
                    self.timing.append((n * cfg.batch_size, dt, time.process_time() - c0))
                    if first_call:
                        graph.stop(step)
                    step += n
                    if not np.all(np.isfinite(out)):
                        self._diverged(step, out)
                    totals += out
                    self.history.append((step, float(out[0] / out[3])))
                    if not first_call:  # the first call traces the graph
                        epoch_seconds += dt
                        epoch_images += n * cfg.batch_size
                        train_seconds += dt
                        train_images += n * cfg.batch_size
                    first_call = False
                    lr = float(self.schedule(self.optimizer.iterations))
                    ips = n * cfg.batch_size / dt
                    tb.scalars(self.writers.train, {"loss": out[0] / out[3],
                                                    "top1": out[1] / out[3],
                                                    "top5": out[2] / out[3],
                                                    "learning_rate": lr,
                                                    "images_per_second": ips}, step)
                    progbar.update(step - epoch * spe, [("loss", out[0] / out[3]),
                                                        ("top1", out[1] / out[3]),
                                                        ("lr", lr)])
                    if step % cfg.checkpoint_every_steps == 0 and step != epoch_end:
                        self._set_wall(t_start, wall_before)
                        self.manager.save(checkpoint_number=step)
                    if stop.flag:
                        raise self._preempted(step, t_start, wall_before)
                train_metrics = [float(v) for v in totals[:3] / max(totals[3], 1)]
                epoch_ips = epoch_images / epoch_seconds if epoch_seconds else None
                self._end_of_epoch(epoch + 1, train_metrics, epoch_ips, t_start, wall_before)
        finally:
            stop.restore()
            profiler.close()
            self.writers.flush()
            if self.scratch_dir:  # a non-chief worker's checkpoints are not kept
                shutil.rmtree(self.scratch_dir, ignore_errors=True)
        images_per_second = train_images / train_seconds if train_seconds else None
        summary = self._finish(t_start, wall_before, images_per_second)
        self.writers.close()
        return summary

    def _preempted(self, step, t_start, wall_before):
        """SIGTERM: checkpoint now, except in a multi-worker cluster, where saving is a
        collective that the other workers (not signalled) would not join; there the
        run resumes from the last periodic checkpoint."""
        if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            latest = tf.train.latest_checkpoint(self.files.checkpoints)
            saved = f"the latest checkpoint is {latest}"
        else:
            self._set_wall(t_start, wall_before)
            self.manager.save(checkpoint_number=step)
            saved = f"saved a checkpoint at step {step} in {self.files.checkpoints}"
        return Preempted(f"SIGTERM received: {saved}; run the same command to resume.")

    def _set_wall(self, t_start, wall_before):
        self.wall_seconds.assign(wall_before + time.time() - t_start)

    def _diverged(self, step, out):
        latest = tf.train.latest_checkpoint(self.files.checkpoints)
        kept = (f"The last good checkpoint, {latest}, is kept; re-running resumes from it."
                if latest else "No checkpoint had been written yet.")
        raise TrainingDivergedError(
            f"The training loss became {out[0] / max(out[3], 1)} (NaN/Inf) in the steps "
            f"before step {step}; training stopped. {kept} Try a lower --learning_rate "
            f"(now {self.config.learning_rate}), a warmup (--warmup_epochs) or "
            "--precision=float32.")

    def _log_images(self, iterator, step):
        images, labels = next(iterator)
        images = self.strategy.experimental_local_results(images)[0]
        labels = self.strategy.experimental_local_results(labels)[0]
        tb.log_training_images(self.writers.train, images.numpy(), labels.numpy(),
                               self.class_names, step)

    def _run_eval(self):
        if self.evaluate_fn is None:
            return None
        ctx = self.ema.swapped_in() if self.ema is not None else _Nothing()
        with ctx:
            sums, confusion = self.evaluate_fn(self.dist_eval)
        sums, confusion = sums.numpy(), confusion.numpy()
        n = max(sums[3], 1)
        return {"loss": float(sums[0] / n), "top1": float(sums[1] / n),
                "top5": float(sums[2] / n),
                "count": int(sums[3]), "confusion": confusion}

    def _end_of_epoch(self, epoch, train_metrics, images_per_second, t_start, wall_before):
        cfg = self.config
        step = int(self.global_step.numpy())
        last = step >= self.total_steps
        ev = None
        if self.evaluate_fn is not None and (epoch % cfg.eval_every_epochs == 0 or last):
            ev = self._run_eval()
            self.last_eval = ev
            tb.scalars(self.writers.validation, {"epoch_loss": ev["loss"],
                                                 "epoch_top1": ev["top1"],
                                                 "epoch_top5": ev["top5"]}, step)
            if self.chief:
                tb.log_confusion_matrix(self.writers.validation, ev["confusion"],
                                        self.class_names, step)
        if train_metrics is not None:
            tb.scalars(self.writers.train, {"epoch_loss": train_metrics[0],
                                            "epoch_top1": train_metrics[1],
                                            "epoch_top5": train_metrics[2]}, step)
        if ev is not None and ev["top1"] > float(self.best_top1.numpy()):
            self.best_top1.assign(ev["top1"])
            self.best_epoch.assign(epoch)
            if self.chief:
                self._save_keras(self.files.best)
        elif ev is None and self.evaluate_fn is None and self.chief:
            self._save_keras(self.files.best)  # no validation: the latest is the best
            self.best_epoch.assign(epoch)
        self.evaluated_epoch.assign(epoch)
        self._set_wall(t_start, wall_before)
        self.manager.save(checkpoint_number=step)
        lr = float(self.schedule(self.optimizer.iterations))
        wall = float(self.wall_seconds.numpy())
        row = {"epoch": epoch, "step": step, "learning_rate": lr, "wall_seconds": wall,
               "images_per_second": images_per_second}
        if train_metrics is not None:
            row.update(train_loss=train_metrics[0], train_top1=train_metrics[1],
                       train_top5=train_metrics[2])
        if ev is not None:
            row.update(val_loss=ev["loss"], val_top1=ev["top1"], val_top5=ev["top5"])
        self._append_metrics(row)
        if cfg.verbose:
            parts = [f"epoch {epoch}/{self.num_epochs}"]
            if train_metrics is not None:
                parts.append(f"loss {train_metrics[0]:.4f} top1 {_pct(train_metrics[1])}")
            if ev is not None:
                parts.append(f"val_loss {ev['loss']:.4f} val_top1 {_pct(ev['top1'])} "
                             f"val_top5 {_pct(ev['top5'])}")
            parts.append(f"lr {lr:.3g}")
            if images_per_second:
                parts.append(f"{images_per_second:.0f} img/s")
            parts.append(f"{wall:.0f}s")
            print(" | ".join(parts), flush=True)

    def _append_metrics(self, row):
        if not self.chief:
            return
        new = not os.path.exists(self.files.metrics)
        with open(self.files.metrics, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=METRICS_COLUMNS)
            if new:
                w.writeheader()
            w.writerow({k: ("" if row.get(k) is None else row[k]) for k in METRICS_COLUMNS})

    def _trim_metrics(self, evaluated_epoch):
        """Drops metrics rows of epochs that the resumed checkpoint does not include."""
        if not self.chief or not os.path.exists(self.files.metrics):
            return
        with open(self.files.metrics, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= evaluated_epoch]
        out = io.StringIO(newline="")
        w = csv.DictWriter(out, fieldnames=METRICS_COLUMNS)
        w.writeheader()
        w.writerows(rows)
        _atomic_write(self.files.metrics, out.getvalue())

    # ----------------------------------------------------------------- outputs
    def _export_model(self) -> keras.Model:
        """The model saved in best/final.keras: float32, plain batch norm, softmax output,
        with the current (EMA when on) weights."""
        if not hasattr(self, "_saved_model"):
            previous = keras.config.dtype_policy()
            keras.config.set_dtype_policy("float32")
            try:
                cfg = self.config
                self._saved_model = mobilenet_v1(**cfg.model_config(self.num_classes),
                                                 classifier_activation="softmax")
            finally:
                keras.config.set_dtype_policy(previous)
        values = (self.ema.averaged_values() if self.ema is not None
                  else [w.numpy() for w in self.model.weights])
        self._saved_model.set_weights(values)
        return self._saved_model

    def _save_keras(self, path):
        model = self._export_model()
        tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp.keras")
        model.save(tmp)
        os.replace(tmp, path)

    def _finish(self, t_start, wall_before, images_per_second):
        cfg = self.config
        self._set_wall(t_start, wall_before)
        ev = self.last_eval
        if ev is None and self.evaluate_fn is not None:
            ev = self._run_eval()
        saved = self._export_model()
        prof = profile_model(saved)
        if self.chief:
            self._save_keras(self.files.final)
        if not os.path.exists(self.files.best) and self.chief:
            self._save_keras(self.files.best)
        summary = {
            "top1": ev["top1"] if ev else None,
            "top5": ev["top5"] if ev else None,
            "loss": ev["loss"] if ev else None,
            "eval_examples": ev["count"] if ev else 0,
            "eval_split": cfg.eval_split or None,
            "params": prof.params,
            "mult_adds": prof.mult_adds,
            "keras_params": int(saved.count_params()),
            "images_per_second": images_per_second,
            "wall_seconds": float(self.wall_seconds.numpy()),
            "epochs": cfg.epochs,
            "steps": int(self.global_step.numpy()),
            "optimizer_steps": int(self.optimizer.iterations.numpy()),
            "best_checkpoint": os.path.abspath(self.files.best),
            "best_top1": float(self.best_top1.numpy()) if ev else None,
            "best_epoch": int(self.best_epoch.numpy()),
            "final_checkpoint": os.path.abspath(self.files.final),
            "ema": bool(self.ema is not None),
            "num_replicas": self.strategy.num_replicas_in_sync,
            "bad_images": _bad_count(self.train_input) + _bad_count(self.eval_input),
        }
        if self.chief:
            _atomic_write(self.files.summary, json.dumps(summary, indent=2) + "\n")
        if cfg.verbose and self.chief:
            self._report(summary)
        return summary

    def _report(self, s):
        cfg, run = self.config, self.files.workdir
        weights = "EMA weights" if s["ema"] else "final weights"
        lines = [f"\nTraining complete: {s['epochs']:g} epochs, {s['steps']} steps, "
                 f"{s['wall_seconds']:.0f}s"
                 + (f", {s['images_per_second']:.0f} images/s." if s["images_per_second"]
                    else ".")]
        if s["top1"] is not None:
            lines.append(f"Validation ({cfg.eval_split}, {s['eval_examples']} images, "
                         f"{weights}): top-1 {_pct(s['top1'])}, top-5 {_pct(s['top5'])}, "
                         f"loss {s['loss']:.4f}")
            lines.append(f"Best model: {s['best_checkpoint']} (epoch {s['best_epoch']}, "
                         f"top-1 {_pct(s['best_top1'])})")
        lines.append(f"Final model: {s['final_checkpoint']}")
        if s["bad_images"]:
            examples = [e for inp in (self.train_input, self.eval_input) if inp is not None
                        for e in getattr(getattr(inp, "bad_images", None), "examples", [])]
            lines.append(f"Skipped {s['bad_images']} unreadable images (--bad_images=skip), "
                         f"e.g. {', '.join(examples[:3])}.")
        dataset = getattr(cfg.data, "dataset", None)
        eval_cmd = f"python -m mobilenet_tf.evaluate --model={run}"
        if dataset:
            eval_cmd += f" --dataset={dataset}"
            if cfg.eval_split:
                eval_cmd += f" --split='{cfg.eval_split}'"
        lines += ["Next:", f"  tensorboard --logdir {run}", f"  {eval_cmd}",
                  f"  python -m mobilenet_tf.export --workdir={run}"]
        print("\n".join(lines), flush=True)

    def _hparams(self):
        cfg = self.config
        out = {k: v for k, v in cfg.flag_values().items()
               if k in ("alpha", "resolution", "variant", "depth_multiplier", "dropout",
                        "epochs", "batch_size", "optimizer", "learning_rate", "lr_schedule",
                        "label_smoothing", "weight_decay", "depthwise_weight_decay",
                        "ema_decay", "dataset", "precision", "seed")}
        out["num_replicas"] = self.strategy.num_replicas_in_sync
        return out


def _bad_count(inp):
    bad = getattr(inp, "bad_images", None) if inp is not None else None
    return int(getattr(bad, "count", 0) or 0)


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _SigtermFlag:
    """Turns SIGTERM into a flag the loop checks between calls (main thread only)."""

    def __init__(self):
        self.flag = False
        self.previous = None
        try:
            self.previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            self.previous = None

    def _handle(self, signum, frame):
        self.flag = True

    def restore(self):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def _load_matching_weights(model: keras.Model, config: TrainConfig):
    """Copies weights layer by layer (by name) where the shapes match."""
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
    copied = 0
    for layer in model.layers:
        src = by_name.get(layer.name)
        if src is None or not layer.weights:
            continue
        values = src.get_weights()
        if [v.shape for v in values] == [tuple(w.shape) for w in layer.weights]:
            layer.set_weights(values)
            copied += 1
    if not copied:
        raise ValueError(f"--initial_weights={spec!r}: no layer of that model matches this "
                         "one (check --alpha, --variant, --depth_multiplier)")

