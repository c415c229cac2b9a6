"""The export report words the int8 top-1 change as what it is: a gain is not "within the
1.0-point target" (a limit on losses), a loss says whether it stays within it."""

import pytest

from mobilenet_tf.serving import report as export_report


def _report(change):
    return {"workdir": "run", "checkpoint": "best", "created": "now", "image_size": [64, 64],
            "normalization": {"mean": 127.5, "std": 127.5}, "crop_fraction": 0.875,
            "verification": {"num_images": 24, "dataset": "folder:x", "split": "all"},
            "keras": {"top1": 0.9, "size_bytes": 4096}, "tflite": {}, "checks": [],
            "int8_top1_change_points": change, "int8_reference": "float32 TFLite"}


@pytest.mark.parametrize("change, words", [
    (2.0, "+2.00 points** (a gain of 2.00 points: int8 loses no accuracy)"),
    (0.0, "+0.00 points** (no change: int8 loses no accuracy)"),
    (-0.5, "-0.50 points** (a loss of 0.50 points, within the target of at most 1.0 "
           "point lost)"),
    (-1.5, "-1.50 points** (a loss of 1.50 points, OUTSIDE the target of at most 1.0 "
           "point lost)"),
])
def test_int8_change_is_worded_as_a_gain_or_a_loss(change, words):
    text = export_report.format_report(_report(change))
    assert f"**int8 top-1 change vs float32 TFLite: {words}" in text
    assert "within the 1.0-point target" not in text
    if change >= 0:
        assert "within" not in text and "loss of" not in text
