"""DataConfig: every knob of the input pipeline, in one dataclass.

Field names double as the CLI flag names (``--dataset``, ``--data_dir``, ...), so every
validation error names the flag at fault. ``dataclasses.asdict(cfg)`` is JSON-ready and
``DataConfig(**d)`` rebuilds it (tuples may come back from JSON as lists).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from mobilenet_tf.data import synthetic
from mobilenet_tf.data.specs import parse_dataset_spec

EVAL_CROP_FRACTION = 0.875  # the evaluation center crop (Inception/slim), in one place

BAD_IMAGE_POLICIES = ("skip", "error")
# Decoding bound (image bombs): larger images are decoded at reduced scale (baseline JPEG)
# or refused before decoding; 50 megapixels decode to 150 MB of uint8 RGB.
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000


@dataclasses.dataclass
class DataConfig:
    # Which data: "synthetic" | "tfds:NAME[/CONFIG]" | "folder:PATH" | "tfrecord:GLOB".
    dataset: str = "synthetic"
    data_dir: Optional[str] = None  # tfds data_dir
    image_size: tuple = (224, 224)  # (height, width) fed to the network
    # Train-time augmentation.
    min_area: float = 0.08  # random-resized crop: fraction of the image area
    max_area: float = 1.0
    min_aspect: float = 3 / 4  # random-resized crop: width / height
    max_aspect: float = 4 / 3
    flip: bool = True
    color_jitter: float = 0.0  # strength s: brightness/contrast/saturation x U(1-s, 1+s)
    randaugment: bool = False  # keras.layers.RandAugment (2 ops, factor 0.5)
    mixup_alpha: float = 0.0  # keras.layers.MixUp(alpha); 0 = off
    cutmix_alpha: float = 0.0  # keras.layers.CutMix(factor); 0 = off, at most 1
    # Eval.
    crop_fraction: float = EVAL_CROP_FRACTION  # center crop (0.875)
    # Robustness.
    bad_images: str = "skip"  # "skip" | "error"
    # Images of more pixels (width x height, read from the header) are decoded at 1/2, 1/4
    # or 1/8 scale when they are baseline JPEGs, else handled as bad images (refused
    # before decoding): memory per decode stays near 3 bytes x this.
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    # tfrecord: subtract from image/class/label (1 for files with a background class 0).
    label_offset: int = 0
    # The procedural "synthetic" task.
    synthetic_num_classes: int = 10
    synthetic_num_examples: int = 1000  # per split
    synthetic_image_size: int = 64
    # Shuffling (training only): records buffered after reading (tfrecord/tfds); folder
    # sources shuffle the whole file list every epoch.
    shuffle_buffer: int = 4096
    seed: int = 0

    def __post_init__(self):
        self.image_size = _pair(self.image_size, "--image_size")
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ValueError("--dataset must be one of 'synthetic', 'tfds:NAME[/CONFIG]', "
                             f"'folder:PATH', 'tfrecord:GLOB'; got {self.dataset!r}")
        # Malformed specs fail here, before anything else happens.
        parse_dataset_spec(self.dataset)
        if self.bad_images not in BAD_IMAGE_POLICIES:
            raise ValueError(f"--bad_images must be one of {BAD_IMAGE_POLICIES}, "
                             f"got {self.bad_images!r}")
        if self.max_image_pixels < 1:
            raise ValueError(f"--max_image_pixels must be >= 1 (width x height above which "
                             f"images are decoded at reduced scale or refused), got "
                             f"{self.max_image_pixels}")
        if not 0 < self.min_area <= self.max_area <= 1:
            raise ValueError("--min_area/--max_area must satisfy 0 < min_area <= max_area <= 1,"
                             f" got {self.min_area}, {self.max_area}")
        if not 0 < self.min_aspect <= self.max_aspect:
            raise ValueError("--min_aspect/--max_aspect must satisfy 0 < min_aspect <= "
                             f"max_aspect, got {self.min_aspect}, {self.max_aspect}")
        if not 0 < self.crop_fraction <= 1:
            raise ValueError(f"--crop_fraction must be in (0, 1], got {self.crop_fraction}")
        if not 0 <= self.color_jitter < 1:
            raise ValueError(f"--color_jitter must be in [0, 1), got {self.color_jitter}")
        if self.mixup_alpha < 0:
            raise ValueError(f"--mixup_alpha must be >= 0, got {self.mixup_alpha}")
        if not 0 <= self.cutmix_alpha <= 1:
            raise ValueError(f"--cutmix_alpha must be in [0, 1] (keras.layers.CutMix factor), "
                             f"got {self.cutmix_alpha}")
        synthetic.class_names(self.synthetic_num_classes)  # the range check, one place
        if self.synthetic_num_examples < 1:
            raise ValueError("--synthetic_num_examples must be >= 1, "
                             f"got {self.synthetic_num_examples}")
        if self.synthetic_image_size < 8:
            raise ValueError("--synthetic_image_size must be >= 8, "
                             f"got {self.synthetic_image_size}")
        if self.shuffle_buffer < 1:
            raise ValueError(f"--shuffle_buffer must be >= 1, got {self.shuffle_buffer}")

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
    if h < 1 or w < 1:
        raise ValueError(f"{flag} must be positive, got {value!r}")
    return (h, w)
