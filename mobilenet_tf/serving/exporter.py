"""Export a training run for serving and for phones, and prove every export against Keras.

``export(ExportConfig(workdir=RUN))`` reads ``RUN/best.keras`` (or ``final.keras``),
``labels.txt`` and the run's record (``run_record.read_record``) and writes into
``RUN/export`` (or ``export_dir``):

    saved_model/                 SavedModel; signatures ``serving_default`` =
                                 ``classify_images`` (uint8 [N,H,W,3], any H, W) and
                                 ``classify_bytes`` (string [N], JPEG/PNG/BMP/GIF bytes);
                                 outputs ``classes`` int32 [N,k], ``labels`` string [N,k],
                                 ``scores`` float32 [N,k], ``probabilities`` float32 [N,C];
                                 eval preprocessing in the graph; assets/labels.txt
    model_float32.tflite         input float32 [1,h,w,3] normalized (x - MEAN) / STD
    model_float16.tflite         float16 weights, float32 input/output
    model_dynamic.tflite         int8 weights, float activations (dynamic range)
    model_int8.tflite            full integer: int8 weights (per channel) and activations,
                                 uint8 (default) or float32 input/output
    labels.txt
    export_report.json / .md     verification of every export against Keras

Every .tflite carries TFLite Model Metadata (``serving.tflite`` converts,
``serving.tflite_metadata`` writes the metadata) so MediaPipe Tasks ImageClassifier loads
it unchanged. The export directory appears whole in one rename (``serving.staging``: every
file, the SavedModel included, is written into a temporary sibling that is then swapped
in), and ``export_report.json`` lists every file beside it with its size and SHA-256
(``files``). After writing, each export runs on ``verification_images`` held-out images
(LiteRT interpreter for .tflite); the export fails (``ExportVerificationError``, report
still written) when float32 TFLite disagrees with Keras beyond the tolerances.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import statistics
import tempfile
import time

import numpy as np
import tensorflow as tf

from mobilenet_tf import fileio
from mobilenet_tf.data import labels as labels_lib
from mobilenet_tf.data import preprocessing
from mobilenet_tf.data.config import DEFAULT_MAX_IMAGE_PIXELS, EVAL_CROP_FRACTION
from mobilenet_tf.inference import images as images_lib, loading, tflite_metadata
from mobilenet_tf.rundir import record as run_record
from mobilenet_tf.serving import report as export_report, staging, tflite
from mobilenet_tf.serving.config import ExportConfig

SAVED_MODEL_DIR = "saved_model"
REPORT_MD = "export_report.md"
LATENCY_THREADS = (1, 2)


class ExportVerificationError(RuntimeError):
    """An exported model does not reproduce the Keras model."""


# ----------------------------------------------------------------------------- graphs
class _ServingModule(tf.Module):
    """The Keras model with eval preprocessing and top-k post-processing in the graph."""

    def __init__(self, model, class_names, image_size, crop_fraction, top_k, labels_path):
        super().__init__(name="mobilenet_classifier")
        self.model = model
        self.class_names = tf.Variable(class_names, trainable=False, dtype=tf.string,
                                       name="class_names")
        self.image_size = tf.Variable(list(image_size), trainable=False, dtype=tf.int32,
                                      name="image_size")
        self.crop_fraction = tf.Variable(crop_fraction, trainable=False, dtype=tf.float32,
                                         name="crop_fraction")
        self.labels_file = tf.saved_model.Asset(labels_path)
        self._size = tuple(int(v) for v in image_size)
        self._crop = float(crop_fraction)
        self._k = min(int(top_k), len(class_names))

    def _classify(self, inputs):
        probs = self.model(inputs, training=False)
        scores, classes = tf.math.top_k(probs, k=self._k)
        return {"classes": classes, "labels": tf.gather(self.class_names, classes),
                "scores": scores, "probabilities": probs}

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8,
                                                name="images")])
    def classify_images(self, images):
        return self._classify(preprocessing.eval_preprocess(images, self._size, self._crop))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def classify_bytes(self, image_bytes):
        h, w = self._size

        def one(encoded):
            image = preprocessing.decode_image(encoded, DEFAULT_MAX_IMAGE_PIXELS)
            return preprocessing.eval_preprocess(image, self._size, self._crop)

        inputs = tf.map_fn(one, image_bytes,
                           fn_output_signature=tf.TensorSpec([h, w, 3], tf.float32))
        return self._classify(inputs)


def write_saved_model(model, class_names, image_size, crop_fraction, top_k, path) -> None:
    """The serving SavedModel at ``path``, a new directory. ``export`` writes it inside the
    staged export directory (``staging.staged``), so it appears whole with the rest."""
    with tempfile.TemporaryDirectory(prefix=".labels.",
                                     dir=os.path.dirname(os.path.abspath(path))) as labels_dir:
        labels_path = os.path.join(labels_dir, labels_lib.LABELS_FILE)
        labels_lib.write_labels(labels_path, class_names)  # becomes assets/labels.txt
        module = _ServingModule(model, class_names, image_size, crop_fraction, top_k,
                                labels_path)
        tf.saved_model.save(module, path, signatures={
            "serving_default": module.classify_images,
            "classify_images": module.classify_images,
            "classify_bytes": module.classify_bytes})


# ----------------------------------------------------------------------------- verification
def _latency_ms(path: str, threads: int, runs: int) -> float | None:
    if runs <= 0:
        return None
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    x = np.zeros(detail["shape"], detail["dtype"])
    for _ in range(3):
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
    times = []
    for _ in range(runs):
        interpreter.set_tensor(detail["index"], x)
        t0 = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def _compare(probs, keras_probs, labels) -> dict:
    top1 = np.argmax(probs, 1)
    keras_top1 = np.argmax(keras_probs, 1)
    return {"top1": float(np.mean(top1 == labels)),
            "top1_agreement_with_keras": float(np.mean(top1 == keras_top1)),
            "max_abs_prob_diff": float(np.max(np.abs(probs - keras_probs)))}


def _dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f))
               for root, _, files in os.walk(path) for f in files)


# ----------------------------------------------------------------------------- main entry
def export(config: ExportConfig) -> dict:
    """Exports and verifies; returns the report (also written to the export dir)."""
    config.validate()
    checkpoint_path = loading.run_checkpoint(config.workdir, config.checkpoint)
    class_names, labels_source = loading.run_labels(config.workdir)
    record = run_record.read_record(config.workdir)
    crop = loading.run_crop_fraction(record)
    dataset, data_dir, data_cfg, verification_split, calibration_split = _image_origin(
        config, record)

    model = loading.at_resolution(loading.load_keras_model(checkpoint_path),
                                  config.resolution)
    keras_clf = loading.KerasClassifier(checkpoint_path, model, class_names, crop,
                                        labels_source=labels_source)
    export_dir = os.path.abspath(config.export_dir or os.path.join(config.workdir, "export"))
    staging.check_replaceable(export_dir)

    # Held-out images, preprocessed once for Keras and the TFLite models.
    ver_source = images_lib.ImageSource(dataset, verification_split, data_dir, data_cfg)
    ver_images, ver_labels = _load(ver_source, config.verification_images, class_names,
                                   keras_clf.image_size, "verification_split")
    ver_inputs = np.stack([keras_clf.preprocess(im) for im in ver_images])
    keras_probs = keras_clf.predict_normalized(ver_inputs)

    report = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "workdir": os.path.abspath(config.workdir),
        "checkpoint": os.path.abspath(checkpoint_path),
        "export_dir": export_dir,
        "image_size": list(keras_clf.image_size), "num_classes": len(class_names),
        "trained_image_size": list((record.model.get("input_shape") or [None] * 2)[:2]),
        "crop_fraction": crop,
        "normalization": {"mean": preprocessing.MEAN, "std": preprocessing.STD},
        "verification": {"dataset": dataset, "split": verification_split,
                         "num_images": len(ver_images)},
        "keras": {"top1": float(np.mean(np.argmax(keras_probs, 1) == ver_labels)),
                  "size_bytes": os.path.getsize(checkpoint_path)},
        "saved_model": None, "tflite": {}, "calibration": None,
        "fine_tuning": export_report.fine_tuning(record, run_record.read_summary(
            config.workdir)),
    }
    calibration = None
    if "tflite" in config.formats and "int8" in config.quantize:
        cal_source = images_lib.ImageSource(dataset, calibration_split, data_dir, data_cfg)
        cal_images, _ = _load(cal_source, config.representative_images, class_names,
                              keras_clf.image_size, "calibration_split")
        calibration = np.stack([keras_clf.preprocess(im) for im in cal_images])
        report["calibration"] = {"dataset": dataset, "split": calibration_split,
                                 "num_images": len(cal_images)}
    # Everything is written into a temporary sibling of export_dir and swapped in whole
    # (mobilenet_tf.serving.staging): a crash leaves the complete old or new export.
    with staging.staged(export_dir) as out:
        _write_exports(config, keras_clf, class_names, out, report, calibration,
                       ver_images, ver_inputs, ver_labels, keras_probs)
    failures = [c["message"] for c in report["checks"] if not c["passed"] and c["fatal"]]
    if failures:
        raise ExportVerificationError(
            "export verification failed: " + "; ".join(failures) +
            f" (details in {os.path.join(export_dir, REPORT_MD)})")
    return report


def _image_origin(config: ExportConfig, record):
    """Where verification and calibration images come from: (dataset, data_dir, data
    config, verification split, calibration split); the flags override the run's record."""
    data_cfg = dict(record.data.config or {})
    dataset = config.dataset or record.data.dataset
    if not dataset:
        raise ValueError(f"no dataset for calibration/verification images: "
                         f"{run_record.RunFiles(config.workdir).config} records none (the run was "
                         "trained on inputs passed in code); pass --dataset")
    data_dir = config.data_dir if config.data_dir is not None else data_cfg.get("data_dir")
    verification_split = (config.verification_split or record.data.eval_split
                           or "validation")
    calibration_split = config.calibration_split or record.data.train_split or "train"
    return dataset, data_dir, data_cfg, verification_split, calibration_split


def _write_exports(config, keras_clf, class_names, out, report, calibration, ver_images,
                   ver_inputs, ver_labels, keras_probs) -> None:
    """Writes every export, the labels and the report (listing every file) into ``out``."""
    model, image_size, crop = keras_clf.model, keras_clf.image_size, keras_clf.crop_fraction
    labels_lib.write_labels(os.path.join(out, labels_lib.LABELS_FILE), class_names)
    if "saved_model" in config.formats:
        path = os.path.join(out, SAVED_MODEL_DIR)
        write_saved_model(model, class_names, image_size, crop, config.top_k, path)
        sm = loading.load_classifier(path)
        sm_probs = sm.predict_proba(ver_images)
        report["saved_model"] = {"path": SAVED_MODEL_DIR, "size_bytes": _dir_size(path),
                                 **_compare(sm_probs, keras_probs, ver_labels)}
    if "tflite" in config.formats:
        report["tflite"] = _export_tflite(config, model, class_names, image_size, out,
                                          calibration, ver_inputs, ver_labels, keras_probs)
    report["checks"] = export_report.checks(config, report)
    fileio.atomic_write_text(os.path.join(out, REPORT_MD), export_report.format_report(report))
    # The files beside the report, exactly (staging.verify checks a directory by it).
    report["files"] = staging.manifest(out)
    fileio.atomic_write_text(os.path.join(out, staging.REPORT_JSON),
                             json.dumps(report, indent=2) + "\n")


def _load(source, limit, class_names, image_size, flag):
    try:
        return images_lib.load_images(source, limit, class_names, image_size)
    except ValueError as e:
        raise ValueError(f"{e} (export reads {flag}={source.split!r} of dataset "
                         f"{source.dataset!r}; set --{flag} / --dataset to a split that "
                         "exists)") from None


def _export_tflite(config, model, class_names, image_size, export_dir, calibration,
                   ver_inputs, ver_labels, keras_probs) -> dict:
    """Writes the ``.tflite`` of every quantization into ``export_dir`` and verifies each;
    returns their report entries by precision label."""
    results = {}
    source_dir = tempfile.mkdtemp(prefix=".tflite_source.", dir=export_dir)
    try:
        tflite.write_tflite_source(model, image_size, source_dir)
        for quant in config.quantize:
            with_md = tflite.convert_with_metadata(config, source_dir, quant, model,
                                                   class_names, image_size, calibration)
            path = os.path.join(export_dir, tflite.TFLITE_NAMES[quant])
            fileio.atomic_write_bytes(path, with_md)
            results[tflite.QUANT_LABELS[quant]] = _verify_tflite(
                path, class_names, ver_inputs, ver_labels, keras_probs, config.latency_runs)
    finally:
        shutil.rmtree(source_dir, ignore_errors=True)
    return results


def _verify_tflite(path, class_names, ver_inputs, ver_labels, keras_probs, latency_runs):
    clf = loading.TFLiteClassifier(path, class_names, EVAL_CROP_FRACTION)
    probs = clf.predict_normalized(ver_inputs)
    inp, out = clf.input_details, clf.output_details
    entry = {"path": os.path.basename(path), "size_bytes": os.path.getsize(path),
             "input": {"dtype": np.dtype(inp["dtype"]).name,
                       "shape": [int(d) for d in inp["shape"]],
                       "quantization": [float(v) for v in inp["quantization"]]},
             "output": {"dtype": np.dtype(out["dtype"]).name,
                        "quantization": [float(v) for v in out["quantization"]]},
             **_compare(probs, keras_probs, ver_labels),
             "latency_ms": {str(t): _latency_ms(path, t, latency_runs)
                            for t in LATENCY_THREADS}}
    info = tflite_metadata.read_image_classifier_metadata(path)
    entry["metadata"] = {"name": info.name, "version": info.version,
                         "min_parser_version": info.min_parser_version,
                         "mean": list(info.mean), "std": list(info.std),
                         "num_labels": len(info.labels),
                         "associated_files": list(info.associated_files)}
    if list(info.labels) != list(class_names):
        raise ExportVerificationError(f"{path}: labels in the metadata differ from labels.txt")
    return entry
