"""python -m mobilenet_tf.weights: a weights file the recipe takes, from Keras' published
file (a KERAS_HOME made here) or converted from a MobileNet-V1 .tflite (converted here from
a model with batch norm, which the converter folds as Google's files have it); our model
loaded from the file computes what the source model does, and --initial_weights takes it."""

import os
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from mobilenet_tf.model import pretrained
from mobilenet_tf.model.builder import mobilenet_v1
from helpers import REPO, randomize_weights, tiny_classifier_tflite

ENV = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _weights(*args, home=None):
    env = {**ENV, **({"KERAS_HOME": home} if home else {})}
    return subprocess.run([sys.executable, "-m", "mobilenet_tf.weights", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)


def _source(include_top=True, rows=128):
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNet(input_shape=(rows, rows, 3), alpha=0.25,
                                         include_top=include_top, weights=None,
                                         classifier_activation=None)
    randomize_weights(model, seed=3)  # BN statistics too: folding them must be right
    return model


def _image(rows=128):
    return np.random.default_rng(0).uniform(-1, 1, (2, rows, rows, 3)).astype("float32")


def test_keras_file_to_out(tmp_path):
    from keras.src.legacy.saving import legacy_h5_format

    source = _source()
    home = tmp_path / "kh"
    (home / "models").mkdir(parents=True)
    with h5py.File(home / "models" / "mobilenet_2_5_128_tf.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)  # Keras' published form
    out = str(tmp_path / "imagenet.weights.h5")
    proc = _weights("--alpha=0.25", "--resolution=128", out, home=str(home))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"Wrote {out} from {home / 'models' / 'mobilenet_2_5_128_tf.h5'}" in proc.stdout
    assert "1000-class classifier" in proc.stdout and f"--initial_weights={out}" in proc.stdout
    model = mobilenet_v1((128, 128, 3), alpha=0.25, classifier_activation=None)
    model.load_weights(out)
    np.testing.assert_allclose(model(_image(), training=False),
                               source(_image(), training=False), rtol=1e-5, atol=1e-5)


def test_tflite_to_out_computes_what_the_source_did_and_the_recipe_takes_it(tmp_path):
    source = _source()
    tflite = tmp_path / "mobilenet_v1_0.25_128.tflite"
    tflite.write_bytes(tf.lite.TFLiteConverter.from_keras_model(source).convert())
    out = str(tmp_path / "from_tflite.weights.h5")
    proc = _weights(f"--from_tflite={tflite}", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "alpha 0.25, 1000-class classifier" in proc.stdout
    assert f"--alpha=0.25 --initial_weights={out}" in proc.stdout
    model = mobilenet_v1((128, 128, 3), alpha=0.25, classifier_activation=None)
    model.load_weights(out)
    want = source(_image(), training=False).numpy()
    np.testing.assert_allclose(model(_image(), training=False), want, rtol=1e-4,
                               atol=1e-4 * np.abs(want).max())  # folded BN: rounding only
    bn = model.get_layer("conv_dw_7_bn")  # an identity in inference mode (shared README)
    gamma, _, mean, variance = bn.get_weights()
    assert (gamma == 1).all() and (mean == 0).all()
    np.testing.assert_allclose(variance, 1 - bn.epsilon)
    # --initial_weights=OUT at another class count and resolution: all but the classifier,
    # which --classifier_init=source maps from.
    target = mobilenet_v1((96, 96, 3), alpha=0.25, num_classes=3)
    report = pretrained.load_initial_weights(target, out)
    assert report.not_loaded.keys() == {"conv_preds"} and not report.unused
    assert report.source_classifier[0].shape == (1, 1, 256, 1000)


def test_tflite_without_the_classifier(tmp_path):
    tflite = str(tmp_path / "m.tflite")
    with open(tflite, "wb") as f:
        f.write(tf.lite.TFLiteConverter.from_keras_model(mobilenet_v1(
            (64, 64, 3), alpha=0.5, num_classes=7, classifier_activation=None)).convert())
    headless = pretrained.tflite_model(tflite, include_top=False)
    assert headless.output_shape == (None, 2, 2, 512) and "conv_preds" not in [
        layer.name for layer in headless.layers]
    assert pretrained.tflite_model(tflite).output_shape == (None, 7)


def test_a_tflite_that_is_not_mobilenet_is_one_line(tmp_path):
    other = tmp_path / "other.tflite"
    other.write_bytes(tiny_classifier_tflite(tmp_path))
    with pytest.raises(ValueError, match=r"^--from_tflite=.*other.tflite: 2 convolutions; "
                                         "MobileNet-V1 has 27"):
        pretrained.tflite_model(str(other))
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer")
    with pytest.raises(ValueError, match=r"^--from_tflite=.*junk.tflite: cannot read"):
        pretrained.tflite_model(str(junk))


def test_keras_file_offline_says_where_it_goes_and_the_tflite_way(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("no network (test)")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras.utils, "get_file", no_network)
    with pytest.raises(ValueError) as e:
        pretrained.imagenet_model(0.5, 192, include_top=False)
    message = str(e.value)
    assert message.startswith("could not download https://") and "\n" not in message
    assert str(tmp_path / "models" / "mobilenet_5_0_192_tf_no_top.h5") in message
    assert "mobilenet_v1_0.5_192.tflite instead with --from_tflite=FILE" in message
