"""The export report: its checks (which fail an export, which are advisory) and its
human-readable form, ``export_report.md``."""

from __future__ import annotations

from mobilenet_tf.data import preprocessing
from mobilenet_tf.inference.loading import takes_plain_pixels
from mobilenet_tf.serving.config import ExportConfig


def checks(config: ExportConfig, report: dict) -> list[dict]:
    """The export's checks: fatal ones (float32 TFLite and the SavedModel reproduce Keras;
    int8 input takes raw pixels) and advisory targets (int8 accuracy, size, latency)."""
    return _fatal_checks(config, report) + _advisory_checks(report)


def _fatal_checks(config: ExportConfig, report: dict) -> list[dict]:
    """The checks that fail an export."""
    checks = []
    f32 = report["tflite"].get("float32")
    if f32:
        ok_agree = f32["top1_agreement_with_keras"] >= config.min_float32_agreement
        ok_diff = f32["max_abs_prob_diff"] <= config.max_float32_prob_diff
        checks.append({
            "name": "float32 TFLite reproduces Keras", "fatal": True,
            "passed": bool(ok_agree and ok_diff),
            "message": (f"float32 TFLite top-1 agreement with Keras "
                        f"{100 * f32['top1_agreement_with_keras']:.2f}% (min "
                        f"{100 * config.min_float32_agreement:.2f}%), max |p - p_keras| "
                        f"{f32['max_abs_prob_diff']:.2e} (max "
                        f"{config.max_float32_prob_diff:.0e})")})
    sm = report.get("saved_model")
    if sm:
        ok = (sm["top1_agreement_with_keras"] >= config.min_float32_agreement
              and sm["max_abs_prob_diff"] <= config.max_float32_prob_diff)
        checks.append({"name": "SavedModel reproduces Keras", "fatal": True, "passed": bool(ok),
                       "message": (f"SavedModel top-1 agreement with Keras "
                                   f"{100 * sm['top1_agreement_with_keras']:.2f}%, max |p - "
                                   f"p_keras| {sm['max_abs_prob_diff']:.2e}")})
    int8 = report["tflite"].get("int8")
    if int8 and int8["input"]["dtype"] == "uint8":
        scale, zero_point = int8["input"]["quantization"]
        checks.append({
            "name": "int8 uint8 input takes raw pixels", "fatal": True,
            "passed": bool(takes_plain_pixels(scale, zero_point)),
            "message": (f"int8 input quantization scale {scale:.6f} zero point {zero_point:g}"
                        f" (raw pixels need 1/{preprocessing.STD:g} and "
                        f"{preprocessing.MEAN:g} +- 0.5, as MediaPipe feeds uint8 models)")})
    return checks


def change_words(change: float) -> str:
    """The int8 top-1 change (points, int8 minus float) against the target of losing at
    most 1.0 point, in words: a gain is a gain, not "within" a limit on losses."""
    if round(change, 2) > 0:
        return f"a gain of {change:.2f} points: int8 loses no accuracy"
    if round(change, 2) == 0:
        return "no change: int8 loses no accuracy"
    verdict = "within" if change >= -1.0 else "OUTSIDE"
    return f"a loss of {-change:.2f} points, {verdict} the target of at most 1.0 point lost"


def _advisory_checks(report: dict) -> list[dict]:
    """The int8 targets (accuracy, size, latency), which do not fail an export; records
    the int8 top-1 change in ``report``."""
    checks = []
    f32, int8 = report["tflite"].get("float32"), report["tflite"].get("int8")
    if not int8:
        return checks
    ref_top1 = f32["top1"] if f32 else report["keras"]["top1"]
    change = 100 * (int8["top1"] - ref_top1)
    report["int8_top1_change_points"] = change
    report["int8_reference"] = "float32 TFLite" if f32 else "Keras"
    checks.append({"name": "int8 top-1 at most 1.0 point below float", "fatal": False,
                   "passed": bool(change >= -1.0),
                   "message": (f"int8 top-1 change vs {report['int8_reference']}: "
                               f"{change:+.2f} points ({change_words(change)})")})
    if f32:
        size_ratio = int8["size_bytes"] / f32["size_bytes"]
        checks.append({"name": "int8 size <= 0.3x float32", "fatal": False,
                       "passed": bool(size_ratio <= 0.3),
                       "message": f"int8/float32 size ratio {size_ratio:.3f}"})
        lat8, lat32 = int8["latency_ms"].get("1"), f32["latency_ms"].get("1")
        if lat8 and lat32:
            checks.append({"name": "int8 latency <= 0.5x float32 (1 thread)",
                           "fatal": False, "passed": bool(lat8 / lat32 <= 0.5),
                           "message": f"int8/float32 median latency ratio "
                                      f"{lat8 / lat32:.3f} (1 thread)"})
    return checks


def fine_tuning(record, summary) -> dict | None:
    """What fine-tuning bought (the run's top-1 and the head-only baseline's, on the
    run's held-out photos), or None when the run did not measure the baseline."""
    baseline = (record.weights.source or {}).get("baseline") or {}
    if summary is None or summary.top1 is None or baseline.get("eval_top1") is None:
        return None
    return {"top1": summary.top1, "baseline_top1": baseline["eval_top1"],
            "points": 100 * (summary.top1 - baseline["eval_top1"]),
            "eval_split": summary.eval_split, "eval_examples": summary.eval_examples}


def fine_tuning_line(ft: dict) -> str:
    return (f"**Fine-tuning (the run's {ft['eval_examples']} `{ft['eval_split']}` photos, "
            f"final weights): fine-tuned {100 * ft['top1']:.1f}%, head-only baseline "
            f"{100 * ft['baseline_top1']:.1f}%, {ft['points']:+.1f} points**")


def trained_size_note(report: dict) -> str:
    """Where the export's input size is not the one the run trained at (--resolution)."""
    trained = report.get("trained_image_size")
    if not trained or None in trained or list(trained) == list(report["image_size"]):
        return ""
    return (f" (trained at {trained[0]}x{trained[1]}; exported at another size with "
            "--resolution)")


def format_report(report: dict) -> str:
    """The human-readable export_report.md."""
    lines = ["# Export report", "",
             f"- run: `{report['workdir']}`", f"- checkpoint: `{report['checkpoint']}`",
             f"- created: {report['created']}",
             f"- input: {report['image_size'][0]}x{report['image_size'][1]} RGB, "
             f"(pixel - {report['normalization']['mean']}) / {report['normalization']['std']}, "
             f"eval center crop {report['crop_fraction']}" + trained_size_note(report),
             f"- verification: {report['verification']['num_images']} images of "
             f"`{report['verification']['dataset']}` split `{report['verification']['split']}`"]
    if report.get("calibration"):
        c = report["calibration"]
        lines.append(f"- int8 calibration: {c['num_images']} images of `{c['dataset']}` "
                     f"split `{c['split']}`")
    lines.append("")
    if report.get("fine_tuning"):
        lines += [fine_tuning_line(report["fine_tuning"]), ""]
    if "int8_top1_change_points" in report:
        change = report["int8_top1_change_points"]
        lines += [f"**int8 top-1 change vs {report['int8_reference']}: {change:+.2f} points** "
                  f"({change_words(change)})", ""]
    lines += ["| model | top-1 | agreement with Keras | max abs prob diff | size (KiB) | "
              "latency 1 thread (ms) | latency 2 threads (ms) |",
              "|---|---|---|---|---|---|---|",
              f"| Keras | {100 * report['keras']['top1']:.2f}% | - | - | "
              f"{report['keras']['size_bytes'] / 1024:.0f} | - | - |"]
    sm = report.get("saved_model")
    if sm:
        lines.append(f"| SavedModel | {100 * sm['top1']:.2f}% | "
                     f"{100 * sm['top1_agreement_with_keras']:.2f}% | "
                     f"{sm['max_abs_prob_diff']:.2e} | {sm['size_bytes'] / 1024:.0f} | - | - |")
    for label, e in report["tflite"].items():
        lat = [f"{e['latency_ms'][t]:.2f}" if e["latency_ms"].get(t) is not None else "-"
               for t in ("1", "2")]
        diff = f"{e['max_abs_prob_diff']:.2e}"
        lines.append(f"| TFLite {label} (`{e['path']}`, {e['input']['dtype']} input) | "
                     f"{100 * e['top1']:.2f}% | {100 * e['top1_agreement_with_keras']:.2f}% | "
                     f"{diff} | {e['size_bytes'] / 1024:.0f} | {lat[0]} | {lat[1]} |")
    lines += ["", "## Checks", ""]
    checks = report.get("checks", [])
    for c in checks:
        mark = "PASS" if c["passed"] else ("FAIL" if c["fatal"] else "MISSED (advisory)")
        lines.append(f"- {mark}: {c['name']} — {c['message']}")
    if any(not c["passed"] and not c["fatal"] for c in checks):
        lines += ["", "MISSED (advisory) is not a failure: the int8 size and latency targets "
                  "are what quantization gives a full-size MobileNet (224x224, alpha 1.0). "
                  "In a small model, fixed parts dominate: the flatbuffer's structure, the "
                  "metadata and labels, int32 biases and per-channel scales in the file, "
                  "and the interpreter's fixed per-invocation overhead (tensor copies, op "
                  "dispatch) in the latency, so the ratios stay above the targets. Only "
                  "FAIL lines fail the export."]
    return "\n".join(lines) + "\n"
