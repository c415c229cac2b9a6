"""The flags of the commands that open a trained model (``evaluate``, ``predict``): which
model, which of a run's Keras models, and how its input is made (centre crop, input
size). Defined once here, checked by ``check`` before TensorFlow is imported."""

from __future__ import annotations

import dataclasses

from absl import flags

from mobilenet_tf import cli


@dataclasses.dataclass(frozen=True)
class ModelFlags:
    """The absl flag holders ``define`` returns; ``check`` reads them after parsing."""

    model: flags.FlagHolder
    checkpoint: flags.FlagHolder
    crop_fraction: flags.FlagHolder
    resolution: flags.FlagHolder


def define(model_help: str) -> ModelFlags:
    """Defines --model (required; ``model_help`` then the forms it takes), --checkpoint,
    --crop_fraction and --resolution."""
    from mobilenet_tf.data.config import EVAL_CROP_FRACTION
    from mobilenet_tf.rundir.record import DEFAULT_MODEL, MODELS

    return ModelFlags(
        model=cli.define("model", flags.DEFINE_string, "model", None,
                         f"{model_help}: {cli.MODEL_FORMS}.", required=True),
        checkpoint=cli.define(
            "model", flags.DEFINE_enum, "checkpoint", DEFAULT_MODEL, sorted(MODELS),
            "Which Keras model of a run directory: final (the last, EMA, weights) or best "
            "(best validation top-1, chosen on the photos it is then evaluated on)."),
        crop_fraction=cli.define(
            "data", flags.DEFINE_float, "crop_fraction", None,
            f"Eval center crop in (0, 1] (default: the run's, else {EVAL_CROP_FRACTION}); "
            "SavedModels carry their own."),
        resolution=cli.define(
            "model", flags.DEFINE_integer, "resolution", None,
            "Run a Keras model or run directory at this square input size (>= 32; "
            "default: its own), e.g. 160 for a run trained at 128 (FixRes, "
            "docs/results.md); SavedModels and .tflite files keep theirs."))


def check(holders: ModelFlags) -> None:
    """cli.UsageError naming the first bad value: a crop outside (0, 1], an input size
    below the network's smallest, a --model path that does not exist."""
    from mobilenet_tf.model.architecture import MIN_RESOLUTION, RESOLUTION_RULE

    crop, size = holders.crop_fraction.value, holders.resolution.value
    if crop is not None and not 0 < crop <= 1:
        raise cli.UsageError(f"--crop_fraction={crop} must be in (0, 1]")
    if size is not None and size < MIN_RESOLUTION:
        raise cli.UsageError(f"--resolution={size} {RESOLUTION_RULE}")
    cli.check_model_path(holders.model.value)
