"""Export a training run to a SavedModel and TFLite models (with metadata), verified.

    python -m mobilenet_tf.export --workdir=RUN [--formats=saved_model,tflite]
        [--quantize=none,float16,dynamic,int8] [--representative_images=N]
        [--resolution=N]  (the input size of the exports; default: the run's)

Writes RUN/export (or --export_dir): saved_model/, model_{float32,float16,dynamic,int8}
.tflite, labels.txt, export_report.json and export_report.md, and prints the report.
Exits with status 2 when the float32 TFLite model does not reproduce the Keras model
(the report, written anyway, says why). The TFLite converter's own log lines are shown
only with --verbosity=0 or when the export fails.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from absl import flags

from mobilenet_tf import cli
from mobilenet_tf.serving.config import ExportConfig

EXIT_VERIFICATION_FAILED = 2
_DEFINE = {"str": flags.DEFINE_string, "str | None": flags.DEFINE_string,
           "int": flags.DEFINE_integer, "int | None": flags.DEFINE_integer,
           "float": flags.DEFINE_float,
           "tuple[str, ...]": flags.DEFINE_list}
_FIELDS = cli.define_fields(dataclasses.fields(ExportConfig), _DEFINE)
cli.mark_required("workdir")
FLAGS = flags.FLAGS


def config_from_flags() -> ExportConfig:
    """The ExportConfig the parsed flags describe (ValueError naming a bad flag)."""
    values = {f.name: FLAGS[f.name].value for f in _FIELDS}
    values["formats"], values["quantize"] = tuple(values["formats"]), tuple(values["quantize"])
    config = ExportConfig(**values)
    config.validate()
    return config


def main(argv):
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected arguments: {' '.join(argv[1:])}; options are "
                             "--flags")
    try:
        config = config_from_flags()
    except ValueError as e:
        raise cli.UsageError(str(e)) from None
    cli.check_model_path(config.workdir, "--workdir", "a run directory written by "
                         "mobilenet_tf.train")
    if config.dataset:
        cli.check_dataset(config.dataset)
    cli.check_output_dir(config.export_dir or os.path.join(config.workdir, "export"),
                         "--export_dir")
    exporter = cli.load("mobilenet_tf.serving.exporter")
    from mobilenet_tf.serving import report as export_report

    try:
        with cli.quiet_native_stderr():  # the converter's C++/MLIR chatter
            report = exporter.export(config)
    except ValueError as e:
        raise cli.UsageError(str(e)) from None
    except exporter.ExportVerificationError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_VERIFICATION_FAILED
    print(export_report.format_report(report))
    return 0


if __name__ == "__main__":
    cli.run(main, __doc__)
