"""Evaluate a run directory, .keras file, SavedModel or .tflite on a dataset.

    python -m mobilenet_tf.evaluate --model=PATH --dataset=SPEC [--split=SPLIT] [--json]
        [--resolution=N]  (a Keras model at another input size, e.g. 160 for a 128-px run)

Reports top-1, top-5, loss (mean cross-entropy of the probabilities), the number of
images, per-class top-1 and the input size fed; --json prints one JSON object with those
keys.
"""

from __future__ import annotations

import json

from absl import flags

from mobilenet_tf import cli, model_flags
from mobilenet_tf.data.specs import DATASET_FORMS, parse_split

_MODEL_FLAGS = model_flags.define("The model to evaluate")
_DATASET = cli.define("data", flags.DEFINE_string, "dataset", None,
                      f"The data to evaluate on: {DATASET_FORMS}.", required=True)
_SPLIT = cli.define("data", flags.DEFINE_string, "split", None,
                    "Split, e.g. 'validation' or 'train[90%:]' (per-class percent slices); "
                    "default: 'all' for a folder of class folders (every image), else "
                    "'validation'.")
_DATA_DIR = cli.define("data", flags.DEFINE_string, "data_dir", None,
                       "tfds data_dir (default: tfds' own).")
_MAX_IMAGES = cli.define("data", flags.DEFINE_integer, "max_images", None,
                         "Evaluate on at most this many images (>= 1; default: all).")
_JSON = cli.define("output", flags.DEFINE_bool, "json", False,
                   "Print one JSON object (top1, top5, loss, num_images, "
                   "per_class_accuracy, ...) instead of text.")


def main(argv):
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected arguments: {' '.join(argv[1:])}; options are "
                             "--flags")
    model_flags.check(_MODEL_FLAGS)
    cli.check_dataset(_DATASET.value)
    if _SPLIT.value is not None:
        try:
            parse_split(_SPLIT.value, _DATASET.value)
        except ValueError as err:
            raise cli.UsageError(f"--split: {err}") from None
    if _MAX_IMAGES.value is not None and _MAX_IMAGES.value < 1:
        raise cli.UsageError(f"--max_images={_MAX_IMAGES.value} must be >= 1")
    evaluation = cli.load("mobilenet_tf.inference.evaluation")
    cli.quiet_litert_banner(_MODEL_FLAGS.model.value)
    config = evaluation.EvalConfig(model=_MODEL_FLAGS.model.value, dataset=_DATASET.value,
                                   split=_SPLIT.value, data_dir=_DATA_DIR.value,
                                   checkpoint=_MODEL_FLAGS.checkpoint.value,
                                   max_images=_MAX_IMAGES.value,
                                   crop_fraction=_MODEL_FLAGS.crop_fraction.value,
                                   resolution=_MODEL_FLAGS.resolution.value)
    try:
        result = evaluation.evaluate(config)
    except ValueError as e:
        raise cli.UsageError(str(e)) from None
    if _JSON.value:
        print(json.dumps(result.to_dict()))
    else:
        print(evaluation.format_result(result))


if __name__ == "__main__":
    cli.run(main, __doc__)
