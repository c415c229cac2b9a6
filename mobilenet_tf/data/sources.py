"""Data sources: ``--dataset`` spec parsing and the four kinds of source.

A source knows its class list and example count (computed eagerly, so that every error
surfaces before training starts) and yields raw records ``(data, label int32, name
string)`` for one input-pipeline shard -- one pass in a fixed order, or shuffled
(possibly endless) for training; ``source.load(data)`` gives a record's encoded bytes:

- ``folder:PATH``   -- ``PATH/<split>/<class>/*.{jpg,jpeg,png,bmp,gif}`` (any case), or
                       ``PATH/<class>/*`` with splits 'train'/'validation'/'all' carved
                       per class (``holdout_fraction``; see ``specs.FLAT_SPLITS``);
                       data = name = the file path (``load`` reads it, in the
                       pipeline's decode map).
- ``tfrecord:GLOB`` -- TF-Example files with ``image/encoded`` and ``image/class/label``
                       (``label_offset`` subtracted); data = encoded bytes, name =
                       ``FILE#RECORD``.
- ``tfds:NAME[/CONFIG]`` -- any TensorFlow Datasets dataset with ``image`` and ``label``
                       features, read with the image left encoded; name = tfds id.
- ``synthetic``     -- :mod:`mobilenet_tf.data.synthetic`; data = uint8 images.

Splits are a split name of the source, optionally sliced per class with a seeded
permutation: ``train[:90%]`` / ``train[90%:]`` (folder, tfrecord, synthetic); tfds sources
pass the split string straight to tfds.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import tensorflow as tf
from absl import logging

from mobilenet_tf.data import synthetic
from mobilenet_tf.data.folders import FolderSource
from mobilenet_tf.data.labels import LABELS_FILE, parse_labels
from mobilenet_tf.data.source_base import (Source, class_slice_positions, indexed,
                                           remap_to, shard_indices)
from mobilenet_tf.data.specs import (DEFAULT_HOLDOUT_FRACTION, SPLIT_PLACEHOLDER, EmptySplit,
                                     parse_dataset_spec, parse_split)


class SyntheticSource(Source):
    encoded = False

    def __init__(self, num_classes: int, num_examples: int, image_size: int, split: str,
                 seed: int = 0, class_names=None):
        self.split = parse_split(split, "synthetic")
        names = synthetic.class_names(num_classes)
        all_labels = synthetic.labels(num_examples, num_classes)
        keep = class_slice_positions(all_labels, num_classes, self.split, seed, names)
        if len(keep) == 0:
            raise EmptySplit(f"split {split!r} of --dataset=synthetic selects no examples "
                             f"(--synthetic_num_examples={num_examples})")
        self.images, labels = synthetic.generate(num_examples, num_classes, image_size,
                                                 seed=seed, split=self.split.name,
                                                 indices=keep)
        if class_names is None:
            self.class_names = names
            self.labels = labels
        else:
            self.class_names = list(class_names)
            self.labels = remap_to(self.class_names, names,
                                    f"--dataset=synthetic split {split!r}")[labels]
        self.names = np.array([f"synthetic/{self.split.name}#{i}" for i in keep])
        self.class_counts = np.bincount(self.labels, minlength=len(self.class_names))
        self.num_examples = len(keep)

    def num_files(self):
        return 1

    def dataset(self, num_shards=1, shard_index=0, shuffle=False, seed=0):
        idx = shard_indices(self.num_examples, num_shards, shard_index)
        images, labels = tf.constant(self.images[idx]), tf.constant(self.labels[idx])
        names = tf.constant(self.names[idx])
        return indexed(len(idx), shuffle, seed).map(
            lambda k: (images[k], labels[k], names[k]))


# --------------------------------------------------------------------------- tfrecord
_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
}


class TFRecordSource(Source):
    """Standard ImageNet TF-Example files.

    GLOB may contain ``{split}`` (replaced by the split name); a directory means
    ``DIR/{split}-*`` (the usual ``train-00000-of-01024`` naming); any other glob is used
    for every split (carve splits with ``NAME[a%:b%]``). Building scans the label field of
    every record once (count, class list, per-class slicing). Class names come from
    ``image/class/synset`` when the records have it, else from a ``labels.txt`` beside the
    files, else they are the label numbers.
    """

    def __init__(self, pattern: str, split: str, label_offset: int = 0, seed: int = 0,
                 class_names=None):
        spec = f"tfrecord:{pattern}"
        self.split = parse_split(split, spec)
        if SPLIT_PLACEHOLDER in pattern:
            glob = pattern.replace(SPLIT_PLACEHOLDER, self.split.name)
        elif tf.io.gfile.isdir(pattern):
            glob = os.path.join(pattern, f"{self.split.name}-*")
        else:
            glob = pattern
        files = sorted(tf.io.gfile.glob(glob))
        if not files:
            raise ValueError(f"--dataset={spec}: no files match {glob}")
        self.files = files
        labels, synsets, counts = self._scan(files, spec)
        labels = labels - label_offset
        if len(labels) == 0:
            raise ValueError(f"--dataset={spec}: the files matching {glob} hold no records")
        if labels.min() < 0:
            raise ValueError(f"--dataset={spec}: label {labels.min() + label_offset} minus "
                             f"--label_offset={label_offset} is negative")
        num_classes = int(labels.max()) + 1
        names = self._names(labels, synsets, num_classes, os.path.dirname(files[0]), spec)
        keep = class_slice_positions(labels, num_classes, self.split, seed, names)
        if len(keep) == 0:
            raise EmptySplit(f"--dataset={spec}: split {split!r} selects no records")
        if class_names is None:
            self.class_names = names
            remap = np.arange(num_classes, dtype=np.int32)
        else:
            self.class_names = list(class_names)
            present = sorted(set(labels[keep].tolist()))
            if names[0] == "0" and all(n == str(i) for i, n in enumerate(names)):
                # Numbered classes: label i is class_names[i].
                if present[-1] >= len(self.class_names):
                    raise ValueError(f"--dataset={spec}: label {present[-1]} is beyond the "
                                     f"{len(self.class_names)} training classes")
                remap = np.arange(max(num_classes, len(self.class_names)), dtype=np.int32)
            else:
                remap = np.zeros(num_classes, np.int32)
                remap[present] = remap_to(self.class_names, [names[c] for c in present],
                                           f"--dataset={spec} split {split!r}")
        self.label_offset = label_offset
        self.remap = remap
        self.counts = counts
        self.offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        mask = np.zeros(len(labels), bool)
        mask[keep] = True
        self.keep_mask = None if mask.all() else mask
        self.class_counts = np.bincount(remap[labels[keep]], minlength=len(self.class_names))
        self.num_examples = len(keep)

    @staticmethod
    def _scan(files, spec):
        """Labels (and synsets) of every record, file-major; record counts per file.
        Reads the files in parallel but parses only the label fields."""
        feats = {"image/class/label": tf.io.FixedLenFeature([], tf.int64),
                 "image/class/synset": tf.io.FixedLenFeature([], tf.string, default_value="")}

        def read(file_index, path):
            return tf.data.Dataset.zip(
                (tf.data.TFRecordDataset(path), tf.data.Dataset.range(tf.int64.max))).map(
                lambda r, i: (file_index, i, tf.io.parse_single_example(r, feats)))

        ds = tf.data.Dataset.from_tensor_slices(
            (tf.range(len(files), dtype=tf.int64), files)).interleave(
            read, cycle_length=min(16, len(files)), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=False).batch(8192)
        file_ids, record_ids, labels, synsets = [], [], [], []
        try:
            for f, i, ex in ds.as_numpy_iterator():
                file_ids.append(f)
                record_ids.append(i)
                labels.append(ex["image/class/label"])
                synsets.append(ex["image/class/synset"])
        except tf.errors.OpError as e:
            raise ValueError(f"--dataset={spec}: cannot read {len(files)} file(s) like "
                             f"{files[0]} as TF-Example records with image/class/label: "
                             f"{' '.join(e.message.split())[:300]}") from None
        if not labels:
            return np.zeros([0], np.int64), np.zeros([0], object), np.zeros(len(files), np.int64)
        file_ids, record_ids = np.concatenate(file_ids), np.concatenate(record_ids)
        order = np.lexsort((record_ids, file_ids))
        counts = np.bincount(file_ids, minlength=len(files)).astype(np.int64)
        return (np.concatenate(labels)[order], np.concatenate(synsets)[order], counts)

    @staticmethod
    def _names(labels, synsets, num_classes, folder, spec):
        if len(synsets) and all(synsets):
            names = [None] * num_classes
            for y, s in zip(labels.tolist(), synsets.tolist()):
                s = s.decode() if isinstance(s, bytes) else s
                if names[y] is None:
                    names[y] = s
                elif names[y] != s:
                    raise ValueError(f"--dataset={spec}: label {y} has two synsets, "
                                     f"{names[y]} and {s}")
            return [n if n is not None else str(i) for i, n in enumerate(names)]
        labels_txt = os.path.join(folder, LABELS_FILE)
        if tf.io.gfile.exists(labels_txt):
            with tf.io.gfile.GFile(labels_txt) as f:
                names = parse_labels(f.read())
            if len(names) >= num_classes:
                return names
            logging.warning("%s has %d names for %d classes: using label numbers",
                            labels_txt, len(names), num_classes)
        return [str(i) for i in range(num_classes)]

    def num_files(self):
        return len(self.files)

    def dataset(self, num_shards=1, shard_index=0, shuffle=False, seed=0):
        by_files = len(self.files) >= num_shards
        file_idx = (shard_indices(len(self.files), num_shards, shard_index) if by_files
                    else np.arange(len(self.files)))
        files = tf.data.Dataset.from_tensor_slices(
            (np.array(self.files)[file_idx], self.offsets[file_idx]))
        if shuffle and by_files:
            files = files.shuffle(len(file_idx), seed=seed, reshuffle_each_iteration=True)

        def read(path, offset):
            # (record, global record id, "FILE#i")
            return tf.data.Dataset.zip(
                (tf.data.TFRecordDataset(path), tf.data.Dataset.range(tf.int64.max))).map(
                lambda r, i: (r, offset + i,
                              tf.strings.join([path, "#", tf.strings.as_string(i)])))

        parallel = shuffle and by_files
        if parallel:
            ds = files.interleave(read, cycle_length=min(16, len(file_idx)),
                                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        else:
            ds = files.flat_map(read)  # a fixed record order, to shard by examples
        if self.keep_mask is not None:
            mask = tf.constant(self.keep_mask)
            ds = ds.filter(lambda r, gid, p: tf.gather(mask, gid))
        if not by_files:
            ds = ds.shard(num_shards, shard_index)
        if shuffle:
            ds = ds.shuffle(self.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        remap = tf.constant(self.remap)
        label_offset = self.label_offset

        def parse(record, gid, name):
            ex = tf.io.parse_single_example(record, _FEATURES)
            label = tf.gather(remap, tf.cast(ex["image/class/label"] - label_offset, tf.int32))
            return ex["image/encoded"], label, name

        return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)

    shuffle_buffer = 4096


# --------------------------------------------------------------------------- tfds
class TFDSSource(Source):
    def __init__(self, name: str, config: Optional[str], split: str,
                 data_dir: Optional[str] = None, class_names=None):
        import tensorflow_datasets as tfds

        full = f"{name}/{config}" if config else name
        spec = f"tfds:{full}"
        self.spec = spec
        try:
            builder = tfds.builder(full, data_dir=data_dir)
        except tfds.core.registered.DatasetNotFoundError as e:
            raise ValueError(
                f"--dataset={spec}: unknown tfds dataset ({str(e).splitlines()[0]}); for "
                "images already on disk in PATH/<split>/<class>/ (e.g. fast.ai's "
                "imagewoof2 or imagenette2 archives, extracted) use --dataset=folder:PATH"
            ) from None
        except (ValueError, KeyError) as e:  # e.g. an unknown config
            raise ValueError(f"--dataset={spec}: {e}") from None
        feats = builder.info.features
        if "image" not in feats or "label" not in feats or not isinstance(
                feats["label"], tfds.features.ClassLabel):
            raise ValueError(f"--dataset={spec}: tfds dataset {full} has no 'image' and "
                             "ClassLabel 'label' features, so it is not an image-"
                             "classification dataset")
        if not builder.is_prepared():
            _prepare(builder, spec, full)
        self.builder = builder
        self.split = split
        source_names = list(feats["label"].names)
        if class_names is None:
            self.class_names = source_names
            remap = np.arange(len(source_names), dtype=np.int32)
        else:
            self.class_names = list(class_names)
            remap = remap_to(self.class_names, source_names,
                              f"--dataset={spec} split {split!r}")
        self.remap = remap
        try:
            info = builder.info.splits[split]
            self.num_examples = int(info.num_examples)
            self._num_files = len(info.file_instructions)
        except Exception:  # noqa: BLE001 -- unknown split, or split info absent (mocks)
            self._num_files = 1
            self.num_examples = self._count(split, spec)
        if self.num_examples <= 0:
            raise EmptySplit(f"--dataset={spec}: split {split!r} is empty")

    def _count(self, split, spec):
        try:
            ds = self.builder.as_dataset(split=split)
        except Exception as e:  # noqa: BLE001
            splits = list(self.builder.info.splits.keys())
            raise ValueError(f"--dataset={spec}: split {split!r} is not available "
                             f"(splits: {splits}): {str(e)[:300]}") from None
        n = int(ds.cardinality())
        if n < 0:
            n = int(ds.reduce(0, lambda c, _: c + 1))
        return n

    def num_files(self):
        return self._num_files

    def dataset(self, num_shards=1, shard_index=0, shuffle=False, seed=0):
        import tensorflow_datasets as tfds

        by_files = num_shards > 1 and self._num_files >= num_shards
        read_config = tfds.ReadConfig(
            shuffle_seed=seed if shuffle else None,
            input_context=(tf.distribute.InputContext(num_shards, shard_index, num_shards)
                           if by_files else None),
            add_tfds_id=True)
        ds = self.builder.as_dataset(
            split=self.split, shuffle_files=shuffle and (by_files or num_shards == 1),
            decoders={"image": tfds.decode.SkipDecoding()}, read_config=read_config)
        if num_shards > 1 and not by_files:
            ds = ds.shard(num_shards, shard_index)
        if shuffle:
            ds = ds.shuffle(self.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        remap = tf.constant(self.remap)
        return ds.map(lambda ex: (ex["image"], tf.gather(remap, tf.cast(ex["label"], tf.int32)),
                                  ex["tfds_id"]),
                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)

    shuffle_buffer = 4096


def _prepare(builder, spec: str, full: str) -> None:
    """Downloads and prepares a tfds dataset; a ValueError says what to do when that fails
    (offline: which archives to put where)."""
    try:
        builder.download_and_prepare()
    except Exception as e:  # noqa: BLE001 -- network, disk, manual download, ...
        why = f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"
        if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
            manual_dir = os.path.join(str(builder.data_dir_root), "downloads", "manual")
            raise ValueError(
                f"--dataset={spec}: {full} is not prepared in --data_dir="
                f"{builder.data_dir_root} and tfds cannot download it: put the "
                f"original archives in the tfds manual dir {manual_dir} (for "
                "imagenet2012: ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar; "
                "--data_dir selects another tfds data dir). tfds's instructions: "
                f"{' '.join(builder.MANUAL_DOWNLOAD_INSTRUCTIONS.split())[:300]} "
                f"(preparing failed with {why})") from None
        raise ValueError(f"--dataset={spec}: {full} is not prepared in --data_dir="
                         f"{builder.data_dir_root} and downloading/preparing it "
                         f"failed: {why}") from None


def make_source(cfg, split: str, class_names=None) -> Source:
    """The source for ``cfg.dataset`` and ``split``; raises ValueError naming the flag."""
    spec = parse_dataset_spec(cfg.dataset)
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if not class_names:
            raise ValueError("class_names is empty")
    if spec.kind == "synthetic":
        src = SyntheticSource(cfg.synthetic_num_classes, cfg.synthetic_num_examples,
                              cfg.synthetic_image_size, split, cfg.seed, class_names)
    elif spec.kind == "folder":
        src = FolderSource(spec.path, split, cfg.seed, class_names,
                           getattr(cfg, "holdout_fraction", DEFAULT_HOLDOUT_FRACTION))
    elif spec.kind == "tfrecord":
        src = TFRecordSource(spec.path, split, cfg.label_offset, cfg.seed, class_names)
    else:
        src = TFDSSource(spec.name, spec.config, split, cfg.data_dir, class_names)
    src.shuffle_buffer = cfg.shuffle_buffer
    return src
