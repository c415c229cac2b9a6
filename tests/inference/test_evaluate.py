"""Evaluation of every model format on the same images."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import CLASSES
from mobilenet_tf.inference import evaluation


def _eval(model, image_root, **kw):
    return evaluation.evaluate(evaluation.EvalConfig(
        model=model, dataset=f"folder:{image_root}", split="validation", **kw))


def test_keras_and_float32_tflite_agree(exported, run_dir, image_root):
    keras_result = _eval(run_dir, image_root)
    tflite_result = _eval(os.path.join(exported[0], "model_float32.tflite"), image_root)
    saved_result = _eval(os.path.join(exported[0], "saved_model"), image_root)
    assert keras_result.num_images == tflite_result.num_images == 8 * len(CLASSES)
    assert keras_result.top1 == tflite_result.top1 == saved_result.top1
    assert keras_result.per_class_accuracy == tflite_result.per_class_accuracy
    assert set(keras_result.per_class_accuracy) == set(CLASSES)
    assert keras_result.loss == pytest.approx(tflite_result.loss, abs=1e-4)
    assert keras_result.top1 >= 0.8 and keras_result.top5 == 1.0
    assert (keras_result.format, tflite_result.format, saved_result.format) == (
        "keras", "tflite", "saved_model")


def test_int8_tflite_and_final_checkpoint_evaluate(exported, run_dir, image_root):
    int8 = _eval(os.path.join(exported[0], "model_int8.tflite"), image_root, max_images=9)
    assert int8.num_images == 9 and int8.loss is not None
    assert all(v is not None for v in int8.per_class_accuracy.values())  # spread over classes
    final = _eval(os.path.join(run_dir, "final.keras"), image_root, checkpoint="final")
    assert 0 <= final.top1 <= 1


def test_score_counts_topk_and_loss():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]])
    labels = np.array([0, 1, 1, 2])
    r = evaluation.score(probs, labels, ["a", "b", "c"])
    assert r.top1 == 0.5 and r.num_images == 4
    assert r.per_class_accuracy == {"a": 1.0, "b": 0.0, "c": 1.0}
    assert r.loss == pytest.approx(-np.mean(np.log([0.7, 0.3, 0.4, 0.6])))
    assert evaluation.topk_correct(probs, labels, 2).tolist() == [True, True, True, True]


def test_cli_json(exported, image_root):
    proc = subprocess.run(
        [sys.executable, "-m", "mobilenet_tf.evaluate",
         f"--model={os.path.join(exported[0], 'model_float32.tflite')}",
         f"--dataset=folder:{image_root}", "--split=validation", "--json"],
        capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"top1", "top5", "loss", "num_images", "per_class_accuracy"} <= result.keys()
    assert result["num_images"] == 8 * len(CLASSES)


def test_bad_model_path_is_named(tmp_path):
    with pytest.raises(ValueError, match="nope.keras does not exist"):
        _eval(str(tmp_path / "nope.keras"), str(tmp_path))


def test_resolution_runs_a_keras_model_at_another_size(exported, run_dir, image_root):
    # FixRes: the run (trained at IMAGE_SIZE) evaluated at a larger input. Its
    # classifier computes the same as the builder's network at that size with the run's
    # weights, so the evaluation equals scoring that network by hand.
    from helpers import IMAGE_SIZE
    from mobilenet_tf import mobilenet_v1
    from mobilenet_tf.inference import loading

    size = IMAGE_SIZE + 32
    clf = loading.load_classifier(run_dir, resolution=size)
    assert clf.image_size == (size, size)
    own = loading.load_classifier(run_dir)
    by_hand = mobilenet_v1(input_shape=size, alpha=0.25, num_classes=len(CLASSES))
    by_hand.set_weights(own.model.get_weights())
    images = [np.asarray(np.random.default_rng(i).integers(0, 256, (80, 96, 3)), np.uint8)
              for i in range(3)]
    batch = np.stack([clf.preprocess(im) for im in images])
    np.testing.assert_allclose(clf.predict_proba(images), by_hand(batch, training=False),
                               atol=1e-5)
    result = _eval(run_dir, image_root, resolution=size)
    assert result.num_images == 8 * len(CLASSES) and 0 <= result.top1 <= 1
    assert result.image_size == [size, size]
    assert f"(keras, {size}x{size} input)" in evaluation.format_result(result)
    assert _eval(run_dir, image_root).image_size == [IMAGE_SIZE, IMAGE_SIZE]
    tflite_path = os.path.join(exported[0], "model_float32.tflite")
    with pytest.raises(ValueError, match=f"--resolution={size}: .*fixed "
                       f"{IMAGE_SIZE}x{IMAGE_SIZE} input"):
        _eval(tflite_path, image_root, resolution=size)
    assert _eval(tflite_path, image_root, resolution=IMAGE_SIZE).num_images > 0


@pytest.mark.parametrize("tool", ["evaluate", "predict"])
def test_cli_rejects_a_resolution_below_32_before_loading(tool, tmp_path):
    args = ["--model=" + str(tmp_path), "--resolution=16"]
    args += ["--dataset=folder:" + str(tmp_path)] if tool == "evaluate" else [str(tmp_path)]
    proc = subprocess.run([sys.executable, "-m", f"mobilenet_tf.{tool}", *args],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "--resolution=16 must be >= 32" in proc.stderr
