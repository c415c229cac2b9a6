"""build_input: the tf.data input layer for training and evaluation.

``build_input(cfg, split, training, global_batch_size, class_names)`` resolves the source
eagerly (every configuration error is raised here, before training starts) and returns an
:class:`InputPipeline` whose ``input_fn(input_context)`` builds one input pipeline's
dataset for ``strategy.distribute_datasets_from_function``:

- each pipeline reads its own shard (by files when there are at least as many files as
  pipelines, else by examples) and yields per-replica batches; tf.data auto-sharding is
  turned off because we shard ourselves;
- training: repeated, shuffled, random-resized crop (+ flip, colour jitter, RandAugment),
  MixUp/CutMix, labels one-hot float32, full batches only, non-deterministic order;
- eval: one pass in a fixed order, center crop, labels int32, last partial batch kept.

Bad images (corrupt, truncated, empty or non-image files) are caught per element: each
record is decoded inside a one-element dataset with ``ignore_errors`` followed by a
fallback element that carries ``ok=False`` and the record's name, so a failed decode
yields the fallback instead of vanishing. ``bad_images="skip"`` counts and drops it (a
``tf.py_function`` runs only for bad records, to record the name); ``"error"`` fails with
the file name in the message.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Callable, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from mobilenet_tf.data import augment
from mobilenet_tf.data.config import DataConfig
from mobilenet_tf.data.preprocessing import (center_crop_and_resize, decode_image,
                                             normalize)
from mobilenet_tf.data.sources import make_source

AUTOTUNE = tf.data.AUTOTUNE


class BadImages:
    """Running tally of distinct bad records (thread-safe; filled while iterating)."""

    MAX_EXAMPLES = 10  # names kept in ``examples`` and logged

    def __init__(self):
        self._lock = threading.Lock()
        self._seen = set()
        self.examples: list[str] = []

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._seen)

    def record(self, name) -> None:
        name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        with self._lock:
            if name in self._seen:
                return
            self._seen.add(name)
            n = len(self._seen)
            if n <= self.MAX_EXAMPLES:
                self.examples.append(name)
        if n <= self.MAX_EXAMPLES:
            logging.warning("skipping bad image %s (corrupt, truncated, empty or not an "
                            "image; --bad_images=skip)%s", name,
                            "; further bad images are only counted"
                            if n == self.MAX_EXAMPLES else "")

    def __repr__(self):
        return f"BadImages(count={self.count}, examples={self.examples})"


@dataclasses.dataclass
class InputPipeline:
    class_names: list
    num_examples: int
    input_fn: Callable[[Optional[tf.distribute.InputContext]], tf.data.Dataset]
    bad_images: BadImages
    split: str = "train"
    training: bool = True
    global_batch_size: int = 64

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def steps_per_epoch(self) -> int:
        """Global steps per pass over the data (full batches for training, every example
        for eval)."""
        if self.training:
            return max(1, self.num_examples // self.global_batch_size)
        return -(-self.num_examples // self.global_batch_size)


DECODE_BLOCK = 32  # records per error-tolerant decode block


def _robust_decode(ds, fn, fallback, policy: str, bad: BadImages, deterministic: bool,
                   block: int = DECODE_BLOCK):
    """Maps ``fn(data, seed)`` over ``(data, label, name, seed)`` records; records whose
    decode fails are skipped and recorded in ``bad`` (policy "skip") or raise an error
    naming the record (policy "error"). Yields ``(image, label)``.

    Records go in blocks of ``block``: inside a block, ``fn`` runs under
    ``ignore_errors``, a ``scan`` marks which records came through, and a closing
    sentinel element carries the names of those that did not. The per-block dataset
    overhead is amortised over the block, so this costs little over a plain map.
    """
    fallback_label = tf.constant(0, tf.int32)

    def one_block(data, label, name, seed):
        n = tf.shape(name)[0]
        good = tf.data.Dataset.from_tensor_slices(
            (data, label, seed, tf.range(n))).map(
            lambda d, y, s, i: (fn(d, s), y, i, False)).ignore_errors()
        end = tf.data.Dataset.from_tensors((fallback, fallback_label, n, True))

        def track(seen, element):
            image, y, i, is_end = element
            seen = tf.tensor_scatter_nd_update(
                seen, tf.reshape(tf.minimum(i, n - 1), [1, 1]), tf.logical_or(
                    tf.reshape(tf.logical_not(is_end), [1]),
                    tf.gather(seen, tf.reshape(tf.minimum(i, n - 1), [1]))))
            missing = tf.cond(is_end, lambda: tf.boolean_mask(name, tf.logical_not(seen)),
                              lambda: tf.zeros([0], tf.string))
            return seen, (image, y, is_end, missing)

        return good.concatenate(end).scan(tf.zeros([n], tf.bool), track)

    ds = ds.batch(block).interleave(
        one_block, cycle_length=max(2, os.cpu_count() or 1), block_length=block + 1,
        num_parallel_calls=AUTOTUNE, deterministic=deterministic)

    if policy == "error":
        def keep(image, label, is_end, missing):
            check = tf.debugging.Assert(tf.equal(tf.size(missing), 0), [
                "could not decode image (corrupt, truncated, empty or not an image; pass "
                "--bad_images=skip to skip such files):", missing], summarize=10)
            with tf.control_dependencies([check]):
                return tf.logical_not(is_end)
    else:
        def _record(names):
            for nm in names.numpy():
                bad.record(nm)
            return False

        def keep(image, label, is_end, missing):
            tf.cond(tf.size(missing) > 0,
                    lambda: tf.reshape(tf.py_function(_record, [missing], tf.bool), []),
                    lambda: tf.constant(False))
            return tf.logical_not(is_end)

    return ds.filter(keep).map(lambda image, label, is_end, missing: (image, label))


def _train_image_fn(cfg: DataConfig, encoded: bool):
    def fn(data, seed):
        image = augment.random_resized_crop(
            data, cfg.image_size, seed, (cfg.min_area, cfg.max_area),
            (cfg.min_aspect, cfg.max_aspect), encoded=encoded)
        if cfg.flip:
            image = augment.random_flip(image, seed)
        if cfg.color_jitter > 0:
            image = augment.color_jitter(image, cfg.color_jitter, seed)
        return image
    return fn


def _eval_image_fn(cfg: DataConfig, encoded: bool):
    def fn(data, seed):
        image = decode_image(data) if encoded else data
        return center_crop_and_resize(image, cfg.image_size, cfg.crop_fraction)
    return fn


def _options(deterministic: bool) -> tf.data.Options:
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    options.deterministic = deterministic
    return options


def build_input(cfg: DataConfig, split: str = "train", training: bool = True,
                global_batch_size: int = 64, class_names=None) -> InputPipeline:
    """Resolves ``cfg.dataset``/``split`` now (ValueError naming the flag on any problem)
    and returns the :class:`InputPipeline`; see the module docstring for the semantics."""
    if not isinstance(cfg, DataConfig):
        raise ValueError(f"build_input needs a DataConfig, got {type(cfg).__name__}")
    if int(global_batch_size) < 1:
        raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}")
    source = make_source(cfg, split, class_names)
    if training and source.num_examples < global_batch_size:
        logging.warning("%s split %r has %d examples, fewer than the global batch size %d: "
                        "each training batch repeats examples", cfg.dataset, split,
                        source.num_examples, global_batch_size)
    bad = BadImages()
    num_classes = len(source.class_names)
    h, w = cfg.image_size

    def input_fn(input_context: Optional[tf.distribute.InputContext] = None):
        if input_context is None:
            input_context = tf.distribute.InputContext()
        n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
        batch = input_context.get_per_replica_batch_size(global_batch_size)
        ds = source.dataset(n, i, shuffle=training, seed=cfg.seed * 7919 + i)
        if training:
            ds = ds.repeat()
            seeds = tf.data.Dataset.random(seed=cfg.seed * 7919 + i).batch(2)
            ds = tf.data.Dataset.zip((ds, seeds)).map(
                lambda rec, s: (*rec, s), num_parallel_calls=None)
            fn = _train_image_fn(cfg, source.encoded)
        else:
            ds = ds.map(lambda d, y, nm: (d, y, nm, tf.zeros([2], tf.int64)))
            fn = _eval_image_fn(cfg, source.encoded)
        if source.encoded:
            ds = _robust_decode(ds, fn, tf.zeros([h, w, 3], tf.float32), cfg.bad_images, bad,
                                deterministic=not training)
        else:
            ds = ds.map(lambda d, y, nm, s: (fn(d, s), y), num_parallel_calls=AUTOTUNE,
                        deterministic=not training)
        if training and cfg.randaugment:
            layer = augment.randaugment_layer(seed=cfg.seed)
            ds = ds.map(lambda x, y: (layer(x, training=True), y),
                        num_parallel_calls=AUTOTUNE, deterministic=False)
        ds = ds.batch(batch, drop_remainder=training,
                      num_parallel_calls=AUTOTUNE, deterministic=not training)
        if training:
            mix = augment.batch_mixer(cfg.mixup_alpha, cfg.cutmix_alpha, seed=cfg.seed)

            def finish(x, y):
                y = tf.one_hot(y, num_classes, dtype=tf.float32)
                if mix is not None:
                    x, y = mix(x, y)
                x = normalize(tf.clip_by_value(x, 0.0, 255.0))
                x.set_shape([batch, h, w, 3])
                return x, tf.ensure_shape(y, [batch, num_classes])
        else:
            def finish(x, y):
                return normalize(x), tf.cast(y, tf.int32)
        ds = ds.map(finish, num_parallel_calls=AUTOTUNE, deterministic=not training)
        return ds.prefetch(AUTOTUNE).with_options(_options(deterministic=not training))

    return InputPipeline(class_names=list(source.class_names),
                         num_examples=int(source.num_examples), input_fn=input_fn,
                         bad_images=bad, split=split, training=training,
                         global_batch_size=int(global_batch_size))


def iterate_uint8(cfg: DataConfig, split: str, limit: int, class_names=None):
    """Yields up to ``limit`` ``(uint8 HxWx3 numpy image, int label)`` in a fixed order:
    decoded, not cropped or resized (export's int8 calibration and verification images).
    Bad images follow ``cfg.bad_images``."""
    source = make_source(cfg, split, class_names)
    ds = source.dataset(1, 0, shuffle=False)
    ds = ds.map(lambda d, y, nm: (d, y, nm, tf.zeros([2], tf.int64)))
    if source.encoded:
        ds = _robust_decode(ds, lambda d, s: decode_image(d),
                            tf.zeros([0, 0, 3], tf.uint8), cfg.bad_images, BadImages(),
                            deterministic=True)
    else:
        ds = ds.map(lambda d, y, nm, s: (d, y))
    for image, label in ds.take(int(limit)).as_numpy_iterator():
        yield np.asarray(image, np.uint8), int(label)
