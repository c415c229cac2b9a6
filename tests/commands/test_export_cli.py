"""The export command's failures: one line, the documented exit status, nothing left
behind (a full disk, an export folder that cannot be written)."""

import os
import subprocess
import sys

import pytest

import helpers
from helpers import REPO

ENV = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _export(run_dir, export_dir, unprivileged=False):
    cmd = [sys.executable, "-m", "mobilenet_tf.export", f"--workdir={run_dir}",
           f"--export_dir={export_dir}", "--quantize=none", "--verification_images=4",
           "--latency_runs=0"]
    return subprocess.run(helpers.unprivileged(cmd) if unprivileged else cmd, env=ENV,
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def _errors(stderr):
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def test_export_on_a_full_disk_says_one_line_exits_7_and_leaves_nothing(run_dir, tmp_path):
    with helpers.tmpfs(tmp_path / "small", "1m") as mount:
        proc = _export(run_dir, mount / "export")
        assert proc.returncode == 7, proc.stderr[-3000:]
        errors = _errors(proc.stderr)
        assert len(errors) == 1 and "No space left" in errors[0], proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        assert os.listdir(mount) == []  # the staging folder is gone too


def test_an_export_dir_this_user_may_not_write_is_refused_at_once(run_dir, tmp_path):
    if not helpers.permissions_enforced(str(tmp_path)):
        pytest.skip("file permissions are not enforced for this user here")
    (tmp_path / "ro").mkdir(mode=0o555)
    proc = _export(run_dir, tmp_path / "ro" / "export", unprivileged=True)
    assert proc.returncode == 7, proc.stderr[-3000:]
    errors = _errors(proc.stderr)
    assert len(errors) == 1 and f"--export_dir={tmp_path / 'ro' / 'export'}" in errors[0]
    assert os.listdir(tmp_path / "ro") == []
