"""TFLite Model Metadata for image classifiers: write it into a ``.tflite``.

MediaPipe Tasks ``ImageClassifier`` (and the TFLite Task Library before it) read the
metadata to know how to feed the model and how to name its outputs. This module writes
the same layout that MediaPipe's ``image_classifier.MetadataWriter`` and TFLite Support's
``MetadataPopulator`` produce, without their native extension modules (which cannot be
imported next to TensorFlow here):

* a ``ModelMetadata`` flatbuffer (file identifier ``M001``) with the model name,
  description, version, author, license and ``min_parser_version``; one subgraph with
  - the input tensor: ``ImageProperties`` (RGB), a ``NormalizationOptions`` process unit
    (mean, std per channel) and the value range as ``Stats``;
  - the output tensor: ``FeatureProperties``, ``Stats`` in [0, 1] (float) or [0, 255]
    (uint8) and the labels file as an associated file of type ``TENSOR_AXIS_LABELS``;
    when the labels are not what people read (ImageNet synset IDs), a second one,
    ``labels_en.txt`` with locale ``en``, holds their display names
    (``data.labels.display_names``): MediaPipe returns the labels as ``category_name``
    and these as ``display_name`` (its ``display_names_locale`` defaults to ``en``);
* that buffer appended to ``Model.buffers`` and referenced from ``Model.metadata`` under
  the name ``TFLITE_METADATA`` (replacing an earlier one; the converter's own entries such
  as ``min_runtime_version`` and ``CONVERSION_METADATA`` are kept);
* the associated files appended after the flatbuffer as a zip archive (a ``.tflite`` with
  metadata is also a valid zip file).

Reading it back, and the names both sides share, is ``mobilenet_tf.inference.tflite_metadata``.
Schemas: the ModelMetadata flatbuffer classes come from MediaPipe
(``mediapipe.tasks.metadata.metadata_schema_py_generated``, the maintained copy of the
TFLite metadata schema); the TFLite model schema from TensorFlow
(``tensorflow.lite.python.schema_py_generated``).
"""

from __future__ import annotations

import io
import os
import zipfile

import flatbuffers
from mediapipe.tasks.metadata import metadata_schema_py_generated as _md
from tensorflow.lite.python import schema_py_generated as _tfl

from mobilenet_tf.data import labels as labels_lib
from mobilenet_tf.inference.tflite_metadata import (
    DISPLAY_NAMES_FILE_NAME, DISPLAY_NAMES_LOCALE, LABELS_FILE_NAME, METADATA_FILE_IDENTIFIER,
    METADATA_NAME)

TFLITE_FILE_IDENTIFIER = b"TFL3"

# Schema members newer than 1.0.0 that this writer may emit, with the parser version
# that introduced them (mediapipe/tasks/cc/metadata/metadata_version.cc).
_BASE_PARSER_VERSION = (1, 0, 0)
_VERSION_INPUT_PROCESS_UNITS = (1, 1, 0)
_VERSION_OUTPUT_PROCESS_UNITS = (1, 1, 0)
_VERSION_INPUT_TENSOR_GROUPS = (1, 2, 0)
_VERSION_OUTPUT_TENSOR_GROUPS = (1, 2, 0)
_VERSION_ASSOCIATED_FILE_VOCABULARY = (1, 0, 1)
_VERSION_ASSOCIATED_FILE_SCANN = (1, 4, 0)
_VERSION_ASSOCIATED_FILE_VERSION = (1, 4, 1)
_VERSION_CUSTOM_METADATA = (1, 5, 0)
_VERSION_AUDIO_PROPERTIES = (1, 3, 0)
_VERSION_BERT_TOKENIZER = (1, 1, 0)
_VERSION_SENTENCEPIECE_TOKENIZER = (1, 1, 0)
_VERSION_REGEX_TOKENIZER = (1, 2, 1)


def _tensor_type_name(type_id: int) -> str:
    for name, value in vars(_tfl.TensorType).items():
        if value == type_id and not name.startswith("_"):
            return name
    return str(type_id)


def _io_tensor_types(model: "_tfl.ModelT") -> tuple[int, int]:
    if not model.subgraphs or len(model.subgraphs) != 1:
        raise ValueError("an image classifier model must have exactly one subgraph, "
                         f"found {len(model.subgraphs or [])}")
    sg = model.subgraphs[0]
    if len(sg.inputs) != 1 or len(sg.outputs) != 1:
        raise ValueError("an image classifier model must have one input and one output "
                         f"tensor, found {len(sg.inputs)} inputs and {len(sg.outputs)} outputs")
    return sg.tensors[sg.inputs[0]].type, sg.tensors[sg.outputs[0]].type


def build_image_classifier_metadata(*, name: str, description: str, version: str,
                                    labels, mean, std, input_type: int, output_type: int,
                                    author: str = "", license: str = "",
                                    with_display_names: bool = False) -> bytes:
    """The ModelMetadata flatbuffer (with ``min_parser_version`` filled in);
    ``with_display_names``: it names ``DISPLAY_NAMES_FILE_NAME`` too."""
    mean, std = [float(m) for m in mean], [float(s) for s in std]
    if len(mean) != len(std) or len(mean) not in (1, 3):
        raise ValueError(f"mean {mean} and std {std} must both have 1 or 3 values")
    if any(s <= 0 for s in std):
        raise ValueError(f"std {std} must be positive")
    if not labels:
        raise ValueError("labels must not be empty")

    image = _image_tensor_metadata(mean, std, input_type)
    probs = _probability_tensor_metadata(output_type, with_display_names)

    subgraph = _md.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [image]
    subgraph.outputTensorMetadata = [probs]

    meta = _md.ModelMetadataT()
    meta.name, meta.description, meta.version = name, description, version
    meta.author, meta.license = author or None, license or None
    meta.subgraphMetadata = [subgraph]
    meta.minParserVersion = min_parser_version(meta)
    builder = flatbuffers.Builder(1024)
    builder.Finish(meta.Pack(builder), METADATA_FILE_IDENTIFIER)
    return bytes(builder.Output())


def _image_tensor_metadata(mean, std, input_type: int) -> "_md.TensorMetadataT":
    """The input tensor's entry: an RGB image and its normalization."""
    image = _md.TensorMetadataT()
    image.name = "image"
    image.description = (
        "Input image to be classified: RGB, resized to the input tensor's height and "
        "width, normalized as (pixel - mean) / std.")
    image.content = _md.ContentT()
    image.content.contentPropertiesType = _md.ContentProperties.ImageProperties
    image.content.contentProperties = _md.ImagePropertiesT()
    image.content.contentProperties.colorSpace = _md.ColorSpaceType.RGB
    norm = _md.ProcessUnitT()
    norm.optionsType = _md.ProcessUnitOptions.NormalizationOptions
    norm.options = _md.NormalizationOptionsT()
    norm.options.mean, norm.options.std = mean, std
    image.processUnits = [norm]
    image.stats = _md.StatsT()
    if input_type == _tfl.TensorType.UINT8:
        image.stats.min, image.stats.max = [0.0], [255.0]
    elif input_type == _tfl.TensorType.FLOAT32:
        image.stats.min = [(0.0 - m) / s for m, s in zip(mean, std)]
        image.stats.max = [(255.0 - m) / s for m, s in zip(mean, std)]
    else:
        raise ValueError(f"input tensor type {_tensor_type_name(input_type)} is not "
                         "supported by MediaPipe image classifiers (FLOAT32 or UINT8)")
    return image


def _probability_tensor_metadata(output_type: int,
                                 with_display_names: bool) -> "_md.TensorMetadataT":
    """The output tensor's entry: class probabilities and the labels file(s)."""
    probs = _md.TensorMetadataT()
    probs.name = "probability"
    probs.description = "Probabilities of the classes listed in labels.txt."
    probs.content = _md.ContentT()
    probs.content.contentPropertiesType = _md.ContentProperties.FeatureProperties
    probs.content.contentProperties = _md.FeaturePropertiesT()
    probs.stats = _md.StatsT()
    if output_type == _tfl.TensorType.UINT8:
        probs.stats.min, probs.stats.max = [0.0], [255.0]
    elif output_type == _tfl.TensorType.FLOAT32:
        probs.stats.min, probs.stats.max = [0.0], [1.0]
    else:
        raise ValueError(f"output tensor type {_tensor_type_name(output_type)} is not "
                         "supported by MediaPipe image classifiers (FLOAT32 or UINT8)")
    label_file = _md.AssociatedFileT()
    label_file.name = LABELS_FILE_NAME
    label_file.description = "Class names, one per line; line i names output index i."
    label_file.type = _md.AssociatedFileType.TENSOR_AXIS_LABELS
    probs.associatedFiles = [label_file]  # first: the file MediaPipe takes the labels from
    if with_display_names:
        names_file = _md.AssociatedFileT()
        names_file.name = DISPLAY_NAMES_FILE_NAME
        names_file.description = ("Display names of the classes, one per line; line i "
                                  "names output index i.")
        names_file.type = _md.AssociatedFileType.TENSOR_AXIS_LABELS
        names_file.locale = DISPLAY_NAMES_LOCALE
        probs.associatedFiles.append(names_file)
    return probs


def min_parser_version(meta: "_md.ModelMetadataT") -> str:
    """The oldest metadata parser that understands every field set in ``meta``; a
    Python port of MediaPipe's ``GetMinimumMetadataParserVersion``."""
    version = _BASE_PARSER_VERSION

    def bump(v):
        nonlocal version
        version = max(version, v)

    def files(items):
        for f in items or []:
            if f.type == _md.AssociatedFileType.VOCABULARY:
                bump(_VERSION_ASSOCIATED_FILE_VOCABULARY)
            if f.type == _md.AssociatedFileType.SCANN_INDEX_FILE:
                bump(_VERSION_ASSOCIATED_FILE_SCANN)
            if f.version is not None:
                bump(_VERSION_ASSOCIATED_FILE_VERSION)

    def units(items):
        for u in items or []:
            if u.optionsType == _md.ProcessUnitOptions.BertTokenizerOptions:
                bump(_VERSION_BERT_TOKENIZER)
            if u.optionsType == _md.ProcessUnitOptions.SentencePieceTokenizerOptions:
                bump(_VERSION_SENTENCEPIECE_TOKENIZER)
            if u.optionsType == _md.ProcessUnitOptions.RegexTokenizerOptions:
                bump(_VERSION_REGEX_TOKENIZER)

    def tensors(items):
        for t in items or []:
            files(t.associatedFiles)
            units(t.processUnits)
            if (t.content is not None and t.content.contentPropertiesType
                    == _md.ContentProperties.AudioProperties):
                bump(_VERSION_AUDIO_PROPERTIES)

    for sg in meta.subgraphMetadata or []:
        tensors(sg.inputTensorMetadata)
        tensors(sg.outputTensorMetadata)
        files(sg.associatedFiles)
        if sg.inputProcessUnits is not None:
            bump(_VERSION_INPUT_PROCESS_UNITS)
            units(sg.inputProcessUnits)
        if sg.outputProcessUnits is not None:
            bump(_VERSION_OUTPUT_PROCESS_UNITS)
            units(sg.outputProcessUnits)
        if sg.inputTensorGroups is not None:
            bump(_VERSION_INPUT_TENSOR_GROUPS)
        if sg.outputTensorGroups is not None:
            bump(_VERSION_OUTPUT_TENSOR_GROUPS)
        if sg.customMetadata is not None:
            bump(_VERSION_CUSTOM_METADATA)
    files(meta.associatedFiles)
    return ".".join(str(v) for v in version)


def _flatbuffer_part(model_bytes: bytes) -> bytes:
    """The model without the zip archive of associated files appended to it (if any).

    ``zipfile`` reports each member's ``header_offset`` relative to the start of the
    whole byte string (it accounts for prepended data), so the archive starts at the
    smallest one."""
    try:
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as zf:
            offsets = [info.header_offset for info in zf.infolist()]
    except zipfile.BadZipFile:
        return model_bytes
    return model_bytes[:min(offsets)] if offsets else model_bytes


def populate(model_bytes: bytes, metadata: bytes, associated_files: dict[str, bytes]) -> bytes:
    """Puts ``metadata`` into the model under ``TFLITE_METADATA`` and appends the
    associated files as a zip archive, as TFLite Support's MetadataPopulator does.
    Existing TFLITE_METADATA and associated files are replaced."""
    if not _md.ModelMetadata.ModelMetadataBufferHasIdentifier(metadata, 0):
        raise ValueError("metadata buffer lacks the M001 identifier of a ModelMetadata")
    flat = _flatbuffer_part(model_bytes)
    if not _tfl.Model.ModelBufferHasIdentifier(flat, 0):
        raise ValueError("model bytes are not a TFLite flatbuffer (identifier TFL3)")
    model = _tfl.ModelT.InitFromObj(_tfl.Model.GetRootAsModel(flat, 0))
    buffer = _tfl.BufferT()
    buffer.data = list(metadata)
    model.buffers = model.buffers or []
    model.metadata = model.metadata or []
    for entry in model.metadata:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == METADATA_NAME:
            model.buffers[entry.buffer] = buffer
            break
    else:
        model.buffers.append(buffer)
        entry = _tfl.MetadataT()
        entry.name = METADATA_NAME
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(len(flat) + len(metadata) + 1024)
    builder.Finish(model.Pack(builder), TFLITE_FILE_IDENTIFIER)
    out = io.BytesIO()
    out.write(bytes(builder.Output()))
    if associated_files:
        with zipfile.ZipFile(out, "a") as zf:
            for fname, data in associated_files.items():
                zf.writestr(os.path.basename(fname), data)
    return out.getvalue()


def add_image_classifier_metadata(model_bytes: bytes, *, labels, mean, std, name: str,
                                  description: str, version: str, author: str = "",
                                  license: str = "") -> bytes:
    """``model_bytes`` (a one-input, one-output image classifier) with MediaPipe-ready
    metadata and ``labels.txt`` attached (and ``labels_en.txt`` with the display names
    when they differ from the labels)."""
    model = _tfl.Model.GetRootAsModel(_flatbuffer_part(model_bytes), 0)
    input_type, output_type = _io_tensor_types(_tfl.ModelT.InitFromObj(model))
    labels = [str(l) for l in labels]
    out_shape = _output_shape(model)
    if out_shape and out_shape[-1] != len(labels):
        raise ValueError(f"the model has {out_shape[-1]} outputs but {len(labels)} labels "
                         "were given")
    names = labels_lib.display_names(labels)
    metadata = build_image_classifier_metadata(
        name=name, description=description, version=version, labels=labels, mean=mean,
        std=std, input_type=input_type, output_type=output_type, author=author,
        license=license, with_display_names=names != labels)
    files = {LABELS_FILE_NAME: labels_lib.format_labels(labels).encode("utf-8")}
    if names != labels:
        files[DISPLAY_NAMES_FILE_NAME] = labels_lib.format_labels(names).encode("utf-8")
    return populate(model_bytes, metadata, files)


def _output_shape(model: "_tfl.Model") -> list[int]:
    sg = model.Subgraphs(0)
    tensor = sg.Tensors(sg.Outputs(0))
    return [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
