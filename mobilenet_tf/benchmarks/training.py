r"""Training throughput: our loop vs ``keras.applications.MobileNet`` + ``model.fit``.

  python -m mobilenet_tf.benchmarks.training [--resolutions=224,128] [--batch_size=32]
      [--steps=30] [--repeats=2] [--jpeg_dir=DIR]

For each resolution, in the same process and on the same in-memory data (random
normalized images, one-hot labels, a cached repeated ``tf.data`` pipeline):
  * ours: ``trainer.train_and_evaluate`` (the custom ``strategy.run`` loop,
    ``steps_per_loop`` steps per ``tf.function`` call);
  * keras: ``keras.applications.MobileNet(weights=None)`` compiled with the same RMSprop
    and label-smoothed cross-entropy, trained with ``model.fit``;
  * ours end to end: the same loop reading JPEG files through ``data.build_input``
    (decode + random-resized crop + flip), from ``--jpeg_dir`` (``DIR/train/<class>``), or
    the Imagenette images of ``../shared/data/imagenette-224-train.tar`` (extracted to a
    temp dir), or synthetic JPEGs written to a temp dir.
Both sides exclude the first (tracing) call. Measurements alternate ours/keras
``--repeats`` times and the median is reported, since the machine may be shared; images
per second of process CPU time are reported too, which other processes' load disturbs
less than wall time.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from mobilenet_tf import data, trainer
from mobilenet_tf.benchmarks import imagenette

FLAGS = flags.FLAGS
flags.DEFINE_list("resolutions", ["224", "128"], "Square input resolutions.")
flags.DEFINE_float("alpha", 1.0, "Width multiplier.")
flags.DEFINE_integer("batch_size", 32, "Global batch size.")
flags.DEFINE_integer("steps", 30, "Timed steps per measurement (after one warm-up call).")
flags.DEFINE_integer("repeats", 2, "Alternating measurements per side (median reported).")
flags.DEFINE_integer("num_classes", 10, "Classes of the in-memory task.")
flags.DEFINE_string("jpeg_dir", "", "Folder with train/<class>/*.jpg for the end-to-end "
                    "measurement; default: Imagenette from ../shared, else synthetic JPEGs.")
flags.DEFINE_integer("jpeg_images", 2000, "JPEG images used end to end (at most).")



@dataclasses.dataclass
class InMemoryInput:
    """Random normalized images with one-hot labels, the build_input interface."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list
    global_batch_size: int
    bad_images: object = None

    @property
    def num_examples(self):
        return len(self.labels)

    def dataset(self, batch):
        n = len(self.class_names)
        ds = tf.data.Dataset.from_tensor_slices(
            (self.images, tf.one_hot(self.labels, n))).batch(batch, drop_remainder=True)
        return ds.cache().repeat().prefetch(tf.data.AUTOTUNE)

    def input_fn(self, ctx: tf.distribute.InputContext):
        return self.dataset(ctx.get_per_replica_batch_size(self.global_batch_size))


def _in_memory(resolution, batch, num_classes, seed=0):
    rng = np.random.default_rng(seed)
    n = batch * 8
    images = rng.uniform(-1, 1, (n, resolution, resolution, 3)).astype(np.float32)
    labels = rng.integers(0, num_classes, n).astype(np.int32)
    return InMemoryInput(images, labels, [f"c{i}" for i in range(num_classes)], batch)


def _config(resolution, steps, batch, dataset=None):
    data_cfg = None
    if dataset:
        data_cfg = data.DataConfig(dataset=dataset, image_size=(resolution, resolution))
    return trainer.TrainConfig(
        data=data_cfg, alpha=FLAGS.alpha, resolution=resolution, epochs=1,
        batch_size=batch, steps_per_epoch=steps + 10, steps_per_loop=10,
        optimizer="rmsprop", learning_rate=0.01, lr_schedule="constant",
        weight_decay=0.0, label_smoothing=0.1, ema_decay=0.0, eval_split="",
        train_split="train", log_images=False, verbose=0, checkpoint_every_steps=10 ** 6,
        strategy="auto")


def ours(resolution, steps, batch, inp=None, dataset=None):
    """(images/s over wall time, images/s over process CPU time), first call excluded."""
    with tempfile.TemporaryDirectory() as workdir:
        run = trainer.Trainer(_config(resolution, steps, batch, dataset), workdir, inp)
        run.run()
    images, wall, cpu = (sum(t[i] for t in run.timing[1:]) for i in range(3))
    return images / wall, images / cpu


class _Timer(keras.callbacks.Callback):
    def __init__(self, skip):
        super().__init__()
        self.skip, self.count, self.start = skip, 0, None

    def on_train_batch_end(self, batch, logs=None):
        self.count += 1
        if self.count == self.skip:
            self.start = time.perf_counter()
            self.cpu_start = time.process_time()

    def on_train_end(self, logs=None):
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.cpu_start


def keras_fit(resolution, steps, batch, inp):
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNet(
        input_shape=(resolution, resolution, 3), alpha=FLAGS.alpha, weights=None,
        classes=len(inp.class_names), classifier_activation=None)
    model.compile(optimizer=keras.optimizers.RMSprop(0.01, rho=0.9, momentum=0.9,
                                                     epsilon=1.0),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True,
                                                            label_smoothing=0.1),
                  metrics=["accuracy"])
    timer = _Timer(skip=10)  # as ours: the first 10 steps (tracing) are not timed
    model.fit(inp.dataset(batch), steps_per_epoch=steps + 10, epochs=1, verbose=0,
              callbacks=[timer])
    return steps * batch / timer.seconds, steps * batch / timer.cpu_seconds


def _jpeg_dataset(tmp):
    if FLAGS.jpeg_dir:
        return f"folder:{FLAGS.jpeg_dir}", "given folder"
    if os.path.exists(imagenette.DEFAULT_TAR):
        per_class = max(1, FLAGS.jpeg_images // 10)
        return f"folder:{imagenette.extract_subset(tmp, per_class)}", \
            f"{per_class * 10} Imagenette JPEGs (224x224)"
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(10):
        os.makedirs(os.path.join(tmp, "train", f"c{c}"))
        for i in range(FLAGS.jpeg_images // 10):
            img = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
            Image.fromarray(img).save(os.path.join(tmp, "train", f"c{c}", f"{i}.jpg"),
                                      quality=90)
    return f"folder:{tmp}", f"{FLAGS.jpeg_images} random 256x256 JPEGs"


def main(argv):
    del argv
    batch, steps = FLAGS.batch_size, FLAGS.steps
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"{os.cpu_count()} CPUs, alpha {FLAGS.alpha}, batch {batch}, {steps} timed steps")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        jpeg_spec, jpeg_desc = _jpeg_dataset(tmp)
        for res in [int(r) for r in FLAGS.resolutions]:
            inp = _in_memory(res, batch, FLAGS.num_classes)
            runs = {"ours": [], "keras": [], "jpeg": []}
            for _ in range(FLAGS.repeats):
                runs["ours"].append(ours(res, steps, batch, inp))
                runs["keras"].append(keras_fit(res, steps, batch, inp))
                runs["jpeg"].append(ours(res, steps, batch, dataset=jpeg_spec))
            row = {"resolution": res}
            for side, values in runs.items():
                row[side] = statistics.median(v[0] for v in values)
                row[side + "_cpu"] = statistics.median(v[1] for v in values)
            rows.append(row)
            print(f"{res}px  ours {row['ours']:.1f} img/s  keras fit {row['keras']:.1f} img/s"
                  f"  ratio {row['ours'] / row['keras']:.2f}x (per CPU-second "
                  f"{row['ours_cpu'] / row['keras_cpu']:.2f}x)   ours from JPEG "
                  f"{row['jpeg']:.1f} img/s = {row['jpeg'] / row['ours']:.2f}x of in-memory "
                  f"(per CPU-second {row['jpeg_cpu'] / row['ours_cpu']:.2f}x)   runs (wall, "
                  f"cpu img/s): " + ", ".join(
                      f"{k} {[(round(a, 1), round(b, 1)) for a, b in v]}"
                      for k, v in runs.items()), flush=True)
    print(f"\nEnd-to-end data: {jpeg_desc}.")
    print("| resolution | ours (img/s) | keras MobileNet + fit (img/s) | ratio (wall) | "
          "ratio (CPU) | ours from JPEG (img/s) | JPEG / in-memory (wall) | (CPU) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['resolution']} | {r['ours']:.1f} | {r['keras']:.1f} | "
              f"{r['ours'] / r['keras']:.2f}x | {r['ours_cpu'] / r['keras_cpu']:.2f}x | "
              f"{r['jpeg']:.1f} | {r['jpeg'] / r['ours']:.2f}x | "
              f"{r['jpeg_cpu'] / r['ours_cpu']:.2f}x |")

if __name__ == "__main__":
    app.run(main)
