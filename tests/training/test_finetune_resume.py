"""A SIGKILL at any moment of a fine-tuning run resumes in the right phase: killed right
after the classifier mapping (before step 0), then right after a checkpoint in the head
phase, then again in the whole-network phase, the run
ends with the step counts of an uninterrupted run (the backbone's optimizer stepped
only after the switch)."""

import csv
import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from mobilenet_tf.model.builder import mobilenet_v1
from helpers import REPO, TESTS

ENV = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}

# Trains the toy task; with KILL_AT=N it SIGKILLs itself right after saving the
# checkpoint of step N (a test hook: the process dies as it would from kill -9).
SCRIPT = """
import json, os, signal, sys
sys.path.insert(0, {tests!r})
from train_helpers import toy_inputs
from mobilenet_tf.training import trainer
from mobilenet_tf.training.config import TrainConfig
from mobilenet_tf.training.setup import RunSetup

kill_at = int(os.environ.get("KILL_AT", "-1"))


mapped = RunSetup.classifier_from_source


def classifier_from_source(self, state, report):  # KILL_AT=0: right after the mapping
    mapped(self, state, report)
    if kill_at == 0:
        os.kill(os.getpid(), signal.SIGKILL)


RunSetup.classifier_from_source = classifier_from_source


class Killed(trainer.Trainer):
    def save_checkpoint(self, step):
        path = super().save_checkpoint(step)
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return path

train, evaluation = toy_inputs(batch_size=16, n_train=128)
run = Killed(TrainConfig(**json.loads(sys.argv[2])), sys.argv[1], train, evaluation)
run.run()
print("RESULT", json.dumps(dict(
    head=int(run.state.task.optimizer.iterations.numpy()),
    backbone=int(run.state.task.backbone_optimizer.iterations.numpy()),
    step=int(run.state.global_step.numpy()))))
""".format(tests=TESTS)


def _config(weights):
    return dict(alpha=0.25, resolution=32, batch_size=16, learning_rate=0.01,
                lr_schedule="constant", eval_split="val", verbose=2, steps_per_loop=1,
                steps_per_epoch=4, checkpoint_every_steps=2, log_images=False,
                optimizer="adamw", weight_decay=0.0, epochs=2, freeze_backbone_epochs=1,
                backbone_lr_scale=0.1, freeze_bn=True, initial_weights=weights)


def _run(workdir, config, kill_at=-1):
    return subprocess.run([sys.executable, "-c", SCRIPT, workdir, json.dumps(config)],
                          env={**ENV, "KILL_AT": str(kill_at)}, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    keras.utils.set_random_seed(3)
    path = str(tmp_path_factory.mktemp("w") / "pre.weights.h5")
    mobilenet_v1((32, 32, 3), alpha=0.25, num_classes=7).save_weights(path)
    return path


def test_sigkill_in_each_phase_resumes_in_the_right_phase(weights, tmp_path):
    workdir = str(tmp_path / "run")
    config = {**_config(weights), "classifier_init": "source"}
    # Killed right after --classifier_init=source maps the classifier (before step 0):
    # nothing to resume; the next command starts over and maps again.
    killed = _run(workdir, config, kill_at=0)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert "Classifier: started from the weights file's 7-class classifier" in killed.stdout
    killed = _run(workdir, config, kill_at=2)  # head phase, mid-epoch
    assert "Resuming" not in killed.stdout and "Classifier: started" in killed.stdout
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    killed = _run(workdir, config, kill_at=6)  # resumed at 2; dies in the whole phase
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert "Resuming from" in killed.stdout and "step 2" in killed.stdout
    assert "Epoch 2: backbone unfrozen at 0.1x" in killed.stdout
    done = _run(workdir, config)  # resumed at 6, in the whole phase
    assert done.returncode == 0, done.stderr[-3000:]
    assert "step 6" in done.stdout
    result = json.loads(done.stdout.split("RESULT ")[1])
    # As an uninterrupted run: 8 steps, the backbone's optimizer stepped 4 (after the
    # switch at step 4), the classifier's 8.
    assert result == dict(head=8, backbone=4, step=8)
    with open(os.path.join(workdir, "metrics.csv"), newline="") as f:
        assert [(r["epoch"], r["step"]) for r in csv.DictReader(f)] == [("1", "4"),
                                                                        ("2", "8")]
    assert np.isfinite(float(json.load(open(os.path.join(workdir, "summary.json")))["top1"]))

