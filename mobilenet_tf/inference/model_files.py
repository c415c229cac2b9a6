"""Open the files a model is made of, or say in one line which one is damaged and what to do.

A truncated, empty or foreign model file reaches the parsers of LiteRT, TensorFlow and
FlatBuffers as bytes they do not expect, and they answer with their own exceptions
(``struct.error``, ``IndexError``, "The model is not a valid Flatbuffer buffer", "Read
less bytes than requested") that name no file, or, for a .tflite whose attached labels
were cut off, not at all: the model ran with made-up class names. The commands print a
``ValueError`` as one ``error:`` line, so each function here raises one that names the
file, says what is wrong with it and how to get a good one.

``inference.loading`` opens models through these; ``serving.exporter``'s check of its
own .tflite files does too (through ``loading.TFLiteClassifier``).
"""

from __future__ import annotations

import glob
import os
import re

from mobilenet_tf.data import labels as labels_lib
from mobilenet_tf.failures import first_line

EXPORT_REMEDY = "export one with python -m mobilenet_tf.export"
LABELS_FORM = "one class name per line, line i = class i"
SAVED_MODEL_FILE = "saved_model.pb"
# The models in an export directory (serving.exporter's layout) and its report.
_EXPORTED_MODEL = re.compile(r"^(saved_model|model_\w+\.tflite)$")
EXPORT_REPORT = "export_report.json"


# ----------------------------------------------------------------------------- TFLite
def not_tflite(path: str, why: str) -> ValueError:
    """The one message for every way a .tflite can be unusable (the user's next step is
    the same: a fresh export)."""
    return ValueError(f"{path} is not a readable TFLite model ({why}); {EXPORT_REMEDY}")


def _tflite_file_problem(path: str) -> str | None:
    """Why ``path`` cannot even be handed to the interpreter, or None."""
    if os.path.isdir(path):
        return "it is a directory"
    if not os.path.exists(path):
        return "it does not exist"
    try:
        with open(path, "rb") as f:
            empty = not f.read(1)
    except OSError as e:
        return f"cannot open it: {e.strerror or e}"
    return "it is an empty file" if empty else None


def open_tflite(path: str, num_threads: int | None = None):
    """A LiteRT ``Interpreter`` of ``path`` with its tensors allocated. The interpreter
    verifies the whole flatbuffer before anything reads it, so it is opened before the
    metadata is parsed; ValueError naming the file when it is not a TFLite model."""
    from ai_edge_litert.interpreter import Interpreter

    problem = _tflite_file_problem(path)
    if problem:
        raise not_tflite(path, problem)
    try:
        interpreter = Interpreter(model_path=path, num_threads=num_threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError, OSError) as e:
        raise not_tflite(path, first_line(e)) from None
    return interpreter


def tflite_labels(path: str) -> list[str] | None:
    """The labels in the TFLite metadata of ``path`` (opened with ``open_tflite`` first),
    or None when it has none that this reader understands (a labels.txt beside it is used
    then). Metadata naming a labels file that is not attached means the file was cut
    short (the files are zipped onto its end): ValueError naming it, not made-up names."""
    from mobilenet_tf.inference import tflite_metadata  # MediaPipe's schema: only for .tflite

    try:
        with open(path, "rb") as f:
            model_bytes = f.read()
    except OSError as e:
        raise not_tflite(path, f"cannot read it: {e.strerror or e}") from None
    try:
        return list(tflite_metadata.read_image_classifier_metadata(model_bytes).labels)
    except tflite_metadata.MissingAssociatedFile:
        raise not_tflite(path, "the labels file its metadata names is not attached to it: "
                         "the file was cut short") from None
    except (ValueError, StopIteration, AttributeError, IndexError, TypeError):
        return None  # no metadata, or another tool's: not an image classifier's labels


# ----------------------------------------------------------------------------- SavedModel
def _saved_model_files_problem(path: str) -> str | None:
    """A missing or empty file of the SavedModel at ``path`` (what a copy or a write cut
    short leaves), or None."""
    pb = os.path.join(path, SAVED_MODEL_FILE)
    if not os.path.isfile(pb) or not os.path.getsize(pb):
        return f"{SAVED_MODEL_FILE} is missing or empty"
    index = os.path.join(path, "variables", "variables.index")
    if not os.path.isfile(index):
        return "variables/variables.index is missing"
    shards = glob.glob(os.path.join(path, "variables", "variables.data-*-of-*"))
    total = re.search(r"-of-(\d+)$", shards[0]) if shards else None
    if not total or len(shards) != int(total.group(1)):
        return "variables/variables.data-* files are missing"
    return None


def load_saved_model(path: str):
    """``tf.saved_model.load(path)``; ValueError naming the directory and the missing or
    damaged part when TensorFlow cannot load it."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    try:
        return tf.saved_model.load(path)
    except (ValueError, OSError, IndexError, KeyError, tf.errors.OpError, DecodeError) as e:
        why = _saved_model_files_problem(path) or _saved_model_damage(e)
    raise ValueError(f"SavedModel {path} cannot be loaded ({why}); it was written in part "
                     f"or damaged: {EXPORT_REMEDY}") from None


def _saved_model_damage(err: BaseException) -> str:
    """Which part of a SavedModel whose files are all there ``err`` says is damaged."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    if isinstance(err, DecodeError) or "Cannot parse file" in str(err):
        return f"{SAVED_MODEL_FILE} is cut short or damaged"
    if isinstance(err, (IndexError, tf.errors.DataLossError)) or "sstable" in str(err):
        return f"its variables are cut short or damaged: {first_line(err)}"
    return first_line(err)


def directory_problem(path: str) -> str | None:
    """What to say about a directory given as a model that is neither a run directory nor
    a SavedModel: an export directory, a SavedModel without its graph, a directory
    named like a model file; None for any other directory."""
    members = os.listdir(path)
    exported = sorted(m for m in members if _EXPORTED_MODEL.match(m))
    if exported:
        return (f"--model={path} is an export directory, not a model: pass one of the "
                f"models in it ({', '.join(os.path.join(path, m) for m in exported)})")
    if EXPORT_REPORT in members:
        return (f"--model={path} is an export directory without a model in it (written "
                f"in part?); {EXPORT_REMEDY}")
    if {"variables", "assets", "fingerprint.pb"} & set(members):
        return (f"SavedModel {path} has no {SAVED_MODEL_FILE}: it was written in part or "
                f"copied in part; {EXPORT_REMEDY}")
    if path.rstrip(os.sep).endswith(".tflite"):
        return str(not_tflite(path, "it is a directory"))
    if path.rstrip(os.sep).endswith(".keras"):
        return f"Keras model {path} is a directory, not a .keras file"
    return None


# ----------------------------------------------------------------------------- shapes
def image_classifier_shape(path: str, inputs, outputs) -> tuple[int, int, int]:
    """(height, width, classes) of a model whose ``inputs`` and ``outputs`` are the shapes
    of its input and output tensors: one RGB image batch [n, h, w, 3] in, one row of
    class scores [n, classes] out. A whole model of another kind (a file renamed, a
    model of another task) is a ValueError naming it, not an IndexError deep inside."""
    inputs = [tuple(_dim(d) for d in shape) for shape in inputs]
    outputs = [tuple(_dim(d) for d in shape) for shape in outputs]
    image = inputs[0] if len(inputs) == 1 else ()
    scores = outputs[0] if len(outputs) == 1 else ()
    if (len(image) != 4 or image[3] != 3 or not all(image[1:3])
            or len(scores) != 2 or not scores[1]):
        raise ValueError(
            f"model {path} is not an image classifier of fixed input size: it takes "
            f"{_shapes(inputs)} and gives {_shapes(outputs)}, where one image batch "
            "[n, height, width, 3] in and one [n, classes] out are expected")
    return image[1], image[2], scores[1]


def _dim(d) -> int | None:
    return None if d is None or int(d) < 0 else int(d)


def _shapes(shapes) -> str:
    text = ", ".join("[" + ", ".join("?" if d is None else str(d) for d in s) + "]"
                     for s in shapes)
    return text or "nothing"


# ----------------------------------------------------------------------------- labels
def read_labels_file(path: str) -> list[str]:
    """The class names in the labels file ``path``; ValueError naming it when it is not
    a readable UTF-8 text file (``labels.read_labels`` says when it is missing or empty)."""
    if os.path.isdir(path):
        raise ValueError(f"labels file {path} is a directory; it must be a text file with "
                         f"{LABELS_FORM}")
    try:
        return labels_lib.read_labels(path)
    except UnicodeDecodeError as e:
        raise ValueError(f"labels file {path} is not UTF-8 text ({e.reason} at byte "
                         f"{e.start}); it must hold {LABELS_FORM}") from None
    except OSError as e:
        raise ValueError(f"labels file {path} cannot be read ({e.strerror or e})") from None
