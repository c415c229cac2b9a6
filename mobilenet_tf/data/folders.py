"""``folder:PATH`` sources: ``PATH/<split>/<class>/<image>``, or ``PATH/<class>/<image>``
(no split folders) with 'train'/'validation'/'all' carved per class.

The layout is read from the folder itself: sub-folders holding images are class folders,
sub-folders holding only folders are split folders, a folder with both kinds is an error.
A flat folder's 'validation' part is, per class, the last ``holdout_count`` images of a
permutation seeded by ``specs.HOLDOUT_SEED`` and the class name: it does not depend on
``--seed``, so training, evaluation and export of any model format agree on it, and it is
stable when other classes are added or removed.
"""

from __future__ import annotations

import os
import zlib
from typing import Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from mobilenet_tf.failures import first_line
from mobilenet_tf.data.source_base import (Source, class_slice_positions, indexed,
                                           remap_to, shard_indices)
from mobilenet_tf.data.specs import (DEFAULT_HOLDOUT_FRACTION, HOLDOUT_SEED,
                                     IMAGE_EXTENSIONS, EmptySplit, flat_split_part,
                                     holdout_count, parse_split)


def _visible(names):
    return [n.rstrip("/") for n in names if not n.startswith(".")]


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def read_failure(err) -> str:
    """Why TensorFlow's file system could not read a path, from its error ("PATH;
    Permission denied" -> "permission denied"): the reason alone, for a message that names
    the path and the flag itself."""
    reason = first_line(err).rsplit("; ", 1)[-1]
    return reason[:1].lower() + reason[1:]


def _unreadable(path: str, kind: str, spec: str, err, others: int = 0) -> ValueError:
    """The error for a folder of the dataset that cannot be listed (a permission, a
    broken mount): it names the folder, its role and --dataset, where TensorFlow's
    PermissionDeniedError named only the path, with a traceback."""
    more = f" (and {others} other folder{'s' * (others > 1)})" if others else ""
    remove = "" if kind == "folder" else " or remove it from the dataset"
    return ValueError(f"--dataset={spec}: cannot read {kind} {path}{more}: "
                      f"{read_failure(err)}; make it readable by this user (e.g. chmod -R "
                      f"u+rX {path}){remove}")


def _listdir(path: str, kind: str, spec: str):
    """``tf.io.gfile.listdir(path)``; ValueError naming ``path`` when it cannot be read."""
    try:
        return tf.io.gfile.listdir(path)
    except tf.errors.OpError as err:
        raise _unreadable(path, kind, spec, err) from None


def _subfolder_entries(root: str, spec: str):
    """Sorted visible sub-folders of ``root``, their entries, and those that cannot be
    listed (name -> error): which role those have is known only from the others."""
    names = _listdir(root, "folder", spec)
    subdirs = sorted(d for d in _visible(names) if tf.io.gfile.isdir(os.path.join(root, d)))
    entries, unreadable = {}, {}
    for d in subdirs:
        try:
            entries[d] = tf.io.gfile.listdir(os.path.join(root, d))
        except tf.errors.OpError as err:
            unreadable[d] = err
    return names, subdirs, entries, unreadable


def _folder_layout(root: str, spec: str):
    """``("classes", {class: entries})`` for ``PATH/<class>/<image>`` or ``("splits",
    None)`` for ``PATH/<split>/<class>/<image>``; ValueError when it is neither or both,
    or when a sub-folder cannot be read (named as a class or split folder as the readable
    ones are)."""
    names, subdirs, entries, unreadable = _subfolder_entries(root, spec)
    with_images = [d for d in entries if any(_is_image(f) for f in entries[d])]
    with_folders = [d for d in entries if d not in with_images and any(
        tf.io.gfile.isdir(os.path.join(root, d, f)) for f in _visible(entries[d]))]
    if unreadable:
        first = min(unreadable)
        kind = ("class folder" if with_images else "split folder" if with_folders
                else "sub-folder")
        raise _unreadable(os.path.join(root, first), kind, spec, unreadable[first],
                          len(unreadable) - 1)
    if with_images and with_folders:
        raise ValueError(
            f"--dataset={spec}: {root} mixes class folders (holding images: "
            f"{with_images[:5]}) and split folders (holding sub-folders: {with_folders[:5]}); "
            "use either PATH/<class>/<image> or PATH/<split>/<class>/<image>")
    if with_images:
        return "classes", {d: entries[d] for d in subdirs}
    if with_folders:
        return "splits", None
    loose = [f for f in names if _is_image(f)]
    raise ValueError(
        f"--dataset={spec}: {root} has no class sub-folders with images"
        + (f" ({len(loose)} images lie directly in it: move them into class folders)"
           if loose else "")
        + "; the layout is PATH/<class>/<image> or PATH/<split>/<class>/<image>")


def folder_layout(root: str) -> str:
    """'classes' (``PATH/<class>/<image>``) or 'splits' (``PATH/<split>/<class>/<image>``);
    ValueError naming --dataset when ``root`` is neither, both, or missing."""
    spec = f"folder:{root}"
    if not tf.io.gfile.isdir(root):
        raise ValueError(f"--dataset={spec}: folder {root} does not exist")
    return _folder_layout(root, spec)[0]


def default_eval_split(dataset: str) -> str:
    """The split to evaluate ``dataset`` on when none is given: 'all' for a folder of
    class folders (every image), else 'validation'."""
    from mobilenet_tf.data.specs import parse_dataset_spec

    spec = parse_dataset_spec(dataset)
    if spec.kind == "folder" and folder_layout(spec.path) == "classes":
        return "all"
    return "validation"


def _class_files(class_dir: str, entries, spec: str):
    """Image file names of one class folder (sorted) and how many other files it has."""
    files = sorted(f for f in entries if not f.startswith(".") and not f.endswith("/"))
    images = [f for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not images:
        raise ValueError(f"--dataset={spec}: class folder {class_dir} has no images "
                         f"(extensions {', '.join(IMAGE_EXTENSIONS)}, any case); "
                         "remove it or add images")
    return images, len(files) - len(images)


def _holdout_positions(labels: np.ndarray, num_classes: int, part: str, fraction: float,
                       class_keys: Sequence[str]) -> np.ndarray:
    """Indices (sorted) of a flat folder's 'train'/'validation'/'all' part: per class a
    permutation seeded by HOLDOUT_SEED and the class name; the last
    ``holdout_count`` images of it are 'validation'."""
    if part == "all":
        return np.arange(len(labels))
    keep = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        rng = np.random.default_rng([HOLDOUT_SEED, zlib.crc32(str(class_keys[c]).encode())])
        members = members[rng.permutation(len(members))]
        cut = len(members) - holdout_count(len(members), fraction)
        keep.append(members[cut:] if part == "validation" else members[:cut])
    return np.sort(np.concatenate(keep)) if keep else np.zeros([0], np.int64)


class FolderSource(Source):
    """``PATH/<split>/<class>/<image>``, or ``PATH/<class>/<image>`` with the splits of
    ``specs.FLAT_SPLITS`` carved per class (``holdout_fraction`` held out)."""

    def __init__(self, root: str, split: str, seed: int = 0, class_names=None,
                 holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION):
        spec = f"folder:{root}"
        self.split = parse_split(split, spec)
        if not tf.io.gfile.isdir(root):
            raise ValueError(f"--dataset={spec}: folder {root} does not exist")
        self.layout, listing = _folder_layout(root, spec)
        if self.layout == "classes":
            part = flat_split_part(self.split, spec, holdout_fraction)
            class_root = root
        else:
            class_root = os.path.join(root, self.split.name)
            listing = self._split_listing(root, class_root, spec)
        classes = sorted(listing)
        paths, labels, ignored = [], [], 0
        for c, name in enumerate(classes):
            class_dir = os.path.join(class_root, name)
            images, other = _class_files(class_dir, listing[name], spec)
            ignored += other
            paths += [os.path.join(class_dir, f) for f in images]
            labels += [c] * len(images)
        if ignored:
            logging.info("%s: ignored %d files without an image extension", class_root, ignored)
        labels = np.array(labels, np.int32)
        base = np.arange(len(labels))
        if self.layout == "classes":
            base = _holdout_positions(labels, len(classes), part, holdout_fraction, classes)
        keep = base[class_slice_positions(labels[base], len(classes), self.split, seed,
                                           classes)]
        if len(keep) == 0:
            why = (f" (--holdout_fraction={holdout_fraction} holds out no images)"
                   if self.layout == "classes" and part == "validation" else "")
            raise EmptySplit(f"--dataset={spec}: split {split!r} selects no images{why}")
        if class_names is None:
            self.class_names = list(classes)
            remap = np.arange(len(classes), dtype=np.int32)
        else:
            self.class_names = list(class_names)
            remap = remap_to(self.class_names, classes, f"--dataset={spec} split {split!r}")
        self.paths = [paths[k] for k in keep]  # a list: no fixed-width copy of 1M+ paths
        self.labels = remap[labels[keep]]
        self.class_counts = np.bincount(self.labels, minlength=len(self.class_names))
        self.num_examples = len(self.paths)

    @staticmethod
    def _split_listing(root, split_dir, spec):
        if not tf.io.gfile.isdir(split_dir):
            have = sorted(d for d in _visible(tf.io.gfile.listdir(root))
                          if tf.io.gfile.isdir(os.path.join(root, d)))
            raise ValueError(f"--dataset={spec}: split folder {split_dir} does not exist; "
                             f"the layout is PATH/<split>/<class>/<image>, and {root} has "
                             f"split folders {have}")
        classes = [d for d in _visible(_listdir(split_dir, "split folder", spec))
                   if tf.io.gfile.isdir(os.path.join(split_dir, d))]
        if not classes:
            raise ValueError(f"--dataset={spec}: {split_dir} has no class sub-folders; the "
                             "layout is PATH/<split>/<class>/<image>")
        return {c: _listdir(os.path.join(split_dir, c), "class folder", spec)
                for c in classes}

    def num_files(self):
        return self.num_examples

    def dataset(self, num_shards=1, shard_index=0, shuffle=False, seed=0):
        # One file per example: sharding by files and by examples coincide.
        idx = shard_indices(self.num_examples, num_shards, shard_index)
        paths = tf.constant([self.paths[k] for k in idx])
        labels = tf.constant(self.labels[idx])
        # The data is the path: ``load`` reads the file in the decode map (see there).
        return indexed(len(idx), shuffle, seed).map(lambda k: (paths[k], labels[k], paths[k]))

    def load(self, data):
        return tf.io.read_file(data)

    def read_problem(self, name: str) -> str:
        try:
            with tf.io.gfile.GFile(name, "rb") as f:
                f.read(1)
        except (tf.errors.OpError, OSError) as err:
            return f"cannot read the file: {read_failure(err)}"
        return ""
