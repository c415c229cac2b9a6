"""``--dataset`` and split specs: parsing only, no TensorFlow (the command lines check
their flags with it before TensorFlow is imported)."""

from __future__ import annotations

import dataclasses
import re
from typing import Optional

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
DATASET_FORMS = "'synthetic', 'tfds:NAME[/CONFIG]', 'folder:PATH' or 'tfrecord:GLOB'"
SPLIT_PLACEHOLDER = "{split}"

# Splits of a ``folder:PATH`` whose PATH holds class folders directly (no split folders):
# per class, a fixed seeded permutation of the images (independent of --seed, so that
# every command and every model format sees the same held-out images) is cut into
# 'train' (the first 1 - --holdout_fraction) and 'validation' (the rest); 'all' is every
# image.
FLAT_SPLITS = ("train", "validation", "all")
HOLDOUT_SEED = 20170417  # the permutation behind 'train'/'validation' of a flat folder
DEFAULT_HOLDOUT_FRACTION = 0.1


class EmptySplit(ValueError):
    """A split that selects no examples of its dataset (a ValueError naming --dataset):
    the trainer names --train_split/--eval_split and says what would hold some."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    kind: str  # "synthetic" | "tfds" | "folder" | "tfrecord"
    name: Optional[str] = None  # tfds name
    config: Optional[str] = None  # tfds config
    path: Optional[str] = None  # folder path or tfrecord glob


def parse_dataset_spec(spec: str) -> DatasetSpec:
    """Parses a ``--dataset`` value; a malformed one raises ValueError naming the flag."""
    if not isinstance(spec, str):
        raise ValueError(f"--dataset must be a string ({DATASET_FORMS}), got {spec!r}")
    s = spec.strip()
    if s == "synthetic":
        return DatasetSpec("synthetic")
    kind, sep, rest = s.partition(":")
    if not sep or kind not in ("tfds", "folder", "tfrecord"):
        raise ValueError(f"--dataset={spec!r} is malformed: use {DATASET_FORMS}")
    if not rest:
        raise ValueError(f"--dataset={spec!r} is malformed: nothing after '{kind}:'; "
                         f"use {DATASET_FORMS}")
    if kind == "tfds":
        m = re.fullmatch(r"([a-z0-9_]+)(?:/([A-Za-z0-9_.\-]+))?(?::[0-9.]+)?", rest)
        if not m:
            raise ValueError(f"--dataset={spec!r} is malformed: tfds datasets are written "
                             "'tfds:NAME' or 'tfds:NAME/CONFIG' (e.g. "
                             "'tfds:imagenette/160px-v2')")
        return DatasetSpec("tfds", name=m.group(1), config=m.group(2))
    return DatasetSpec(kind, path=rest)


@dataclasses.dataclass(frozen=True)
class SplitSpec:
    name: str
    start: Optional[float] = None  # percent
    end: Optional[float] = None

    @property
    def sliced(self) -> bool:
        return self.start is not None or self.end is not None

    def select(self, n: int) -> slice:
        a = 0 if self.start is None else int(round(n * self.start / 100))
        b = n if self.end is None else int(round(n * self.end / 100))
        return slice(a, b)


def parse_split(split: str, dataset: str) -> SplitSpec:
    """``NAME`` or ``NAME[a%:b%]`` (either bound optional, 0 <= a <= b <= 100)."""
    m = re.fullmatch(r"\s*([A-Za-z0-9_\-]+)\s*(?:\[\s*(?:(\d+(?:\.\d+)?)%)?\s*:\s*"
                     r"(?:(\d+(?:\.\d+)?)%)?\s*\])?\s*", split or "")
    if not m:
        raise ValueError(f"split {split!r} for --dataset={dataset} is malformed: use NAME or "
                         "NAME[a%:b%] with percentages (e.g. 'train', 'train[:90%]', "
                         "'train[90%:]')")
    start = float(m.group(2)) if m.group(2) is not None else None
    end = float(m.group(3)) if m.group(3) is not None else None
    if (start or 0) > (100 if end is None else end) or (end is not None and end > 100):
        raise ValueError(f"split {split!r} for --dataset={dataset}: need 0 <= a <= b <= 100 "
                         "in NAME[a%:b%]")
    return SplitSpec(m.group(1), start, end)


def holdout_count(n: int, fraction: float) -> int:
    """Images of a class of ``n`` held out for 'validation' at ``fraction``: the rounded
    share, but at least one (and never all) when the class has two or more images and
    the fraction is positive."""
    if fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(1, int(round(n * fraction))))


def flat_split_part(split: SplitSpec, dataset: str, holdout_fraction: float) -> str:
    """Which part of a flat (split-less) folder ``split`` names: 'train', 'validation'
    or 'all'; ValueError naming the flag for any other split name."""
    if split.name not in FLAT_SPLITS:
        raise ValueError(
            f"split {split.name!r} for --dataset={dataset}: that folder holds class "
            f"folders directly (PATH/<class>/<image>, no split folders), so its splits are "
            f"'train' (per class {1 - holdout_fraction:.0%} of the images), 'validation' "
            f"(the other {holdout_fraction:.0%}, --holdout_fraction) and 'all', each "
            "optionally sliced as NAME[a%:b%]")
    return split.name
