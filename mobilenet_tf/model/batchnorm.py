"""Batch normalization whose training mode runs TensorFlow's fused kernel.

Why: Keras 3's ``BatchNormalization`` on the TensorFlow backend computes training-mode
batch norm from primitives (``tf.nn.moments`` + ``tf.nn.batch_normalization`` and their
gradients: several passes over the activations, each a separate op), where tf.keras used
the single fused kernel ``FusedBatchNormV3`` (one pass for the statistics and the
normalization, one ``FusedBatchNormGradV3`` for the backward pass; cuDNN on GPUs, an
Eigen kernel on CPUs, an XLA lowering under ``jit_compile``). In MobileNet v1 every one
of the 27 convolutions is followed by batch norm, so on CPU a training step with the
unfused layer is much slower (docs/benchmarks.md, "Training speed: fused batch norm").

Design: a subclass of ``keras.layers.BatchNormalization`` that only replaces ``call`` in
training mode, and only where the fused kernel computes the same function:

* input 4-D, normalized axis last (NHWC), dtype float32, float16 or bfloat16 (the kernel
  takes half-precision ``x`` with float32 scale/offset and accumulates in float32; all
  three are registered on CPU and GPU in TF 2.21);
* ``synchronized=False`` (cross-replica statistics keep Keras' path), no ``renorm``, no
  ``mask``, and ``epsilon >= 1.001e-5`` (the kernel silently raises smaller values).

Everything else, and inference mode, defers to ``super().call``, so inference is
bit-identical to Keras' layer. Keras 3's rule that a layer with ``trainable=False`` runs
in inference mode is kept (``training and self.trainable``, as Keras writes it).

Moving statistics follow Keras' rule, ``moving = moving * momentum + batch * (1 -
momentum)``, with the *biased* batch variance Keras uses: the kernel returns the
Bessel-corrected variance ``sum((x - mean)^2) / (n - 1)`` (n = N*H*W), so it is scaled
by ``(n - 1) / n``. Training-mode outputs differ from Keras' only by float rounding
(a different summation order; tests/model/test_batchnorm.py sets the tolerance).

Variables, their names, shapes, order and the class name are those of Keras' layer, so
weight files (``.weights.h5``, whose paths Keras 3 derives from the snake-cased *class
name*, hence this class is also called ``BatchNormalization``; and legacy ``.h5``,
keyed by layer names) load both ways between this layer and Keras'. A ``.keras`` file
records the registered name ``mobilenet_tf>BatchNormalization`` and loads wherever
``mobilenet_tf.model.batchnorm`` has been imported; the builder therefore uses this layer
only when asked (``mobilenet_v1(..., fused_batch_norm=True)``, as the trainer's training
model does), and exported models keep plain Keras layers.
"""

from __future__ import annotations

import keras
import tensorflow as tf

FUSED_DTYPES = ("float32", "float16", "bfloat16")
MIN_FUSED_EPSILON = 1.001e-5  # tf.compat.v1.nn.fused_batch_norm raises smaller values


@keras.saving.register_keras_serializable(package="mobilenet_tf")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` that trains through ``FusedBatchNormV3``.

    Same arguments, variables, config and inference behaviour as Keras' layer.
    """

    def fuses(self, inputs, mask=None) -> bool:
        """Whether a training-mode call on ``inputs`` takes the fused kernel."""
        ndim = len(inputs.shape)
        return (ndim == 4 and self.axis in (-1, 3) and mask is None
                and not self.synchronized and not self.renorm
                and self.epsilon >= MIN_FUSED_EPSILON
                and keras.backend.standardize_dtype(inputs.dtype) in FUSED_DTYPES)

    def call(self, inputs, training=None, mask=None):
        if training and self.trainable and self.fuses(inputs, mask):
            return self._fused_training_call(inputs)
        return super().call(inputs, training=training, mask=mask)

    def _fused_training_call(self, inputs):
        channels = inputs.shape[-1]
        gamma = (tf.cast(self.gamma, tf.float32) if self.scale
                 else tf.ones([channels], tf.float32))
        beta = (tf.cast(self.beta, tf.float32) if self.center
                else tf.zeros([channels], tf.float32))
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, gamma, beta, epsilon=self.epsilon, data_format="NHWC",
            is_training=True)
        # Only the moving averages read these (the kernel's gradient ignores them).
        mean, variance = tf.stop_gradient(mean), tf.stop_gradient(variance)
        n = tf.cast(tf.size(inputs) // channels, tf.float32)
        variance = variance * ((n - 1.0) / n)  # Bessel-corrected -> biased, as Keras
        self.moving_mean.assign(
            self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(outputs, self.compute_dtype)
