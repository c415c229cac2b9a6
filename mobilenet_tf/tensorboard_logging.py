"""What training writes for TensorBoard: scalars, an image grid of augmented training
inputs, a confusion matrix image, the hparams dashboard entry, the graph, profiles.

Layout under ``WORKDIR/logs``: ``train/`` and ``validation/`` hold the scalars and images
of each side; ``logs/`` itself holds the hparams session of the run, whose metrics are
``validation/epoch_top1`` etc., so ``tensorboard --logdir`` over a folder of runs
compares a sweep (alpha, resolution, ...) in one hparams table.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw
from tensorboard.plugins.hparams import api as hp

from mobilenet_tf.data import MEAN, STD

LOGS_DIR = "logs"
METRICS = ("loss", "top1", "top5")


class Writers:
    """The summary writers of one run (no-op writers on non-chief workers)."""

    def __init__(self, workdir: str, enabled: bool):
        root = os.path.join(workdir, LOGS_DIR)
        self.enabled = enabled
        if enabled:
            self.root = tf.summary.create_file_writer(root)
            self.train = tf.summary.create_file_writer(os.path.join(root, "train"))
            self.validation = tf.summary.create_file_writer(os.path.join(root, "validation"))
            self.logdir = root
        else:
            self.root = self.train = self.validation = tf.summary.create_noop_writer()
            self.logdir = None

    def flush(self):
        for w in (self.root, self.train, self.validation):
            w.flush()

    def close(self):
        for w in (self.root, self.train, self.validation):
            w.close()


def write_hparams(writers: Writers, hparams: dict, run_name: str):
    """One hparams session for the run (the hparams dashboard's row)."""
    if not writers.enabled:
        return
    hparams = {k: v for k, v in hparams.items() if isinstance(v, (bool, int, float, str))}
    metrics = [hp.Metric(f"epoch_{m}", group=g, display_name=f"{g} {m}")
               for g in ("validation", "train") for m in METRICS]
    with writers.root.as_default():
        hp.hparams_config(hparams=[hp.HParam(k) for k in hparams], metrics=metrics)
        hp.hparams(hparams, trial_id=run_name)
    writers.root.flush()


def scalars(writer, values: dict, step: int):
    with writer.as_default(step=step):
        for name, value in values.items():
            tf.summary.scalar(name, float(value))


def image_grid(images: np.ndarray, columns: int = 4) -> np.ndarray:
    """Normalized images [n,h,w,3] in [-1,1] -> one uint8 grid image [1,H,W,3]."""
    images = np.clip(np.asarray(images, np.float32) * STD + MEAN, 0, 255).astype(np.uint8)
    n, h, w, c = images.shape
    rows = -(-n // columns)
    grid = np.zeros((rows * (h + 2), columns * (w + 2), c), np.uint8)
    for i, img in enumerate(images):
        r, col = divmod(i, columns)
        grid[r * (h + 2) + 1: r * (h + 2) + 1 + h, col * (w + 2) + 1: col * (w + 2) + 1 + w] = img
    return grid[None]


def log_training_images(writer, images, labels, class_names, step: int, max_images: int = 16):
    """A grid of augmented training images (what the network sees, after crop/flip/...)."""
    images = np.asarray(images)[:max_images]
    labels = np.asarray(labels)[:max_images]
    names = [class_names[int(i)] for i in np.argmax(labels, axis=-1)] if labels.ndim == 2 \
        else [class_names[int(i)] for i in labels]
    with writer.as_default(step=step):
        tf.summary.image("augmented_training_images", image_grid(images), step=step,
                         description="First images of a training batch, in row order: "
                                     + ", ".join(names))


def confusion_matrix_image(matrix: np.ndarray, class_names, max_classes: int = 50) -> np.ndarray:
    """A rendered confusion matrix (rows: true class, columns: predicted), each row
    normalized; [1,H,W,3] uint8. Above ``max_classes`` only the first ones are drawn."""
    matrix = np.asarray(matrix, np.float64)[:max_classes, :max_classes]
    n = matrix.shape[0]
    names = [str(c)[:14] for c in class_names[:n]]
    cell = max(12, min(48, 600 // max(n, 1)))
    margin = 7 * max(len(s) for s in names) + 10
    size = margin + n * cell + 4
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    row_sums = np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    norm = matrix / row_sums
    for i in range(n):
        draw.text((2, margin + i * cell + cell // 2 - 5), names[i], fill="black")
        for j in range(n):
            v = norm[i, j]
            shade = int(255 * (1 - v))
            color = (shade, shade, 255) if i == j else (255, shade, shade)
            x0, y0 = margin + j * cell, margin + i * cell
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=color, outline="gray")
            if cell >= 24 and matrix[i, j]:
                draw.text((x0 + 2, y0 + cell // 2 - 5), str(int(matrix[i, j])),
                          fill="black" if v < 0.6 else "white")
    for j in range(n):  # column labels, written vertically
        label = Image.new("RGB", (margin, 12), "white")
        ImageDraw.Draw(label).text((2, 0), names[j], fill="black")
        label = label.rotate(90, expand=True)
        img.paste(label, (margin + j * cell + cell // 2 - 6, 0))
    return np.asarray(img)[None]


def log_confusion_matrix(writer, matrix, class_names, step: int):
    with writer.as_default(step=step):
        tf.summary.image("confusion_matrix", confusion_matrix_image(matrix, class_names),
                         step=step, description="Validation confusion matrix: rows = true "
                         "class, columns = predicted class, each row normalized (blue = "
                         "correct, red = confusions); counts drawn when space allows.")


class GraphTrace:
    """Writes the graph of the first training call (TensorBoard's Graphs tab)."""

    def __init__(self, writers: Writers):
        self.writers = writers
        self.active = False

    def start(self):
        if self.writers.enabled:
            tf.summary.trace_on(graph=True, profiler=False)
            self.active = True

    def stop(self, step: int):
        if self.active:
            with self.writers.train.as_default():
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
