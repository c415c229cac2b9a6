"""Print the top-k classes and scores of images (files or folders) with any model format.

    python -m mobilenet_tf.predict --model=RUN_OR_MODEL [--top_k=5] [--json] IMAGE_OR_DIR ...

--model: a run directory, a .keras file, an exported SavedModel dir or a .tflite file.
Text: one line per image, ``PATH: NAME SCORE, NAME SCORE, ...`` best first (a name with a
comma is written as a JSON string: ``"a, b" 0.5000``; so is a path holding a comma,
``: ``, a quote, a line break or another unprintable character, so that every image is
one line that reads back). --json: one JSON object per image
per line (JSON Lines) with the path and ``top_k``: label (as in labels.txt), name (its
display name: ImageNet synset IDs become class names), class index and probability; or
the path and ``error`` for an unreadable file. Unreadable images are reported by name
(stderr in text mode) and the others are still classified; the exit status is then 1.
"""

from __future__ import annotations

import dataclasses
import sys

from absl import flags

from mobilenet_tf import cli, model_flags
from mobilenet_tf.rundir.record import DEFAULT_MODEL

_MODEL_FLAGS = model_flags.define("The model")
_TOP_K = cli.define("output", flags.DEFINE_integer, "top_k", 5,
                    "How many classes to print per image (>= 1).")
_JSON = cli.define("output", flags.DEFINE_bool, "json", False,
                   "One JSON object per image per line (JSON Lines) instead of text.")


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    model: str
    inputs: tuple[str, ...]
    checkpoint: str = DEFAULT_MODEL
    top_k: int = 5
    crop_fraction: float | None = None
    json: bool = False
    resolution: int | None = None


def run(config: PredictConfig) -> int:
    from mobilenet_tf.inference import loading
    from mobilenet_tf.inference import prediction

    classifier = loading.load_classifier(config.model, checkpoint=config.checkpoint,
                                         crop_fraction=config.crop_fraction,
                                         resolution=config.resolution)
    paths = prediction.expand_inputs(config.inputs)
    if not paths:
        raise ValueError(f"no images found in {', '.join(config.inputs)}")
    failed = 0
    for p in prediction.predict_paths(classifier, paths, config.top_k):
        failed += bool(p.error)
        if config.json:
            print(prediction.prediction_json(p), flush=True)
        else:
            print(prediction.format_prediction(p), file=sys.stderr if p.error else sys.stdout,
                  flush=True)
    if failed:
        print(f"{failed} of {len(paths)} images could not be read", file=sys.stderr)
    return 1 if failed else 0


def main(argv):
    if len(argv) < 2:
        raise cli.UsageError("give at least one IMAGE_OR_DIR after the flags")
    if _TOP_K.value < 1:
        raise cli.UsageError(f"--top_k={_TOP_K.value} must be >= 1")
    model_flags.check(_MODEL_FLAGS)
    config = PredictConfig(model=_MODEL_FLAGS.model.value, inputs=tuple(argv[1:]),
                           checkpoint=_MODEL_FLAGS.checkpoint.value, top_k=_TOP_K.value,
                           crop_fraction=_MODEL_FLAGS.crop_fraction.value, json=_JSON.value,
                           resolution=_MODEL_FLAGS.resolution.value)
    cli.load("mobilenet_tf.inference.prediction")
    cli.quiet_litert_banner(config.model)
    try:
        return run(config)
    except ValueError as e:
        raise cli.UsageError(str(e)) from None


if __name__ == "__main__":
    cli.run(main, __doc__)
