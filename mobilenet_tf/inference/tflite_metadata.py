"""Read the TFLite Model Metadata of an image classifier back from a ``.tflite``.

``mobilenet_tf.serving.tflite_metadata`` writes the metadata (the layout MediaPipe Tasks
``ImageClassifier`` reads); this module reads it, for ``inference.loading`` (class names
of a ``.tflite``) and for the exporter's own check of what it wrote. The names that both
sides must agree on (the metadata entry, the labels files, the display-names locale) are
defined here, and the writer imports them.

Schemas: the ModelMetadata flatbuffer classes come from MediaPipe
(``mediapipe.tasks.metadata.metadata_schema_py_generated``, the maintained copy of the
TFLite metadata schema); the TFLite model schema from TensorFlow
(``tensorflow.lite.python.schema_py_generated``).
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import zipfile

from mediapipe.tasks.metadata import metadata_schema_py_generated as _md
from tensorflow.lite.python import schema_py_generated as _tfl

from mobilenet_tf.data import labels as labels_lib

METADATA_NAME = "TFLITE_METADATA"  # Model.metadata entry that MediaPipe looks up
METADATA_FILE_IDENTIFIER = b"M001"
LABELS_FILE_NAME = labels_lib.LABELS_FILE
DISPLAY_NAMES_LOCALE = "en"
DISPLAY_NAMES_FILE_NAME = f"labels_{DISPLAY_NAMES_LOCALE}.txt"  # MediaPipe's writer's name


class MissingAssociatedFile(ValueError):
    """The metadata names a file that is not in the zip archive appended to the model: a
    model file cut short loses the archive (its directory is at the very end) first."""


@dataclasses.dataclass(frozen=True)
class ImageClassifierInfo:
    """What the metadata says about an image classifier."""

    name: str
    description: str
    version: str
    author: str
    license: str
    mean: tuple[float, ...]  # per channel, in input pixel units [0, 255]
    std: tuple[float, ...]
    labels: tuple[str, ...]
    display_names: tuple[str, ...]  # the labels' display names (the labels if none given)
    min_parser_version: str
    input_color_space: str  # "RGB", ...
    associated_files: tuple[str, ...]  # names in the zip archive appended to the model


def get_metadata_buffer(model_bytes: bytes) -> bytes | None:
    """The raw ``TFLITE_METADATA`` buffer of a model, or None. The flatbuffer classes read
    offsets from the bytes unchecked, so bytes that are not a whole TFLite model fail
    with ``struct.error`` or worse: ValueError then (and up front for the wrong
    identifier)."""
    if len(model_bytes) < 8 or not _tfl.Model.ModelBufferHasIdentifier(model_bytes, 0):
        raise ValueError("not a TFLite model (no TFL3 flatbuffer identifier)")
    try:
        model = _tfl.Model.GetRootAsModel(model_bytes, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name().decode() == METADATA_NAME:
                buf = model.Buffers(entry.Buffer())
                if buf.DataLength():
                    return buf.DataAsNumpy().tobytes()
    except (struct.error, IndexError, AttributeError, TypeError) as e:
        raise ValueError(f"not a whole TFLite model flatbuffer ({type(e).__name__}: "
                         f"{e})") from None
    return None


def associated_files(model_bytes: bytes) -> dict[str, bytes]:
    """The files zipped onto the end of a model."""
    try:
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as zf:
            return {n: zf.read(n) for n in zf.namelist()}
    except zipfile.BadZipFile:
        return {}


def read_image_classifier_metadata(model: str | bytes) -> ImageClassifierInfo:
    """Parses back what ``serving.tflite_metadata.add_image_classifier_metadata`` wrote
    (from a path or bytes)."""
    if isinstance(model, (str, os.PathLike)):
        with open(model, "rb") as f:
            model_bytes = f.read()
    else:
        model_bytes = bytes(model)
    meta = _model_metadata(model_bytes, model)
    if not meta.subgraphMetadata or len(meta.subgraphMetadata) != 1:
        raise ValueError("image classifier metadata must have one subgraph")
    sg = meta.subgraphMetadata[0]
    image, probs = sg.inputTensorMetadata[0], sg.outputTensorMetadata[0]
    norm = next(u.options for u in image.processUnits or []
                if u.optionsType == _md.ProcessUnitOptions.NormalizationOptions)
    color = image.content.contentProperties.colorSpace
    color_name = next((k for k, v in vars(_md.ColorSpaceType).items()
                       if v == color and not k.startswith("_")), str(color))
    files = associated_files(model_bytes)
    label_files = [f for f in probs.associatedFiles or []
                   if f.type == _md.AssociatedFileType.TENSOR_AXIS_LABELS]
    labels = _label_file(label_files[0], files)
    localized = [f for f in label_files[1:]
                 if _decode(f.locale) == DISPLAY_NAMES_LOCALE]
    names = _label_file(localized[0], files) if localized else labels
    return ImageClassifierInfo(
        name=_decode(meta.name), description=_decode(meta.description),
        version=_decode(meta.version), author=_decode(meta.author),
        license=_decode(meta.license), mean=tuple(float(m) for m in norm.mean),
        std=tuple(float(s) for s in norm.std), labels=labels, display_names=names,
        min_parser_version=_decode(meta.minParserVersion), input_color_space=color_name,
        associated_files=tuple(sorted(files)))


def _model_metadata(model_bytes: bytes, model) -> "_md.ModelMetadataT":
    """The parsed ModelMetadata of ``model_bytes``; ValueError naming ``model`` (a path or
    the bytes) when it has none."""
    buf = get_metadata_buffer(model_bytes)
    if buf is None:
        name = os.fspath(model) if isinstance(model, (str, os.PathLike)) else "model"
        raise ValueError(f"{name} has no {METADATA_NAME} metadata")
    if len(buf) < 8 or not _md.ModelMetadata.ModelMetadataBufferHasIdentifier(buf, 0):
        raise ValueError("TFLITE_METADATA buffer lacks the M001 identifier")
    try:
        return _md.ModelMetadataT.InitFromObj(
            _md.ModelMetadata.GetRootAsModelMetadata(buf, 0))
    except (struct.error, IndexError, AttributeError, TypeError) as e:
        raise ValueError(f"TFLITE_METADATA buffer is damaged ({type(e).__name__}: "
                         f"{e})") from None


def _label_file(entry, files: dict[str, bytes]) -> tuple[str, ...]:
    name = _decode(entry.name)
    if name not in files:
        raise MissingAssociatedFile(f"labels file {name} named in the metadata is not "
                                    f"attached to the model (attached: {sorted(files)})")
    return tuple(labels_lib.parse_labels(files[name].decode("utf-8")))


def _decode(value) -> str:
    if value is None:
        return ""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
