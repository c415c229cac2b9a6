"""Input-pipeline benchmark: our train pipeline vs a plain Keras baseline, same files.

    python -m mobilenet_tf.benchmarks.input_pipeline --folder=DIR   # DIR/<class>/*.JPEG
    python -m mobilenet_tf.benchmarks.input_pipeline                # extracts a subset of
                                                   # ../shared/data/imagenette-224-train.tar

Measures images/second of
- ours: ``data.build_input`` (folder source, training=True: random-resized crop decoding
  only the crop window, flip, normalization, one-hot labels) at ``--image_size``;
- baseline: ``keras.utils.image_dataset_from_directory`` (decode + resize to 256) then
  ``keras.layers.RandomCrop`` + ``keras.layers.RandomFlip`` in a parallel map, prefetch;
- the consumer: images/second one compiled training step of ``mobilenet_v1(alpha=1.0)``
  at 224 takes (random data, ``--train_batch_size``), i.e. what training needs.
The two pipelines are timed alternately in rounds, one at a time (the machine may be
shared), and the medians compared; CPU-seconds per image are reported too (less sensitive to other load).
"""

from __future__ import annotations

import os
import tempfile
import time

from absl import app, flags

from mobilenet_tf.benchmarks import imagenette
from mobilenet_tf.benchmarks.pipeline_timing import time_pipelines

FLAGS = flags.FLAGS


def define_flags():
    """The command line's flags, defined only when it runs (importing this module for
    its functions, as the tests do, must not define flags that clash with others)."""
    flags.DEFINE_string("folder", None, "Folder of class sub-folders of JPEGs "
                        "(DIR/<class>/*.JPEG). Default: extract --num_images from --tar.")
    flags.DEFINE_string("tar", None, "Imagenette tarball (default: "
                        "<repo>/../shared/data/imagenette-224-train.tar).")
    flags.DEFINE_integer("num_images", 2000, "Images to extract from --tar.")
    flags.DEFINE_integer("image_size", 224, "Output resolution (square).")
    flags.DEFINE_integer("batch_size", 64, "Pipeline batch size.")
    flags.DEFINE_integer("batches", 30, "Batches timed per round and pipeline.")
    flags.DEFINE_integer("rounds", 3, "Alternating timing rounds.")
    flags.DEFINE_integer("train_steps", 5, "Timed train steps (0: skip).")
    flags.DEFINE_integer("train_batch_size", 32, "Train-step batch size.")


def ours(folder: str, image_size: int, batch_size: int):
    from mobilenet_tf import data
    root, split = os.path.split(os.path.abspath(folder).rstrip("/"))
    cfg = data.DataConfig(dataset=f"folder:{root}", image_size=(image_size, image_size))
    return data.build_input(cfg, split=split, training=True,
                            global_batch_size=batch_size).input_fn(None)


def baseline(folder: str, image_size: int, batch_size: int):
    import keras
    import tensorflow as tf
    ds = keras.utils.image_dataset_from_directory(
        folder, label_mode="categorical", image_size=(256, 256), batch_size=batch_size,
        shuffle=True, seed=0, verbose=False)
    crop = keras.layers.RandomCrop(image_size, image_size)
    flip = keras.layers.RandomFlip("horizontal")
    ds = ds.map(lambda x, y: (flip(crop(x)) / 127.5 - 1.0, y),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.repeat().prefetch(tf.data.AUTOTUNE)


def train_step_images_per_second(batch_size: int, steps: int, image_size: int = 224):
    """Images/second consumed by compiled train steps of mobilenet_v1(alpha=1.0)."""
    import keras
    import tensorflow as tf
    from mobilenet_tf import mobilenet_v1
    model = mobilenet_v1((image_size, image_size, 3), alpha=1.0, num_classes=1000)
    opt = keras.optimizers.SGD(0.01, momentum=0.9)
    loss_fn = keras.losses.CategoricalCrossentropy()
    x = tf.random.uniform([batch_size, image_size, image_size, 3], -1, 1)
    y = tf.one_hot(tf.random.uniform([batch_size], 0, 1000, tf.int32), 1000)

    @tf.function(jit_compile=False)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    for _ in range(2):
        step(x, y).numpy()
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y).numpy()
    return steps * batch_size / (time.perf_counter() - start)


def run(folder, image_size=224, batch_size=64, batches=30, rounds=3, train_steps=5,
        train_batch_size=32) -> dict:
    results = time_pipelines({"ours": ours(folder, image_size, batch_size),
                              "baseline": baseline(folder, image_size, batch_size)},
                             batch_size, batches, rounds)
    out = {
        "ours_images_per_second": results["ours"].median,
        "baseline_images_per_second": results["baseline"].median,
        "ratio": results["ours"].median / results["baseline"].median,
        "ours_images_per_cpu_second": results["ours"].cpu_median,
        "baseline_images_per_cpu_second": results["baseline"].cpu_median,
        "cpu_ratio": results["ours"].cpu_median / results["baseline"].cpu_median,
        "rounds": {k: [round(v) for v in r.images_per_second] for k, r in results.items()},
    }
    if train_steps > 0:
        out["train_step_images_per_second"] = train_step_images_per_second(
            train_batch_size, train_steps)
    return out


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as tmp:
        tar = FLAGS.tar or imagenette.DEFAULT_TAR
        folder = FLAGS.folder or os.path.join(imagenette.extract_subset(
            tmp, max(1, FLAGS.num_images // 10), tar_path=tar),
            "train")
        n = sum(len(files) for _, _, files in os.walk(folder))
        print(f"{n} files in {folder}; {os.cpu_count()} CPUs; image_size "
              f"{FLAGS.image_size}, batch {FLAGS.batch_size}, {FLAGS.rounds} rounds x "
              f"{FLAGS.batches} batches")
        r = run(folder, FLAGS.image_size, FLAGS.batch_size, FLAGS.batches, FLAGS.rounds,
                FLAGS.train_steps, FLAGS.train_batch_size)
    print(f"ours:     {r['ours_images_per_second']:8.0f} images/s  "
          f"({r['ours_images_per_cpu_second']:.0f} images per CPU-second)  rounds "
          f"{r['rounds']['ours']}")
    print(f"baseline: {r['baseline_images_per_second']:8.0f} images/s  "
          f"({r['baseline_images_per_cpu_second']:.0f} images per CPU-second)  rounds "
          f"{r['rounds']['baseline']}")
    print(f"ratio ours/baseline: {r['ratio']:.2f}x wall, {r['cpu_ratio']:.2f}x CPU")
    if "train_step_images_per_second" in r:
        t = r["train_step_images_per_second"]
        print(f"mobilenet_v1(alpha=1.0) 224 train step consumes {t:.1f} images/s "
              f"(batch {FLAGS.train_batch_size}); pipeline/consumption = "
              f"{r['ours_images_per_second'] / t:.1f}x")


if __name__ == "__main__":
    define_flags()
    app.run(main)
