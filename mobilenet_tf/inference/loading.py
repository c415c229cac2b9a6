"""Open any trained or exported model behind one interface: images in, probabilities out.

``load_classifier(path)`` accepts
* a run directory (``best.keras``, or ``final.keras`` with ``checkpoint="final"``, plus
  ``labels.txt`` and its record ``config.json``, read by ``mobilenet_tf.rundir.record``),
* a ``.keras`` file (class names from a ``labels.txt`` beside it),
* a SavedModel directory written by ``mobilenet_tf.serving.exporter`` (signature
  ``classify_images``; preprocessing is inside its graph),
* a ``.tflite`` file (class names from its TFLite metadata, else a ``labels.txt`` beside it),
and returns a ``Classifier`` whose ``predict_proba(images)`` takes decoded uint8 RGB images
of any size and applies the eval preprocessing of ``mobilenet_tf.data.preprocessing``
(center crop + resize + normalize) where the model does not do it itself. A missing,
truncated or damaged model or labels file is a ValueError naming it
(``inference.model_files``).
"""

from __future__ import annotations

import abc
import dataclasses
import os
import zipfile
from typing import Sequence

import numpy as np
import tensorflow as tf

from mobilenet_tf.rundir import record as run_record
from mobilenet_tf.inference import model_files
from mobilenet_tf.data import labels as labels_lib
from mobilenet_tf.data import preprocessing
from mobilenet_tf.data.config import EVAL_CROP_FRACTION

CHECKPOINTS = run_record.MODELS
SAVED_MODEL_SIGNATURE = "classify_images"
FORMATS = ("keras", "saved_model", "tflite")


@dataclasses.dataclass
class Classifier(abc.ABC):
    """A loaded model: ``predict_proba`` maps uint8 HxWx3 RGB images to class
    probabilities [n, num_classes]."""

    path: str
    format: str  # one of FORMATS
    class_names: list[str]
    image_size: tuple[int, int]  # (height, width) of the network input
    crop_fraction: float

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """One uint8 HxWx3 image -> normalized float32 network input [h, w, 3]."""
        return preprocessing.eval_preprocess(
            tf.convert_to_tensor(image), self.image_size, self.crop_fraction).numpy()

    @abc.abstractmethod
    def predict_proba(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """uint8 HxWx3 images (sizes may differ) -> float32 probabilities [n, C]."""

    def predict_normalized(self, batch: np.ndarray) -> np.ndarray:
        """Already preprocessed float32 inputs [n, h, w, 3] -> probabilities [n, C].
        Not available for SavedModels (their graph starts from uint8 pixels)."""
        raise NotImplementedError(f"{self.format} models take uint8 images only")


class KerasClassifier(Classifier):
    def __init__(self, path, model, class_names, crop_fraction, labels_source="its labels"):
        height, width, n_out = keras_shape(path, model)
        super().__init__(path=path, format="keras", class_names=class_names,
                         image_size=(height, width), crop_fraction=crop_fraction)
        self.model = model
        check_num_classes(path, n_out, class_names, labels_source)

    def predict_normalized(self, batch):
        out = []
        for start in range(0, len(batch), 64):
            out.append(np.asarray(self.model(batch[start:start + 64], training=False)))
        return np.concatenate(out, 0) if out else np.zeros((0, self.num_classes), np.float32)

    def predict_proba(self, images):
        if not len(images):
            return np.zeros((0, self.num_classes), np.float32)
        return self.predict_normalized(np.stack([self.preprocess(im) for im in images]))


class SavedModelClassifier(Classifier):
    def __init__(self, path, loaded, class_names, image_size, crop_fraction):
        super().__init__(path=path, format="saved_model", class_names=class_names,
                         image_size=image_size, crop_fraction=crop_fraction)
        self._loaded = loaded  # keeps the variables alive
        self._fn = loaded.signatures[SAVED_MODEL_SIGNATURE]

    def predict_proba(self, images):
        out = [self._fn(images=tf.constant(np.asarray(im, np.uint8)[None]))["probabilities"]
               .numpy() for im in images]
        return np.concatenate(out, 0) if out else np.zeros((0, self.num_classes), np.float32)


class TFLiteClassifier(Classifier):
    def __init__(self, path, class_names, crop_fraction, num_threads=None, *,
                 interpreter=None, labels_source="its labels"):
        # ``interpreter``: one ``model_files.open_tflite`` already opened for this file
        self.interpreter = interpreter or model_files.open_tflite(path, num_threads)
        height, width, n_out = tflite_shape(path, self.interpreter)
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        super().__init__(path=path, format="tflite", class_names=class_names,
                         image_size=(height, width), crop_fraction=crop_fraction)
        check_num_classes(path, n_out, class_names, labels_source)

    @property
    def input_details(self) -> dict:
        return self._input

    @property
    def output_details(self) -> dict:
        return self._output

    def quantize_input(self, image: np.ndarray) -> np.ndarray:
        """Normalized float32 [h, w, 3] -> the input tensor's dtype (quantized with the
        tensor's own scale / zero point for integer inputs).

        A uint8 input whose quantization maps pixels to the normalized range (scale
        1/STD, zero point within half a level of MEAN: what the exporter writes) gets
        the plain rounded pixel values, as MediaPipe and the Android app feed it.
        Quantizing with the integer zero point instead (127 for MEAN 127.5) would
        shift half the pixels by one level and verify a model other than the shipped one.
        """
        dtype = self._input["dtype"]
        if dtype == np.float32:
            return image.astype(np.float32)
        scale, zero_point = self._input["quantization"]
        info = np.iinfo(dtype)
        if dtype == np.uint8 and takes_plain_pixels(scale, zero_point):
            q = np.round(image * preprocessing.STD + preprocessing.MEAN)
        else:
            q = np.round(image / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(dtype)

    def invoke(self, tensor: np.ndarray) -> np.ndarray:
        """One input tensor [h, w, 3] in the input dtype -> output row (dequantized)."""
        self.interpreter.set_tensor(self._input["index"], tensor[None])
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self._output["index"])[0]
        if out.dtype != np.float32:
            scale, zero_point = self._output["quantization"]
            out = (out.astype(np.float32) - zero_point) * scale
        return out

    def predict_normalized(self, batch):
        rows = [self.invoke(self.quantize_input(x)) for x in batch]
        return np.stack(rows) if rows else np.zeros((0, self.num_classes), np.float32)

    def predict_proba(self, images):
        return self.predict_normalized(
            np.stack([self.preprocess(im) for im in images]) if len(images) else [])


def takes_plain_pixels(scale: float, zero_point: int) -> bool:
    """Whether a uint8 input quantized with (scale, zero_point) holds plain pixels: scale
    1/STD and a zero point within half a level of MEAN, what the exporter writes and
    MediaPipe feeds (the export report checks it too)."""
    return (abs(scale * preprocessing.STD - 1) < 1e-3
            and abs(zero_point - preprocessing.MEAN) <= 0.5)


def keras_shape(path: str, model) -> tuple[int, int, int]:
    """(height, width, classes) of a Keras image classifier; ValueError naming ``path``
    for a model of another kind (``model_files.image_classifier_shape``)."""
    return model_files.image_classifier_shape(
        path, [t.shape for t in model.inputs], [t.shape for t in model.outputs])


def tflite_shape(path: str, interpreter) -> tuple[int, int, int]:
    """(height, width, classes) of a TFLite image classifier, as ``keras_shape``."""
    return model_files.image_classifier_shape(
        path, [d["shape"] for d in interpreter.get_input_details()],
        [d["shape"] for d in interpreter.get_output_details()])


def check_num_classes(path, n_out, class_names, labels_source="its labels"):
    """ValueError naming the model and where its class names came from (a labels file,
    its metadata) when they do not give one name per output."""
    if n_out != len(class_names):
        raise ValueError(f"model {path} has {n_out} outputs but {len(class_names)} class "
                         f"names come from {labels_source}; they must give "
                         f"{model_files.LABELS_FORM}, one per output")


def detect_format(path: str) -> str:
    """'run_dir', 'keras', 'saved_model' or 'tflite' for a path; ValueError otherwise."""
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "saved_model.pb")):
            return "saved_model"
        if (any(os.path.exists(os.path.join(path, f)) for f in CHECKPOINTS.values())
                or os.path.exists(run_record.RunFiles(path).config)):
            return "run_dir"
        raise ValueError(model_files.directory_problem(path) or
                         f"--model={path} is a directory but neither a run directory "
                         f"({' or '.join(CHECKPOINTS.values())}) nor a SavedModel "
                         "(saved_model.pb)")
    if not os.path.exists(path):
        raise ValueError(f"--model={path} does not exist")
    if path.endswith(".keras"):
        return "keras"
    if path.endswith(".tflite"):
        return "tflite"
    raise ValueError(f"--model={path}: expected a run directory, a .keras file, a "
                     "SavedModel directory or a .tflite file")


def run_checkpoint(workdir: str, checkpoint: str = run_record.DEFAULT_MODEL) -> str:
    """Path of a run directory's finished Keras model; ValueError when it has none."""
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint={checkpoint!r}; valid values: {sorted(CHECKPOINTS)}")
    path = os.path.join(workdir, CHECKPOINTS[checkpoint])
    if not os.path.exists(path):
        present = [f for f in CHECKPOINTS.values() if os.path.exists(os.path.join(workdir, f))]
        hint = (f"it has {present[0]}; pass checkpoint/--checkpoint="
                f"{[k for k, v in CHECKPOINTS.items() if v == present[0]][0]}"
                if present else "training has not finished an epoch yet (best.keras and "
                "final.keras are written only then)")
        raise ValueError(f"run directory {workdir} has no finished checkpoint "
                         f"{CHECKPOINTS[checkpoint]}: {hint}")
    return path


def run_crop_fraction(record: run_record.RunRecord) -> float:
    """The eval center crop the run was trained and evaluated with."""
    return float((record.data.config or {}).get("crop_fraction",
                                                EVAL_CROP_FRACTION))


def load_keras_model(path: str):
    """The Keras model in ``path``; ValueError saying so (and what to do) when the file is
    missing, truncated or corrupt (Keras itself calls a truncated file "File not found")."""
    import keras

    if not os.path.isfile(path):
        raise ValueError(f"Keras model {path} does not exist")
    problem = _keras_archive_problem(path) if path.endswith(".keras") else None
    if problem is None:
        try:
            return keras.models.load_model(path, compile=False)
        except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as e:
            problem = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ValueError(f"Keras model {path} is corrupt or truncated ({problem}); "
                     f"{_keras_remedy(path)}") from None


def _keras_archive_problem(path: str) -> str | None:
    """Why ``path`` is not a complete .keras (zip) archive, or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()  # reads every member, checks its CRC
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        return f"not a complete .keras zip archive: {e}"
    return f"member {bad} fails its CRC check" if bad else None


def _keras_remedy(path: str) -> str:
    name = os.path.basename(path)
    others = {v: k for k, v in CHECKPOINTS.items()}
    if name in others:
        other = [f for f in CHECKPOINTS.values() if f != name][0]
        return (f"use the run's other model {other} (checkpoint/--checkpoint="
                f"{others[other]}), or re-create {name} from the run's training "
                f"checkpoints ({os.path.dirname(os.path.abspath(path))}/checkpoints) by "
                "re-running its training command with a larger --epochs")
    return "re-save or re-export the model (the file was cut short or damaged)"


def run_labels(workdir: str) -> tuple[list[str], str]:
    """The class names of a run directory (its labels.txt) and where they came from (for
    the error when they do not match the model); ValueError naming a missing, empty or
    unreadable labels.txt."""
    labels_path = os.path.join(workdir, labels_lib.LABELS_FILE)
    return model_files.read_labels_file(labels_path), f"labels file {labels_path}"


def labels_beside(path: str, n: int) -> tuple[list[str], str]:
    """The class names in the labels.txt beside the model file ``path`` (``class_<i>``
    for its ``n`` outputs when there is none), and where they came from (for errors)."""
    beside = os.path.join(os.path.dirname(os.path.abspath(path)), labels_lib.LABELS_FILE)
    if os.path.exists(beside):
        return model_files.read_labels_file(beside), f"labels file {beside}"
    return [f"class_{i}" for i in range(n)], "its labels"


def load_classifier(path: str, *, checkpoint: str = run_record.DEFAULT_MODEL,
                    crop_fraction: float | None = None, num_threads: int | None = None,
                    resolution: int | None = None) -> Classifier:
    """Opens ``path`` (see the module docstring). ``crop_fraction`` overrides the eval
    crop (default: the run's config, else ``EVAL_CROP_FRACTION``); SavedModels carry
    their own. ``num_threads`` is for .tflite models. ``resolution`` runs a Keras model
    (or a run's) at that square input size instead of its own (``at_resolution``);
    SavedModels and .tflite files keep theirs (ValueError for another size)."""
    kind = detect_format(path)
    if kind == "run_dir":
        model_path = run_checkpoint(path, checkpoint)
        record = run_record.read_record(path)
        crop = crop_fraction if crop_fraction is not None else run_crop_fraction(record)
        names, source = run_labels(path)
        model = at_resolution(load_keras_model(model_path), resolution)
        return KerasClassifier(model_path, model, names, crop, labels_source=source)
    crop = crop_fraction if crop_fraction is not None else EVAL_CROP_FRACTION
    if kind == "keras":
        model = at_resolution(load_keras_model(path), resolution)
        names, source = labels_beside(path, keras_shape(path, model)[2])
        return KerasClassifier(path, model, names, crop, labels_source=source)
    classifier = (load_saved_model_classifier(path) if kind == "saved_model"
                  else load_tflite_classifier(path, crop, num_threads))
    if resolution is not None and classifier.image_size != (resolution, resolution):
        raise ValueError(f"--resolution={resolution}: {path} is a {kind} with a fixed "
                         f"{classifier.image_size[0]}x{classifier.image_size[1]} input; "
                         "only Keras models and run directories can be run at another "
                         "size (or export the run with --resolution)")
    return classifier


def at_resolution(model, resolution: int | None):
    """``model`` rebuilt at a square ``resolution`` (None: unchanged): the network is
    fully convolutional, so its weights fit any input size (``builder.at_input_size``)."""
    if resolution is None:
        return model
    from mobilenet_tf.model import builder

    try:
        return builder.at_input_size(model, (resolution, resolution))
    except ValueError as err:
        raise ValueError(f"--resolution={resolution}: {err}") from None


def load_saved_model_classifier(path: str) -> SavedModelClassifier:
    """The SavedModel written by ``mobilenet_tf.export`` at ``path``; ValueError naming it
    when it cannot be loaded or was not written by the exporter."""
    loaded = model_files.load_saved_model(path)
    if SAVED_MODEL_SIGNATURE not in loaded.signatures:
        raise ValueError(f"SavedModel {path} has no {SAVED_MODEL_SIGNATURE!r} signature "
                         f"(has {sorted(loaded.signatures)}); export it with "
                         "mobilenet_tf.export")
    missing = [n for n in ("class_names", "image_size", "crop_fraction")
               if not hasattr(loaded, n)]
    if missing:
        raise ValueError(f"SavedModel {path} lacks the {', '.join(missing)} that "
                         f"mobilenet_tf.export writes; {model_files.EXPORT_REMEDY}")
    names = [n.decode() for n in loaded.class_names.numpy()]
    size = tuple(int(v) for v in loaded.image_size.numpy())
    # the crop is part of the SavedModel's graph; crop_fraction cannot change it
    return SavedModelClassifier(path, loaded, names, size,
                                float(loaded.crop_fraction.numpy()))


def load_tflite_classifier(path: str, crop: float,
                           num_threads: int | None = None) -> TFLiteClassifier:
    """The .tflite at ``path`` with the class names of its metadata, else of a labels.txt
    beside it; ValueError naming the file when it is not a whole TFLite model."""
    interpreter = model_files.open_tflite(path, num_threads)  # verifies the flatbuffer
    names, source = model_files.tflite_labels(path), "its TFLite metadata"
    if names is None:
        names, source = labels_beside(path, tflite_shape(path, interpreter)[2])
    return TFLiteClassifier(path, names, crop, num_threads, interpreter=interpreter,
                            labels_source=source)
