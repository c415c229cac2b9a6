"""Export a training run to a SavedModel and TFLite models (with metadata), verified.

    python -m mobilenet_tf.export --workdir=RUN [--formats=saved_model,tflite]
        [--quantize=none,float16,dynamic,int8] [--representative_images=N]

Writes RUN/export (or --export_dir): saved_model/, model_{float32,float16,dynamic,int8}
.tflite, labels.txt, export_report.json and export_report.md. Exits with an error when the
float32 TFLite model does not reproduce the Keras model.
"""

from __future__ import annotations

from absl import app, flags

from mobilenet_tf import exporter, loading

flags.DEFINE_string("workdir", None, "Run directory written by mobilenet_tf.train.")
flags.DEFINE_string("export_dir", None, "Output directory (default: WORKDIR/export).")
flags.DEFINE_enum("checkpoint", "best", sorted(loading.CHECKPOINTS),
                  "best.keras or final.keras of the run.")
flags.DEFINE_list("formats", list(exporter.FORMATS),
                  f"Comma-separated subset of {','.join(exporter.FORMATS)}.")
flags.DEFINE_list("quantize", list(exporter.QUANTIZATIONS),
                  "TFLite variants, comma-separated subset of "
                  f"{','.join(exporter.QUANTIZATIONS)} (none = float32).")
flags.DEFINE_integer("representative_images", 200,
                     "int8 calibration images from the training split (eval preprocessing).")
flags.DEFINE_integer("verification_images", 200,
                     "Held-out images on which every export is compared with Keras.")
flags.DEFINE_enum("int8_io", "uint8", list(exporter.INT8_IO_TYPES),
                  "Input/output type of the int8 model (uint8 for MediaPipe).")
flags.DEFINE_integer("top_k", 5, "Classes returned by the SavedModel signatures.")
flags.DEFINE_string("dataset", None,
                    "Dataset spec for calibration/verification images (default: the run's).")
flags.DEFINE_string("data_dir", None, "tfds data_dir (default: the run's).")
flags.DEFINE_string("calibration_split", None,
                    "Split for int8 calibration images (default: the run's train split).")
flags.DEFINE_string("verification_split", None,
                    "Held-out split (default: the run's eval split, else validation).")
flags.DEFINE_integer("latency_runs", 30, "Timed TFLite invocations per thread count (0: skip).")
flags.DEFINE_float("min_float32_agreement", 0.99,
                   "Fail when float32 TFLite top-1 agreement with Keras is below this.")
flags.DEFINE_float("max_float32_prob_diff", 1e-3,
                   "Fail when float32 TFLite probabilities differ from Keras by more.")
flags.DEFINE_string("model_name", "", "TFLite metadata name (default from the model).")
flags.DEFINE_string("model_version", "", "TFLite metadata version (default from the run).")
flags.DEFINE_string("author", "", "TFLite metadata author.")
flags.DEFINE_string("license", "", "TFLite metadata license.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = exporter.ExportConfig(
        workdir=FLAGS.workdir, export_dir=FLAGS.export_dir, checkpoint=FLAGS.checkpoint,
        formats=tuple(FLAGS.formats), quantize=tuple(FLAGS.quantize),
        representative_images=FLAGS.representative_images,
        verification_images=FLAGS.verification_images, int8_io=FLAGS.int8_io,
        top_k=FLAGS.top_k, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir,
        calibration_split=FLAGS.calibration_split,
        verification_split=FLAGS.verification_split, latency_runs=FLAGS.latency_runs,
        min_float32_agreement=FLAGS.min_float32_agreement,
        max_float32_prob_diff=FLAGS.max_float32_prob_diff, model_name=FLAGS.model_name,
        model_version=FLAGS.model_version, author=FLAGS.author, license=FLAGS.license)
    try:
        report = exporter.export(config)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    except exporter.ExportVerificationError as e:
        raise SystemExit(f"ERROR: {e}") from None
    print(exporter.format_report(report))


if __name__ == "__main__":
    app.run(main)
