r"""Train MobileNet v1: ``python -m mobilenet_tf.train --flagfile=CFG --workdir=RUN``.

A flag on the command line overrides the flagfile. The flags are the fields of
``trainer.TrainConfig`` (model, schedule, optimization, runtime) and of
``data.DataConfig`` (dataset and augmentation); ``--helpfull`` lists them all. Re-running
the same command resumes an interrupted run from its latest checkpoint; a finished run
does nothing. Examples:

  python -m mobilenet_tf.train --flagfile=experiments/quickstart.cfg --workdir=/tmp/quick
  python -m mobilenet_tf.train --flagfile=experiments/imagenette_128.cfg \
      --dataset=folder:/data/imagenette2 --workdir=runs/imagenette_128
"""

from __future__ import annotations

import dataclasses
import sys

from absl import app, flags, logging

from mobilenet_tf import train_config
from mobilenet_tf.data.config import DataConfig

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory: checkpoints, logs, models, summary.")

_DEFINE = {"float": flags.DEFINE_float, "int": flags.DEFINE_integer,
           "str": flags.DEFINE_string, "Optional[str]": flags.DEFINE_string,
           "bool": flags.DEFINE_bool}
_TRAIN_FIELDS = [f for f in dataclasses.fields(train_config.TrainConfig) if f.name != "data"]
_TRAIN_NAMES = {f.name for f in _TRAIN_FIELDS}
_DATA_FIELDS = [f for f in dataclasses.fields(DataConfig)
                if f.name not in train_config.DERIVED_DATA_FIELDS and f.name not in _TRAIN_NAMES]


def _define(field, help_text):
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    if kind not in _DEFINE:
        raise TypeError(f"no flag type for {field.name}: {kind}")
    _DEFINE[kind](field.name, field.default, help_text)


for _f in _TRAIN_FIELDS:
    _define(_f, _f.metadata.get("help", ""))
for _f in _DATA_FIELDS:
    _define(_f, f"Input pipeline (data.DataConfig.{_f.name}).")


def config_from_flags() -> train_config.TrainConfig:
    """The TrainConfig the parsed flags describe (raises ValueError naming a bad flag)."""
    train_kwargs = {f.name: FLAGS[f.name].value for f in _TRAIN_FIELDS}
    data_kwargs = {f.name: FLAGS[f.name].value for f in _DATA_FIELDS}
    config = train_config.TrainConfig(data=DataConfig(**data_kwargs), **train_kwargs)
    config.validate()
    return config


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; options are --flags")
    if not FLAGS["verbosity"].present:  # TF's INFO lines would drown the progress bar
        logging.set_verbosity(logging.WARNING)
    if not FLAGS.workdir:
        raise app.UsageError("--workdir is required: the run directory to write (or resume)")
    try:
        config = config_from_flags()
    except ValueError as err:
        raise app.UsageError(str(err)) from err
    from mobilenet_tf import trainer  # TensorFlow: only once the flags are valid

    try:
        trainer.train_and_evaluate(config, FLAGS.workdir)
    except trainer.RunError as err:  # exit status per reason: docs/training.md
        print(f"\n{type(err).__name__}: {err}", file=sys.stderr, flush=True)
        sys.exit(err.exit_code)
    except ValueError as err:  # bad data path, batch vs replicas, ...
        raise app.UsageError(str(err)) from err


if __name__ == "__main__":
    app.run(main)
