"""Image preprocessing: the one normalization, decoding, and the eval crop.

Every path that feeds the network (training, evaluation, the exported graphs, TFLite
metadata, predict) takes its normalization from here: ``MEAN`` and ``STD`` map uint8
pixels to [-1, 1], as the published MobileNet weights expect.
"""

from __future__ import annotations

import sys

import tensorflow as tf

from mobilenet_tf.data.config import EVAL_CROP_FRACTION

GIF_MAGIC = b"GIF8"  # the first bytes of a GIF (GIF87a, GIF89a)
MEAN = 127.5  # per channel, in uint8 pixel units
STD = 127.5


def normalize(images: tf.Tensor) -> tf.Tensor:
    """uint8 (or float in [0, 255]) pixels -> float32 in [-1, 1]."""
    return (tf.cast(images, tf.float32) - MEAN) / STD


def decode_image(encoded: tf.Tensor, max_pixels: int = 0, on_refusal=None,
                 name=None) -> tf.Tensor:
    """Encoded JPEG/PNG/BMP/GIF bytes -> uint8 RGB HxWx3.

    Grayscale, RGBA and CMYK (JPEG) become RGB; GIFs give their first frame; 8-bit
    palette BMPs (which ``tf.io.decode_image`` returns as raw palette indices) are mapped
    through their colour table.

    ``max_pixels`` > 0 bounds the memory of decoding (image bombs): the size is read from
    the header first (:func:`header_shape`), and an image of more pixels goes to
    :func:`decode_above_limit`: decoded at reduced scale if it is a baseline JPEG,
    otherwise refused before decoding (InvalidArgumentError saying why, after
    ``on_refusal(why)``; the data pipeline files the reason there and skips or reports the
    image by its bad image policy). ``name()`` (optional; called only for such an image)
    gives the string tensor that names the image in the reduced-scale warning."""
    encoded = tf.convert_to_tensor(encoded, tf.string)
    if not max_pixels:
        return _decode_any(encoded)
    shape = header_shape(encoded)
    h, w = shape[0], shape[1]
    # The common case takes one branch and decodes as without a limit; a GIF's frames
    # count too (its decoder holds them all: a 1 MB GIF of 300 frames took 1.2 GB).
    image = tf.cond(h * w > max_pixels,
                    lambda: decode_above_limit(encoded, h, w, max_pixels, on_refusal,
                                               name),
                    lambda: _decode_any(encoded, lambda: _decode_gif_within(
                        encoded, h, w, max_pixels, on_refusal)))
    image.set_shape([None, None, 3])
    return image


def decode_above_limit(encoded, h, w, max_pixels: int, on_refusal=None,
                       name=None) -> tf.Tensor:
    """The rare branch of :func:`decode_image`, for an image whose header says ``h`` x
    ``w`` (int64) > ``max_pixels``: a baseline JPEG is decoded at the smallest reduced
    scale (1/2, 1/4, 1/8; libjpeg scales while decoding) that fits, with a warning; any
    other image is refused before decoding: ``on_refusal(why)`` (a callable returning an
    op, e.g. filing the reason in a table; optional) runs, then InvalidArgumentError(why).
    The warning names the image by ``name()`` when given (its file: the warning alone
    does not say which of a dataset's images is that large). The JPEG markers are walked
    only here."""
    h, w = tf.cast(h, tf.int64), tf.cast(w, tf.int64)
    baseline_jpeg = tf.logical_and(tf.io.is_jpeg(encoded),
                                   tf.equal(jpeg_is_progressive(encoded), 0))
    fits = [(-(-h // r)) * (-(-w // r)) <= max_pixels for r in JPEG_SCALES[1:]]
    reducible = [tf.logical_and(f, baseline_jpeg) for f in fits]
    plan = tf.where(reducible[0], 0, tf.where(reducible[1], 1, tf.where(
        reducible[2], 2, len(JPEG_SCALES) - 1)))
    branches = [lambda r=r: _decode_reduced_jpeg(encoded, r, h, w, max_pixels, name)
                for r in JPEG_SCALES[1:]]
    branches.append(lambda: _refuse(encoded, h, w, max_pixels, on_refusal))
    image = tf.switch_case(plan, branches)
    image.set_shape([None, None, 3])
    return image


JPEG_SCALES = (1, 2, 4, 8)  # the reduced scales libjpeg decodes to (ratio 1/r)


def _decode_any(encoded, gif=None):
    """Decodes with ``tf.io.decode_image`` (first frame of a GIF), or the palette BMP
    mapping, or ``gif()`` for a GIF when given."""
    kind = tf.where(_is_palette_bmp(encoded), 1, 0)
    branches = [lambda: _decode_first_frame(encoded), lambda: _decode_palette_bmp(encoded)]
    if gif is not None:
        kind = tf.where(tf.equal(tf.strings.substr(encoded, 0, len(GIF_MAGIC)), GIF_MAGIC),
                        2, kind)
        branches.append(gif)
    image = tf.switch_case(kind, branches)
    image.set_shape([None, None, 3])
    return image


def _decode_gif_within(encoded, h, w, max_pixels, on_refusal):
    """A GIF's first frame, or a refusal when its frames hold more than ``max_pixels``
    together (they are counted up to the first one past the limit)."""
    frames = gif_frames(encoded, max_pixels // tf.maximum(h * w, 1) + 1)
    return tf.cond(h * w * frames > max_pixels,
                   lambda: _refuse(encoded, h, w, max_pixels, on_refusal, frames),
                   lambda: _decode_first_frame(encoded))


def _decode_first_frame(encoded):
    return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def _decode_reduced_jpeg(encoded, ratio, h, w, max_pixels, name=None):
    what = tf.strings.format("a {}x{} JPEG ({} pixels) is above --max_image_pixels={}: "
                             "decoded at 1/{} scale", (w, h, h * w, max_pixels, ratio))
    if name is not None:
        what = tf.strings.join([name(), ": ", what])
    warn = tf.print(tf.strings.join(["WARNING: ", what]), output_stream=sys.stderr)
    with tf.control_dependencies([warn]):
        return tf.io.decode_jpeg(encoded, channels=3, ratio=ratio)


def _refusal_message(encoded, h, w, max_pixels, frames=1):
    frames = tf.cast(frames, tf.int64)
    size = tf.cond(frames > 1, lambda: tf.strings.format(
        "a GIF of at least {} frames of {}x{} ({} pixels decoded together)",
        (frames, w, h, frames * h * w)), lambda: tf.strings.format(
        "{}x{} pixels ({} pixels)", (w, h, h * w)))
    why = tf.gather(tf.constant([
        "only baseline JPEGs can be decoded at reduced scale",
        "a progressive JPEG is buffered whole by the decoder even at reduced scale",
        "even its 1/8-scale JPEG decode is above the limit"]),
        tf.where(tf.io.is_jpeg(encoded),
                 tf.where(jpeg_is_progressive(encoded) > 0, 1, 2), 0))
    why = tf.where(frames > 1, "the GIF decoder holds every frame at once", why)
    return tf.strings.join([
        "image bomb refused before decoding: ", size,
        tf.strings.format(" is above max_image_pixels={} and ", (max_pixels,)), why,
        " (raise --max_image_pixels to accept it)"])


def _refuse(encoded, h, w, max_pixels, on_refusal, frames=1):
    message = _refusal_message(encoded, h, w, max_pixels, frames)
    with tf.control_dependencies([on_refusal(message)] if on_refusal else []):
        check = tf.debugging.Assert(False, [message])
    with tf.control_dependencies([check]):
        return tf.zeros([0, 0, 3], tf.uint8)


def header_shape(encoded: tf.Tensor) -> tf.Tensor:
    """int64 [height, width] read from the header of encoded JPEG, PNG, GIF (logical
    screen) or BMP bytes, without decoding; [0, 0] for other bytes (which then fail to
    decode)."""
    encoded = tf.convert_to_tensor(encoded, tf.string)
    # The first 26 bytes (zero padded), read arithmetically: no branch but the JPEG one.
    head = tf.io.decode_raw(tf.strings.substr(encoded, 0, 26) + b"\0" * 26, tf.uint8)
    head = tf.cast(head[:26], tf.int64)

    def number(pos, length, big_endian=False):
        weights = [256 ** k for k in range(length)]
        return tf.reduce_sum(head[pos:pos + length] * tf.constant(
            weights[::-1] if big_endian else weights, tf.int64))

    def magic(prefix):
        return tf.reduce_all(tf.equal(head[:len(prefix)], list(prefix)))

    bmp_height = number(22, 4)
    candidates = tf.stack([
        tf.stack([number(20, 4, True), number(16, 4, True)]),  # PNG IHDR
        tf.stack([number(8, 2), number(6, 2)]),  # GIF logical screen
        tf.stack([tf.where(bmp_height >= 2**31, 2**32 - bmp_height, bmp_height),
                  number(18, 4)]),  # BMP (negative height: top-down rows)
        tf.zeros([2], tf.int64)])
    kind = tf.where(magic(b"\x89PNG\r\n\x1a\n"), 0, tf.where(magic(GIF_MAGIC), 1, tf.where(
        magic(b"BM"), 2, 3)))
    return tf.cond(tf.io.is_jpeg(encoded),
                   lambda: tf.cast(tf.image.extract_jpeg_shape(encoded)[:2], tf.int64),
                   lambda: tf.gather(candidates, kind))


def _byte(encoded, pos):
    """The int64 byte at ``pos`` of the encoded bytes; 0 at or past the end."""
    end = tf.cast(tf.strings.length(encoded, unit="BYTE"), tf.int64)
    pos = tf.minimum(tf.cast(pos, tf.int64), end)
    return tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, pos, 1) + b"\0",
                                    tf.uint8)[0], tf.int64)


def _be_uint(encoded, pos):
    """Big-endian unsigned 32-bit int at ``pos``."""
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, pos, 4), tf.uint8), tf.int64)
    return tf.reduce_sum(raw * tf.constant([16777216, 65536, 256, 1], tf.int64))


def jpeg_is_progressive(encoded):
    """int64 1 when the first frame marker (SOFn) of the JPEG says progressive, else 0: walks
    the marker segments (each gives its length) from the start of the file."""
    n = tf.cast(tf.strings.length(encoded, unit="BYTE"), tf.int64)

    def is_frame(marker):  # SOF0..SOF15 except DHT (C4), JPG (C8), DAC (CC)
        return tf.logical_and(tf.logical_and(marker >= 0xC0, marker <= 0xCF), tf.logical_and(
            tf.not_equal(marker, 0xC4), tf.logical_and(tf.not_equal(marker, 0xC8),
                                                       tf.not_equal(marker, 0xCC))))

    def cond(pos, marker):
        return tf.logical_and(pos + 4 <= n, tf.logical_not(is_frame(marker)))

    def body(pos, marker):
        marker = _byte(encoded, pos + 1)
        length = _byte(encoded, pos + 2) * 256 + _byte(encoded, pos + 3)
        return tf.where(is_frame(marker), pos, pos + 2 + length), marker

    start = (tf.constant(2, tf.int64), tf.constant(0, tf.int64))
    _, marker = tf.while_loop(cond, body, start, maximum_iterations=1000)
    progressive = tf.reduce_any(tf.equal(marker, [0xC2, 0xC6, 0xCA, 0xCE]))
    return tf.cast(progressive, tf.int64)


def gif_frames(encoded, stop_at) -> tf.Tensor:
    """int64 number of images (frames) in GIF bytes, counted up to ``stop_at``: walks the
    blocks after the header and global colour table. Each image descriptor (0x2C) and
    extension (0x21) is followed by data sub-blocks, each prefixed by its size, ended by a
    0 size; the trailer (0x3B), bytes past the end or anything else end the walk."""
    n = tf.cast(tf.strings.length(encoded, unit="BYTE"), tf.int64)

    def colour_table(packed):  # a colour table follows when bit 7 is set
        return tf.where(packed >= 128, 3 * tf.bitwise.left_shift(
            tf.constant(2, tf.int64), packed % 8), tf.constant(0, tf.int64))

    def cond(pos, frames, in_data):
        return tf.logical_and(pos < n, frames < stop_at)

    def body(pos, frames, in_data):
        b = _byte(encoded, pos)
        image = tf.logical_and(tf.logical_not(in_data), tf.equal(b, 0x2C))
        extension = tf.logical_and(tf.logical_not(in_data), tf.equal(b, 0x21))
        # Skip a sub-block; an image descriptor, its colour table and the LZW size byte;
        # an extension's introducer and label; anything else ends the walk.
        step = tf.where(in_data, b + 1, tf.where(
            image, 10 + colour_table(_byte(encoded, pos + 9)) + 1,
            tf.where(extension, tf.constant(2, tf.int64), n)))
        in_data = tf.logical_or(tf.logical_and(in_data, b > 0),
                                tf.logical_or(image, extension))
        return pos + step, frames + tf.cast(image, tf.int64), in_data

    start = 13 + colour_table(_byte(encoded, 10))
    _, frames, _ = tf.while_loop(cond, body, (start, tf.constant(0, tf.int64),
                                              tf.constant(False)))
    return frames


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
    # The resize takes uint8 and returns float32, reading only the pixels it interpolates:
    # the same values as casting first, without a float copy of the whole crop (4 bytes
    # a value: 430 MB for a 6000x6000 crop, docs/training.md "Image bombs").
    return tf.image.resize(image, size, method="bilinear", antialias=False)


def eval_preprocess(image: tf.Tensor, size, crop_fraction: float = EVAL_CROP_FRACTION):
    """uint8 image(s) -> normalized float32 network input(s) of ``size``."""
    return normalize(center_crop_and_resize(image, size, crop_fraction))
