"""Evaluate a run directory, .keras file, SavedModel or .tflite on a dataset.

    python -m mobilenet_tf.evaluate --model=PATH --dataset=SPEC [--split=validation] [--json]

Reports top-1, top-5, loss (mean cross-entropy of the probabilities), the number of
images and per-class top-1; --json prints one JSON object with those keys.
"""

from __future__ import annotations

import json

from absl import app, flags

from mobilenet_tf import evaluation, loading
from mobilenet_tf.data import preprocessing

flags.DEFINE_string("model", None, "Run directory, .keras file, SavedModel dir or .tflite.")
flags.DEFINE_string("dataset", None,
                    'Dataset spec: "synthetic", "tfds:NAME[/CONFIG]", "folder:PATH" or '
                    '"tfrecord:GLOB".')
flags.DEFINE_string("split", "validation", "Split, e.g. validation or train[90%:].")
flags.DEFINE_string("data_dir", None, "tfds data_dir.")
flags.DEFINE_enum("checkpoint", "best", sorted(loading.CHECKPOINTS),
                  "Which Keras model of a run directory (final = the EMA/last weights).")
flags.DEFINE_integer("max_images", None, "Evaluate on at most this many images.")
flags.DEFINE_float("crop_fraction", None,
                   f"Eval center crop (default: the run's, else "
                   f"{preprocessing.EVAL_CROP_FRACTION}); not for SavedModels.")
flags.DEFINE_bool("json", False, "Print one JSON object instead of text.")
flags.mark_flags_as_required(["model", "dataset"])
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = evaluation.EvalConfig(model=FLAGS.model, dataset=FLAGS.dataset, split=FLAGS.split,
                                   data_dir=FLAGS.data_dir, checkpoint=FLAGS.checkpoint,
                                   max_images=FLAGS.max_images,
                                   crop_fraction=FLAGS.crop_fraction)
    try:
        result = evaluation.evaluate(config)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    if FLAGS.json:
        print(json.dumps(result.to_dict()))
    else:
        print(evaluation.format_result(result))


if __name__ == "__main__":
    app.run(main)
