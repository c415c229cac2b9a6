"""What every data source shares: the ``Source`` interface, per-class seeded slicing,
class-list remapping, sharding and the seeded index stream."""

from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np
import tensorflow as tf

from mobilenet_tf.data.specs import SplitSpec


def class_slice_positions(labels: np.ndarray, num_classes: int, split: SplitSpec,
                          seed: int, class_keys: Sequence[str]) -> np.ndarray:
    """Indices (sorted) kept by a per-class seeded percent slice."""
    if not split.sliced:
        return np.arange(len(labels))
    keep = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        rng = np.random.default_rng([int(seed), zlib.crc32(str(class_keys[c]).encode())])
        keep.append(members[rng.permutation(len(members))][split.select(len(members))])
    return np.sort(np.concatenate(keep)) if keep else np.zeros([0], np.int64)


def remap_to(class_names, source_names, where):
    """Index map source class -> position in the fixed ``class_names``."""
    index = {n: i for i, n in enumerate(class_names)}
    missing = [n for n in source_names if n not in index]
    if missing:
        raise ValueError(f"{where} has classes not in the fixed class list of "
                         f"{len(class_names)} training classes (labels.txt): "
                         f"{missing[:10]}{' ...' if len(missing) > 10 else ''}")
    return np.array([index[n] for n in source_names], np.int32)


def shard_indices(n: int, num_shards: int, shard_index: int) -> np.ndarray:
    if n < num_shards:
        raise ValueError(f"{n} examples cannot be sharded over {num_shards} input pipelines: "
                         "use more data or fewer workers")
    return np.arange(shard_index, n, num_shards)


def indexed(n: int, shuffle: bool, seed: int) -> tf.data.Dataset:
    """Indices 0..n-1: in order (one pass), or -- shuffle=True -- an endless stream of
    epochs, each a fresh seeded permutation of all n (no shuffle buffer to hold or fill,
    whatever n)."""
    if not shuffle:
        return tf.data.Dataset.range(n)
    seed = tf.constant(int(seed), tf.int64)
    return tf.data.Dataset.counter().flat_map(
        lambda epoch: tf.data.Dataset.from_tensor_slices(
            tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64),
                                                     seed=tf.stack([seed, epoch]))))


# --------------------------------------------------------------------------- sources
class Source:
    """Base: class list, example count, and raw records per shard: one pass in a fixed
    order (``shuffle=False``), or shuffled (``shuffle=True``; may be endless)."""

    encoded: bool = True  # records hold encoded bytes (else uint8 images)
    class_counts = None  # examples of each class in the split (numpy), where known
    class_names: list
    num_examples: int

    def dataset(self, num_shards: int = 1, shard_index: int = 0, shuffle: bool = False,
                seed: int = 0) -> tf.data.Dataset:
        raise NotImplementedError

    def load(self, data: tf.Tensor) -> tf.Tensor:
        """A record's encoded bytes from its ``data``, called in the pipeline's decode map:
        the data itself here. A folder source's records hold file paths, read here: a file
        that cannot be read then fails where the pipeline knows its name, and is skipped
        or reported by it like a corrupt one."""
        return data

    def read_problem(self, name: str) -> str:
        """Why the record ``name`` (a bad image) could not be read, for the message that
        names it; "" when it was read (its bytes did not decode)."""
        return ""
