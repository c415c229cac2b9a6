"""Benchmark command lines: argument handling, and a tiny real run on the CPU."""

import os
import re
import subprocess
import sys

import pytest

from mobilenet_tf.benchmarks import keras_backend, measure, precision
from mobilenet_tf.benchmarks.settings import parse_settings


def test_parse_settings():
    assert parse_settings("128:64, 224:32") == [(128, 64), (224, 32)]


@pytest.mark.parametrize("text", ["128", "128:0", "16:8", "a:b", "", "128:64:2"])
def test_bad_settings_name_the_flag(text):
    with pytest.raises(ValueError, match="--settings"):
        parse_settings(text)


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


def test_keras_backend_policies_name_the_flag():
    assert keras_backend.check_policies(["mixed_bfloat16"]) == ["mixed_bfloat16"]
    for bad in (["float64"], []):
        with pytest.raises(ValueError, match="--policies"):
            keras_backend.check_policies(bad)


def test_keras_backend_table_ratios():
    results = {(224, 128, "float32"): {"ours": (200.0, 100.0, 800.0), "timm": (100.0, 400.0)},
               (224, 128, "mixed_bfloat16"): {"ours": (400.0, 200.0, 1600.0)}}
    text = keras_backend.table(results, backend="jax")
    assert ("| 224 / 128 | float32 | keras jax | 200.0 | 100.0 | 800.0 | 2.00x | 2.00x | "
            "1.00x | 1.00x |") in text
    assert "| 224 / 128 | float32 | torch (timm) | 100.0 | - | 400.0 | - | - |" in text
    assert "| mixed_bfloat16 | keras jax | 400.0 | 200.0 | 1600.0 | - | - | 2.00x | 2.00x |" in text


def test_keras_backend_benchmark_runs_on_cpu():
    """The command line end to end on the TensorFlow backend at a tiny size."""
    env = dict(os.environ, KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="")
    out = subprocess.run(
        [sys.executable, "-m", "mobilenet_tf.benchmarks.keras_backend", "--settings=32:2",
         "--steps=2", "--warmup=1", "--repeats=1", "--policies=float32"],
        capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    row = re.search(r"^\| 32 / 2 \| float32 \| keras tensorflow \| ([\d.]+) \| ([\d.]+) \| "
                    r"([\d.]+) \|", out.stdout, re.M)
    assert row, out.stdout
    assert all(float(v) > 0 for v in row.groups())


def test_randaugment_benchmark_runs_on_cpu(tmp_path):
    # Imported beside modules that define flags of the same names (a clash fails here).
    from mobilenet_tf import train  # noqa: F401  (defines --batch_size and others)
    from mobilenet_tf.benchmarks import input_pipeline, randaugment  # noqa: F401
    folder = randaugment.write_photos(str(tmp_path / "photos"), count=12, side=16)
    r = randaugment.run(folder, image_size=32, batch_size=4, batches=2, rounds=1)
    assert r["ours_images_per_second"] > 0 and r["baseline_images_per_second"] > 0
    assert r["ratio"] == pytest.approx(r["ours_images_per_second"]
                                       / r["baseline_images_per_second"])
    with pytest.raises(ValueError, match="--folder"):
        randaugment.pipelines(str(tmp_path / "empty"), 32, 4)


def test_input_pipeline_benchmark_runs_on_cpu(tmp_path):
    from mobilenet_tf.benchmarks import input_pipeline, randaugment
    folder = randaugment.write_photos(str(tmp_path / "train"), count=12, side=40)
    r = input_pipeline.run(folder, image_size=32, batch_size=4, batches=2, rounds=1,
                           train_steps=0)
    assert r["ours_images_per_second"] > 0 and r["baseline_images_per_second"] > 0
    assert r["ratio"] == pytest.approx(r["ours_images_per_second"]
                                       / r["baseline_images_per_second"])
