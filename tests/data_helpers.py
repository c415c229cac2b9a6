"""Tiny on-disk datasets for the data tests (created under pytest's tmp_path)."""

from __future__ import annotations

import hashlib
import io
import os

import numpy as np
import tensorflow as tf
from PIL import Image

FORMATS = {"jpg": "JPEG", "JPEG": "JPEG", "png": "PNG", "PNG": "PNG", "bmp": "BMP",
           "gif": "GIF", "jpeg": "JPEG"}


def class_colour(label: int):
    """A distinct solid colour per class (so tests can check labels from pixels)."""
    return [(230, 20, 20), (20, 200, 20), (20, 20, 230), (220, 220, 20)][label % 4]


def image_array(label: int, h: int = 40, w: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.empty((h, w, 3), np.uint8)
    a[:] = class_colour(label)
    a[: h // 4] = rng.integers(0, 255, (h // 4, w, 3), dtype=np.uint8)  # some texture
    return a


def encode(array: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    img = Image.fromarray(array)
    if mode:
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def make_folder(root, classes=("cat", "dog"), per_class=6, splits=("train", "val"),
                exts=("jpg", "PNG", "bmp", "gif", "JPEG", "png"), size=(40, 48)):
    """root/<split>/<class>/<i>.<ext>, cycling through ``exts``; returns str(root)."""
    k = 0
    for split in splits:
        for c, name in enumerate(classes):
            d = os.path.join(root, split, name)
            os.makedirs(d, exist_ok=True)
            for i in range(per_class):
                ext = exts[i % len(exts)]
                with open(os.path.join(d, f"{i:03d}.{ext}"), "wb") as f:
                    f.write(encode(image_array(c, *size, seed=k), FORMATS[ext]))
                k += 1
    return str(root)


def tf_example(encoded: bytes, label: int, synset: str | None = None) -> bytes:
    feats = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }
    if synset is not None:
        feats["image/class/synset"] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[synset.encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def make_tfrecords(directory, prefix="train", num_files=2, per_file=6, num_classes=3,
                   label_offset=0, synsets=False, bad_record_at=None):
    """``directory/<prefix>-0000i-of-0000n`` files of TF-Examples, label = i % classes
    (+ ``label_offset``); returns the list of (file, [labels]) written."""
    os.makedirs(directory, exist_ok=True)
    written, k = [], 0
    for f in range(num_files):
        path = os.path.join(directory, f"{prefix}-{f:05d}-of-{num_files:05d}")
        labels = []
        with tf.io.TFRecordWriter(path) as w:
            for _ in range(per_file):
                y = k % num_classes
                enc = encode(image_array(y, seed=k), "JPEG")
                if bad_record_at == k:
                    enc = b"this is not an image"
                w.write(tf_example(enc, y + label_offset, f"n{y:08d}" if synsets else None))
                labels.append(y)
                k += 1
        written.append((path, labels))
    return written


def tree_digest(root) -> str:
    """Hash of every path, size, mtime and content under ``root``."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames) + dirnames:
            p = os.path.join(dirpath, name)
            st = os.stat(p)
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode())
            if os.path.isfile(p):
                with open(p, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


def collect(dataset):
    """All (images, labels) of a finite dataset, concatenated as numpy."""
    xs, ys = [], []
    for x, y in dataset:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)
