"""Decoded evaluation images (uint8, label) from a dataset spec, for evaluate and export.

All model formats are fed the same decoded uint8 images and each applies the same eval
preprocessing, so their accuracies are comparable image for image. The images come from
``mobilenet_tf.data.iterate_uint8`` (the data pipeline is the one source of truth for
specs, splits and class lists).

``iterate_uint8`` yields a split in its fixed order, which for folder sources is class by
class; a sample of ``limit`` images must cover every class (int8 calibration on one class
would be useless), so ``load_images`` narrows the split with the data pipeline's own
per-class seeded slicing (``NAME[a%:b%]``, a subset of the requested slice) and then takes
the images round robin over the labels.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator

import numpy as np

from mobilenet_tf import data

# Ask for this much more than ``limit`` when narrowing a split, so that rounding in the
# per-class slices still leaves ``limit`` images.
_SLICE_MARGIN = 1.2


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """Where evaluation / calibration images come from."""

    dataset: str  # a DataConfig.dataset spec: "synthetic", "tfds:NAME", "folder:PATH", ...
    split: str = "validation"
    data_dir: str | None = None
    data_config: dict | None = None  # other DataConfig fields (a run's record.data.config)

    def data_cfg(self, image_size=(224, 224)) -> "data.DataConfig":
        fields = dict(self.data_config or {})
        fields.update(dataset=self.dataset, image_size=tuple(image_size))
        if self.data_dir is not None:
            fields["data_dir"] = self.data_dir
        known = {f.name for f in dataclasses.fields(data.DataConfig)}
        return data.DataConfig(**{k: v for k, v in fields.items() if k in known})


def iterate_images(source: ImageSource, limit: int | None, class_names=None,
                   image_size=(224, 224)) -> Iterator[tuple[np.ndarray, int]]:
    """Yields up to ``limit`` (all when None) (uint8 HxWx3 image, label) pairs of
    ``source.split`` in the pipeline's fixed order; ``class_names`` fixes the labels."""
    cfg = source.data_cfg(image_size)
    yield from data.iterate_uint8(cfg, source.split, limit if limit is not None else 2**62,
                                  class_names=class_names)


def narrowed_split(source: ImageSource, limit: int, class_names=None) -> str:
    """A per-class slice of ``source.split`` holding about ``limit`` images (the split
    itself when it is not larger)."""
    cfg = source.data_cfg()
    total = data.build_input(cfg, source.split, training=False, global_batch_size=1,
                             class_names=class_names).num_examples
    if total <= limit:
        return source.split
    spec = data.parse_split(source.split, source.dataset)
    start = spec.start if spec.start is not None else 0.0
    end = spec.end if spec.end is not None else 100.0
    width = (end - start) * min(1.0, _SLICE_MARGIN * limit / total)
    new_end = min(end, math.ceil((start + width) * 1e4) / 1e4)
    return f"{spec.name}[{start:g}%:{new_end:.4f}%]"


def load_images(source: ImageSource, limit: int | None, class_names=None,
                image_size=(224, 224)) -> tuple[list[np.ndarray], np.ndarray]:
    """Up to ``limit`` decoded images with labels, spread over the classes (see the
    module docstring); all of the split when ``limit`` is None."""
    split = source.split
    if limit is not None:
        split = narrowed_split(source, limit, class_names)
    pairs = list(iterate_images(dataclasses.replace(source, split=split), None, class_names,
                                image_size))
    if not pairs:
        raise ValueError(f"dataset {source.dataset!r} split {source.split!r} has no images")
    if limit is not None and len(pairs) > limit:
        by_label: dict[int, list] = {}
        for pair in pairs:
            by_label.setdefault(int(pair[1]), []).append(pair)
        queues = [by_label[k] for k in sorted(by_label)]
        picked = []
        for i in range(max(len(q) for q in queues)):
            picked += [q[i] for q in queues if i < len(q)]
        pairs = picked[:limit]
    images = [np.asarray(image, np.uint8) for image, _ in pairs]
    labels = np.asarray([int(label) for _, label in pairs], np.int64)
    return images, labels
