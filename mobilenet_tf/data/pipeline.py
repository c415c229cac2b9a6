"""build_input: the tf.data input layer for training and evaluation.

``build_input(cfg, split, training, global_batch_size, class_names)`` resolves the source
eagerly (every configuration error is raised here, before training starts) and returns an
:class:`InputPipeline` whose ``input_fn(input_context)`` builds one input pipeline's
dataset for ``strategy.distribute_datasets_from_function``:

- each pipeline reads its own shard (by files when there are at least as many files as
  pipelines, else by examples) and yields per-replica batches; tf.data auto-sharding is
  turned off because we shard ourselves;
- training: repeated, shuffled, random-resized crop (+ flip, colour jitter, RandAugment),
  MixUp/CutMix, labels one-hot float32, full batches only;
- eval: one pass in a fixed order, center crop, labels int32, last partial batch kept.

Images above ``max_image_pixels`` (read from the header) are decoded at reduced scale
(baseline JPEG) or refused before decoding (``decode_image``); refused ones are bad images
whose reason is reported with their name.

Bad images (corrupt, truncated, empty or non-image files, and files that cannot be
read: a folder source's files are read in the decode map, ``Source.load``) are dropped by
``ignore_errors`` after the decode map, and named by :class:`_BadRecordTracker`: records
are numbered and their names filed in a hash table before decoding; the decode map keeps
record order, so the numbers missing from each batch are exactly the dropped records.
``bad_images="skip"`` counts and logs them (``InputPipeline.bad_images``); ``"error"``
fails with one line naming them (``BadImages.failure``), each with its reason (an image
bomb's, else ``Source.read_problem``'s). Shuffling happens before the numbering, so the
training order is still random. An image decoded at reduced scale is named in its
warning through the same table.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from typing import Callable, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from mobilenet_tf.data import augment, interface
from mobilenet_tf.data.config import DataConfig
from mobilenet_tf.data.preprocessing import (center_crop_and_resize, decode_image,
                                             normalize)
from mobilenet_tf.data.source_base import Source
from mobilenet_tf.data.sources import make_source

AUTOTUNE = tf.data.AUTOTUNE
# tf.data traces each map function through AutoGraph, which rewrites the Python source of
# every function it calls (decoding, crops, the bad-record bookkeeping): 2-4 s of each
# command's start on 2 cores. The pipeline's functions branch with tf.cond and Python
# values only, so they are traced as written.
_as_written = tf.autograph.experimental.do_not_convert


DECODE_FAILURE = "corrupt, truncated, empty or not an image"


class BadImages:
    """Running tally of distinct bad records (thread-safe; filled while iterating).

    The :class:`mobilenet_tf.data.interface.BadImageTally` of every ``InputPipeline``.
    ``explain(name)`` (the source's ``read_problem``) says why a record without a filed
    reason failed: a file that cannot be read is told from one that does not decode.
    """

    MAX_EXAMPLES = 10  # names kept in ``examples`` and logged

    def __init__(self, explain: Optional[Callable[[str], str]] = None):
        self._lock = threading.Lock()
        self._seen = set()
        self.examples: list[str] = []
        self.explain = explain

    def reason(self, name: str, filed: str = "") -> str:
        """Why record ``name`` is bad: the reason filed while decoding (an image bomb),
        else the source's (a file that cannot be read), else it did not decode."""
        return filed or (self.explain(name) if self.explain else "") or DECODE_FAILURE

    def failure(self, names, reasons) -> str:
        """The one-line message of ``--bad_images=error`` for the records ``names`` (a
        name once: a repeated stream may drop a file twice between two batches)."""
        found = dict(zip(names, reasons))
        shown = ", ".join(f"{n} ({self.reason(n, r)})" for n, r in found.items())
        return (f"{interface.BAD_IMAGES_ERROR}bad image{'s' * (len(found) > 1)} {shown}; "
                "pass --bad_images=skip to skip such files (they are counted, and the "
                "first ones named)")

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._seen)

    def record(self, name: str, reason: str = "") -> None:
        with self._lock:
            if name in self._seen:
                return
            self._seen.add(name)
            n = len(self._seen)
            if n <= self.MAX_EXAMPLES:
                self.examples.append(name)
        if n <= self.MAX_EXAMPLES:
            logging.warning("skipping bad image %s (%s; --bad_images=skip)%s", name,
                            self.reason(name, reason),
                            "; further bad images are only counted"
                            if n == self.MAX_EXAMPLES else "")

    def __repr__(self):
        return f"BadImages(count={self.count}, examples={self.examples})"


@dataclasses.dataclass
class InputPipeline:
    """What ``build_input`` returns: the :class:`mobilenet_tf.data.interface.Input` that
    reads a configured source, plus the split and batch size it was built for.

    It implements the protocol structurally rather than by subclassing: a dataclass field
    without a default (``input_fn``) cannot follow the protocol's method of that name.
    """

    class_names: list
    num_examples: int
    input_fn: Callable[[Optional[tf.distribute.InputContext]], tf.data.Dataset]
    bad_images: BadImages
    split: str = "train"
    training: bool = True
    global_batch_size: int = 64
    class_counts: Optional[np.ndarray] = None  # examples per class, where the source knows

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


class _BadRecordTracker:
    """Finds the records that a decode map + ``ignore_errors`` dropped, by name.

    ``register`` numbers the records (before decoding, in order) and files each name in a
    hash table under its number; the decode map then runs in parallel but in order
    (``deterministic=True``), so after batching, the numbers missing between the last
    batch and this one are exactly the dropped records. ``account`` (one call per batch)
    looks their names up, removes settled numbers from the table, and reports them
    (``report``). A finite stream ends with an empty marker batch, which reports the
    records dropped after the last good one. Per element this costs one table insert;
    the decoding (and, for a folder, the file's reading) runs as a plain parallel map, so
    a file that cannot be read is dropped there under its number too. Images refused for
    their size file the reason in ``reasons`` (``refusal_noter``) before failing.
    """

    def __init__(self, policy: str, bad: BadImages):
        self.policy, self.bad = policy, bad
        self.table = tf.lookup.experimental.MutableHashTable(tf.int64, tf.string, "")
        # Why a record was refused before decoding (image bombs); "" for decode errors.
        self.reasons = tf.lookup.experimental.MutableHashTable(tf.int64, tf.string, "")

    def refusal_noter(self, seq):
        """``on_refusal`` for ``decode_image`` on record ``seq``: files the reason, in the
        refusal branch only (before its error), so images within the limit pay nothing."""
        return lambda reason: self.reasons.insert(seq[None], reason[None])

    def name_of(self, seq):
        """``name`` for ``decode_image`` on record ``seq``: a lookup made only by the
        branch that warns about a large image (decoded at reduced scale)."""
        return lambda: self.table.lookup(seq)

    def register(self, records, seeds):
        """(data, label, name) records and seeds -> (data, label, seed, seq), one map."""
        table = self.table

        def add(seq, record, seed):
            data, label, name = record
            with tf.control_dependencies([table.insert(seq[None], name[None])]):
                return tf.identity(data), label, seed, tf.identity(seq)
        return tf.data.Dataset.zip((tf.data.Dataset.counter(), records, seeds)).map(
            _as_written(add))

    def report(self, names, why):
        """An op reporting the dropped records ``names`` (reasons ``why``, "" where none
        was filed) by the policy: "skip" records them in the tally, which logs the first
        ones; "error" fails with ``BadImages.failure``'s one line naming them. Python
        runs only when something was dropped."""
        bad, policy = self.bad, self.policy

        def in_python(found, found_why):
            found = [n.decode("utf-8", "replace") for n in found.numpy()]
            found_why = [w.decode("utf-8", "replace") for w in found_why.numpy()]
            if policy == "error":
                return bad.failure(found, found_why)
            for name, reason in zip(found, found_why):
                bad.record(name, reason)
            return ""

        message = tf.cond(
            tf.size(names) > 0,
            lambda: tf.reshape(tf.py_function(in_python, [names, why], tf.string), []),
            lambda: tf.constant(""))
        if policy != "error":
            return message
        return tf.debugging.Assert(tf.equal(message, ""), [message])

    def account(self, ds, finite: bool, image_spec):
        """Batches (images, labels, seqs) -> (images, labels), bad records accounted."""
        table, reasons = self.table, self.reasons
        if finite:
            end = (tf.zeros([0] + [d or 0 for d in image_spec.shape[1:]], image_spec.dtype),
                   tf.zeros([0], tf.int32), tf.constant([-1], tf.int64))
            ds = ds.concatenate(tf.data.Dataset.from_tensors(end))

        def settle(last, batch):
            images, labels, seqs = batch
            is_end = tf.reduce_any(seqs < 0)

            def at_end():
                keys, _ = table.export()
                return tf.sort(keys)

            def in_stream():
                top = tf.reduce_max(seqs)
                candidates = tf.range(last + 1, top + 1, dtype=tf.int64)
                present = tf.reduce_any(candidates[:, None] == seqs[None, :], axis=1)
                return tf.boolean_mask(candidates, tf.logical_not(present))

            missing = tf.cond(is_end, at_end, in_stream)
            names = table.lookup(missing)
            why = reasons.lookup(missing)
            settled = tf.cond(is_end, lambda: missing,
                              lambda: tf.range(last + 1, tf.reduce_max(seqs) + 1,
                                               dtype=tf.int64))
            with tf.control_dependencies([names, why]):
                removed = tf.group(table.remove(settled), reasons.remove(settled))
            with tf.control_dependencies([removed, self.report(names, why)]):
                new_last = tf.cond(is_end, lambda: last, lambda: tf.reduce_max(seqs))
            return new_last, (images, labels, is_end)

        ds = ds.scan(tf.constant(-1, tf.int64), _as_written(settle))
        if finite:
            ds = ds.filter(_as_written(lambda images, labels, is_end: tf.logical_not(is_end)))
        return ds.map(_as_written(lambda images, labels, is_end: (images, labels)))


def _decode_batches(records, seeds, fn, batch: int, drop_remainder: bool, policy: str,
                    bad: BadImages, source: Source):
    """(data, label, name) records of ``source`` -> batches (images, labels), with
    ``fn(data, seed, on_refusal, name)`` (seeds from ``seeds``) in a parallel map.
    Encoded records are loaded (``source.load``: a folder's files are read here) and
    decoded there and may fail: those are skipped/reported through a
    :class:`_BadRecordTracker`, with the reason that ``fn`` gave ``on_refusal`` when it
    refused one for its size (``decode_image``), else the source's ``read_problem``."""
    if not source.encoded:
        ds = tf.data.Dataset.zip((records, seeds)).map(
            _as_written(lambda rec, s: (fn(rec[0], s), rec[1])), num_parallel_calls=AUTOTUNE,
            deterministic=not drop_remainder)
        return ds.batch(batch, drop_remainder=drop_remainder)
    tracker = _BadRecordTracker(policy, bad)
    ds = tracker.register(records, seeds)

    def decode(d, y, s, q):
        return fn(source.load(d), s, tracker.refusal_noter(q), tracker.name_of(q)), y, q
    ds = ds.map(_as_written(decode), num_parallel_calls=AUTOTUNE,
                deterministic=True).ignore_errors()
    ds = ds.batch(batch, drop_remainder=drop_remainder)
    return tracker.account(ds, finite=not drop_remainder, image_spec=ds.element_spec[0])


def _constant_seeds():
    return tf.data.Dataset.from_tensors(tf.zeros([2], tf.int64)).repeat()


def _train_image_fn(cfg: DataConfig, encoded: bool):
    """One training image: crop (RandAugment on it before it is resized up), flip, jitter;
    returned as uint8 (rounded): batching copies 4x fewer bytes than float32, and
    normalization runs per batch."""
    randaugment = (augment.randaugment(cfg.randaugment_magnitude)
                   if cfg.randaugment else None)

    def fn(data, seed, on_refusal=None, name=None):
        # Encoded images above max_image_pixels are decoded at reduced scale (or refused).
        image = augment.random_resized_crop(
            data, cfg.image_size, seed, (cfg.min_area, cfg.max_area),
            (cfg.min_aspect, cfg.max_aspect), encoded=encoded,
            max_pixels=cfg.max_image_pixels, on_refusal=on_refusal, name=name,
            transform=randaugment and functools.partial(randaugment, seed=seed))
        if cfg.flip:
            image = augment.random_flip(image, seed)
        if cfg.color_jitter > 0:
            image = augment.color_jitter(image, cfg.color_jitter, seed)
        return tf.saturate_cast(tf.round(image), tf.uint8)
    return fn


def _eval_image_fn(cfg: DataConfig, encoded: bool):
    def fn(data, seed, on_refusal=None, name=None):
        image = decode_image(data, cfg.max_image_pixels, on_refusal, name) if encoded else data
        return center_crop_and_resize(image, cfg.image_size, cfg.crop_fraction)
    return fn


def _options(deterministic: bool) -> tf.data.Options:
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    options.deterministic = deterministic
    return options


def build_input(cfg: DataConfig, split: str = "train", training: bool = True,
                global_batch_size: int = 64, class_names=None,
                shuffle: Optional[bool] = None) -> InputPipeline:
    """Resolves ``cfg.dataset``/``split`` now (ValueError naming the flag on any problem)
    and returns the :class:`InputPipeline`; see the module docstring for the semantics.
    ``shuffle``: the example order (default: shuffled for training only)."""
    if not isinstance(cfg, DataConfig):
        raise ValueError(f"build_input needs a DataConfig, got {type(cfg).__name__}")
    if int(global_batch_size) < 1:
        raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}")
    source = make_source(cfg, split, class_names)
    if training and source.num_examples < global_batch_size:
        logging.warning("%s split %r has %d examples, fewer than the global batch size %d: "
                        "each training batch repeats examples", cfg.dataset, split,
                        source.num_examples, global_batch_size)
    bad = BadImages(explain=source.read_problem)
    num_classes = len(source.class_names)
    h, w = cfg.image_size

    def input_fn(input_context: Optional[tf.distribute.InputContext] = None):
        if input_context is None:
            input_context = tf.distribute.InputContext()
        n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
        batch = input_context.get_per_replica_batch_size(global_batch_size)
        shuffled = training if shuffle is None else shuffle
        records = source.dataset(n, i, shuffle=shuffled, seed=cfg.seed * 7919 + i)
        if shuffled and not training:  # one pass over the examples, in a shuffled order
            records = records.take(-(-source.num_examples // n))
        if training:
            records = records.repeat()
            seeds = tf.data.Dataset.random(seed=cfg.seed * 7919 + i).batch(2)
            fn = _train_image_fn(cfg, source.encoded)
        else:
            seeds = _constant_seeds()
            fn = _eval_image_fn(cfg, source.encoded)
        ds = _decode_batches(records, seeds, fn, batch, drop_remainder=training,
                             policy=cfg.bad_images, bad=bad, source=source)
        if training:
            mix = augment.batch_mixer(cfg.mixup_alpha, cfg.cutmix_alpha, seed=cfg.seed)

            def finish(x, y):
                x = tf.cast(x, tf.float32)
                y = tf.one_hot(y, num_classes, dtype=tf.float32)
                if mix is not None:
                    x, y = mix(x, y)
                x = normalize(tf.clip_by_value(x, 0.0, 255.0))
                x.set_shape([batch, h, w, 3])
                return x, tf.ensure_shape(y, [batch, num_classes])
        else:
            def finish(x, y):
                return normalize(x), tf.cast(y, tf.int32)
        ds = ds.map(_as_written(finish), num_parallel_calls=AUTOTUNE,
                    deterministic=not training)
        return ds.prefetch(AUTOTUNE).with_options(_options(deterministic=not training))

    return InputPipeline(class_names=list(source.class_names),
                         num_examples=int(source.num_examples), input_fn=input_fn,
                         bad_images=bad, split=split, training=training,
                         global_batch_size=int(global_batch_size),
                         class_counts=source.class_counts)


def iterate_uint8(cfg: DataConfig, split: str, limit: int, class_names=None):
    """Yields up to ``limit`` ``(uint8 HxWx3 numpy image, int label)`` in a fixed order:
    decoded, not cropped or resized (export's int8 calibration and verification images).
    Bad images follow ``cfg.bad_images``."""
    source = make_source(cfg, split, class_names)
    # Batches of one: images keep their own sizes.
    def fn(data, seed, note=None, name=None):
        return decode_image(data, cfg.max_image_pixels, note, name) if source.encoded else data

    ds = _decode_batches(source.dataset(1, 0, shuffle=False), _constant_seeds(), fn, 1,
                         drop_remainder=False, policy=cfg.bad_images,
                         bad=BadImages(explain=source.read_problem), source=source).unbatch()
    for image, label in ds.take(int(limit)).as_numpy_iterator():
        yield np.asarray(image, np.uint8), int(label)
