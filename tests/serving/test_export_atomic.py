"""An export appears whole or not at all (mobilenet_tf.serving.staging), and its report lists
exactly the files beside it. Crashes are injected by killing processes: at chosen points
of the swap (a TF-free helper process that dies with os._exit), and at a random moment of
a real ``python -m mobilenet_tf.export``."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from mobilenet_tf import fileio
from mobilenet_tf.serving import staging
from helpers import REPO

ENV = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}

# Writes an export "VERSION" (a few files, a report listing them) into FINAL through
# staging.staged, dying (os._exit, no cleanup) at the point CRASH names.
FAKE_EXPORT = textwrap.dedent("""
    import json, os, shutil, sys
    from mobilenet_tf import fileio
    from mobilenet_tf.serving import staging
    final, version, crash = sys.argv[1:4]

    def die(*args, **kwargs):
        os._exit(9)

    if crash == "after_exchange":          # swapped, old export not yet removed
        staging.shutil.rmtree = die
    if crash.startswith("fallback"):       # a file system without RENAME_EXCHANGE
        staging.exchange = lambda a, b: False
        real_rename, calls = os.rename, []
        def rename(a, b):
            calls.append(a)
            if crash == "fallback_between_renames" and len(calls) == 2:
                die()
            real_rename(a, b)
        staging.os.rename = rename
        if crash == "fallback_after_renames":
            staging.shutil.rmtree = die
    with staging.staged(final) as out:
        os.makedirs(os.path.join(out, "saved_model"))
        for name in ("saved_model/saved_model.pb", "model_float32.tflite", "labels.txt"):
            with open(os.path.join(out, name), "w") as f:
                f.write(version * 1000)
            if crash == "while_writing":
                die()
        report = {"version": version, "files": staging.manifest(out)}
        with open(os.path.join(out, staging.REPORT_JSON), "w") as f:
            json.dump(report, f)
    print("DONE")
""")


def _fake_export(final, version, crash="none"):
    proc = subprocess.run([sys.executable, "-c", FAKE_EXPORT, str(final), version, crash],
                          env=ENV, cwd=REPO, capture_output=True, text=True, timeout=60)
    return proc


def _version(final):
    with open(os.path.join(final, staging.REPORT_JSON)) as f:
        return json.load(f)["version"]


@pytest.mark.parametrize("crash", ["while_writing", "after_exchange",
                                   "fallback_after_renames", "fallback_between_renames"])
def test_crash_during_swap_leaves_old_or_new_and_next_export_cleans(tmp_path, crash):
    final = tmp_path / "export"
    assert _fake_export(final, "old").returncode == 0
    proc = _fake_export(final, "new", crash)
    assert proc.returncode == 9, proc.stderr
    leftovers = staging.leftovers(str(final))
    assert leftovers, "the killed export left nothing behind: the crash was not injected"
    if crash == "fallback_between_renames":
        # The only point where the export directory is missing: the old export is aside,
        # and the next export (or clean_leftovers) puts it back first.
        assert not final.exists()
        staging.clean_leftovers(str(final))
    assert staging.verify(str(final)) == []
    expected = "new" if crash in ("after_exchange", "fallback_after_renames") else "old"
    assert _version(final) == expected
    # The next export removes every leftover and installs itself whole.
    proc = _fake_export(final, "next")
    assert proc.returncode == 0, proc.stderr
    assert staging.verify(str(final)) == [] and _version(final) == "next"
    assert sorted(os.listdir(tmp_path)) == ["export"]


def test_a_running_exports_directory_is_never_removed(tmp_path):
    final = tmp_path / "export"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # a staging directory of a live process (the sleeper), as another export has
        live = tmp_path / f".export.export-tmp.{fileio.host_tag()}.{other.pid}.abc"
        live.mkdir()
        dead = tmp_path / f".export.export-tmp.{fileio.host_tag()}.999999999.abc"
        dead.mkdir()
        elsewhere = tmp_path / ".export.export-tmp.otherhost.1.abc"  # another machine's
        elsewhere.mkdir()
        assert _fake_export(final, "new").returncode == 0
        assert live.exists() and elsewhere.exists() and not dead.exists()
    finally:
        other.kill()
        other.wait()
    staging.clean_leftovers(str(final))
    assert not live.exists()


def test_refuses_to_replace_a_directory_that_is_not_an_export(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="export_dir=.* holds files that are not part of an "
                       "export \\(notes.txt\\)"):
        staging.check_replaceable(str(tmp_path))
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_report_lists_exactly_the_files_beside_it(exported, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(exported[0], copy)
    assert staging.verify(str(copy)) == []
    report = json.loads((copy / "export_report.json").read_text())
    assert {"saved_model/saved_model.pb", "labels.txt", "export_report.md",
            "model_int8.tflite"} <= set(report["files"])
    assert report["files"]["model_int8.tflite"]["size_bytes"] == \
        report["tflite"]["int8"]["size_bytes"]
    with open(copy / "model_int8.tflite", "ab") as f:
        f.write(b"\0")
    (copy / "labels.txt").unlink()
    (copy / "extra.bin").write_bytes(b"x")
    assert staging.verify(str(copy)) == ["missing: labels.txt",
                                           "not in the report: extra.bin",
                                           "differs from the report: model_int8.tflite"]


def _export_cmd(run_dir, export_dir):
    return [sys.executable, "-m", "mobilenet_tf.export", f"--workdir={run_dir}",
            f"--export_dir={export_dir}", "--quantize=none,dynamic",
            "--verification_images=6", "--latency_runs=0"]


def test_sigkill_at_a_random_moment_leaves_a_whole_export(run_dir, tmp_path):
    export_dir = tmp_path / "export"
    start = time.monotonic()
    first = subprocess.run(_export_cmd(run_dir, export_dir), env=ENV, cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    duration = time.monotonic() - start
    old_report = (export_dir / "export_report.json").read_text()
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    # One random moment a run (each run draws its own): past the imports and model
    # loading, up to the end (the writing phase).
    delay = rng.uniform(0.4 * duration, 1.0 * duration)
    proc = subprocess.Popen(_export_cmd(run_dir, export_dir), env=ENV, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    where = f"seed {seed}, killed after {delay:.1f}s of {duration:.1f}s"
    assert staging.verify(str(export_dir)) == [], where
    report = (export_dir / "export_report.json").read_text()
    assert report == old_report or json.loads(report)["created"] >= \
        json.loads(old_report)["created"], where
    last = subprocess.run(_export_cmd(run_dir, export_dir), env=ENV, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert last.returncode == 0, last.stderr[-3000:]
    assert staging.verify(str(export_dir)) == []
    assert sorted(os.listdir(tmp_path)) == ["export"]  # leftovers removed
    assert not [n for n in os.listdir(export_dir) if n.startswith(".")]
