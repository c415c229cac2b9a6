"""Resume guarantees, each with the fault injected: an unreadable newest checkpoint, a
lost checkpoint index, all checkpoints unreadable, history without checkpoints, a changed
configuration, metrics.csv torn or NUL-padded or behind the checkpoint, a second trainer
on the same run directory, a stale lock, a full disk."""

import csv
import glob
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from mobilenet_tf.rundir import record as run_record
from mobilenet_tf.rundir.errors import OutputWriteError, ResumeRefused, RunLocked
from mobilenet_tf.rundir.lock import RunLock
from mobilenet_tf.training import checkpointing, trainer
from mobilenet_tf.training.config import TrainConfig
from mobilenet_tf.training.setup import RunSetup
from train_helpers import toy_inputs
import helpers
from helpers import REPO

ENV = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
BASE = dict(alpha=0.25, resolution=32, batch_size=16, learning_rate=0.01,
            lr_schedule="constant", bn_momentum=0.9, eval_split="val", verbose=0,
            steps_per_loop=4, steps_per_epoch=8, checkpoint_every_steps=4, log_images=False)


def _train(workdir, n_train=256, **overrides):
    train, evaluation = toy_inputs(batch_size=overrides.get("batch_size", 16),
                                   n_train=n_train)
    return trainer.train_and_evaluate(TrainConfig(**{**BASE, **overrides}),
                                      workdir, train, evaluation)


def _epochs(workdir):
    with open(os.path.join(workdir, "metrics.csv"), newline="") as f:
        return [(int(r["epoch"]), int(r["step"])) for r in csv.DictReader(f)]


def _ckpt_steps(workdir):
    return sorted(int(os.path.basename(p)[5:-6]) for p in
                  glob.glob(os.path.join(workdir, "checkpoints", "ckpt-*.index"))
                  if ".unreadable" not in p)


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """A finished 2-epoch run (steps 16; checkpoints 8, 12, 16); copy it before changing."""
    workdir = str(tmp_path_factory.mktemp("two") / "run")
    _train(workdir, epochs=2)
    assert _ckpt_steps(workdir) == [8, 12, 16]
    return workdir


def _copy(src, tmp_path):
    dst = str(tmp_path / "run")
    shutil.copytree(src, dst)
    return dst


def test_unreadable_newest_checkpoint_falls_back_and_lost_index_loses_nothing(
        two_epochs, tmp_path, capsys):
    workdir = _copy(two_epochs, tmp_path)
    newest = os.path.join(workdir, "checkpoints", "ckpt-16")
    with open(newest + ".data-00000-of-00001", "r+b") as f:
        f.truncate(1000)
    os.remove(os.path.join(workdir, "checkpoints", "checkpoint"))  # the index file too
    capsys.readouterr()
    summary = _train(workdir, epochs=3, verbose=2)  # more epochs: an allowed change
    err = capsys.readouterr().err
    assert f"Checkpoint {newest} is unreadable" in err, err
    assert os.path.join(workdir, "checkpoints", "ckpt-12") in err
    assert "falling back" in err
    assert os.path.exists(newest + ".unreadable.index")  # kept aside, not deleted
    assert summary["steps"] == 24
    assert _epochs(workdir) == [(1, 8), (2, 16), (3, 24)]
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith("-24")
    assert run_record.read_record(workdir).schedule.epochs == 3


def test_no_readable_checkpoint_or_none_at_all_refuses_and_changes_nothing(
        two_epochs, tmp_path):
    workdir = _copy(two_epochs, tmp_path)
    for data in glob.glob(os.path.join(workdir, "checkpoints", "*.data-*")):
        with open(data, "r+b") as f:
            f.truncate(100)
    before = {p: os.path.getmtime(p) for p in glob.glob(os.path.join(workdir, "**"),
                                                         recursive=True)}
    with pytest.raises(ResumeRefused, match="No checkpoint in .* is readable") as e:
        _train(workdir, epochs=3)
    assert "ckpt-16" in str(e.value) and "ckpt-8" in str(e.value)
    after = {p: os.path.getmtime(p) for p in glob.glob(os.path.join(workdir, "**"),
                                                        recursive=True)}
    assert {p: t for p, t in after.items() if not p.endswith(".lock")} == {
        p: t for p, t in before.items() if not p.endswith(".lock")}

    shutil.rmtree(os.path.join(workdir, "checkpoints"))
    with pytest.raises(ResumeRefused, match="no checkpoint") as e:
        _train(workdir, epochs=3)
    message = str(e.value)
    assert "metrics.csv (2 rows)" in message and "best.keras" in message
    assert "new --workdir" in message
    assert _epochs(workdir) == [(1, 8), (2, 16)]


@pytest.mark.parametrize("change, expected", [
    (dict(batch_size=32), ["--batch_size: 16 (recorded) -> 32 (now)"]),
    (dict(optimizer="sgd", momentum=0.5), ["--optimizer: 'rmsprop'", "--momentum: 0.9"]),
    (dict(n_train=192), ["number of training examples: 256 (recorded) -> 192"]),
    (dict(ema_decay=0.99, seed=3), ["--ema_decay", "--seed"]),
])
def test_resume_with_changed_configuration_is_refused(two_epochs, tmp_path, change,
                                                      expected):
    workdir = _copy(two_epochs, tmp_path)
    with pytest.raises(ResumeRefused) as e:
        _train(workdir, epochs=3, **change)
    for text in expected:
        assert text in str(e.value), str(e.value)
    assert "--epochs" in str(e.value)  # the allowed changes are listed
    assert _ckpt_steps(workdir) == [8, 12, 16] and _epochs(workdir) == [(1, 8), (2, 16)]


def _without_lock(state):
    return {k: v[1] for k, v in state.items() if k != ".lock"}  # contents only


def test_a_finished_run_with_other_options_is_refused_not_reported_as_theirs(
        two_epochs, tmp_path, capsys):
    workdir = _copy(two_epochs, tmp_path)
    before = helpers.tree_state(workdir)
    with pytest.raises(ResumeRefused, match="a finished run") as e:
        _train(workdir, epochs=2, alpha=0.5)
    assert "alpha" in str(e.value) and "already complete" not in capsys.readouterr().out
    assert helpers.tree_state(workdir) == before
    assert _train(workdir, epochs=2, verbose=2)["epochs"] == 2  # the same options: done
    assert "already complete" in capsys.readouterr().out
    assert helpers.tree_state(workdir) == before


def test_fewer_epochs_than_the_steps_done_are_refused_and_change_nothing(two_epochs,
                                                                         tmp_path):
    """Killed after its last step, before its summary: re-run with --epochs=1, it would
    end at step 16 and record 1 epoch with a best epoch of 2."""
    workdir = _copy(two_epochs, tmp_path)
    os.remove(os.path.join(workdir, "summary.json"))
    before = _without_lock(helpers.tree_state(workdir))
    with pytest.raises(ResumeRefused, match="trained 16 steps") as e:
        _train(workdir, epochs=1)
    assert "--epochs >= 2" in str(e.value)
    assert _without_lock(helpers.tree_state(workdir)) == before


def test_a_run_killed_after_its_last_step_resumes_saying_so(two_epochs, tmp_path, capsys):
    workdir = _copy(two_epochs, tmp_path)
    os.remove(os.path.join(workdir, "summary.json"))
    capsys.readouterr()
    assert _train(workdir, epochs=2, verbose=2)["steps"] == 16
    out = capsys.readouterr().out
    assert "(step 16, after its last step)" in out and "epoch 3" not in out, out


def test_a_record_that_cannot_be_used_is_refused_in_sentences(two_epochs, tmp_path):
    workdir = _copy(two_epochs, tmp_path)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write("{")
    with pytest.raises(ResumeRefused) as e:
        _train(workdir, epochs=3)
    message = str(e.value)
    assert ". To start over, use a new --workdir" in message, message
    assert "repeat the recorded options" not in message  # they cannot be read


def test_deleting_the_lock_file_does_not_let_a_second_trainer_in(tmp_path):
    workdir = str(tmp_path / "run")
    with RunLock(workdir):
        os.remove(os.path.join(workdir, ".lock"))
        with pytest.raises(RunLocked):
            _train(workdir, epochs=1)
        assert not os.path.exists(os.path.join(workdir, "config.json"))


def test_torn_metrics_and_kill_between_checkpoint_and_metrics_write(tmp_path, monkeypatch):
    workdir = str(tmp_path / "run")
    real = RunSetup.write_metrics_csv

    def killed_after_epoch_2_checkpoint(self, metrics_history):
        if metrics_history.rows() and metrics_history.rows()[-1]["epoch"] == 2:
            raise KeyboardInterrupt("killed after the epoch-2 checkpoint")
        return real(self, metrics_history)

    monkeypatch.setattr(RunSetup, "write_metrics_csv", killed_after_epoch_2_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        _train(workdir, epochs=3)
    assert _epochs(workdir) == [(1, 8)] and 16 in _ckpt_steps(workdir)
    with open(os.path.join(workdir, "metrics.csv"), "ab") as f:
        f.write(b"2,16,0.5,0.9" + b"\0" * 300)  # a torn row ending in NUL bytes
    monkeypatch.setattr(RunSetup, "write_metrics_csv", real)
    _train(workdir, epochs=3)
    assert _epochs(workdir) == [(1, 8), (2, 16), (3, 24)]
    assert b"\0" not in open(os.path.join(workdir, "metrics.csv"), "rb").read()


def test_second_trainer_is_refused_naming_the_holder_and_stale_lock_is_taken_over(
        tmp_path, capsys):
    workdir = str(tmp_path / "run")
    with RunLock(workdir):
        t0 = time.time()
        with pytest.raises(RunLocked, match=f"pid {os.getpid()} on host"):
            _train(workdir, epochs=1)
        assert time.time() - t0 < 60
        assert not os.path.exists(os.path.join(workdir, "config.json"))
        # The command line: exit status 5 and the holder on stderr.
        proc = subprocess.run(
            [sys.executable, "-m", "mobilenet_tf.train",
             f"--flagfile={os.path.join(REPO, 'experiments', 'quickstart.cfg')}",
             f"--workdir={workdir}"], cwd=REPO, env=ENV, capture_output=True, text=True,
            timeout=300)
        assert proc.returncode == 5, proc.stderr[-2000:]
        assert f"pid {os.getpid()}" in proc.stderr and "RunLocked" in proc.stderr
    # A holder that died without releasing (SIGKILL): its flock is gone, its record stays.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with open(os.path.join(workdir, ".lock"), "w") as f:
        json.dump({"host": os.uname().nodename, "pid": dead.pid, "started": "earlier"}, f)
    capsys.readouterr()
    _train(workdir, epochs=1, steps_per_epoch=4)
    err = capsys.readouterr().err
    assert "stale lock" in err and f"pid {dead.pid}" in err and "no longer running" in err


def _fill(directory):
    """Writes one file into ``directory`` until its disk has no byte left; returns it."""
    path = os.path.join(directory, "filler")
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return path


def test_full_disk_stops_with_one_line_and_resumes_after_space_is_freed(tmp_path,
                                                                          monkeypatch):
    """The disk fills up right after the first checkpoint (a filler file takes every byte
    left), so the run stops at its next write, whichever it is; freeing the space lets the
    same command resume from that checkpoint and finish."""
    fillers = []
    save = checkpointing.CheckpointStore.save

    def save_then_fill_the_disk(store, step):
        path = save(store, step)
        if not fillers:
            fillers.append(_fill(os.path.dirname(path)))
        return path

    with helpers.tmpfs(tmp_path / "small", "32m") as mount:
        workdir = str(mount / "run")
        with monkeypatch.context() as patch:
            patch.setattr(checkpointing.CheckpointStore, "save", save_then_fill_the_disk)
            with pytest.raises(OutputWriteError) as e:
                _train(workdir, epochs=3)
        message = str(e.value)
        assert "\n" not in message and workdir in message, message
        assert not glob.glob(os.path.join(workdir, "checkpoints", "*_temp*"))
        assert _ckpt_steps(workdir) == [4]
        os.remove(fillers[0])
        summary = _train(workdir, epochs=3)
        assert summary["steps"] == 24 and _epochs(workdir)[-1] == (3, 24)


def test_failed_retries_on_a_full_disk_leave_no_new_event_files(tmp_path):
    with helpers.tmpfs(tmp_path / "small", "9m") as mount:
        workdir = str(mount / "run")
        events = os.path.join(workdir, "logs", "events.out.tfevents.*")
        with pytest.raises(OutputWriteError):
            _train(workdir, epochs=3)
        first = sorted(glob.glob(events))
        for _ in range(2):  # the disk is still full: each retry stops before keeping anything
            with pytest.raises(OutputWriteError):
                _train(workdir, epochs=3)
            assert sorted(glob.glob(events)) == first


def test_tensorboard_logs_on_a_full_disk_stop_with_one_line_then_resume(tmp_path):
    """Only the event file's disk is full (RUN/logs links to a full 8 MB tmpfs): the run
    stops with one line naming the event file (exit 7), then resumes once space is freed."""
    with helpers.tmpfs(tmp_path / "logs_disk", "8m") as mount:
        filler = _fill(mount)  # the disk, to the last byte
        workdir = str(tmp_path / "run")
        os.makedirs(workdir)
        os.symlink(mount, os.path.join(workdir, "logs"))
        with pytest.raises(OutputWriteError) as e:
            _train(workdir, epochs=2)
        message = str(e.value)
        assert e.value.exit_code == 7
        assert "\n" not in message and "No space left" in message, message
        assert os.path.join(workdir, "logs", "events.out.tfevents") in message, message
        assert "function_node" not in message, message
        os.remove(filler)
        assert _train(workdir, epochs=2)["steps"] == 16
        assert glob.glob(os.path.join(workdir, "logs", "events.out.tfevents.*"))
