"""DataConfig: every knob of the input pipeline, in one dataclass.

Field names double as the CLI flag names (``--dataset``, ``--data_dir``, ...), so every
validation error names the flag at fault. ``dataclasses.asdict(cfg)`` is JSON-ready and
``DataConfig(**d)`` rebuilds it (tuples may come back from JSON as lists).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from mobilenet_tf.data import synthetic
from mobilenet_tf.options import option as _field, require, require_finite
from mobilenet_tf.data.specs import (DATASET_FORMS, DEFAULT_HOLDOUT_FRACTION,
                                     parse_dataset_spec)

EVAL_CROP_FRACTION = 0.875  # the evaluation center crop (Inception/slim), in one place

BAD_IMAGE_POLICIES = ("skip", "error")
# Decoding bound (image bombs): larger images are decoded at reduced scale (baseline JPEG)
# or refused before decoding; 50 megapixels decode to 150 MB of uint8 RGB.
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
RANDAUGMENT_MAGNITUDE = 0.5  # the paper's level 5 of 10


@dataclasses.dataclass
class DataConfig:
    """Every option of the input pipeline; the field names are the flag names."""

    dataset: str = _field("synthetic", f"Which data: {DATASET_FORMS} (e.g. "
                          "'tfds:imagenette/160px-v2', 'folder:/data/imagenette2').", "data")
    data_dir: Optional[str] = _field(None, "tfds data_dir (where tfds keeps prepared "
                                     "datasets and looks for ImageNet's manual tarballs); "
                                     "default: tfds' own (~/tensorflow_datasets).", "data")
    image_size: tuple = _field((224, 224), "(height, width) fed to the network (train: set "
                               "from --resolution).", "model")
    # Train-time augmentation.
    min_area: float = _field(0.08, "Random-resized crop: smallest crop, as a fraction of "
                             "the image area, in (0, 1] (Inception: 0.08; small models "
                             "train better with less aggressive crops, e.g. 0.25).",
                             "augmentation")
    max_area: float = _field(1.0, "Random-resized crop: largest crop area fraction, in "
                             "[--min_area, 1].", "augmentation")
    min_aspect: float = _field(3 / 4, "Random-resized crop: smallest width/height ratio "
                               "(> 0).", "augmentation")
    max_aspect: float = _field(4 / 3, "Random-resized crop: largest width/height ratio "
                               "(>= --min_aspect).", "augmentation")
    flip: bool = _field(True, "Random horizontal flips (--noflip: off).", "augmentation")
    color_jitter: float = _field(0.0, "Colour jitter strength s in [0, 1): brightness, "
                                 "contrast and saturation scaled by U(1-s, 1+s); 0: off.",
                                 "augmentation")
    randaugment: bool = _field(False, "RandAugment (2 ops per image, Keras' ops at the "
                               "paper's ranges) on the crop, at its own resolution when "
                               "smaller than the input's.", "augmentation")
    randaugment_magnitude: float = _field(RANDAUGMENT_MAGNITUDE, "--randaugment's strength "
                                          "m in (0, 1], the paper's level 10m: rotations "
                                          "up to 30m degrees, shifts up to 0.45m of the "
                                          "side, ...", "augmentation")
    mixup_alpha: float = _field(0.0, "keras.layers.MixUp alpha (>= 0; e.g. 0.2); 0: off.",
                                "augmentation")
    cutmix_alpha: float = _field(0.0, "keras.layers.CutMix factor in [0, 1] (e.g. 1.0); "
                                 "0: off.", "augmentation")
    # Eval.
    crop_fraction: float = _field(EVAL_CROP_FRACTION, "Evaluation center crop: the "
                                  "central fraction of each side kept, in (0, 1] (Inception/slim: "
                                  f"{EVAL_CROP_FRACTION}).", "data")
    # Robustness.
    bad_images: str = _field("skip", "Corrupt or non-image files: 'skip' (counted and named "
                             "in the log) or 'error' (stop with the file's path).", "data")
    holdout_fraction: float = _field(DEFAULT_HOLDOUT_FRACTION, "folder:PATH of class "
                                     "folders (no split folders): share of each class "
                                     "held out as split 'validation' (the rest is 'train'; "
                                     "'all' is both), in [0, 1).", "data")
    max_image_pixels: int = _field(DEFAULT_MAX_IMAGE_PIXELS, "Images of more pixels (width "
                                   "x height, read from the file header) are decoded at 1/2, "
                                   "1/4 or 1/8 scale when they are baseline JPEGs, else "
                                   "handled as bad images, refused before decoding (image "
                                   "bombs); >= 1.", "data")
    label_offset: int = _field(0, "tfrecord: subtracted from image/class/label (1 for "
                               "ImageNet files with a background class 0).", "data")
    # The procedural "synthetic" task.
    synthetic_num_classes: int = _field(10, "synthetic: number of classes, in [2, "
                                        f"{synthetic.MAX_CLASSES}] (shape x colour).", "data")
    synthetic_num_examples: int = _field(1000, "synthetic: images per split (>= 1).", "data")
    synthetic_image_size: int = _field(64, "synthetic: side of the generated images in "
                                       "pixels (>= 8).", "data")
    # Shuffling (training only).
    shuffle_buffer: int = _field(4096, "Training shuffle buffer (>= 1): records buffered "
                                 "after reading tfds/tfrecord data; folder sources shuffle "
                                 "their whole file list every epoch.", "data")
    seed: int = _field(0, "Random seed of shuffling and augmentation (train: --seed).",
                       "runtime")

    def __post_init__(self):
        require_finite(self)
        self.image_size = _pair(self.image_size, "--image_size")
        require(isinstance(self.dataset, str) and self.dataset.strip(),
                "--dataset must be one of 'synthetic', 'tfds:NAME[/CONFIG]', "
                f"'folder:PATH', 'tfrecord:GLOB'; got {self.dataset!r}")
        # Malformed specs fail here, before anything else happens.
        parse_dataset_spec(self.dataset)
        require(self.bad_images in BAD_IMAGE_POLICIES,
                f"--bad_images must be one of {BAD_IMAGE_POLICIES}, got {self.bad_images!r}")
        require(self.max_image_pixels >= 1,
                "--max_image_pixels must be >= 1 (width x height above which images are "
                f"decoded at reduced scale or refused), got {self.max_image_pixels}")
        require(0 < self.min_area <= self.max_area <= 1,
                "--min_area/--max_area must satisfy 0 < min_area <= max_area <= 1, got "
                f"{self.min_area}, {self.max_area}")
        require(0 < self.min_aspect <= self.max_aspect,
                "--min_aspect/--max_aspect must satisfy 0 < min_aspect <= max_aspect, got "
                f"{self.min_aspect}, {self.max_aspect}")
        require(0 < self.crop_fraction <= 1,
                f"--crop_fraction must be in (0, 1], got {self.crop_fraction}")
        require(0 <= self.color_jitter < 1,
                f"--color_jitter must be in [0, 1), got {self.color_jitter}")
        require(0 < self.randaugment_magnitude <= 1, "--randaugment_magnitude must be in "
                f"(0, 1], got {self.randaugment_magnitude}")
        require(self.randaugment or self.randaugment_magnitude == RANDAUGMENT_MAGNITUDE,
                f"--randaugment_magnitude={self.randaugment_magnitude} has no effect without "
                "--randaugment: add --randaugment, or leave the magnitude out")
        require(self.mixup_alpha >= 0, f"--mixup_alpha must be >= 0, got {self.mixup_alpha}")
        require(0 <= self.cutmix_alpha <= 1, "--cutmix_alpha must be in [0, 1] "
                f"(keras.layers.CutMix factor), got {self.cutmix_alpha}")
        require(0 <= self.holdout_fraction < 1,
                f"--holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        synthetic.class_names(self.synthetic_num_classes)  # the range check, one place
        require(self.synthetic_num_examples >= 1, "--synthetic_num_examples must be >= 1, "
                f"got {self.synthetic_num_examples}")
        require(self.synthetic_image_size >= 8, "--synthetic_image_size must be >= 8, "
                f"got {self.synthetic_image_size}")
        require(self.shuffle_buffer >= 1,
                f"--shuffle_buffer must be >= 1, got {self.shuffle_buffer}")

    def to_dict(self) -> dict:
        """JSON-ready dict; ``DataConfig(**cfg.to_dict())`` rebuilds an equal config."""
        d = dataclasses.asdict(self)
        d["image_size"] = list(self.image_size)
        return d


def _pair(value, flag):
    if isinstance(value, int):
        value = (value, value)
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{flag} must be an int or (height, width), got {value!r}") from None
    require(h >= 1 and w >= 1, f"{flag} must be positive, got {value!r}")
    return (h, w)
