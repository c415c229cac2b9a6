"""Image preprocessing: the one normalization, decoding, and the eval crop.

Every path that feeds the network (training, evaluation, the exported graphs, TFLite
metadata, predict) takes its normalization from here: ``MEAN`` and ``STD`` map uint8
pixels to [-1, 1], as the published MobileNet weights expect.
"""

from __future__ import annotations

import tensorflow as tf

from mobilenet_tf.data.config import EVAL_CROP_FRACTION  # noqa: F401  (re-exported)

MEAN = 127.5  # per channel, in uint8 pixel units
STD = 127.5


def normalize(images: tf.Tensor) -> tf.Tensor:
    """uint8 (or float in [0, 255]) pixels -> float32 in [-1, 1]."""
    return (tf.cast(images, tf.float32) - MEAN) / STD


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
    """Encoded JPEG/PNG/BMP/GIF bytes -> uint8 RGB HxWx3.

    Grayscale, RGBA and CMYK (JPEG) become RGB; GIFs give their first frame; 8-bit
    palette BMPs (which ``tf.io.decode_image`` returns as raw palette indices) are mapped
    through their colour table."""
    encoded = tf.convert_to_tensor(encoded, tf.string)
    image = tf.cond(_is_palette_bmp(encoded), lambda: _decode_palette_bmp(encoded),
                    lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False))
    image.set_shape([None, None, 3])
    return image


def _le_uint(encoded, pos, length):
    """Little-endian unsigned int of ``length`` (2 or 4) bytes at ``pos``."""
    raw = tf.io.decode_raw(tf.strings.substr(encoded, pos, length), tf.uint8)
    raw = tf.cast(raw, tf.int64)
    return tf.reduce_sum(raw * tf.constant([1, 256, 65536, 16777216][:length], tf.int64))


def _is_palette_bmp(encoded):
    def header_says_8bit():
        return tf.logical_and(tf.equal(tf.strings.substr(encoded, 0, 2), "BM"),
                              tf.equal(_le_uint(encoded, 28, 2), 8))
    return tf.cond(tf.strings.length(encoded) >= 54, header_says_8bit,
                   lambda: tf.constant(False))


def _decode_palette_bmp(encoded):
    indices = tf.cast(tf.io.decode_bmp(encoded, channels=0)[..., 0], tf.int32)
    header_size = tf.cast(_le_uint(encoded, 14, 4), tf.int32)
    num_colours = tf.cast(_le_uint(encoded, 46, 4), tf.int32)
    num_colours = tf.where(num_colours > 0, tf.minimum(num_colours, 256), 256)
    table = tf.io.decode_raw(tf.strings.substr(encoded, 14 + header_size, 4 * num_colours),
                             tf.uint8)
    table = tf.reshape(table, [-1, 4])[:, 2::-1]  # BGRx -> RGB
    return tf.gather(table, tf.minimum(indices, tf.shape(table)[0] - 1))


def center_crop_and_resize(image: tf.Tensor, size, crop_fraction: float = EVAL_CROP_FRACTION):
    """Eval preprocessing: central crop of ``crop_fraction`` of each side, then a bilinear
    resize to ``size`` = (height, width). Works on one HxWx3 image or a NxHxWx3 batch.
    Returns float32 pixels in [0, 255] (call ``normalize`` after)."""
    shape = tf.shape(image)
    h, w = shape[-3], shape[-2]
    crop_h = tf.maximum(1, tf.cast(tf.cast(h, tf.float32) * crop_fraction, tf.int32))
    crop_w = tf.maximum(1, tf.cast(tf.cast(w, tf.float32) * crop_fraction, tf.int32))
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    image = image[..., top:top + crop_h, left:left + crop_w, :]
    return tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear",
                           antialias=False)


def eval_preprocess(image: tf.Tensor, size, crop_fraction: float = EVAL_CROP_FRACTION):
    """uint8 image(s) -> normalized float32 network input(s) of ``size``."""
    return normalize(center_crop_and_resize(image, size, crop_fraction))
