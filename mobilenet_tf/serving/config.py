"""``ExportConfig``: every option of an export, with its flag help; no TensorFlow here, so
``python -m mobilenet_tf.export`` checks its flags before TensorFlow is imported.

The field names are the flag names; each field's metadata holds its help text and its
--help topic (``group``), as in ``training.config.TrainConfig``.
"""

from __future__ import annotations

import dataclasses
import functools

from mobilenet_tf.model.architecture import MIN_RESOLUTION, RESOLUTION_RULE
from mobilenet_tf.rundir import record as run_record
from mobilenet_tf.options import option as _field, require, require_valid, require_finite

FORMATS = ("saved_model", "tflite")
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")  # "none" = float32
INT8_IO_TYPES = ("uint8", "float32")


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    workdir: str = _field(None, "Run directory written by mobilenet_tf.train.", "model")
    export_dir: str | None = _field(None, "Output directory (default: WORKDIR/export).",
                                    "output")
    checkpoint: str = _field(run_record.DEFAULT_MODEL, "Which Keras model of the run: "
                             "final (the last, EMA, weights) or best (best validation "
                             "top-1).", "model")
    resolution: int | None = _field(None, "Input size of the exported models, square "
                                    f"(>= {MIN_RESOLUTION}; default: the run's). The "
                                    "network is fully convolutional: a run trained at "
                                    "128 can be shipped at 160 (FixRes, "
                                    "docs/results.md), at 1.56x the mult-adds.", "model")
    formats: tuple[str, ...] = _field(FORMATS, "What to write, comma-separated, at least "
                                      f"one of: {','.join(FORMATS)}.", "export")
    quantize: tuple[str, ...] = _field(QUANTIZATIONS, "TFLite variants, comma-separated, at "
                                       f"least one of: {','.join(QUANTIZATIONS)} (none: "
                                       "float32).", "export")
    int8_io: str = _field("uint8", "Input/output type of the int8 model: uint8 (what "
                          "MediaPipe feeds) or float32.", "export")
    top_k: int = _field(5, "Classes returned by the SavedModel signatures (>= 1).", "export")
    dataset: str | None = _field(None, "Dataset of the calibration and verification images "
                                 "(default: the run's).", "data")
    data_dir: str | None = _field(None, "tfds data_dir (default: the run's).", "data")
    calibration_split: str | None = _field(None, "Split of the int8 calibration images "
                                           "(default: the run's train split).", "data")
    representative_images: int = _field(200, "int8 calibration images (>= 1), eval "
                                        "preprocessing.", "data")
    verification_split: str | None = _field(None, "Held-out split every export is compared "
                                            "with Keras on (default: the run's eval split, "
                                            "else validation).", "verification")
    verification_images: int = _field(200, "Held-out images for that comparison (>= 1).",
                                      "verification")
    latency_runs: int = _field(30, "Timed TFLite invocations per model and thread count "
                               "(0: no latency figures).", "verification")
    min_float32_agreement: float = _field(0.99, "Fail when float32 TFLite top-1 agreement "
                                          "with Keras is below this, in [0, 1].",
                                          "verification")
    max_float32_prob_diff: float = _field(1e-3, "Fail when float32 TFLite probabilities "
                                          "differ from Keras' by more than this (>= 0).",
                                          "verification")
    model_name: str = _field("", "TFLite metadata name (default: from the model).",
                             "metadata")
    model_version: str = _field("", "TFLite metadata version (default: 'mobilenet_tf "
                                "<version> <run name>').", "metadata")
    author: str = _field("", "TFLite metadata author.", "metadata")
    license: str = _field("", "TFLite metadata license.", "metadata")

    def validate(self):
        """Raises ValueError naming the first invalid option (as its flag)."""
        need = functools.partial(require_valid, self)
        require_finite(self)
        require(self.workdir, "--workdir is required: the run directory to export")
        for name, values, valid in (("formats", self.formats, FORMATS),
                                    ("quantize", self.quantize, QUANTIZATIONS)):
            require(values and all(v in valid for v in values),
                    f"--{name}={','.join(values)} is not valid: comma-separated, at least "
                    f"one of {','.join(valid)}")
        need(self.int8_io in INT8_IO_TYPES, "int8_io", f"one of {', '.join(INT8_IO_TYPES)}")
        need(self.checkpoint in run_record.MODELS, "checkpoint",
             f"one of {', '.join(sorted(run_record.MODELS))}")
        need(self.representative_images >= 1 or "int8" not in self.quantize
             or "tflite" not in self.formats, "representative_images",
             "int8 quantization needs >= 1")
        need(self.verification_images >= 1, "verification_images", "must be >= 1")
        need(self.top_k >= 1, "top_k", "must be >= 1")
        need(self.latency_runs >= 0, "latency_runs", "must be >= 0 (0: no latency figures)")
        need(0 <= self.min_float32_agreement <= 1, "min_float32_agreement",
             "must be in [0, 1]")
        need(self.max_float32_prob_diff >= 0, "max_float32_prob_diff", "must be >= 0")
        need(self.resolution is None or self.resolution >= MIN_RESOLUTION, "resolution",
             RESOLUTION_RULE)
