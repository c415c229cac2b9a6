"""The trainer's parts without a full run: the train and eval steps, the run record, the
console output, the checkpoint store's verification."""

import io
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from mobilenet_tf.training import checkpointing, reporting, steps as train_steps
from mobilenet_tf.rundir import record as run_record
from mobilenet_tf.model.builder import mobilenet_v1


def _batch(n=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (n, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, classes, n)
    return images, labels


def test_train_step_returns_named_sums_and_updates_only_the_given_variables():
    keras.utils.set_random_seed(0)
    model = mobilenet_v1((32, 32, 3), alpha=0.25, num_classes=3, classifier_activation=None)
    images, labels = _batch()
    head = [v for v in model.trainable_variables if "conv_preds" in v.path]
    frozen = [v for v in model.trainable_variables if "conv_preds" not in v.path]
    before_head = [v.numpy().copy() for v in head]
    before_frozen = [v.numpy().copy() for v in frozen]
    optimizer = keras.optimizers.SGD(0.1)
    objective = train_steps.Objective(global_batch_size=8, num_classes=3)
    out = train_steps.train_step(model, [(optimizer, head)], objective, images,
                                 tf.one_hot(labels, 3))
    assert set(out) == set(train_steps.METRICS) and float(out["count"]) == 8
    logits = model(images, training=False)  # close to the step's: one small update
    assert 0 <= float(out["top1"]) <= 8 and float(out["top5"]) == 8  # 3 classes
    mean = train_steps.mean_metrics(out)
    assert mean["loss"] == pytest.approx(float(out["loss"]) / 8)
    assert any(not np.array_equal(b, v.numpy()) for b, v in zip(before_head, head))
    for b, v in zip(before_frozen, frozen):
        if "moving" not in v.path:
            np.testing.assert_array_equal(b, v.numpy(), err_msg=v.path)
    # The eval step's sums are those of the model's own predictions.
    sums, confusion = train_steps.eval_step(model, images, labels, 3)
    assert float(sums["top1"]) == np.sum(np.argmax(logits, 1) == labels)
    assert confusion.numpy().sum() == 8


def test_two_optimizers_each_update_their_variables():
    keras.utils.set_random_seed(0)
    model = mobilenet_v1((32, 32, 3), alpha=0.25, num_classes=3, classifier_activation=None)
    head = [v for v in model.trainable_variables if "conv_preds" in v.path]
    body = [v for v in model.trainable_variables if "conv_preds" not in v.path]
    fast, slow = keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.0)
    before = [v.numpy().copy() for v in body]
    images, labels = _batch()
    train_steps.train_step(model, [(fast, head), (slow, body)],
                           train_steps.Objective(8, 3), images, tf.one_hot(labels, 3))
    assert int(fast.iterations.numpy()) == int(slow.iterations.numpy()) == 1
    for b, v in zip(before, body):  # learning rate 0: unchanged
        np.testing.assert_array_equal(b, v.numpy())


def _record(**changes):
    record = run_record.RunRecord(
        model={"alpha": 0.25, "input_shape": [32, 32, 3], "num_classes": 3},
        data=run_record.DataRecord(config={"dataset": "synthetic", "data_dir": None},
                               train_split="train", eval_split="validation",
                               num_train_examples=100),
        class_names=["a", "b", "c"],
        schedule=run_record.ScheduleRecord(epochs=2, batch_size=10, steps_per_epoch=10,
                                       total_steps=20),
        options={"epochs": 2, "batch_size": 10, "optimizer": "rmsprop", "verbose": 1})
    for key, value in changes.items():
        record.options[key] = value
    return record


def test_record_round_trip_and_clear_errors(tmp_path):
    record = _record()
    run_record.write_record(str(tmp_path), record)
    assert run_record.read_record(str(tmp_path)) == record
    path = os.path.join(tmp_path, "config.json")
    raw = json.load(open(path))
    raw["version"] = 99
    json.dump(raw, open(path, "w"))
    with pytest.raises(run_record.RunRecordError, match=r"config.json is a run record of "
                                                    r"version 99"):
        run_record.read_record(str(tmp_path))
    with open(path, "w") as f:
        f.write('{"format": "mobilenet_tf.run", "vers')
    with pytest.raises(run_record.RunRecordError, match="config.json is corrupt"):
        run_record.read_record(str(tmp_path))
    os.remove(path)
    with pytest.raises(run_record.RunRecordError, match="config.json does not exist"):
        run_record.read_record(str(tmp_path))
    # The untyped config.json of older runs still reads (evaluate/export of old runs).
    json.dump({"model": record.model, "data": {"dataset": "synthetic"},
               "train": {"train_split": "train", "eval_split": "val", "batch_size": 10},
               "class_names": ["a", "b", "c"], "steps_per_epoch": 10}, open(path, "w"))
    old = run_record.read_record(str(tmp_path))
    assert old.version == 1 and old.data.eval_split == "val" and old.data.dataset == "synthetic"


def test_resume_differences_allow_only_the_documented_changes():
    assert run_record.resume_differences(_record(), _record(epochs=5, verbose=2)) == []
    diffs = run_record.resume_differences(_record(), _record(batch_size=20, optimizer="sgd"))
    assert diffs == ["--batch_size: 10 (recorded) -> 20 (now)",
                     "--optimizer: 'rmsprop' (recorded) -> 'sgd' (now)"]
    moved = _record()
    moved.data.config["data_dir"] = "/elsewhere"
    moved.data.num_train_examples = 90
    assert run_record.resume_differences(_record(), moved) == [
        "number of training examples: 100 (recorded) -> 90 (now)"]
    # An option added after the run was recorded counts as its default then.
    assert run_record.resume_differences(_record(), _record(freeze_bn=False)) == []
    assert run_record.resume_differences(_record(), _record(freeze_bn=True)) == [
        "--freeze_bn: False (recorded) -> True (now)"]


ROW = {"epoch": 1, "step": 10, "train_loss": 0.5, "train_top1": 0.8, "train_top5": 1.0,
       "val_loss": 0.4, "val_top1": 0.9, "val_top5": 1.0, "learning_rate": 0.01,
       "images_per_second": 100.0, "wall_seconds": 3.0}


def test_console_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    console = reporting.Console(verbose=1, num_epochs=2, stream=out, interactive=False,
                                  step_interval=0.0)
    for done in (4, 8, 10):
        console.progress(1, done, 10, {"loss": 1.0, "top1": 0.5, "lr": 0.01})
    console.epoch_end(ROW)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines[:2] == ["epoch 1/2 step 4/10 | loss 1.0000 top1 50.00% lr 0.01",
                         "epoch 1/2 step 8/10 | loss 1.0000 top1 50.00% lr 0.01"]
    assert len(lines) == 3 and lines[2].startswith("epoch 1/2 | loss 0.5000")


def test_console_one_bar_and_one_epoch_line_on_a_terminal():
    out = io.StringIO()
    console = reporting.Console(verbose=1, num_epochs=2, stream=out, interactive=True)
    console.progress(1, 5, 10, {"loss": 1.0, "top1": 0.5, "lr": 0.01})
    console.epoch_end(ROW)
    text = out.getvalue()
    assert text.count("epoch 1/2") == 2  # the bar (overwritten) and the epoch line
    assert text.endswith("epoch 1/2 | loss 0.5000 top1 80.00% | val_loss 0.4000 val_top1 "
                         "90.00% val_top5 100.00% | lr 0.01 | 100 img/s | 3s\n")
    assert "Epoch" not in text
    quiet = io.StringIO()
    reporting.Console(verbose=2, num_epochs=2, stream=quiet, interactive=True).progress(
        1, 5, 10, {"loss": 1.0, "top1": 0.5, "lr": 0.01})
    assert quiet.getvalue() == ""


def test_checkpoint_store_verifies_and_never_prunes_before_a_verified_save(tmp_path):
    step = tf.Variable(0, dtype=tf.int64, name="global_step")
    history = checkpointing.MetricsHistory()
    ckpt = tf.train.Checkpoint(global_step=step, history=history.variable)
    directory = str(tmp_path)
    store = checkpointing.CheckpointStore(ckpt, directory, directory, keep=2, chief=True,
                                          say=lambda s: None)
    for n in (1, 2, 3):
        step.assign(n)
        history.append({"epoch": n})
        store.save(n)
    assert [s for s, _ in checkpointing.list_checkpoints(directory)] == [3, 2]
    assert tf.train.latest_checkpoint(directory).endswith("ckpt-3")
    # A write that fails (here: a full disk, injected) leaves the older ones and no parts.
    real_write = tf.train.Checkpoint.write

    def full_disk(self, prefix, options=None):
        os.makedirs(prefix + "_temp", exist_ok=True)
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    tf.train.Checkpoint.write = full_disk
    try:
        with pytest.raises(checkpointing.OutputWriteError, match="ckpt-4: No space left"):
            store.save(4)
    finally:
        tf.train.Checkpoint.write = real_write
    assert sorted(os.listdir(directory)) == sorted(
        ["checkpoint", "ckpt-2.index", "ckpt-2.data-00000-of-00001", "ckpt-3.index",
         "ckpt-3.data-00000-of-00001"])
    step.assign(0)
    history.variable.assign("[]")
    assert store.restore().endswith("ckpt-3") and int(step.numpy()) == 3
    assert [r["epoch"] for r in history.rows()] == [1, 2, 3]
