"""A CI-sized learning test on real photos: 4 Imagenette classes from the shared
tarball (skipped when it is absent), trained from scratch for a few epochs."""

import json
import os
import subprocess
import sys

import pytest

from mobilenet_tf.benchmarks import imagenette
from helpers import REPO

WNIDS = ("n01440764", "n02102040", "n02979186", "n03000684")  # tench, springer,
PER_CLASS = 200                                                 # cassette player, chain saw


@pytest.fixture(scope="module")
def imagenette_subset(tmp_path_factory):
    if not os.path.exists(imagenette.DEFAULT_TAR):
        pytest.skip(f"{imagenette.DEFAULT_TAR} is absent")
    return imagenette.extract_subset(tmp_path_factory.mktemp("imagenette"), PER_CLASS,
                                     classes=WNIDS)


def test_learns_real_images_well_above_chance(imagenette_subset, tmp_path):
    workdir = tmp_path / "run"
    cmd = [sys.executable, "-m", "mobilenet_tf.train", f"--dataset=folder:{imagenette_subset}",
           "--train_split=train[:80%]", "--eval_split=train[80%:]", "--alpha=0.25",
           "--resolution=64", "--epochs=25", "--batch_size=32", "--optimizer=rmsprop",
           "--learning_rate=0.02", "--lr_schedule=cosine", "--bn_momentum=0.9",
           "--ema_decay=0.98", "--min_area=0.25", "--verbose=2", f"--workdir={workdir}"]
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(workdir / "summary.json") as f:
        summary = json.load(f)
    assert summary["eval_examples"] == 4 * PER_CLASS // 5
    # Chance is 25%; with 160 validation images its standard deviation is 3.4 points, so
    # 37.5% is > 3.5 sigma above chance. Measured: 51-58% after 25 epochs; 15 epochs gave
    # 35-50% between runs (multi-threaded training is not bit-reproducible), too near it.
    assert summary["top1"] >= 0.375, summary
