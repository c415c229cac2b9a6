r"""Training throughput per precision and XLA setting: ours vs ``keras`` + ``fit``.

One command for a machine with a GPU (it runs as is on a CPU too, slowly):

  python -m mobilenet_tf.benchmarks.precision \
      [--precisions=float32,mixed_float16,mixed_bfloat16] [--xla=off,on] \
      [--settings=224:128] [--steps=50] [--repeats=3] [--alpha=1.0] [--nokeras]

For each RESOLUTION:BATCH setting and each (precision, XLA) combination, our
``trainer.Trainer`` (``--precision``, ``--jit_compile``) and
``keras.applications.MobileNet`` + ``fit`` (the same dtype policy, ``jit_compile``)
train on in-memory random data (see mobilenet_tf/benchmarks/measure.py), alternating
``--repeats`` times; medians and ratios are printed as a Markdown table, with each
combination's speed relative to ours in float32 without XLA. The device is whatever
TensorFlow places the model on (the first GPU if any; ``CUDA_VISIBLE_DEVICES`` picks).
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf
from absl import app, flags

from mobilenet_tf.training.config import PRECISIONS
from mobilenet_tf.benchmarks import measure
from mobilenet_tf.benchmarks.settings import parse_settings

FLAGS = flags.FLAGS


def define_flags():
    """The command line's flags, defined only when it runs (importing this module for
    its functions, as the tests do, must not define flags that clash with others)."""
    flags.DEFINE_list("precisions", list(PRECISIONS), "Keras dtype policies.")
    flags.DEFINE_list("xla", ["off", "on"], "XLA settings: off, on.")
    flags.DEFINE_string("settings", "224:128", "RESOLUTION:BATCH pairs, comma-separated.")
    flags.DEFINE_float("alpha", 1.0, "Width multiplier.")
    flags.DEFINE_integer("steps", 50, "Timed steps per measurement (after 10 warm-up steps).")
    flags.DEFINE_integer("repeats", 3, "Alternating measurements per side (median reported).")
    flags.DEFINE_bool("keras", True, "Also measure keras.applications.MobileNet + fit.")


XLA_VALUES = {"off": False, "on": True}


def combinations(precisions, xla) -> list[tuple[str, bool]]:
    """Validated (precision, xla) pairs; errors name the flag and the valid values."""
    for p in precisions:
        if p not in PRECISIONS:
            raise ValueError(f"--precisions: {p!r} is not valid; allowed values: "
                             f"{list(PRECISIONS)}")
    for x in xla:
        if x not in XLA_VALUES:
            raise ValueError(f"--xla: {x!r} is not valid; allowed values: {list(XLA_VALUES)}")
    if not precisions or not xla:
        raise ValueError("--precisions and --xla need at least one value each")
    return [(p, XLA_VALUES[x]) for p in precisions for x in xla]


def run(settings, combos, steps, repeats, alpha=1.0, with_keras=True, log=print):
    """{(res, batch, precision, xla): {side: (median wall, median cpu, runs)}}."""
    results = {}
    for res, batch in settings:
        for precision, xla in combos:
            s = measure.Setting(res, batch, steps, alpha, precision, xla)
            inp = measure.in_memory(s)
            sides = {"ours": functools.partial(measure.ours, s, inp)}
            if with_keras:
                sides["keras"] = functools.partial(measure.keras_fit, s, inp)
            log(f"{res} px, batch {batch}, {precision}, XLA {'on' if xla else 'off'}:",
                flush=True)
            results[(res, batch, precision, xla)] = measure.alternate(sides, repeats, log)
    return results


def table(results) -> str:
    lines = ["| resolution / batch | precision | XLA | ours (img/s) | keras fit (img/s) | "
             "ours / keras | ours vs float32 no-XLA |", "|---|---|---|---|---|---|---|"]
    for (res, batch, precision, xla), row in results.items():
        base = results.get((res, batch, "float32", False), {}).get("ours")
        ours = row["ours"][0]
        keras_cell = f"{row['keras'][0]:.1f}" if "keras" in row else "-"
        ratio = f"{ours / row['keras'][0]:.2f}x" if "keras" in row else "-"
        rel = f"{ours / base[0]:.2f}x" if base else "-"
        lines.append(f"| {res} / {batch} | {precision} | {'on' if xla else 'off'} | "
                     f"{ours:.1f} | {keras_cell} | {ratio} | {rel} |")
    return "\n".join(lines)


def main(argv):
    del argv
    combos = combinations(FLAGS.precisions, FLAGS.xla)
    settings = parse_settings(FLAGS.settings)
    gpus = tf.config.list_physical_devices("GPU")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, devices: "
          f"{[g.name for g in gpus] or 'CPU only'}", flush=True)
    results = run(settings, combos, FLAGS.steps, FLAGS.repeats, FLAGS.alpha, FLAGS.keras)
    print(table(results))


if __name__ == "__main__":
    define_flags()
    app.run(main)
