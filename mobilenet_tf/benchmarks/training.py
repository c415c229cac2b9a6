r"""Training throughput: our loop vs ``keras.applications.MobileNet`` + ``fit`` vs timm.

  python -m mobilenet_tf.benchmarks.training [--settings=128:64,224:32] [--steps=30]
      [--repeats=3] [--alpha=1.0] [--timm_python=$TIMM_VENV/bin/python]
      [--timm_steps=N]
      [--jpeg] [--jpeg_dir=DIR]

For each RESOLUTION:BATCH setting, in one process and on the same in-memory data (random
normalized images, one-hot labels, a cached repeated ``tf.data`` pipeline):
  * ours: ``trainer.Trainer`` (the custom ``strategy.run`` loop, ``steps_per_loop`` steps
    per ``tf.function`` call; batch norm through the fused kernel, mobilenet_tf/model/batchnorm.py);
  * keras: ``keras.applications.MobileNet(weights=None)`` compiled with the same RMSprop
    and label-smoothed cross-entropy, trained with ``model.fit``;
  * timm: timm's ``mobilenetv1_100`` in PyTorch (same optimizer, loss and batch), in a
    subprocess with ``--timm_python`` (default ``$MOBILENET_TF_TIMM_PYTHON``, else this
    interpreter); skipped with a line saying why when torch/timm are not importable
    (they are the optional ``bench`` extra);
  * with ``--jpeg``, ours end to end: the same loop reading JPEG files through
    ``data.build_input`` from ``--jpeg_dir`` (``DIR/train/<class>``), or Imagenette of
    ``../shared/data/imagenette-224-train.tar``, or generated JPEGs.
Our and Keras' sides exclude their first 10 steps (tracing, warm-up), timm its first 3. Sides alternate ``--repeats``
times and medians are reported, since the machine may be shared; images per second of
process CPU time are reported too (other processes' load disturbs them less).
For GPUs, precisions and XLA: ``python -m mobilenet_tf.benchmarks.precision``.
"""

from __future__ import annotations

import functools
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from mobilenet_tf import data
from mobilenet_tf.benchmarks import imagenette, measure
from mobilenet_tf.benchmarks.settings import parse_settings

FLAGS = flags.FLAGS


def define_flags():
    """The command line's flags, defined only when it runs (importing this module for
    its functions, as the tests do, must not define flags that clash with others)."""
    flags.DEFINE_string("settings", "128:64,224:32", "RESOLUTION:BATCH pairs, comma-separated.")
    flags.DEFINE_float("alpha", 1.0, "Width multiplier (the timm side needs 1.0).")
    flags.DEFINE_integer("steps", 30, "Timed steps per measurement (after 10 warm-up steps).")
    flags.DEFINE_integer("repeats", 3, "Alternating measurements per side (median reported).")
    flags.DEFINE_string("timm_python", "", "Python with torch + timm for the timm side; "
                        f"default ${measure.TIMM_PYTHON_ENV}, else this interpreter.")
    flags.DEFINE_bool("timm", True, "Measure timm's mobilenetv1_100 (PyTorch).")
    flags.DEFINE_integer("timm_steps", 0, "Timed steps of the timm side (after 3 warm-up "
                         "steps; it needs no tracing); 0: --steps.")
    flags.DEFINE_bool("jpeg", False, "Also measure ours end to end from JPEG files.")
    flags.DEFINE_string("jpeg_dir", "", "Folder with train/<class>/*.jpg for --jpeg; default: "
                        "Imagenette from ../shared, else generated JPEGs.")
    flags.DEFINE_integer("jpeg_images", 2000, "JPEG images used end to end (at most).")


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


def _sides(s, inp, timm_python, jpeg_spec):
    sides = {"ours": functools.partial(measure.ours, s, inp),
             "keras": functools.partial(measure.keras_fit, s, inp)}
    if timm_python:
        sides["timm"] = functools.partial(measure.timm_fit, s, timm_python,
                                          FLAGS.timm_steps)
    if jpeg_spec:
        cfg = data.DataConfig(dataset=jpeg_spec, image_size=(s.resolution, s.resolution))
        sides["jpeg"] = functools.partial(measure.ours, s, data_cfg=cfg)
    return sides


def _timm_or_reason():
    if not FLAGS.timm:
        return None, "timm side off (--notimm)"
    if FLAGS.alpha != 1.0:
        return None, "timm side skipped: mobilenetv1_100 is alpha 1.0 (--alpha=1.0)"
    try:
        return measure.timm_python(FLAGS.timm_python), ""
    except measure.TimmUnavailable as err:
        return None, f"timm side skipped: {err}"


def _ratio(row, a, b):
    if a not in row or b not in row:
        return "-", "-"
    return f"{row[a][0] / row[b][0]:.2f}x", f"{row[a][1] / row[b][1]:.2f}x"


def _print_table(rows):
    print("| resolution / batch | ours (img/s) | keras fit (img/s) | timm (img/s) | "
          "ours / keras (wall) | (CPU) | ours / timm (wall) | (CPU) | JPEG / in-memory |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (res, batch), row in rows:
        cells = [f"{row[k][0]:.1f}" if k in row else "-" for k in ("ours", "keras", "timm")]
        jpeg = _ratio(row, "jpeg", "ours")[0]
        print(f"| {res} / {batch} | " + " | ".join(cells) + " | "
              + " | ".join(_ratio(row, "ours", "keras") + _ratio(row, "ours", "timm"))
              + f" | {jpeg} |")


def main(argv):
    del argv
    settings = parse_settings(FLAGS.settings)
    timm_python, reason = _timm_or_reason()
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs, "
          f"alpha {FLAGS.alpha}, {FLAGS.steps} timed steps, {FLAGS.repeats} alternating "
          f"rounds; timm: {timm_python or reason}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        jpeg_spec, jpeg_desc = _jpeg_dataset(tmp) if FLAGS.jpeg else (None, "")
        for res, batch in settings:
            s = measure.Setting(res, batch, FLAGS.steps, FLAGS.alpha)
            print(f"{res} px, batch {batch}:", flush=True)
            row = measure.alternate(
                _sides(s, measure.in_memory(s), timm_python, jpeg_spec), FLAGS.repeats)
            rows.append(((res, batch), row))
            print("  medians: " + ", ".join(f"{k} {v[0]:.1f} img/s ({v[1]:.1f} per CPU-s)"
                                            for k, v in row.items())
                  + f"; ours/keras {_ratio(row, 'ours', 'keras')[0]}, "
                  f"ours/timm {_ratio(row, 'ours', 'timm')[0]}", flush=True)
    if jpeg_desc:
        print(f"\nEnd-to-end data: {jpeg_desc}.")
    if reason:
        print(reason)
    _print_table(rows)


if __name__ == "__main__":
    define_flags()
    app.run(main)
