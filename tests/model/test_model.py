"""The builder: structure, Keras weight compatibility, argument checking."""

import os
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest

from mobilenet_tf import mobilenet_v1
from mobilenet_tf.model import architecture
from helpers import randomize_weights


def test_param_count_matches_keras_applications():
    # The figure, and the count keras.applications.MobileNet reports.
    assert mobilenet_v1(alpha=1.0, input_shape=(224, 224, 3)).count_params() == 4_253_864


def test_layer_names_and_shapes_match_keras_applications():
    ours = mobilenet_v1(alpha=0.5, input_shape=(128, 128, 3))
    theirs = keras.applications.MobileNet(alpha=0.5, input_shape=(128, 128, 3), weights=None)
    ours_w = {v.path: tuple(v.shape) for v in ours.weights}
    theirs_w = {v.path: tuple(v.shape) for v in theirs.weights}
    assert ours_w == theirs_w
    layer_names = {l.name for l in ours.layers}
    assert {"conv1", "conv1_bn", "conv_dw_13", "conv_pw_13_bn", "conv_preds"} <= layer_names


@pytest.mark.parametrize("alpha", [1.0, 0.75, 0.5, 0.25])
def test_weight_exchange_with_keras_applications_both_ways(alpha, tmp_path):
    shape = (128, 128, 3)
    images = np.random.default_rng(0).uniform(-1, 1, (2,) + shape).astype("float32")

    theirs = keras.applications.MobileNet(alpha=alpha, input_shape=shape, weights=None)
    randomize_weights(theirs, seed=1)
    path = str(tmp_path / "theirs.weights.h5")
    theirs.save_weights(path)
    ours = mobilenet_v1(alpha=alpha, input_shape=shape, weights=path)
    np.testing.assert_allclose(ours.predict(images, verbose=0),
                               theirs.predict(images, verbose=0), atol=1e-5)

    randomize_weights(ours, seed=2)
    path = str(tmp_path / "ours.weights.h5")
    ours.save_weights(path)
    theirs2 = keras.applications.MobileNet(alpha=alpha, input_shape=shape, weights=path)
    np.testing.assert_allclose(theirs2.predict(images, verbose=0),
                               ours.predict(images, verbose=0), atol=1e-5)


def test_imagenet_weights_load_offline_from_keras_cache(tmp_path, monkeypatch):
    """weights='imagenet' reads Keras' file from the cache without touching the network.
    The file is written in Keras' published (legacy HDF5) format from a model we make."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    os.makedirs(tmp_path / "models")
    source = keras.applications.MobileNet(alpha=0.25, input_shape=(128, 128, 3),
                                          weights=None)
    randomize_weights(source, seed=3)
    from keras.src.legacy.saving import legacy_h5_format
    with h5py.File(tmp_path / "models" / "mobilenet_2_5_128_tf.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)

    def no_network(*args, **kwargs):
        raise AssertionError("must not download when the file is cached")
    monkeypatch.setattr(keras.utils, "get_file", no_network)
    ours = mobilenet_v1(alpha=0.25, input_shape=(128, 128, 3), weights="imagenet")
    images = np.random.default_rng(0).uniform(-1, 1, (2, 128, 128, 3)).astype("float32")
    np.testing.assert_allclose(ours.predict(images, verbose=0),
                               source.predict(images, verbose=0), atol=1e-5)


def test_imagenet_weights_offline_error_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")
    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(ValueError) as err:
        mobilenet_v1(alpha=1.0, input_shape=(160, 160, 3), weights="imagenet")
    message = str(err.value)
    assert "mobilenet_1_0_160_tf.h5" in message
    assert str(tmp_path / "models" / "mobilenet_1_0_160_tf.h5") in message


def test_variants_structure():
    shallow = mobilenet_v1(variant="shallow", input_shape=(64, 64, 3))
    names = {l.name for l in shallow.layers}
    assert "conv_dw_6" in names and "conv_dw_12" in names
    assert not {f"conv_dw_{i}" for i in range(7, 12)} & names
    conv = mobilenet_v1(variant="conv", input_shape=(64, 64, 3))
    assert not any(isinstance(l, keras.layers.DepthwiseConv2D) for l in conv.layers)
    assert sum(isinstance(l, keras.layers.Conv2D) for l in conv.layers) == 15  # stem+13+top


def test_non_square_input_headless_and_logits():
    m = mobilenet_v1(input_shape=(96, 160, 3), alpha=0.25, include_top=False)
    assert m.output.shape[1:] == (3, 5, 256)
    m = mobilenet_v1(input_shape=(96, 160, 3), alpha=0.25, include_top=False, pooling="max")
    assert m.output.shape[1:] == (256,)
    m = mobilenet_v1(input_shape=64, alpha=0.25, num_classes=7, classifier_activation=None)
    out = m.predict(np.ones((1, 64, 64, 3), "float32"), verbose=0)
    assert out.shape == (1, 7) and not np.isclose(out.sum(), 1.0)


def test_at_input_size_runs_the_same_weights_at_another_size(tmp_path):
    # FixRes: a network trained at one size, evaluated or exported at another. The
    # rebuilt model must compute what the builder's own model at that size computes
    # with the same weights, and give back the original outputs at the original size.
    from mobilenet_tf.model.builder import at_input_size

    m = mobilenet_v1(input_shape=64, alpha=0.25, num_classes=5)
    randomize_weights(m, seed=3)  # non-trivial batch-norm statistics too
    m.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    rng = np.random.default_rng(0)
    for size in ((96, 96), (64, 128)):
        bigger = at_input_size(loaded, size)
        assert tuple(bigger.input.shape[1:3]) == size
        direct = mobilenet_v1(input_shape=(*size, 3), alpha=0.25, num_classes=5)
        direct.set_weights(m.get_weights())
        x = rng.normal(size=(2, *size, 3)).astype("float32")
        np.testing.assert_allclose(bigger(x, training=False), direct(x, training=False),
                                   atol=1e-6)
    x = rng.normal(size=(2, 64, 64, 3)).astype("float32")
    back = at_input_size(at_input_size(loaded, (96, 96)), (64, 64))
    np.testing.assert_allclose(back(x, training=False), m(x, training=False), atol=1e-6)
    assert at_input_size(loaded, (64, 64)) is loaded
    with pytest.raises(ValueError, match="height and width >= 32"):
        at_input_size(loaded, (16, 16))


def test_depth_multiplier_scales_depthwise_channels():
    m = mobilenet_v1(input_shape=64, alpha=0.25, depth_multiplier=2)
    assert tuple(m.get_layer("conv_dw_1").kernel.shape) == (3, 3, 8, 2)
    assert tuple(m.get_layer("conv_pw_1").kernel.shape) == (1, 1, 16, 16)


def test_synchronized_bn_is_applied():
    m = mobilenet_v1(input_shape=64, alpha=0.25, synchronized_bn=True)
    assert all(l.synchronized for l in m.layers
               if isinstance(l, keras.layers.BatchNormalization))


@pytest.mark.parametrize("kwargs, argument", [
    ({"alpha": 0}, "alpha"),
    ({"alpha": -0.5}, "alpha"),
    ({"alpha": 0.01}, "alpha"),
    ({"input_shape": (31, 224, 3)}, "input_shape"),
    ({"input_shape": 16}, "input_shape"),
    ({"input_shape": (224, 224, 1)}, "input_shape"),
    ({"variant": "resnet"}, "variant"),
    ({"num_classes": 0}, "num_classes"),
    ({"pooling": "avg"}, "pooling"),  # pooling with include_top
    ({"include_top": False, "pooling": "sum"}, "pooling"),
    ({"depth_multiplier": 0}, "depth_multiplier"),
    ({"dropout": 1.0}, "dropout"),
    ({"classifier_activation": "relu"}, "classifier_activation"),
    ({"weights": "/no/such/file.weights.h5"}, "weights"),
    ({"weights": "imagenet", "alpha": 0.3}, "weights"),
    ({"weights": "imagenet", "variant": "conv"}, "weights"),
    ({"weights": "imagenet", "num_classes": 10}, "num_classes"),
])
def test_bad_arguments_raise_value_error_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        mobilenet_v1(**kwargs)


def test_spec_table_is_table_1():
    # Table 1: 13 separable blocks; strides 2 at blocks 2, 4, 6, 12; widths 64..1024.
    assert [b.filters for b in architecture.BLOCKS] == [64, 128, 128, 256, 256, 512,
                                                       512, 512, 512, 512, 512, 1024, 1024]
    assert [b.block_id for b in architecture.BLOCKS if b.stride == 2] == [2, 4, 6, 12]
    assert len(architecture.blocks_for("shallow")) == 8


def test_builder_needs_no_tensorflow_specific_layer_unless_fused():
    """Only ``fused_batch_norm=True`` imports the TensorFlow-only layer: the plain builder
    is Keras' own layers (it builds on other Keras backends too)."""
    code = ("import sys; from mobilenet_tf.model.builder import mobilenet_v1; "
            "mobilenet_v1((64, 64, 3), alpha=0.25, num_classes=3); "
            "assert 'mobilenet_tf.model.batchnorm' not in sys.modules; "
            "mobilenet_v1((64, 64, 3), alpha=0.25, num_classes=3, fused_batch_norm=True); "
            "assert 'mobilenet_tf.model.batchnorm' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
