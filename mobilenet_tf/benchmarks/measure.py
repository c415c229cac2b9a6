"""Training-throughput measurements shared by the benchmark command lines.

Each function trains one model for ``warmup + steps`` steps on the same task (random
normalized images, 10 classes, RMSprop lr 0.01 / rho 0.9 / momentum 0.9 / eps 1.0,
label smoothing 0.1, no weight decay, no EMA) and returns ``(images/s over wall time,
images/s over process CPU time)`` of the last ``steps`` steps (tracing and warm-up
excluded). Nothing here reads flags: the command lines pass a :class:`Setting`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from mobilenet_tf.data.interface import Input, NoBadImages
from mobilenet_tf.training import trainer
from mobilenet_tf.training.config import TrainConfig

TIMM_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "timm_train.py")
TIMM_PYTHON_ENV = "MOBILENET_TF_TIMM_PYTHON"
WARMUP_STEPS = 10  # = steps_per_loop: the first (tracing) call of our loop
TIMM_WARMUP_STEPS = 3  # eager PyTorch: no tracing, the first steps allocate


@dataclasses.dataclass(frozen=True)
class Setting:
    resolution: int
    batch: int
    steps: int = 30
    alpha: float = 1.0
    precision: str = "float32"
    xla: bool = False
    num_classes: int = 10


@dataclasses.dataclass
class InMemoryInput(Input):
    """Random normalized images with one-hot labels (a ``data.interface.Input``)."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list
    global_batch_size: int
    bad_images: NoBadImages = dataclasses.field(default_factory=NoBadImages)

    @property
    def num_examples(self):
        return len(self.labels)

    def dataset(self, batch):
        n = len(self.class_names)
        ds = tf.data.Dataset.from_tensor_slices(
            (self.images, tf.one_hot(self.labels, n))).batch(batch, drop_remainder=True)
        return ds.cache().repeat().prefetch(tf.data.AUTOTUNE)

    def input_fn(self, ctx: tf.distribute.InputContext):
        return self.dataset(ctx.get_per_replica_batch_size(self.global_batch_size))


def in_memory(s: Setting, seed=0) -> InMemoryInput:
    rng = np.random.default_rng(seed)
    n = s.batch * 8
    images = rng.uniform(-1, 1, (n, s.resolution, s.resolution, 3)).astype(np.float32)
    labels = rng.integers(0, s.num_classes, n).astype(np.int32)
    return InMemoryInput(images, labels, [f"c{i}" for i in range(s.num_classes)], s.batch)


def train_config(s: Setting, data_cfg=None) -> TrainConfig:
    return TrainConfig(
        data=data_cfg, alpha=s.alpha, resolution=s.resolution, epochs=1,
        batch_size=s.batch, steps_per_epoch=s.steps + WARMUP_STEPS,
        steps_per_loop=WARMUP_STEPS, optimizer="rmsprop", learning_rate=0.01,
        lr_schedule="constant", weight_decay=0.0, label_smoothing=0.1, ema_decay=0.0,
        eval_split="", train_split="train", log_images=False, verbose=0,
        checkpoint_every_steps=10 ** 6, strategy="auto", precision=s.precision,
        jit_compile=s.xla)


def ours(s: Setting, inp=None, data_cfg=None):
    """Our Trainer (custom strategy.run loop) on ``inp`` (or ``data_cfg``'s files)."""
    with tempfile.TemporaryDirectory() as workdir:
        run = trainer.Trainer(train_config(s, data_cfg), workdir, inp)
        run.run()
    images, wall, cpu = (sum(t[i] for t in run.timing[1:]) for i in range(3))
    return images / wall, images / cpu


class _Timer(keras.callbacks.Callback):
    def __init__(self, skip):
        super().__init__()
        self.skip, self.count = skip, 0

    def on_train_batch_end(self, batch, logs=None):
        self.count += 1
        if self.count == self.skip:
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_train_end(self, logs=None):
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.cpu_start


def keras_fit(s: Setting, inp: InMemoryInput):
    """``keras.applications.MobileNet(weights=None)`` + ``compile`` + ``fit``."""
    keras.utils.set_random_seed(0)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(s.precision)
    try:
        model = keras.applications.MobileNet(
            input_shape=(s.resolution, s.resolution, 3), alpha=s.alpha, weights=None,
            classes=s.num_classes, classifier_activation=None)
    finally:
        keras.config.set_dtype_policy(previous)
    model.compile(optimizer=keras.optimizers.RMSprop(0.01, rho=0.9, momentum=0.9,
                                                     epsilon=1.0),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True,
                                                            label_smoothing=0.1),
                  metrics=["accuracy"], jit_compile=s.xla)
    timer = _Timer(skip=WARMUP_STEPS)
    model.fit(inp.dataset(s.batch), steps_per_epoch=s.steps + WARMUP_STEPS, epochs=1,
              verbose=0, callbacks=[timer])
    return s.steps * s.batch / timer.seconds, s.steps * s.batch / timer.cpu_seconds


class TimmUnavailable(RuntimeError):
    """The timm side cannot run (no interpreter with torch + timm)."""


def timm_python(given: str = "") -> str:
    """The interpreter for the timm side: ``given``, else $MOBILENET_TF_TIMM_PYTHON,
    else this one. Raises TimmUnavailable naming what is missing."""
    python = given or os.environ.get(TIMM_PYTHON_ENV) or sys.executable
    if not os.path.exists(python):
        raise TimmUnavailable(f"--timm_python={python!r} does not exist")
    probe = subprocess.run([python, "-c", "import torch, timm"], capture_output=True,
                           text=True)
    if probe.returncode != 0 and "torchvision" not in probe.stderr:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        raise TimmUnavailable(
            f"{python} cannot import torch and timm ({last}); install the optional "
            "'bench' extra (pip install -e .[bench]) or pass --timm_python=<python of "
            f"an environment with torch and timm> (or set ${TIMM_PYTHON_ENV})")
    return python


def timm_fit(s: Setting, python: str, steps: int = 0):
    """timm's mobilenetv1_100 in PyTorch, measured in a subprocess (timm_train.py) over
    ``steps`` steps (default ``s.steps``) after TIMM_WARMUP_STEPS."""
    if s.alpha != 1.0 or s.precision != "float32":
        raise TimmUnavailable("the timm side measures alpha 1.0 in float32 only")
    cmd = [python, TIMM_SCRIPT, f"--resolution={s.resolution}", f"--batch_size={s.batch}",
           f"--steps={steps or s.steps}", f"--warmup={TIMM_WARMUP_STEPS}",
           f"--num_classes={s.num_classes}"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise TimmUnavailable(f"{' '.join(cmd)} failed: {out.stderr.strip()[-500:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["wall_images_per_s"], result["cpu_images_per_s"]


def alternate(sides: dict, repeats: int, log=print) -> dict:
    """Runs each side's measurement in turn, ``repeats`` rounds; {side: (median wall,
    median cpu, [(wall, cpu), ...])}."""
    runs = {name: [] for name in sides}
    for r in range(repeats):
        for name, fn in sides.items():
            runs[name].append(fn())
            log(f"  round {r + 1}/{repeats} {name}: {runs[name][-1][0]:.1f} img/s wall, "
                f"{runs[name][-1][1]:.1f} per CPU-s", flush=True)
    return {name: (statistics.median(v[0] for v in values),
                   statistics.median(v[1] for v in values), values)
            for name, values in runs.items()}
