"""--recompute_bn (mobilenet_tf.training.bn_statistics): batch-norm layers of BN-folded
weights get the statistics of the photos they see, and the network computes exactly what
it did in inference mode, and nearly that in training mode."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mobilenet_tf.model.builder import mobilenet_v1
from mobilenet_tf.training import bn_statistics
from train_helpers import toy_task


def _folded_network(fused):
    """A small fitted network whose batch norm is made an identity plus bias in inference
    mode (mean 0, variance 1 - epsilon, gamma 1), as in the shared BN-folded files."""
    keras.utils.set_random_seed(2)
    model = mobilenet_v1((32, 32, 3), alpha=0.25, num_classes=4, dropout=0.0,
                         classifier_activation=None, fused_batch_norm=fused)
    images, labels = toy_task(128, 32, 4, seed=1)
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, labels, batch_size=32, epochs=1, verbose=0)
    for layer in bn_statistics.bn_layers(model):
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape))
        layer.moving_variance.assign(np.full(layer.moving_variance.shape,
                                             1 - layer.epsilon))
        layer.gamma.assign(np.ones(layer.gamma.shape))
    return model


@pytest.mark.parametrize("fused", [True, False])
def test_recomputed_statistics_keep_the_inference_outputs(fused):
    model = _folded_network(fused)
    images, _ = toy_task(96, 32, 4, seed=5)
    before = model.predict(images, verbose=0)
    batches = tf.data.Dataset.from_tensor_slices((images, np.zeros(96))).batch(32)
    assert bn_statistics.recompute(model, batches, limit=96) == 96
    np.testing.assert_allclose(model.predict(images, verbose=0), before,
                               rtol=1e-4, atol=1e-4)
    # Each layer's moving statistics are its input's, measured by hand.
    layer = model.get_layer("conv_pw_3_bn")
    seen = keras.Model(model.inputs, layer.input).predict(images, verbose=0)
    np.testing.assert_allclose(layer.moving_mean.numpy(), seen.mean(axis=(0, 1, 2)),
                               rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(layer.moving_variance.numpy(), seen.var(axis=(0, 1, 2)),
                               rtol=1e-3, atol=1e-4)
    # A training-mode batch holding exactly those photos normalizes by the same numbers.
    training = model(images, training=True).numpy()
    np.testing.assert_allclose(training, before, rtol=1e-3, atol=1e-3)


def test_without_recomputing_training_mode_computes_something_else():
    model = _folded_network(True)
    images, _ = toy_task(96, 32, 4, seed=5)
    before = model.predict(images, verbose=0)
    assert np.abs(model(images, training=True).numpy() - before).max() > 0.1


def test_the_measured_photos_are_counted_and_an_empty_split_is_named():
    model = _folded_network(True)
    images, _ = toy_task(64, 32, 4, seed=5)
    batches = tf.data.Dataset.from_tensor_slices((images, np.zeros(64))).batch(16)
    assert bn_statistics.recompute(model, batches, limit=20) == 32  # whole batches
    with pytest.raises(ValueError, match="gave no images"):
        bn_statistics.recompute(model, batches.take(0))
