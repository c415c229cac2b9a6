"""Decoded evaluation images (uint8, label) from a dataset spec, for evaluate and export.

All model formats are fed the same decoded uint8 images and each applies the same eval
preprocessing, so their accuracies are comparable image for image. The images come from
``mobilenet_tf.data.iterate_uint8`` (the data pipeline's one source of truth for specs
and splits).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from typing import Iterator

import numpy as np

from mobilenet_tf import data

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """Where evaluation / calibration images come from."""

    dataset: str  # a DataConfig.dataset spec: "synthetic", "tfds:NAME", "folder:PATH", ...
    split: str = "validation"
    data_dir: str | None = None
    data_config: dict | None = None  # other DataConfig fields (e.g. a run's config["data"])


def iterate_images(source: ImageSource, limit: int | None, class_names=None,
                   image_size=(224, 224)) -> Iterator[tuple[np.ndarray, int]]:
    """Yields up to ``limit`` (all when None) (uint8 HxWx3 image, label) pairs, in a
    deterministic order; ``class_names`` fixes the label indices."""
    limit = limit if limit is not None else 2**62
    if hasattr(data, "iterate_uint8") and hasattr(data, "DataConfig"):
        fields = dict(source.data_config or {})
        fields.update(dataset=source.dataset, image_size=tuple(image_size))
        if source.data_dir is not None:
            fields["data_dir"] = source.data_dir
        known = {f.name for f in dataclasses.fields(data.DataConfig)}
        cfg = data.DataConfig(**{k: v for k, v in fields.items() if k in known})
        yield from data.iterate_uint8(cfg, source.split, limit, class_names=class_names)
        return
    yield from _folder_images(source, limit, class_names)  # until the data branch lands


def load_images(source: ImageSource, limit: int | None, class_names=None,
                image_size=(224, 224)) -> tuple[list[np.ndarray], np.ndarray]:
    images, labels = [], []
    for image, label in iterate_images(source, limit, class_names, image_size):
        images.append(np.asarray(image, np.uint8))
        labels.append(int(label))
    if not images:
        raise ValueError(f"dataset {source.dataset!r} split {source.split!r} has no images")
    return images, np.asarray(labels, np.int64)


def _folder_images(source: ImageSource, limit, class_names):
    """Minimal ``folder:PATH`` reader (PATH/<split>/<class>/* or PATH/<class>/*, split
    slicing ``name[a%:b%]`` per class on sorted file names)."""
    from mobilenet_tf.data import preprocessing

    if not source.dataset.startswith("folder:"):
        raise ValueError(f"dataset {source.dataset!r} needs mobilenet_tf.data.iterate_uint8 "
                         "(data branch); only folder:PATH works without it")
    root = source.dataset[len("folder:"):]
    m = re.fullmatch(r"([^\[]+)(?:\[(\d*)%?:(\d*)%?\])?", source.split)
    name, lo, hi = m.group(1), m.group(2), m.group(3)
    if os.path.isdir(os.path.join(root, name)):
        root = os.path.join(root, name)
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    names = list(class_names) if class_names is not None else classes
    for c in classes:
        if c not in names:
            raise ValueError(f"class {c!r} of {root} is not in the model's class list")
    per_class = []
    for c in classes:
        files = sorted(f for f in os.listdir(os.path.join(root, c))
                       if f.lower().endswith(_IMAGE_EXTENSIONS))
        a = int(len(files) * int(lo) / 100) if lo else 0
        b = int(len(files) * int(hi) / 100) if hi else len(files)
        per_class.append([(os.path.join(root, c, f), names.index(c)) for f in files[a:b]])
    # round robin over classes, so that the first ``limit`` images cover every class
    order = [item for group in itertools.zip_longest(*per_class) for item in group if item]
    count = 0
    for path, label in order:
        if count >= limit:
            return
        with open(path, "rb") as fh:
            encoded = fh.read()
        try:
            image = preprocessing.decode_image(encoded).numpy()
        except Exception:  # noqa: BLE001 - a bad file is skipped, as bad_images="skip"
            continue
        yield image, label
        count += 1
