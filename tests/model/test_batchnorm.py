"""The fused-kernel batch norm: same function, variables and files as Keras' layer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mobilenet_tf import mobilenet_v1
from mobilenet_tf.model import batchnorm
from helpers import randomize_weights

SHAPE = (4, 6, 5, 8)  # N, H, W, C: n = 120 values per channel


def _pair(momentum=0.9, **kwargs):
    """(fused, keras) layers built on SHAPE with the same random weights."""
    ours = batchnorm.BatchNormalization(momentum=momentum, **kwargs)
    theirs = keras.layers.BatchNormalization(momentum=momentum, **kwargs)
    ours.build(SHAPE)
    theirs.build(SHAPE)
    rng = np.random.default_rng(0)
    c = SHAPE[-1]
    weights = [rng.uniform(0.5, 1.5, c), rng.normal(0, 0.5, c), rng.normal(0, 0.5, c),
               rng.uniform(0.5, 1.5, c)]  # gamma, beta, moving mean, moving variance
    for layer in (ours, theirs):
        layer.set_weights([w.astype("float32") for w in weights])
    return ours, theirs


def _inputs(seed=1, shape=SHAPE):
    rng = np.random.default_rng(seed)
    # Per-channel offsets and scales, so that mean/variance are far from 0/1.
    return (rng.normal(2.0, 3.0, shape) * rng.uniform(0.2, 4.0, shape[-1])
            ).astype("float32")


def _op_types(layer, x, training):
    fn = tf.function(lambda t: layer(t, training=training))
    return {op.type for op in fn.get_concrete_function(
        tf.TensorSpec(x.shape, x.dtype)).graph.get_operations()}


def test_inference_is_identical_to_keras():
    ours, theirs = _pair()
    x = _inputs()
    np.testing.assert_array_equal(ours(x, training=False), theirs(x, training=False))
    assert not any("FusedBatchNorm" in t for t in _op_types(ours, x, training=False))


def test_training_uses_the_fused_kernel():
    ours, _ = _pair()
    assert "FusedBatchNormV3" in _op_types(ours, _inputs(), training=True)


def test_training_outputs_and_moving_statistics_match_keras_over_steps():
    ours, theirs = _pair(momentum=0.8)
    for step in range(4):
        x = _inputs(seed=10 + step)
        # Outputs are ~N(0, 1) * gamma + beta: float32 summation-order differences only.
        np.testing.assert_allclose(ours(x, training=True), theirs(x, training=True),
                                   rtol=1e-4, atol=1e-5)
        # The biased variance (as Keras), not the kernel's Bessel-corrected one, whose
        # n/(n-1) = 1.0084 factor would exceed this tolerance after one step.
        np.testing.assert_allclose(ours.moving_mean.numpy(), theirs.moving_mean.numpy(),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ours.moving_variance.numpy(),
                                   theirs.moving_variance.numpy(), rtol=1e-5)
    np.testing.assert_allclose(ours(x, training=False), theirs(x, training=False),
                               rtol=1e-4, atol=1e-5)


def test_gradients_match_keras():
    ours, theirs = _pair()
    x = tf.constant(_inputs())
    upstream = tf.constant(np.random.default_rng(3).normal(size=SHAPE).astype("float32"))
    grads = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True) * upstream)
        grads.append(tape.gradient(loss, [x, layer.gamma.value, layer.beta.value]))
    for g_ours, g_theirs, name in zip(*grads, ["x", "gamma", "beta"]):
        scale = float(tf.reduce_max(tf.abs(g_theirs)))
        np.testing.assert_allclose(g_ours, g_theirs, atol=1e-4 * scale, err_msg=name)


def test_trainable_false_runs_in_inference_mode():
    ours, theirs = _pair()
    ours.trainable = False
    before = ours.moving_mean.numpy().copy()
    x = _inputs()
    np.testing.assert_array_equal(ours(x, training=True), theirs(x, training=False))
    np.testing.assert_array_equal(ours.moving_mean.numpy(), before)


@pytest.mark.parametrize("kwargs, make_input, mask", [
    ({"synchronized": True}, lambda: _inputs(), None),
    ({}, lambda: _inputs(shape=(6, 8)), None),  # 2-D input
    ({"axis": 1}, lambda: _inputs(shape=(4, 8, 5, 8)), None),  # channels first
    ({"epsilon": 1e-6}, lambda: _inputs(), None),  # below the kernel's minimum
    ({}, lambda: _inputs(shape=(4, 6, 8)), np.array([[1, 1, 1, 0, 0, 1]] * 4, bool)),
])
def test_cases_the_kernel_cannot_do_keep_keras_path(kwargs, make_input, mask):
    ours = batchnorm.BatchNormalization(momentum=0.9, **kwargs)
    theirs = keras.layers.BatchNormalization(momentum=0.9, **kwargs)
    x = make_input()
    assert not ours.fuses(x, mask)
    np.testing.assert_array_equal(ours(x, training=True, mask=mask),
                                  theirs(x, training=True, mask=mask))
    np.testing.assert_array_equal(ours.moving_variance.numpy(),
                                  theirs.moving_variance.numpy())


@pytest.mark.parametrize("policy, atol", [("mixed_float16", 1e-2), ("mixed_bfloat16", 6e-2)])
def test_half_precision_inputs(policy, atol):
    ours, theirs = _pair(dtype=policy)
    x = tf.cast(_inputs(), ours.compute_dtype)
    assert ours.fuses(x)
    y_ours, y_theirs = ours(x, training=True), theirs(x, training=True)
    assert y_ours.dtype == y_theirs.dtype == ours.compute_dtype
    # Outputs are O(3): float16 keeps ~3 significant digits, bfloat16 ~2.
    np.testing.assert_allclose(tf.cast(y_ours, tf.float32), tf.cast(y_theirs, tf.float32),
                               atol=atol * 3)
    assert ours.moving_variance.dtype == "float32"
    np.testing.assert_allclose(ours.moving_variance.numpy(),
                               theirs.moving_variance.numpy(), rtol=1e-3)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.cast(ours(x, training=True), tf.float32) ** 2)
    assert tape.gradient(loss, x).dtype == x.dtype


def _tiny(fused, **kwargs):
    # dropout=0: a training-mode call must be deterministic to compare two models.
    return mobilenet_v1(input_shape=(32, 32, 3), alpha=0.25, num_classes=5, dropout=0.0,
                        fused_batch_norm=fused, **kwargs)


def test_builder_options():
    fused = _tiny(True, bn_momentum=0.9)
    bns = [l for l in fused.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(bns) == 27
    assert all(type(l) is batchnorm.BatchNormalization and l.momentum == 0.9 for l in bns)
    plain = _tiny(False)
    assert all(type(l) is keras.layers.BatchNormalization and l.momentum == 0.99
               for l in plain.layers if isinstance(l, keras.layers.BatchNormalization))
    assert [v.path for v in fused.weights] == [v.path for v in plain.weights]


@pytest.mark.parametrize("momentum", [1.0, -0.1])
def test_bad_bn_momentum_names_the_argument(momentum):
    with pytest.raises(ValueError, match="bn_momentum"):
        _tiny(True, bn_momentum=momentum)


def test_training_step_gradients_and_statistics_match_plain_model():
    fused, plain = _tiny(True, bn_momentum=0.9), _tiny(False, bn_momentum=0.9)
    randomize_weights(fused, seed=0)
    plain.set_weights(fused.get_weights())
    x = _inputs(seed=4, shape=(8, 32, 32, 3))
    y = tf.one_hot(np.arange(8) % 5, 5)
    grads = []
    for model in (fused, plain):
        with tf.GradientTape() as tape:
            loss = keras.losses.categorical_crossentropy(y, model(x, training=True))
        grads.append(tape.gradient(loss, model.trainable_variables))
    # Some BN betas have a gradient that is 0 up to rounding (a BN follows them), so
    # the tolerance is relative to the largest gradient of the model (0.85 here).
    scale = max(float(np.max(np.abs(g))) for g in grads[1])
    for a, b, v in zip(*grads, fused.trainable_variables):
        np.testing.assert_allclose(a, b, atol=1e-5 * scale, err_msg=v.path)
    for a, b, v in zip(fused.non_trainable_weights, plain.non_trainable_weights,
                       fused.non_trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=v.path)


@pytest.mark.parametrize("source", ["fused", "plain", "keras_applications"])
def test_weights_files_load_both_ways(source, tmp_path):
    images = _inputs(seed=5, shape=(2, 128, 128, 3)) / 4
    build = {
        "fused": lambda: mobilenet_v1((128, 128, 3), alpha=0.25, fused_batch_norm=True),
        "plain": lambda: mobilenet_v1((128, 128, 3), alpha=0.25),
        "keras_applications": lambda: keras.applications.MobileNet(
            (128, 128, 3), alpha=0.25, weights=None),
    }
    src = build[source]()
    randomize_weights(src, seed=6)
    expected = src(images, training=False)
    src.save_weights(str(tmp_path / "w.weights.h5"))
    src.save(str(tmp_path / "legacy.h5"))  # legacy HDF5: loaded by layer name
    targets = ["plain", "keras_applications"] if source == "fused" else ["fused"]
    for target in targets:
        for path in ("w.weights.h5", "legacy.h5"):
            dst = build[target]()
            dst.load_weights(str(tmp_path / path))
            np.testing.assert_array_equal(dst(images, training=False), expected,
                                          err_msg=f"{source} -> {target} via {path}")


def test_keras_file_round_trip(tmp_path):
    model = _tiny(True, bn_momentum=0.95)
    randomize_weights(model, seed=7)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    layer = loaded.get_layer("conv_pw_3_bn")
    assert type(layer) is batchnorm.BatchNormalization and layer.momentum == 0.95
    x = _inputs(seed=8, shape=(2, 32, 32, 3))
    np.testing.assert_array_equal(loaded(x, training=False), model(x, training=False))
    np.testing.assert_allclose(loaded(x, training=True), model(x, training=True),
                               rtol=1e-5, atol=1e-5)
