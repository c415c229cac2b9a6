"""Training runs end to end on a tiny in-memory task: the run directory, the saved models,
TensorBoard logs, a completed run, the NaN stop, and resume after SIGKILL."""

import csv
import glob
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from mobilenet_tf.rundir import record as run_record
from mobilenet_tf.rundir.errors import TrainingDivergedError
from mobilenet_tf.training import trainer
from mobilenet_tf.training.config import TrainConfig
from mobilenet_tf.data import read_labels
from train_helpers import toy_inputs
from helpers import REPO, TESTS

HELPER = os.path.join(TESTS, "train_helpers.py")

TINY = dict(alpha=0.25, resolution=32, batch_size=16, learning_rate=0.01,
            lr_schedule="constant", bn_momentum=0.9, eval_split="val", verbose=0,
            steps_per_loop=4)


def _tags(logdir):
    tags = set()
    for path in glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.add(value.tag)
    return tags


def test_run_directory_models_logs_and_completed_run(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    train, evaluation = toy_inputs(batch_size=16)
    config = TrainConfig(epochs=3, ema_decay=0.9, checkpoint_every_steps=5,
                                 profile_steps="4,8", **TINY)
    summary = trainer.train_and_evaluate(config, workdir, train, evaluation)

    for name in ("flags.txt", "labels.txt", "config.json", "metrics.csv", "best.keras",
                 "final.keras", "summary.json"):
        assert os.path.exists(os.path.join(workdir, name)), name
    assert not [p for p in os.listdir(workdir) if ".tmp" in p]
    assert read_labels(workdir) == train.class_names
    record = run_record.read_record(workdir)
    assert record.model == {"alpha": 0.25, "input_shape": [32, 32, 3],
                            "variant": "mobilenet", "depth_multiplier": 1,
                            "dropout": 1e-3, "num_classes": 4}
    assert record.class_names == train.class_names
    assert (record.schedule.steps_per_epoch, record.schedule.total_steps) == (16, 48)
    assert record.data.num_train_examples == 256 and record.options["ema_decay"] == 0.9
    assert "--alpha=0.25" in open(os.path.join(workdir, "flags.txt")).read().splitlines()
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith("-48")
    with open(os.path.join(workdir, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [int(r["step"]) for r in rows] == [16, 32, 48]

    with open(os.path.join(workdir, "summary.json")) as f:
        on_disk = json.load(f)
    for key in ("top1", "top5", "loss", "params", "mult_adds", "images_per_second",
                "wall_seconds", "epochs", "best_checkpoint"):
        assert on_disk[key] is not None, key
    assert on_disk["optimizer_steps"] == 48
    assert on_disk["best_checkpoint"] == os.path.join(os.path.abspath(workdir), "best.keras")

    # final.keras holds the evaluated (EMA) weights: softmax outputs, same top-1.
    final = keras.models.load_model(os.path.join(workdir, "final.keras"))
    probs = final.predict(evaluation.images, verbose=0)
    assert probs.dtype == np.float32 and probs.shape == (64, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert np.mean(probs.argmax(1) == evaluation.labels) == pytest.approx(summary["top1"])

    tags = _tags(os.path.join(workdir, "logs"))
    for tag in ("train/loss", "train/top1", "train/epoch", "train/learning_rate",
                "train/images_per_second", "val/top1", "train/augmented_images",
                "val/confusion_matrix", "train_step", "_hparams_/session_start_info"):
        assert tag in tags, tag
    assert glob.glob(os.path.join(workdir, "logs", "events.*"))
    assert glob.glob(os.path.join(workdir, "logs", "plugins", "profile", "*", "*.xplane.pb"))

    # A completed run says so and does nothing.
    before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    mtime = os.path.getmtime(os.path.join(workdir, "final.keras"))
    capsys.readouterr()
    again = trainer.train_and_evaluate(
        TrainConfig(epochs=3, ema_decay=0.9, profile_steps="4,8",
                            **{**TINY, "verbose": 1}), workdir,
        train, evaluation)
    assert "already complete" in capsys.readouterr().out
    assert again == on_disk
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before
    assert os.path.getmtime(os.path.join(workdir, "final.keras")) == mtime


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    workdir = str(tmp_path / "run")
    train, evaluation = toy_inputs(batch_size=16)
    train.nan_after_batches = 5  # step 6 (1-based) gets NaN images
    config = TrainConfig(epochs=2, steps_per_epoch=8, checkpoint_every_steps=2,
                                 log_images=False, **{**TINY, "steps_per_loop": 1})
    with pytest.raises(TrainingDivergedError, match="NaN") as err:
        trainer.train_and_evaluate(config, workdir, train, evaluation)
    latest = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
    assert latest.endswith("ckpt-4")
    assert latest in str(err.value)
    assert not os.path.exists(os.path.join(workdir, "final.keras"))
    assert not os.path.exists(os.path.join(workdir, "summary.json"))
    reader = tf.train.load_checkpoint(latest)
    weights = [k for k in reader.get_variable_to_shape_map()
               if k.startswith(("model/", "optimizer/_trainable_variables/"))]
    assert len(weights) > 100
    for key in weights:
        assert np.all(np.isfinite(reader.get_tensor(key))), key


def _helper(workdir, config, **popen):
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, HELPER, workdir, json.dumps(config)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **popen)


def _wait_for(path, proc, timeout=240):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.01)


def _checkpoint_step(workdir):
    return int(tf.train.load_variable(
        tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")),
        "global_step/.ATTRIBUTES/VARIABLE_VALUE"))


def _signal_after_first_checkpoint(workdir, config, signum):
    """Starts the helper run (checkpoints every 3 steps), sends ``signum`` once the step-3
    checkpoint exists and waits for the run to end; (process, its output)."""
    proc = _helper(workdir, config)
    _wait_for(os.path.join(workdir, "checkpoints", "ckpt-3.index"), proc)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=120)
    return proc, out


def test_resume_after_sigterm_and_sigkill_ends_with_same_steps(tmp_path):
    config = dict(TINY, epochs=5, steps_per_epoch=8, steps_per_loop=1,
                  checkpoint_every_steps=3, ema_decay=0.9, optimizer="rmsprop", verbose=2)
    workdir = str(tmp_path / "killed")
    ckpt = os.path.join(workdir, "checkpoints", "ckpt-{}.index")

    # SIGTERM (preemption): the run writes a checkpoint where it is and exits.
    proc, out = _signal_after_first_checkpoint(workdir, config, signal.SIGTERM)
    assert proc.returncode == 4 and "SIGTERM received: saved a checkpoint" in out, out[-3000:]
    termed_at = _checkpoint_step(workdir)
    assert 3 <= termed_at < 40

    # SIGKILL: nothing is written; the next run resumes from the latest periodic checkpoint.
    proc = _helper(workdir, config)
    next_ckpt = (termed_at // 3 + 2) * 3  # the second periodic checkpoint after resuming
    _wait_for(ckpt.format(next_ckpt), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(workdir, "summary.json")), "finished before kill"
    killed_at = _checkpoint_step(workdir)
    assert termed_at < killed_at < 40

    out, _ = _helper(workdir, config).communicate(timeout=300)
    assert "Resuming from" in out, out[-3000:]
    with open(os.path.join(workdir, "summary.json")) as f:
        resumed = json.load(f)

    # An uninterrupted run ends at epochs * steps_per_epoch optimizer steps (checked in
    # test_run_directory_models_logs_and_completed_run); so must the resumed one.
    assert resumed["optimizer_steps"] == 5 * 8
    assert resumed["steps"] == 40
    with open(os.path.join(workdir, "metrics.csv")) as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5]
    # The learning-rate schedule position came back with the optimizer step.
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(
        os.path.join(workdir, "checkpoints")))
    iterations = [k for k in reader.get_variable_to_shape_map()
                  if k.startswith("optimizer/") and "iteration" in k]
    assert iterations and int(reader.get_tensor(iterations[0])) == 40


def test_ctrl_c_saves_a_checkpoint_and_a_second_one_stops_at_once(tmp_path):
    """Ctrl-C (SIGINT) is treated like SIGTERM: a checkpoint where the run is, one line,
    exit status 130, no traceback. A second Ctrl-C ends the process at once."""
    config = dict(TINY, epochs=5, steps_per_epoch=8, steps_per_loop=1,
                  checkpoint_every_steps=3, optimizer="rmsprop", verbose=2)
    workdir = str(tmp_path / "interrupted")
    ckpt = os.path.join(workdir, "checkpoints", "ckpt-{}.index")
    proc, out = _signal_after_first_checkpoint(workdir, config, signal.SIGINT)
    assert proc.returncode == 130, out[-3000:]
    assert "Ctrl-C: saved a checkpoint at step" in out and "Traceback" not in out, out[-3000:]
    assert "press Ctrl-C again" in out
    assert 3 <= _checkpoint_step(workdir) < 40

    proc = _helper(workdir, config)  # resumes; two Ctrl-C in a row
    _wait_for(ckpt.format((_checkpoint_step(workdir) // 3 + 1) * 3), proc)
    proc.send_signal(signal.SIGINT)
    seen = []
    while not seen or "press Ctrl-C again" not in seen[-1]:  # the first one was handled
        seen.append(proc.stdout.readline())
        assert seen[-1], "".join(seen)[-3000:]
    proc.send_signal(signal.SIGINT)
    out = "".join(seen) + proc.communicate(timeout=60)[0]
    assert proc.returncode == -signal.SIGINT, out[-3000:]  # the default action: at once
    assert "Traceback" not in out, out[-3000:]


def test_resume_finishes_a_partial_last_epoch_whose_end_did_not_run(tmp_path, monkeypatch):
    """--epochs=1.5: the run dies after the last step but before the end of epoch 2 (its
    evaluation, metrics row, best model); re-running must do that end, then finish."""
    workdir = str(tmp_path / "run")
    train, evaluation = toy_inputs(batch_size=16)
    config = TrainConfig(epochs=1.5, checkpoint_every_steps=4, **TINY)
    real_end = trainer.Trainer.end_of_epoch

    def crash_at_epoch_2(self, epoch, *args):
        if epoch == 2:
            self.state.store.save(int(self.state.global_step.numpy()))
            raise KeyboardInterrupt("simulated crash after the last step")
        return real_end(self, epoch, *args)

    monkeypatch.setattr(trainer.Trainer, "end_of_epoch", crash_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_and_evaluate(config, workdir, train, evaluation)
    with open(os.path.join(workdir, "metrics.csv")) as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1]

    monkeypatch.setattr(trainer.Trainer, "end_of_epoch", real_end)
    summary = trainer.train_and_evaluate(config, workdir, train, evaluation)
    with open(os.path.join(workdir, "metrics.csv")) as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]
    assert summary["epochs"] == 1.5 and os.path.exists(os.path.join(workdir, "final.keras"))
