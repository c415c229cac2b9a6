r"""Where a training step's time goes: cumulative ablation of the train step's parts.

  python -m mobilenet_tf.benchmarks.step_breakdown [--resolution=128] [--batch_size=64]
      [--steps=8] [--rounds=2]

Times, in one process on random data, compiled steps (``tf.function``) of MobileNet
alpha 1.0 that do successively more of what the trainer's step (``training.steps``) does:
forward (training mode) -> + backward -> + RMSprop update -> + L2 weight decay ->
+ label smoothing and top-1/top-5 counts -> + EMA of the weights; each with Keras'
batch norm and with the fused one (mobilenet_tf/model/batchnorm.py). Rounds alternate the
variants; the median seconds per step of each is printed, and the difference between
consecutive variants is that part's cost.
"""

from __future__ import annotations

import statistics
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from mobilenet_tf import mobilenet_v1

FLAGS = flags.FLAGS
flags.DEFINE_integer("resolution", 128, "Square input resolution.")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_integer("steps", 8, "Timed steps per measurement (after 2 warm-up steps).")
flags.DEFINE_integer("rounds", 2, "Alternating rounds (median reported).")

PARTS = ("forward", "+backward", "+rmsprop", "+weight decay", "+smoothing/metrics", "+ema")


def make_step(model, level):
    opt = keras.optimizers.RMSprop(0.01, rho=0.9, momentum=0.9, epsilon=1.0)
    opt.build(model.trainable_variables)
    ema = tf.train.ExponentialMovingAverage(0.99)
    kernels = [v for v in model.trainable_variables if "kernel" in v.path]
    if level >= 5:
        ema.apply([w.value for w in model.weights])

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            t = y * 0.9 + 0.01 if level >= 4 else y
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(t, logits))
            if level >= 3:
                loss += 4e-5 * 0.5 * tf.add_n([tf.reduce_sum(k * k) for k in kernels])
        out = [loss]
        if level >= 1:
            grads = tape.gradient(loss, model.trainable_variables)
            if level >= 2:
                opt.apply_gradients(zip(grads, model.trainable_variables))
            else:
                out.append(tf.add_n([tf.reduce_sum(g) for g in grads]))
        if level >= 4:
            true = tf.argmax(y, -1, output_type=tf.int32)
            out += [tf.reduce_sum(tf.cast(tf.math.in_top_k(true, logits, k), tf.float32))
                    for k in (1, 5)]
        if level >= 5:
            ema.apply([w.value for w in model.weights])
        return out
    return step


def main(argv):
    del argv
    r, b = FLAGS.resolution, FLAGS.batch_size
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(-1, 1, (b, r, r, 3)).astype("float32"))
    y = tf.one_hot(rng.integers(0, 10, b), 10)
    steps = {}
    for fused in (False, True):
        model = mobilenet_v1((r, r, 3), num_classes=10, classifier_activation=None,
                             fused_batch_norm=fused)
        for level, part in enumerate(PARTS):
            steps[(fused, part)] = make_step(model, level)
    times = {k: [] for k in steps}
    for _ in range(FLAGS.rounds):
        for key, step in steps.items():
            for _ in range(2):
                step(x, y)
            t0 = time.perf_counter()
            for _ in range(FLAGS.steps):
                out = step(x, y)
            float(out[0])
            times[key].append((time.perf_counter() - t0) / FLAGS.steps)
    print(f"{r} px, batch {b}: median seconds per step (part cost = difference)")
    print("| part | Keras BN: s/step | part | fused BN: s/step | part |")
    print("|---|---|---|---|---|")
    prev = {False: 0.0, True: 0.0}
    for part in PARTS:
        cells = []
        for fused in (False, True):
            t = statistics.median(times[(fused, part)])
            cells += [f"{t:.3f}", f"{t - prev[fused]:+.3f}"]
            prev[fused] = t
        print(f"| {part} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    app.run(main)
