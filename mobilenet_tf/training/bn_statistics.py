"""Batch-norm statistics measured on the user's photos, without changing the network.

Weights with batch norm folded into the convolutions (the shared ImageNet files, Google's
TFLite models) hold identity statistics (mean 0, variance 1): in inference mode each BN
layer computes ``x + beta``, but in training mode it would normalize ``x`` by its batch
statistics and compute something else, so such weights can only be fine-tuned with batch
norm frozen. ``recompute`` measures each BN layer's input mean and variance over
training photos (inference mode) and rewrites the layer so that it computes exactly the
same function with those statistics as its moving averages:

    a x + c  with  a = gamma / sqrt(var + eps),  c = beta - a mean    (the layer now)
    moving mean m, moving variance v, gamma' = a sqrt(v + eps), beta' = c + a m

Every layer keeps its inference output, so one pass measures all layers; in training mode
a batch's statistics are close to (m, v) and the network starts where it was.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

SAMPLE = 512  # training photos measured (the moving averages then track the batches)


def bn_layers(model: keras.Model) -> list:
    return [layer for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)]


def measure(model: keras.Model, batches, limit: int):
    """Per BN layer, (mean, variance) of its input over the first ``limit`` images of
    ``batches`` ((images, labels)), in inference mode."""
    layers = bn_layers(model)
    probe = keras.Model(model.inputs, [layer.input for layer in layers])

    @tf.function
    def moments(images):
        outs = probe(images, training=False)
        axes = lambda t: list(range(len(t.shape) - 1))  # noqa: E731
        return ([tf.reduce_mean(t, axis=axes(t)) for t in outs],
                [tf.reduce_mean(tf.square(t), axis=axes(t)) for t in outs])

    sums = [np.zeros(layer.input.shape[-1]) for layer in layers]
    squares = [np.zeros_like(s) for s in sums]
    seen = 0
    for images, _ in batches:
        n = int(images.shape[0])
        means, sq = moments(images)
        for i in range(len(layers)):
            sums[i] += n * means[i].numpy()
            squares[i] += n * sq[i].numpy()
        seen += n
        if seen >= limit:
            break
    if not seen:
        raise ValueError("batch-norm statistics: the training split gave no images")
    return [(s / seen, np.maximum(q / seen - (s / seen) ** 2, 0.0))
            for s, q in zip(sums, squares)], seen


def recompute(model: keras.Model, batches, limit: int = SAMPLE) -> int:
    """Rewrites every BN layer as the module docstring says; returns the images seen."""
    stats, seen = measure(model, batches, limit)
    for layer, (mean, var) in zip(bn_layers(model), stats):
        eps = layer.epsilon
        gamma = layer.gamma.numpy() if layer.scale else 1.0
        beta = layer.beta.numpy() if layer.center else 0.0
        a = gamma / np.sqrt(layer.moving_variance.numpy() + eps)
        c = beta - a * layer.moving_mean.numpy()
        if layer.scale:
            layer.gamma.assign(a * np.sqrt(var + eps))
        if layer.center:
            layer.beta.assign(c + a * mean)
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(var)
    return seen
