"""The TFLite side of an export: the SavedModel the converter reads, the conversion for
each quantization, and the metadata every ``.tflite`` carries.

The int8 conversion pins the calibrated input range so that a uint8 input tensor holds
plain pixel values, which is what MediaPipe feeds a uint8 model
(``inference.loading.takes_plain_pixels`` recognizes such an input).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

import mobilenet_tf
from mobilenet_tf.data import preprocessing
from mobilenet_tf.serving import tflite_metadata
from mobilenet_tf.serving.config import QUANTIZATIONS, ExportConfig

TFLITE_NAMES = {"none": "model_float32.tflite", "float16": "model_float16.tflite",
                "dynamic": "model_dynamic.tflite", "int8": "model_int8.tflite"}
QUANT_LABELS = {"none": "float32", "float16": "float16", "dynamic": "dynamic", "int8": "int8"}
_PRECISION_TEXT = {
    "float32": "float32 weights and activations",
    "float16": "float16 weights, float32 activations",
    "dynamic": "int8 weights, float32 activations (dynamic range quantization)",
    "int8": "int8 weights (per channel) and activations (full integer quantization)",
}


def write_tflite_source(model, image_size, path) -> None:
    """What the TFLite converter reads: a SavedModel with one normalized image
    [1, h, w, 3] in and the probabilities out. Written with Keras' own exporter, which
    lets the converter freeze the Keras 3 variables into constants (a plain
    ``tf.Module`` around the model leaves them as uninitialized resource variables)."""
    h, w = image_size
    model.export(path, format="tf_saved_model", verbose=False,
                 input_signature=[tf.TensorSpec([1, h, w, 3], tf.float32, name="image")])


def convert_tflite(source_dir: str, quantization: str, calibration=None,
                   int8_io: str = "uint8") -> bytes:
    """TFLite flatbuffer (no metadata) from the converter SavedModel ``source_dir``.
    ``calibration``: normalized float32 images [n, h, w, 3] for int8."""
    converter = tf.lite.TFLiteConverter.from_saved_model(source_dir)
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
        _full_integer(converter, calibration, int8_io)
    elif quantization != "none":
        raise ValueError(f"quantize={quantization!r}; valid values: {QUANTIZATIONS}")
    return converter.convert()


def _full_integer(converter, calibration, int8_io: str) -> None:
    """Sets ``converter`` up for full integer quantization calibrated on ``calibration``."""
    if calibration is None or not len(calibration):
        raise ValueError("int8 quantization needs calibration images")
    calibration = np.array(calibration, np.float32, copy=True)
    # Pin the calibrated input range to the full normalized range [-1, 1] (the
    # images may not reach it), so that a uint8 input tensor holds plain pixel
    # values: q = x * STD + MEAN, which is what MediaPipe feeds a uint8 model.
    lo = (0.0 - preprocessing.MEAN) / preprocessing.STD
    hi = (255.0 - preprocessing.MEAN) / preprocessing.STD
    calibration[0, 0, 0, :] = lo
    calibration[0, 0, -1, :] = hi

    def representative_dataset():
        for image in calibration:
            yield [image[None]]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    io_type = tf.uint8 if int8_io == "uint8" else tf.float32
    converter.inference_input_type = io_type
    converter.inference_output_type = io_type


def convert_with_metadata(config: ExportConfig, source_dir: str, quantization: str,
                          model, class_names, image_size, calibration=None) -> bytes:
    """The ``.tflite`` of one quantization, with MediaPipe-ready metadata (name, version,
    description, normalization, labels) taken from ``config`` and the model."""
    flat = convert_tflite(source_dir, quantization, calibration, config.int8_io)
    label = QUANT_LABELS[quantization]
    name = config.model_name or f"MobileNet v1 {model.name}"
    version = config.model_version or (
        f"mobilenet_tf {mobilenet_tf.__version__} "
        f"{os.path.basename(os.path.abspath(config.workdir))}")
    return tflite_metadata.add_image_classifier_metadata(
        flat, labels=class_names, mean=[preprocessing.MEAN] * 3,
        std=[preprocessing.STD] * 3, name=f"{name} {label}",
        description=_description(label, len(class_names), image_size, config.int8_io),
        version=version, author=config.author, license=config.license)


def _description(label, num_classes, image_size, int8_io) -> str:
    io = (f"{int8_io} input/output" if label == "int8" else "float32 input/output")
    return (f"MobileNet v1 image classifier over {num_classes} classes "
            f"(labels.txt), {_PRECISION_TEXT[label]}, {io}, input "
            f"{image_size[0]}x{image_size[1]} "
            f"RGB normalized as (pixel - {preprocessing.MEAN}) / {preprocessing.STD}. "
            "Exported by mobilenet_tf.")
