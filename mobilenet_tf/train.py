r"""Train MobileNet v1: ``python -m mobilenet_tf.train --flagfile=CFG --workdir=RUN``.

A flag on the command line overrides the flagfile. The flags are the fields of
``training.config.TrainConfig`` (model, schedule, optimization, runtime) and of
``data.DataConfig`` (dataset and augmentation); ``--help`` lists them by topic. Re-running
the same command resumes an interrupted run from its latest checkpoint; a finished run
does nothing. Examples:

  python -m mobilenet_tf.train --flagfile=experiments/quickstart.cfg --workdir=/tmp/quick
  python -m mobilenet_tf.train --flagfile=experiments/imagenette_128.cfg \
      --dataset=folder:/data/imagenette2 --workdir=runs/imagenette_128
"""

from __future__ import annotations

import dataclasses

from absl import flags

from mobilenet_tf import cli
from mobilenet_tf.data.config import DataConfig
from mobilenet_tf.training import config as train_config

FLAGS = flags.FLAGS
cli.define("output", flags.DEFINE_string, "workdir", None, "Run directory: checkpoints, "
           "logs, models, summary. An existing run in it is resumed.", required=True)

_DEFINE = {"float": flags.DEFINE_float, "int": flags.DEFINE_integer,
           "str": flags.DEFINE_string, "Optional[str]": flags.DEFINE_string,
           "bool": flags.DEFINE_bool}
_TRAIN_FIELDS = cli.define_fields(
    [f for f in dataclasses.fields(train_config.TrainConfig) if f.name != "data"], _DEFINE)
_DATA_FIELDS = cli.define_fields(
    dataclasses.fields(DataConfig), _DEFINE,
    skip=set(train_config.DERIVED_DATA_FIELDS) | {f.name for f in _TRAIN_FIELDS})


def config_from_flags() -> train_config.TrainConfig:
    """The TrainConfig the parsed flags describe (raises ValueError naming a bad flag)."""
    train_kwargs = {f.name: FLAGS[f.name].value for f in _TRAIN_FIELDS}
    data_kwargs = {f.name: FLAGS[f.name].value for f in _DATA_FIELDS}
    config = train_config.TrainConfig(data=DataConfig(**data_kwargs), **train_kwargs)
    config.validate()
    return config


def main(argv):
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected arguments {argv[1:]}; options are --flags")
    try:
        config = config_from_flags()
    except ValueError as err:
        raise cli.UsageError(str(err)) from err
    cli.check_dataset(config.data.dataset)
    cli.check_output_dir(FLAGS.workdir)
    trainer = cli.load("mobilenet_tf.training.trainer")  # TensorFlow: only once the flags are valid
    try:  # a RunError's exit status is its reason's (cli.run, docs/training.md)
        trainer.train_and_evaluate(config, FLAGS.workdir)
    except ValueError as err:  # bad data path, batch vs replicas, ...
        raise cli.UsageError(str(err)) from err


if __name__ == "__main__":
    cli.run(main, __doc__)
