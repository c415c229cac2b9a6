"""Export of a small trained run to every format, verified against Keras."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import CLASSES, IMAGE_SIZE, draw_shape, jpeg_bytes
from mobilenet_tf import fileio
from mobilenet_tf.inference import loading, tflite_metadata
from mobilenet_tf.serving import exporter, tflite
from mobilenet_tf.serving.config import ExportConfig
from mobilenet_tf.data import preprocessing
from mobilenet_tf.data.config import EVAL_CROP_FRACTION

TFLITE_FILES = sorted(tflite.TFLITE_NAMES.values())


def test_every_format_written_and_reported(exported):
    export_dir, report = exported
    names = set(os.listdir(export_dir))
    assert {"saved_model", "labels.txt", "export_report.json", "export_report.md",
            *TFLITE_FILES} <= names
    assert not [n for n in names if n.startswith(".")], "temporary files left behind"
    on_disk = json.load(open(os.path.join(export_dir, "export_report.json")))
    assert on_disk["tflite"].keys() == {"float32", "float16", "dynamic", "int8"}
    f32 = on_disk["tflite"]["float32"]
    assert f32["top1_agreement_with_keras"] == 1.0 and f32["max_abs_prob_diff"] < 1e-4
    assert on_disk["saved_model"]["max_abs_prob_diff"] < 1e-4
    assert on_disk["keras"]["top1"] >= 0.8  # the fixture model really learned the shapes
    for entry in on_disk["tflite"].values():
        assert entry["size_bytes"] == os.path.getsize(os.path.join(export_dir, entry["path"]))
        assert entry["latency_ms"]["1"] > 0 and entry["latency_ms"]["2"] > 0
    sizes = {k: v["size_bytes"] for k, v in on_disk["tflite"].items()}
    assert sizes["int8"] < 0.5 * sizes["float32"] and sizes["float16"] < 0.6 * sizes["float32"]
    md = open(os.path.join(export_dir, "export_report.md")).read()
    assert "int8 top-1 change vs float32" in md and "PASS: float32 TFLite" in md


def test_int8_model_takes_plain_uint8_pixels(exported):
    _, report = exported
    int8 = report["tflite"]["int8"]
    assert int8["input"]["dtype"] == "uint8" and int8["output"]["dtype"] == "uint8"
    scale, zero_point = int8["input"]["quantization"]
    # q = pixel  <=>  (q - zero_point) * scale == (pixel - MEAN) / STD (to half a level)
    assert scale == pytest.approx(1 / preprocessing.STD, rel=1e-3)
    assert abs(zero_point - preprocessing.MEAN) <= 0.5


def test_int8_verification_feeds_the_pixels_mediapipe_feeds(exported):
    """Our int8 runs (export report, evaluate, predict) must verify the model as shipped:
    an image of the input size reaches the uint8 input tensor as its own pixels, not
    re-quantized with the integer zero point (127 for MEAN 127.5, one level off)."""
    clf = loading.load_classifier(os.path.join(exported[0], "model_int8.tflite"),
                                  crop_fraction=1.0)
    pixels = np.random.default_rng(0).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    np.testing.assert_array_equal(clf.quantize_input(clf.preprocess(pixels)), pixels)


@pytest.mark.parametrize("name", TFLITE_FILES)
def test_metadata_in_every_tflite(exported, name):
    info = tflite_metadata.read_image_classifier_metadata(os.path.join(exported[0], name))
    assert info.labels == CLASSES
    assert info.mean == (preprocessing.MEAN,) * 3 and info.std == (preprocessing.STD,) * 3
    assert info.name and info.version and info.description


@pytest.mark.parametrize("name", TFLITE_FILES)
def test_mediapipe_image_classifier_returns_our_labels(exported, tmp_path, name):
    """MediaPipe Tasks loads the file unchanged, names the classes from the metadata and
    (given the eval center crop as region of interest) agrees with our LiteRT run."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision
    from mediapipe.tasks.python.components.containers.rect import RectF
    from mediapipe.tasks.python.vision.core.image_processing_options import (
        ImageProcessingOptions)

    model_path = os.path.join(exported[0], name)
    path = tmp_path / "green.jpg"
    path.write_bytes(jpeg_bytes(draw_shape("green_disc", np.random.default_rng(7))))
    image = mp.Image.create_from_file(str(path))
    m = (1 - EVAL_CROP_FRACTION) / 2
    center_crop = ImageProcessingOptions(region_of_interest=RectF(left=m, top=m, right=1 - m,
                                                                  bottom=1 - m))
    options = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_path=model_path), max_results=len(CLASSES))
    with vision.ImageClassifier.create_from_options(options) as classifier:
        result = classifier.classify(image, center_crop)
        categories = result.classifications[0].categories
        assert {c.category_name for c in categories} == set(CLASSES)
        assert categories[0].category_name == "green_disc"
        # The same numbers as our LiteRT run: compared on an image of the model's input
        # size, which neither side resizes (with a crop, MediaPipe's resize kernel and
        # ours differ, and an unsure model's scores move by up to ~0.1).
        exact = tmp_path / "green64.png"
        Image.fromarray(draw_shape("green_disc", np.random.default_rng(7),
                                   size=(IMAGE_SIZE, IMAGE_SIZE))).save(exact)
        image64 = mp.Image.create_from_file(str(exact))
        scores = {c.category_name: c.score
                  for c in classifier.classify(image64).classifications[0].categories}
    ours = loading.load_classifier(model_path, crop_fraction=1.0).predict_proba(
        [image64.numpy_view()[..., :3]])[0]
    for name, score in scores.items():
        assert score == pytest.approx(ours[CLASSES.index(name)], abs=0.02)


def test_saved_model_bytes_signature_matches_keras(exported, run_dir, real_jpegs):
    import tensorflow as tf

    loaded = tf.saved_model.load(os.path.join(exported[0], "saved_model"))
    assert {"serving_default", "classify_images", "classify_bytes"} <= set(loaded.signatures)
    encoded = [open(p, "rb").read() for p in real_jpegs]
    out = loaded.signatures["classify_bytes"](image_bytes=tf.constant(encoded))
    keras_clf = loading.load_classifier(run_dir)
    decoded = [preprocessing.decode_image(e).numpy() for e in encoded]
    keras_probs = keras_clf.predict_proba(decoded)
    np.testing.assert_array_equal(out["classes"].numpy()[:, 0], keras_probs.argmax(1))
    np.testing.assert_allclose(out["probabilities"].numpy(), keras_probs, atol=1e-4)
    labels = out["labels"].numpy()
    assert labels.shape == (len(encoded), len(CLASSES))
    assert [l.decode() for l in labels[:, 0]] == [CLASSES[i] for i in keras_probs.argmax(1)]
    assert np.all(np.diff(out["scores"].numpy(), axis=1) <= 0)

    # uint8 images of any size: a batch of one size, not the model's
    batch = np.stack([draw_shape(c, np.random.default_rng(i), size=(90, 70))
                      for i, c in enumerate(CLASSES)])
    out = loaded.signatures["serving_default"](images=tf.constant(batch))
    np.testing.assert_array_equal(out["classes"].numpy()[:, 0],
                                  keras_clf.predict_proba(list(batch)).argmax(1))


def test_export_refuses_run_without_finished_checkpoint(run_dir, tmp_path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for f in ("labels.txt", "config.json"):
        (unfinished / f).write_bytes(open(os.path.join(run_dir, f), "rb").read())
    with pytest.raises(ValueError, match="no finished checkpoint final.keras"):
        exporter.export(ExportConfig(workdir=str(unfinished)))
    assert set(os.listdir(unfinished)) == {"labels.txt", "config.json"}  # nothing written
    proc = subprocess.run([sys.executable, "-m", "mobilenet_tf.export",
                           f"--workdir={unfinished}"], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "no finished checkpoint final.keras" in proc.stderr


def test_export_fails_clearly_when_float32_disagrees(run_dir, tmp_path):
    # A tolerance no real conversion meets: the float32 check must fail loudly, after
    # writing the report that shows why.
    config = ExportConfig(
        workdir=run_dir, export_dir=str(tmp_path), formats=("tflite",), quantize=("none",),
        verification_images=6, latency_runs=0, max_float32_prob_diff=0.0)
    with pytest.raises(exporter.ExportVerificationError, match="float32 TFLite top-1 "
                       "agreement with Keras .* max \\|p - p_keras\\|"):
        exporter.export(config)
    assert "FAIL: float32 TFLite" in (tmp_path / "export_report.md").read_text()


def test_config_errors_name_the_option(run_dir):
    with pytest.raises(ValueError, match="--quantize=int4 is not valid"):
        exporter.export(ExportConfig(workdir=run_dir, quantize=("int4",)))
    with pytest.raises(ValueError, match="int8_io"):
        exporter.export(ExportConfig(workdir=run_dir, int8_io="int16"))


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "model.tflite"
    fileio.atomic_write_bytes(str(target), b"old model")
    with pytest.raises(TypeError):
        fileio.atomic_write_bytes(str(target), "not bytes")  # fails inside the write
    assert target.read_bytes() == b"old model"
    assert os.listdir(tmp_path) == ["model.tflite"]  # no temporary file left


def test_reexport_replaces_the_saved_model_whole(run_dir, tmp_path):
    stale = tmp_path / "saved_model" / "stale_file"
    stale.parent.mkdir()
    stale.write_text("from an older export")
    report = exporter.export(ExportConfig(
        workdir=run_dir, export_dir=str(tmp_path), formats=("saved_model",),
        verification_images=3, latency_runs=0))
    assert not stale.exists()
    assert os.path.exists(tmp_path / "saved_model" / "saved_model.pb")
    assert report["saved_model"]["top1_agreement_with_keras"] == 1.0
    assert report["tflite"] == {}
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def test_int8_weights_are_quantized_per_channel(exported):
    from tensorflow.lite.python import schema_py_generated as schema

    buf = open(os.path.join(exported[0], "model_int8.tflite"), "rb").read()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    graph = model.subgraphs[0]
    convs = [op for op in graph.operators
             if codes[op.opcodeIndex] in (schema.BuiltinOperator.CONV_2D,
                                          schema.BuiltinOperator.DEPTHWISE_CONV_2D)]
    assert len(convs) == 28  # conv1, 13 depthwise, 13 pointwise, the 1x1 classifier
    for op in convs:
        weights = graph.tensors[op.inputs[1]]
        assert weights.type == schema.TensorType.INT8
        out_channels = weights.shape[0] if codes[op.opcodeIndex] == schema.BuiltinOperator.CONV_2D \
            else weights.shape[-1]
        assert len(weights.quantization.scale) == out_channels > 1


def test_export_at_another_resolution(run_dir, tmp_path):
    # --resolution: the run (trained at IMAGE_SIZE) shipped at a larger input (FixRes);
    # the TFLite model takes that size, says so in its report, and still reproduces the
    # Keras network at that size on the verification photos.
    size = IMAGE_SIZE + 32
    report = exporter.export(ExportConfig(
        workdir=run_dir, export_dir=str(tmp_path), formats=("tflite",),
        quantize=("none",), verification_images=12, latency_runs=0, resolution=size))
    assert report["image_size"] == [size, size]
    assert report["trained_image_size"] == [IMAGE_SIZE, IMAGE_SIZE]
    assert (f"input: {size}x{size} RGB" in (tmp_path / "export_report.md").read_text()
            and f"trained at {IMAGE_SIZE}x{IMAGE_SIZE}" in
            (tmp_path / "export_report.md").read_text())
    interpreter = loading.load_classifier(str(tmp_path / "model_float32.tflite"))
    assert interpreter.image_size == (size, size)
    assert all(c["passed"] for c in report["checks"] if c["fatal"])
    with pytest.raises(ValueError, match="--resolution=8 is not valid: must be >= 32"):
        exporter.export(ExportConfig(workdir=run_dir, resolution=8))
