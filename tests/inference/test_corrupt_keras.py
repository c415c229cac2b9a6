"""A truncated or damaged .keras file is reported as such, naming the path and what to
do, in every command that loads one (not as Keras' "File not found")."""

import os
import shutil
import subprocess
import sys

import pytest

from mobilenet_tf.inference import loading
from helpers import REPO


def _damaged_run(run_dir, tmp_path, how):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    best = run / "best.keras"
    payload = best.read_bytes()
    if how == "truncated":
        best.write_bytes(payload[: len(payload) // 2])
    else:  # flip bytes inside the archive: the zip directory is intact, a member is not
        middle = len(payload) // 2
        best.write_bytes(payload[:middle] + bytes(b ^ 0xFF for b in payload[middle:middle + 64])
                         + payload[middle + 64:])
    return run, best


@pytest.mark.parametrize("how", ["truncated", "corrupt"])
def test_damaged_best_keras_is_named_with_the_remedy(run_dir, tmp_path, how):
    run, best = _damaged_run(run_dir, tmp_path, how)
    with pytest.raises(ValueError) as info:
        loading.load_classifier(str(run), checkpoint="best")
    message = str(info.value)
    assert f"Keras model {best} is corrupt or truncated" in message
    assert "File not found" not in message
    assert "use the run's other model final.keras (checkpoint/--checkpoint=final)" in message
    # The other model still loads, as the message says.
    assert loading.load_classifier(str(run), checkpoint="final").num_classes == 3


def test_export_cli_reports_a_truncated_best_keras(run_dir, tmp_path):
    run, best = _damaged_run(run_dir, tmp_path, "truncated")
    proc = subprocess.run([sys.executable, "-m", "mobilenet_tf.export", f"--workdir={run}",
                           "--checkpoint=best"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode != 0
    assert f"Keras model {best} is corrupt or truncated" in proc.stderr
    assert not (run / "export").exists()
