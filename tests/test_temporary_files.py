"""What the checks leave behind: `.ci/run` removes its ~3 GB environment however it ends,
and passes pytest's exit status on; the tests' temporary files (TensorFlow's AutoGraph
sources, tensorflow_datasets' folders, killed processes' leftovers) go under pytest's own
base folder, not the system's temporary folder (conftest.py, ``pytest_configure``)."""

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from helpers import REPO

# Stands in for python3.11: ``-m venv DIR`` writes an environment whose ``python`` answers
# the script's pip and pytest calls at once, logging them; pytest exits with $FAKE_RC
# (or hangs, for "hang").
FAKE_PYTHON = textwrap.dedent("""\
    #!/usr/bin/env bash
    [ "$1 $2" = "-m venv" ] || exit 9
    mkdir -p "$3/bin"
    echo "PATH=\\"$3/bin:\\$PATH\\"" > "$3/bin/activate"
    cat > "$3/bin/python" <<'EOF'
    #!/usr/bin/env bash
    echo "$*" >> "$FAKE_LOG"
    case "$*" in
      "-m pip list") echo "tensorflow 2.21.0" ;;
      "-m pytest"*) [ "$FAKE_RC" = hang ] && exec sleep 60; exit "$FAKE_RC" ;;
    esac
    EOF
    chmod +x "$3/bin/python"
""")


def _fake_ci(tmp_path, pytest_rc, python=FAKE_PYTHON):
    """(command, environment, scratch folder, call log) of `.ci/run` on the fake ``python``."""
    fake = tmp_path / "python3.11"
    fake.write_text(python)
    fake.chmod(0o755)
    scratch, log = tmp_path / "tmp", tmp_path / "calls.log"
    scratch.mkdir()
    env = {**os.environ, "PYTHON": str(fake), "TMPDIR": str(scratch), "FAKE_LOG": str(log),
           "FAKE_RC": str(pytest_rc)}
    return ["bash", os.path.join(REPO, ".ci", "run")], env, scratch, log


@pytest.mark.parametrize("pytest_rc", [0, 1])
def test_ci_run_passes_pytests_status_on_and_removes_its_environment(tmp_path, pytest_rc):
    command, env, scratch, log = _fake_ci(tmp_path, pytest_rc)
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == pytest_rc, proc.stderr
    calls = log.read_text().splitlines()
    assert "-m pip install -q -e .[test]" in calls
    assert calls[-1].startswith("-m pytest -q -n 2"), calls
    assert list(scratch.iterdir()) == []  # the environment is gone, pass or fail


def test_ci_run_removes_its_environment_when_interrupted(tmp_path):
    """Ctrl-C during the tests: SIGINT to the whole process group, as a terminal sends it."""
    command, env, scratch, log = _fake_ci(tmp_path, "hang")
    proc = subprocess.Popen(command, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 30
        while not (log.exists() and "-m pytest" in log.read_text()):
            assert time.monotonic() < deadline and proc.poll() is None, "pytest never started"
            time.sleep(0.05)
        assert list(scratch.iterdir())  # the environment exists while the tests run
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) != 0
    finally:  # a failed check leaves no hanging fake behind
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert list(scratch.iterdir()) == []


def test_ci_run_removes_its_environment_when_the_install_fails(tmp_path):
    half_made = "#!/usr/bin/env bash\nmkdir -p \"$3/bin\"; touch \"$3/bin/half\"; exit 3\n"
    command, env, scratch, _ = _fake_ci(tmp_path, 0, python=half_made)
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert list(scratch.iterdir()) == []


def test_temporary_files_of_tests_and_their_commands_go_under_pytests_folder(
        tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    assert Path(tempfile.gettempdir()).is_relative_to(base)
    with tempfile.NamedTemporaryFile() as f:
        assert Path(f.name).is_relative_to(base)
    child = subprocess.run([sys.executable, "-c", "import tempfile; print(tempfile.mkdtemp())"],
                           capture_output=True, text=True, timeout=60).stdout.strip()
    assert Path(child).is_relative_to(base) and os.path.isdir(child)
