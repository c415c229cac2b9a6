"""Print the top-k labels and scores of images (files or folders) with any model format.

    python -m mobilenet_tf.predict --model=RUN_OR_MODEL [--top_k=5] IMAGE_OR_DIR ...

--model: a run directory, a .keras file, an exported SavedModel dir or a .tflite file.
Unreadable images are reported by name (stderr) and the others are still classified; the
exit status is 1 when any image could not be read.
"""

from __future__ import annotations

import dataclasses
import sys

from absl import app, flags

from mobilenet_tf import loading, prediction
from mobilenet_tf.data import preprocessing

flags.DEFINE_string("model", None, "Run directory, .keras file, SavedModel dir or .tflite.")
flags.DEFINE_enum("checkpoint", "best", sorted(loading.CHECKPOINTS),
                  "Which Keras model of a run directory.")
flags.DEFINE_integer("top_k", 5, "How many labels to print per image.")
flags.DEFINE_float("crop_fraction", None,
                   f"Eval center crop (default: the run's, else "
                   f"{preprocessing.EVAL_CROP_FRACTION}); not for SavedModels.")
flags.mark_flag_as_required("model")
FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    model: str
    inputs: tuple[str, ...]
    checkpoint: str = "best"
    top_k: int = 5
    crop_fraction: float | None = None


def run(config: PredictConfig) -> int:
    classifier = loading.load_classifier(config.model, checkpoint=config.checkpoint,
                                         crop_fraction=config.crop_fraction)
    paths = prediction.expand_inputs(config.inputs)
    if not paths:
        raise ValueError(f"no images found in {', '.join(config.inputs)}")
    failed = 0
    for p in prediction.predict_paths(classifier, paths, config.top_k):
        line = prediction.format_prediction(p)
        if p.error:
            failed += 1
            print(line, file=sys.stderr, flush=True)
        else:
            print(line, flush=True)
    if failed:
        print(f"{failed} of {len(paths)} images could not be read", file=sys.stderr)
    return 1 if failed else 0


def main(argv):
    if len(argv) < 2:
        raise app.UsageError("give at least one IMAGE_OR_DIR after the flags")
    if FLAGS.top_k < 1:
        raise app.UsageError(f"--top_k={FLAGS.top_k} must be >= 1")
    config = PredictConfig(model=FLAGS.model, inputs=tuple(argv[1:]),
                           checkpoint=FLAGS.checkpoint, top_k=FLAGS.top_k,
                           crop_fraction=FLAGS.crop_fraction)
    try:
        return run(config)
    except ValueError as e:
        raise app.UsageError(str(e)) from None


if __name__ == "__main__":
    app.run(main)
