"""RandAugment's cost: on the crop at its own resolution (ours) vs on the resized crop.

    python -m mobilenet_tf.benchmarks.randaugment --folder=cifar10-small/train
    python -m mobilenet_tf.benchmarks.randaugment          # 500 random 32-px JPEGs

Both pipelines read the same JPEG files and do the same per-image work as training's
(random-resized crop of 25-100% of the area, resized to ``--image_size``, Keras'
RandAugment with 2 ops, factor 0.5), in a parallel tf.data map, batched:
- ours: ``augment.random_resized_crop(..., transform=RandAugment)``, which runs it on the
  crop before the crop is resized up (what ``--randaugment`` does);
- baseline: RandAugment on the crop once resized to ``--image_size`` (what it did before).
Timed in alternating rounds (``pipeline_timing.time_pipelines``); prints the ratio.
"""

from __future__ import annotations

import functools
import os
import tempfile

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags():
    """The command line's flags, defined only when it runs (importing this module for
    its functions, as the tests do, must not define flags that clash with others)."""
    flags.DEFINE_string("folder", None, "Folder of class sub-folders of JPEGs "
                        "(DIR/<class>/*.jpg). Default: 500 random 32x32 JPEGs.")
    flags.DEFINE_integer("image_size", 160, "Output resolution (square).")
    flags.DEFINE_integer("batch_size", 32, "Batch size.")
    flags.DEFINE_integer("batches", 10, "Batches timed per round and pipeline.")
    flags.DEFINE_integer("rounds", 3, "Alternating timing rounds.")


def write_photos(folder: str, count: int = 500, side: int = 32) -> str:
    """``count`` random ``side``-px JPEGs in ``folder``/a/ (for timing only)."""
    import numpy as np
    import tensorflow as tf
    os.makedirs(os.path.join(folder, "a"), exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        tf.io.write_file(os.path.join(folder, "a", f"{i}.jpg"), tf.io.encode_jpeg(pixels))
    return folder


def pipelines(folder: str, image_size: int, batch_size: int) -> dict:
    import tensorflow as tf
    from mobilenet_tf.data import augment
    from mobilenet_tf.data.config import RANDAUGMENT_MAGNITUDE
    files = tf.io.gfile.glob(os.path.join(folder, "*", "*"))
    if not files:
        raise ValueError(f"--folder={folder}: no files in its class sub-folders")
    randaugment = augment.randaugment(RANDAUGMENT_MAGNITUDE)  # the pipeline's, seeded
    size, area = (image_size, image_size), (0.25, 1.0)

    def ours(data, seed):
        return augment.random_resized_crop(data, size, seed, area,
                                           transform=functools.partial(randaugment, seed=seed))

    def baseline(data, seed):
        return randaugment(augment.random_resized_crop(data, size, seed, area), seed)

    def dataset(fn):
        ds = tf.data.Dataset.from_tensor_slices(files).map(tf.io.read_file).cache()
        ds = tf.data.Dataset.zip((ds.repeat(), tf.data.Dataset.random(seed=0).batch(2)))
        ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return {"ours": dataset(ours), "baseline": dataset(baseline)}


def run(folder: str, image_size: int = 160, batch_size: int = 32, batches: int = 10,
        rounds: int = 3) -> dict:
    from mobilenet_tf.benchmarks.pipeline_timing import time_pipelines
    results = time_pipelines(pipelines(folder, image_size, batch_size), batch_size,
                             batches, rounds)
    ours, base = results["ours"], results["baseline"]
    return {"ours_images_per_second": ours.median,
            "baseline_images_per_second": base.median,
            "ratio": ours.median / base.median,
            "cpu_ratio": ours.cpu_median / base.cpu_median,
            "rounds": {k: [round(v) for v in r.images_per_second]
                       for k, r in results.items()}}


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as tmp:
        folder = FLAGS.folder or write_photos(tmp)
        r = run(folder, FLAGS.image_size, FLAGS.batch_size, FLAGS.batches, FLAGS.rounds)
    print(f"{folder}; {os.cpu_count()} CPUs; image_size {FLAGS.image_size}, batch "
          f"{FLAGS.batch_size}, {FLAGS.rounds} rounds x {FLAGS.batches} batches")
    for k in ("ours", "baseline"):
        print(f"{k + ':':10s}{r[k + '_images_per_second']:8.0f} images/s  rounds "
              f"{r['rounds'][k]}")
    print(f"ratio ours/baseline: {r['ratio']:.2f}x wall, {r['cpu_ratio']:.2f}x CPU")


if __name__ == "__main__":
    define_flags()
    app.run(main)
