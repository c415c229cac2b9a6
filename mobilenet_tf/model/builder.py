"""The MobileNet v1 network of Howard et al. 2017, built with the Keras functional API.

The architecture is one declarative table (``STEM_FILTERS`` and ``BLOCKS`` in
``mobilenet_tf.model.architecture``, Table 1 of the paper). The builder reads it; the cost
counter (``costs.py``) reads the built model. Layer names and weight shapes follow
``keras.applications.MobileNet`` exactly (``conv1``, ``conv_dw_N``, ``conv_pw_N``, their
``_bn`` layers, ``conv_preds``), so Keras' published ImageNet weights load into this model
and this model's weights load into Keras'.
"""

from __future__ import annotations

import os

import keras
from keras import layers

from mobilenet_tf.model.architecture import (
    MIN_RESOLUTION, PAPER_RESOLUTIONS, POOLINGS, STEM_FILTERS, STEM_STRIDE, blocks_for,
    check_choice, option_rule)

# Keras' published ImageNet files (the "imagenet" weights option).
KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
_ALPHA_TEXT = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}
# The classifier layer (Keras' name): pretrained loading and fine-tuning find it by it.
CLASSIFIER_LAYER = "conv_preds"


def mobilenet_v1(
    input_shape=(224, 224, 3),
    alpha: float = 1.0,
    depth_multiplier: int = 1,
    dropout: float = 1e-3,
    include_top: bool = True,
    weights=None,
    pooling: str | None = None,
    num_classes: int = 1000,
    classifier_activation: str | None = "softmax",
    variant: str = "mobilenet",
    synchronized_bn: bool = False,
    bn_momentum: float = 0.99,
    name: str | None = None,
    fused_batch_norm: bool = False,
) -> keras.Model:
    """Builds MobileNet v1 (Table 1 of the paper) or one of its baselines.

    Args:
      input_shape: ``(height, width, 3)``; or an int for a square resolution (the
        paper's resolution multiplier: 224, 192, 160, 128). Each side must be >= 32.
      alpha: width multiplier, any value > 0 (paper: 1.0, 0.75, 0.5, 0.25).
      depth_multiplier: channel multiplier of every depthwise conv (>= 1).
      dropout: dropout rate before the classifier, in [0, 1).
      include_top: whether to add pooling, dropout and the 1x1-conv classifier.
      weights: None (random init), a path to a weights file, or "imagenet" (Keras'
        published files, which must already be in the Keras cache when offline).
      pooling: without the top, None (4-D feature map), "avg" or "max".
      num_classes: number of classes of the classifier (>= 1).
      classifier_activation: "softmax", or None for logits.
      variant: "mobilenet"; "conv" (Table 4: every separable pair is a full 3x3 conv);
        "shallow" (Table 5: the five 14x14x512 separable blocks removed).
      synchronized_bn: batch-norm statistics synchronised across replicas (use it
        under multi-worker training so every worker keeps identical moving statistics).
      bn_momentum: momentum of every batch-norm layer's moving statistics, in [0, 1)
        (Keras' default 0.99; slim's MobileNet used 0.9997).
      name: model name; default ``mobilenet_{alpha}_{rows}``.
      fused_batch_norm: train batch norm through TensorFlow's fused kernel
        (``mobilenet_tf.model.batchnorm.BatchNormalization``: faster training steps on
        CPU, docs/benchmarks.md "Training speed: fused batch norm"; same variables and
        inference outputs, weight files interchangeable). Off by
        default so that saved ``.keras`` files hold only Keras' own layers; the trainer
        turns it on for the model it trains.
    """
    if isinstance(input_shape, int):
        input_shape = (input_shape, input_shape, 3)
    input_shape = _check_input_shape(input_shape)
    _check_args(alpha, depth_multiplier, dropout, include_top, pooling, num_classes,
                classifier_activation, variant)
    _check_weights(weights, alpha, depth_multiplier, include_top, num_classes, variant)

    if not 0 <= bn_momentum < 1:
        raise ValueError(f"bn_momentum={bn_momentum!r} is not valid; it must be in [0, 1)")
    if fused_batch_norm:  # imported here: the builder itself runs on any Keras backend
        from mobilenet_tf.model.batchnorm import BatchNormalization as bn_class
    else:
        bn_class = layers.BatchNormalization

    def bn(x, layer_name):
        return bn_class(momentum=bn_momentum, name=layer_name,
                        synchronized=synchronized_bn)(x)

    inputs = layers.Input(shape=input_shape)
    x = _features(inputs, bn, alpha, depth_multiplier, variant)
    x = _top(x, include_top, pooling, dropout, num_classes, classifier_activation)

    if name is None:
        name = f"mobilenet_{alpha:0.2f}_{input_shape[0]}"
        if variant != "mobilenet":
            name += f"_{variant}"
    model = keras.Model(inputs, x, name=name)
    if weights == "imagenet":
        model.load_weights(imagenet_weights_path(alpha, input_shape[0], include_top))
    elif weights is not None:
        model.load_weights(weights)
    return model


def _features(inputs, bn, alpha, depth_multiplier, variant):
    """The stem and the blocks of Table 1 (``bn(x, name)`` adds a batch-norm layer)."""
    x = layers.Conv2D(int(STEM_FILTERS * alpha), 3, strides=STEM_STRIDE, padding="same",
                      use_bias=False, name="conv1")(inputs)
    x = layers.ReLU(6.0, name="conv1_relu")(bn(x, "conv1_bn"))
    for block in blocks_for(variant):
        i = block.block_id
        if block.stride == 2:  # Keras pads bottom/right, then a valid strided conv
            x = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"conv_pad_{i}")(x)
        padding = "same" if block.stride == 1 else "valid"
        filters = int(block.filters * alpha)
        if variant == "conv":
            x = layers.Conv2D(filters, 3, strides=block.stride, padding=padding,
                              use_bias=False, name=f"conv_{i}")(x)
            x = layers.ReLU(6.0, name=f"conv_{i}_relu")(bn(x, f"conv_{i}_bn"))
            continue
        x = layers.DepthwiseConv2D(3, strides=block.stride, padding=padding,
                                   depth_multiplier=depth_multiplier, use_bias=False,
                                   name=f"conv_dw_{i}")(x)
        x = layers.ReLU(6.0, name=f"conv_dw_{i}_relu")(bn(x, f"conv_dw_{i}_bn"))
        x = layers.Conv2D(filters, 1, padding="same", use_bias=False, name=f"conv_pw_{i}")(x)
        x = layers.ReLU(6.0, name=f"conv_pw_{i}_relu")(bn(x, f"conv_pw_{i}_bn"))
    return x


def _top(x, include_top, pooling, dropout, num_classes, classifier_activation):
    """Keras' classifier (pool, dropout, 1x1 conv ``conv_preds``) or the pooling option."""
    if include_top:
        x = layers.GlobalAveragePooling2D(keepdims=True)(x)
        x = layers.Dropout(dropout, name="dropout")(x)
        x = layers.Conv2D(num_classes, 1, padding="same", name=CLASSIFIER_LAYER)(x)
        x = layers.Reshape((num_classes,), name="reshape_2")(x)
        return layers.Activation(classifier_activation, name="predictions")(x)
    if pooling == "avg":
        return layers.GlobalAveragePooling2D()(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D()(x)
    return x


def imagenet_weights_path(alpha: float, rows: int, include_top: bool,
                          instead: str = "pass weights=<path to a weights file>",
                          asked_as: str = "weights='imagenet'") -> str:
    """Path of Keras' published ImageNet MobileNet file, from the Keras cache
    (``$KERAS_HOME/models/``, default ``~/.keras/models/``, read when called) or
    downloaded into it by ``keras.utils.get_file``. The error (one line) starts with
    ``asked_as`` (how the caller's user asked for the file; "" for nothing) and ends with
    ``instead``, the last advice.

    Keras publishes weights for square inputs of 128/160/192/224 rows; other resolutions
    use the 224 file (the convolutions do not depend on the resolution).
    """
    rows = rows if rows in PAPER_RESOLUTIONS else 224
    file_name = f"mobilenet_{_ALPHA_TEXT[alpha]}_{rows}_tf{'' if include_top else '_no_top'}.h5"
    home = os.environ.get("KERAS_HOME", os.path.expanduser(os.path.join("~", ".keras")))
    cached = os.path.join(home, "models", file_name)
    if os.path.exists(cached):
        return cached
    try:
        return keras.utils.get_file(file_name, KERAS_WEIGHTS_URL + file_name,
                                    cache_subdir="models", cache_dir=home)
    except Exception as err:  # no network: say exactly which file to put where
        message = (
            f"could not download {KERAS_WEIGHTS_URL + file_name} ({type(err).__name__}: "
            f"{err}). Offline, put that file at {cached} (Keras looks in "
            f"$KERAS_HOME/models/, default ~/.keras/models/), or {instead}.")
        raise ValueError(" ".join(f"{asked_as + ': ' if asked_as else ''}{message}".split())
                         ) from err


def at_input_size(model: keras.Model, image_size) -> keras.Model:
    """``model`` (a functional image model, e.g. one this builder made) rebuilt to take
    ``(height, width)`` inputs, with the same weights copied in; ``model`` itself when it
    already takes that size. MobileNet is fully convolutional up to its global pooling, so
    the weights fit any input size >= 32: a network trained at 128 px can be evaluated or
    exported at 160 (FixRes: Touvron et al. 2019, "Fixing the train-test resolution
    discrepancy"). ValueError for another size or a model that cannot take it."""
    height, width, _ = _check_input_shape((*tuple(image_size), 3))
    if tuple(model.inputs[0].shape[1:3]) == (height, width):
        return model
    config = model.get_config()
    inputs = [layer for layer in config.get("layers", ())
              if layer["class_name"] == "InputLayer"]
    if len(inputs) != 1:
        raise ValueError(f"model {model.name!r} is not a one-input functional model; it "
                         f"cannot be rebuilt at {height}x{width}")
    shape = list(inputs[0]["config"]["batch_shape"])
    inputs[0]["config"]["batch_shape"] = (shape[0], height, width, *shape[3:])
    try:
        rebuilt = keras.Model.from_config(config)
        rebuilt.set_weights(model.get_weights())
    except (ValueError, TypeError) as err:
        raise ValueError(f"model {model.name!r} cannot take {height}x{width} inputs "
                         f"({str(err).strip().splitlines()[0] if str(err).strip() else err})"
                         ) from None
    return rebuilt


def _check_input_shape(input_shape):
    shape = tuple(input_shape)
    if len(shape) != 3 or shape[2] != 3 or any(
            not isinstance(s, int) or s < MIN_RESOLUTION for s in shape[:2]):
        raise ValueError(
            f"input_shape={input_shape!r} is not valid; expected (height, width, 3) with "
            f"integer height and width >= {MIN_RESOLUTION} (paper resolutions: "
            f"{list(PAPER_RESOLUTIONS)}), or a single int resolution >= {MIN_RESOLUTION}")
    return shape


def _check_args(alpha, depth_multiplier, dropout, include_top, pooling, num_classes,
                classifier_activation, variant):
    for name, value in (("alpha", alpha), ("depth_multiplier", depth_multiplier),
                        ("dropout", dropout), ("variant", variant)):
        rule = option_rule(name, value)  # the rules TrainConfig checks too
        if rule is not None:
            raise ValueError(f"{name}={value!r} is not valid; {rule}")
    if int(STEM_FILTERS * alpha) < 1:
        raise ValueError(f"alpha={alpha!r} is too small: the first layer would have no "
                         f"filters; use alpha >= {1 / STEM_FILTERS}")
    check_choice("pooling", pooling, POOLINGS)
    if include_top and pooling is not None:
        raise ValueError(f"pooling={pooling!r} is only valid with include_top=False; with "
                         "include_top=True the model always average-pools (use pooling=None)")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} is not valid; it must be an "
                         "integer >= 1")
    check_choice("classifier_activation", classifier_activation, ("softmax", None))


def _check_weights(weights, alpha, depth_multiplier, include_top, num_classes, variant):
    if weights is None:
        return
    if weights == "imagenet":
        if variant != "mobilenet" or alpha not in _ALPHA_TEXT or depth_multiplier != 1:
            raise ValueError(
                f"weights='imagenet' exists only for variant='mobilenet', depth_multiplier=1 "
                f"and alpha in {list(_ALPHA_TEXT)}; got variant={variant!r}, "
                f"alpha={alpha!r}, depth_multiplier={depth_multiplier!r}")
        if include_top and num_classes != 1000:
            raise ValueError(f"weights='imagenet' with include_top=True needs "
                             f"num_classes=1000; got num_classes={num_classes}")
        return
    if not isinstance(weights, (str, os.PathLike)) or not os.path.exists(weights):
        raise ValueError(f"weights={weights!r} is not valid; use None, 'imagenet' or the "
                         "path of an existing weights file (.weights.h5 or .h5)")
