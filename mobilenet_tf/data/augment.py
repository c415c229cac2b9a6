"""Train-time augmentation, all in-graph so it runs inside tf.data.

Per image (stateless, driven by a per-element ``seed`` int64[2]):
- :func:`random_resized_crop` -- Inception-style crop sampled with
  ``tf.image.stateless_sample_distorted_bounding_box``; for JPEG only the crop window is
  decoded (``tf.image.decode_and_crop_jpeg``), other formats are decoded then cropped;
  images above the pixel limit are decoded at reduced scale (or refused) first;
- :func:`random_flip`, :func:`color_jitter`;
- :func:`randaugment` -- RandAugment from ``keras.layers.RandAugment``'s ops at the
  paper's ranges (:func:`randaugment_layer`), drawn from the image's seed; run by the
  crop, before it is resized up (``random_resized_crop(transform=...)``).
Per batch: :func:`batch_mixer` -- ``keras.layers.MixUp`` / ``keras.layers.CutMix`` on
one-hot labels.

Images stay float32 in [0, 255] here; :func:`preprocessing.normalize` comes last.
"""

from __future__ import annotations

import tensorflow as tf

from mobilenet_tf.data.preprocessing import decode_above_limit, decode_image

# A plain list, not a tf.constant: a TF op at import would start the eager context, after
# which MultiWorkerMirroredStrategy can no longer be created ("Collective ops must be
# configured at program startup").
_WHOLE_IMAGE = [[[0.0, 0.0, 1.0, 1.0]]]


def _sub_seed(seed, k: int):
    return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), k)


def crop_window(image_shape, seed, area_range, aspect_range):
    """``(begin, size)`` of a seeded crop of an image of ``image_shape``: the whole image
    when 10 tries find no window within ``area_range`` and ``aspect_range``."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        image_shape, bounding_boxes=_WHOLE_IMAGE, seed=seed, min_object_covered=0.0,
        aspect_ratio_range=aspect_range, area_range=area_range, max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    return begin, size


def random_resized_crop(data, size, seed, area_range=(0.08, 1.0),
                        aspect_range=(3 / 4, 4 / 3), encoded=True, max_pixels: int = 0,
                        on_refusal=None, name=None, transform=None):
    """Random crop of ``area_range`` of the area and ``aspect_range`` width/height,
    resized (bilinear) to ``size``; ``data`` is encoded bytes (``encoded=True``) or a
    uint8 HxWx3 image. Returns float32 [h, w, 3] in [0, 255].

    Encoded images above ``max_pixels`` (> 0) are decoded at reduced scale or refused as
    :func:`preprocessing.decode_image` does (``on_refusal`` and ``name`` as there). For a JPEG the size
    that picks the crop window also makes that check: an image within the limit costs one
    scalar comparison more than with no limit.

    ``transform`` (float image -> float image of the same size), when given, runs on the
    crop at its own resolution, or at ``size`` where the crop is larger (it is resized
    down first): for photos smaller than the network's input (CIFAR's 32 px) an
    augmentation costs per source pixel, not per upscaled one (RandAugment: about twice
    the training throughput on 32-px photos at 160 px)."""
    seed = _sub_seed(seed, 0)
    area_range = tuple(float(a) for a in area_range)
    aspect_range = tuple(float(a) for a in aspect_range)

    def crop_decoded(image):
        begin, crop = crop_window(tf.shape(image), seed, area_range, aspect_range)
        return tf.slice(image, begin, crop)

    if encoded:
        def jpeg():
            shape = tf.image.extract_jpeg_shape(data)

            def within_limit():
                begin, crop = crop_window(shape, seed, area_range, aspect_range)
                window = tf.stack([begin[0], begin[1], crop[0], crop[1]])
                return tf.image.decode_and_crop_jpeg(data, window, channels=3)
            if not max_pixels:
                return within_limit()
            h, w = tf.cast(shape[0], tf.int64), tf.cast(shape[1], tf.int64)
            return tf.cond(h * w > max_pixels, lambda: crop_decoded(decode_above_limit(
                data, h, w, max_pixels, on_refusal, name)), within_limit)

        image = tf.cond(tf.io.is_jpeg(data), jpeg, lambda: crop_decoded(
            decode_image(data, max_pixels, on_refusal, name)))
    else:
        image = crop_decoded(data)
    image.set_shape([None, None, 3])
    # uint8 in, float32 out: the resize reads the pixels it needs, with no float copy of
    # the whole crop (center_crop_and_resize says why).
    if transform is not None:
        at_most_size = tf.minimum(tf.shape(image)[:2], tf.constant(size, tf.int32))
        image = transform(tf.image.resize(image, at_most_size, method="bilinear"))
    return tf.image.resize(image, size, method="bilinear")


def random_flip(image, seed):
    return tf.image.stateless_random_flip_left_right(image, _sub_seed(seed, 1))


def color_jitter(image, strength: float, seed):
    """Brightness, contrast and saturation each scaled by U(1-s, 1+s); float [0, 255]."""
    if strength <= 0:
        return image
    lo, hi = 1.0 - strength, 1.0 + strength
    f = tf.random.stateless_uniform([3], _sub_seed(seed, 2), lo, hi)
    image = image * f[0]
    mean = tf.reduce_mean(image, axis=[0, 1, 2], keepdims=True)
    image = (image - mean) * f[1] + mean
    grey = tf.reduce_mean(image, axis=-1, keepdims=True)
    image = (image - grey) * f[2] + grey
    return tf.clip_by_value(image, 0.0, 255.0)


def randaugment_layer(seed=None, magnitude: float = 0.5, num_ops: int = 2):
    """RandAugment (Cubuk et al. 2020) for float images in [0, 255]: ``num_ops`` ops per
    image from ``keras.layers.RandAugment``'s list, at the paper's ranges for
    ``magnitude`` m in [0, 1] (the paper's level 10m of 10; timm's "increasing" forms):
    rotate +-30m degrees, shear +-0.3m, translate +-0.45m of the size (grey fill, as the
    paper), brightness / contrast / colour / sharpness 1 +- 0.9m, posterize to 8 - 4m
    bits, solarize above 256 (1 - m), autocontrast, equalize.

    Not Keras' own ranges: ``RandAugment(factor=0.5)`` rotates by up to 180 degrees,
    shifts by up to half the image with mirrored fill, keeps 1-3 bits in posterize and
    solarizes above a threshold as low as 0 (the whole photo inverted)."""
    import keras

    m, fill = float(magnitude), {"fill_mode": "constant", "fill_value": 128.0}
    if not 0.0 < m <= 1.0:
        raise ValueError(f"RandAugment magnitude must be in (0, 1], got {magnitude}")
    layer = keras.layers.RandAugment(value_range=(0, 255), num_ops=num_ops, factor=m, seed=seed)
    L, pixels = keras.layers, {"value_range": (0, 255), "seed": seed}
    layer.random_rotation = L.RandomRotation(30 * m / 360, seed=seed, **fill)
    layer.random_shear = L.RandomShear(0.3 * m, 0.3 * m, seed=seed, **fill)
    layer.random_translation = L.RandomTranslation(0.45 * m, 0.45 * m, seed=seed, **fill)
    # Keras' brightness adds a delta in units of the range: +-0.45m of it is the paper's
    # 1 +- 0.9m scaling at mid-grey.
    layer.random_brightness = L.RandomBrightness(0.45 * m, **pixels)
    # 1 +- 0.9m: a float contrast factor c would give [1, 1 + c].
    layer.random_contrast = L.RandomContrast((0.9 * m, 0.9 * m), **pixels)
    # Keras only desaturates (0 = the photo, 1 = grey); sharpness' 0.5 is the photo.
    layer.random_color_degeneration = L.RandomColorDegeneration((0.0, 0.9 * m), **pixels)
    layer.random_sharpness = L.RandomSharpness((0.5 - 0.45 * m, 0.5 + 0.45 * m), **pixels)
    bits = round(8 - 4 * m)
    layer.random_posterization = L.RandomPosterization((bits, bits), **pixels)
    layer.solarization = _fixed_solarization(256.0 * (1.0 - m), **pixels)
    return layer


def randaugment(magnitude: float, num_ops: int = 2):
    """``apply(image, seed)``: :func:`randaugment_layer` with every random draw a pure
    function of the image's own ``seed`` (int64[2]), so a run repeats from ``--seed``.

    Keras' layers draw from stateful seed generators (one shared state, and
    ``keras.random`` takes no tensor seed); inside tf.data's parallel map the images
    advance that state in no fixed order, so the same seed gave other ops and strengths
    (measured: 71-96% of a batch's pixels differed). Here each layer's generator is
    replaced by one whose k-th draw in an image's map function is ``fold_in(seed, k)``."""
    import keras

    layer = randaugment_layer(magnitude=magnitude, num_ops=num_ops)
    seeds = _element_seeds()
    for owner in [layer, *(v for v in vars(layer).values() if isinstance(v, keras.Layer))]:
        for name, value in list(vars(owner).items()):
            if isinstance(value, keras.random.SeedGenerator):
                object.__setattr__(owner, name, seeds)  # not tracked: it holds no state

    def apply(image, seed):
        seeds.start(_sub_seed(seed, 3))
        return layer(image, training=True)
    return apply


def _element_seeds():
    """A ``keras.random.SeedGenerator`` whose k-th draw after ``start(seed)`` is
    ``fold_in(seed, k)`` (graph ops on the image's seed tensor, not a shared state)."""
    import keras

    class ElementSeeds(keras.random.SeedGenerator):
        def __init__(self):  # pylint: disable=super-init-not-called (no state variable)
            self.seed, self.draws = None, 0

        def start(self, seed):
            self.seed, self.draws = seed, 0

        def next(self, ordered=True):
            if self.seed is None:
                raise RuntimeError("randaugment(): call it as apply(image, seed)")
            self.draws += 1
            return tf.random.experimental.stateless_fold_in(self.seed, self.draws)

    return ElementSeeds()


def _fixed_solarization(threshold: float, **kwargs):
    """``keras.layers.Solarization`` at one threshold, in pixel values (Keras draws its
    threshold from [lower, upper * 255]: the lower bound unscaled)."""
    import keras

    class FixedSolarization(keras.layers.Solarization):
        def get_random_transformation(self, data, training=True, seed=None):
            out = super().get_random_transformation(data, training, seed)
            out["thresholds"] = out["thresholds"] * 0.0 + threshold
            return out

    return FixedSolarization(threshold_factor=(0.0, 0.0), **kwargs)


def batch_mixer(mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, seed=None):
    """``mix(images, one_hot_labels) -> (images, labels)`` applying MixUp and/or CutMix
    (keras core layers; when both are on each batch gets one of them with probability
    1/2), or None when both are off. Build it outside the tf.data function (the layers
    own seed-generator variables) and call it on batches."""
    import keras

    layers = []
    if mixup_alpha > 0:
        layers.append(keras.layers.MixUp(alpha=mixup_alpha, seed=seed))
    if cutmix_alpha > 0:
        layers.append(keras.layers.CutMix(factor=(cutmix_alpha, cutmix_alpha), seed=seed))
    if not layers:
        return None

    def apply(layer, images, labels):
        out = layer({"images": images, "labels": labels}, training=True)
        return out["images"], out["labels"]

    def mix(images, labels):
        if len(layers) == 1:
            return apply(layers[0], images, labels)
        return tf.cond(tf.random.uniform([]) < 0.5, lambda: apply(layers[0], images, labels),
                       lambda: apply(layers[1], images, labels))
    return mix
