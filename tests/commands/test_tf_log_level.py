"""A TF_CPP_MIN_LOG_LEVEL set by the user is honoured both ways: 2 or 3 (asking for fewer
lines) keeps TensorFlow's C++ start-up lines off the console like the default does; 0 or
1 shows them. ``profile`` imports TensorFlow (cli.load) and prints only its table."""

import os
import subprocess
import sys

import pytest

from helpers import REPO

START_UP = ("All log messages before absl::InitializeLog()", "oneDNN custom operations",
            "cuda drivers")


def _start_up_lines(level):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    proc = subprocess.run([sys.executable, "-m", "mobilenet_tf.profile", "--alpha=0.25",
                           "--resolution=128"], cwd=REPO, env={**env, "PYTHONPATH": REPO},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip()  # the table
    return [line for line in proc.stderr.splitlines() if any(s in line for s in START_UP)]


@pytest.mark.parametrize("level", [None, "2", "3"])
def test_quiet_levels_keep_start_up_lines_off(level):
    assert _start_up_lines(level) == []


def test_verbose_level_shows_start_up_lines():
    lines = _start_up_lines("0")
    assert any("absl::InitializeLog()" in line for line in lines), lines
