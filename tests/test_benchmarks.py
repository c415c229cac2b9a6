"""Benchmark command lines: argument handling, and a tiny real run on the CPU."""

import subprocess
import sys

import pytest

from mobilenet_tf.benchmarks import measure, precision


def test_parse_settings():
    assert measure.parse_settings("128:64, 224:32") == [(128, 64), (224, 32)]


@pytest.mark.parametrize("text", ["128", "128:0", "16:8", "a:b", "", "128:64:2"])
def test_bad_settings_name_the_flag(text):
    with pytest.raises(ValueError, match="--settings"):
        measure.parse_settings(text)


def test_precision_combinations():
    assert precision.combinations(["float32", "mixed_bfloat16"], ["off", "on"]) == [
        ("float32", False), ("float32", True), ("mixed_bfloat16", False),
        ("mixed_bfloat16", True)]


@pytest.mark.parametrize("precisions, xla, flag", [
    (["float64"], ["off"], "--precisions"), (["float32"], ["yes"], "--xla"),
    ([], ["off"], "--precisions")])
def test_bad_precision_arguments_name_the_flag(precisions, xla, flag):
    with pytest.raises(ValueError, match=flag):
        precision.combinations(precisions, xla)


def test_timm_side_unavailable_names_the_fix(tmp_path):
    with pytest.raises(measure.TimmUnavailable, match="--timm_python"):
        measure.timm_python(str(tmp_path / "no_python"))
    probe = subprocess.run([sys.executable, "-c", "import torch, timm"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip("this interpreter has torch and timm")
    with pytest.raises(measure.TimmUnavailable, match="bench"):
        measure.timm_python(sys.executable)


def test_precision_benchmark_runs_on_cpu():
    results = precision.run([(32, 4)], [("float32", False), ("mixed_bfloat16", False)],
                            steps=2, repeats=1, alpha=0.25, with_keras=False,
                            log=lambda *a, **k: None)
    assert set(results) == {(32, 4, "float32", False), (32, 4, "mixed_bfloat16", False)}
    for row in results.values():
        wall, cpu, runs = row["ours"]
        assert wall > 0 and cpu > 0 and len(runs) == 1
    text = precision.table(results)
    assert "| 32 / 4 | mixed_bfloat16 | off |" in text and "1.00x |" in text
