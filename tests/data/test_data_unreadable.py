"""Folders and files of a folder dataset that cannot be read -- this user may not (chmod
000), or nobody can (a symlink loop) -- and images large enough to be decoded at reduced
scale, as the commands meet them: every message names the folder or file at fault, in one
line, without a traceback.

The permission tests run the command through ``unprivileged`` (root ignores file modes)
and skip where that cannot be done (``permissions_enforced``).
"""

import json
import logging
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from data_helpers import collect, encode, image_array, make_folder
from helpers import CLASSES, REPO, permissions_enforced, unprivileged, write_image_folder
from mobilenet_tf import data
from mobilenet_tf.data import interface

ENV = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
FAST = ["--alpha=0.25", "--resolution=32", "--steps_per_loop=1"]
ONE_EPOCH = [*FAST, "--epochs=1", "--batch_size=4"]
LOOP_REASON = "cannot read the file: too many levels of symbolic links"
DENIED_REASON = "cannot read the file: permission denied"


@pytest.fixture
def enforced(tmp_path):
    if not permissions_enforced(str(tmp_path)):
        pytest.skip("file permissions are not enforced for this process (no setpriv)")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    """An untrained 32x32 classifier of the three ``CLASSES`` (labels.txt beside it), for
    the evaluate command."""
    import keras

    folder = tmp_path_factory.mktemp("model")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(len(CLASSES), activation="softmax")(pooled))
    model.save(folder / "tiny.keras")
    data.write_labels(str(folder / data.LABELS_FILE), CLASSES)
    return str(folder / "tiny.keras")


def _command(module: str, *args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(unprivileged([sys.executable, "-m", f"mobilenet_tf.{module}", *args]),
                          cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)


def _error_line(proc: subprocess.CompletedProcess) -> str:
    """The command's one ``error:`` line, after checking it failed with status 1 and no
    traceback."""
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def _flat(tmp_path, per_class=4):
    root = tmp_path / "data"
    write_image_folder(str(root), per_class=per_class, seed=0)
    return root


def _denied(class_dir):
    """A good JPEG in ``class_dir`` that no one but root may read (chmod 000)."""
    denied = class_dir / "zz_denied.jpg"
    denied.write_bytes(encode(image_array(0, 32, 32), "JPEG"))
    denied.chmod(0)
    return denied


def _loop(class_dir):
    """A symlink to itself in ``class_dir``: no one can open it."""
    loop = class_dir / "zz_loop.jpg"
    os.symlink(loop, loop)
    return loop


def _bad_files(class_dir):
    return _denied(class_dir), _loop(class_dir)


# ------------------------------------------------------------------ unreadable folders
@pytest.mark.parametrize("layout,unreadable,kind", [
    ("flat", "green_disc", "class folder"), ("flat", "", "folder"),
    ("splits", "train/dog", "class folder")])
def test_train_names_an_unreadable_folder_before_creating_the_run(tmp_path, enforced, layout,
                                                                 unreadable, kind):
    if layout == "flat":
        root = _flat(tmp_path)
    else:
        root = tmp_path / "data"
        make_folder(root, per_class=4, splits=("train", "validation"), exts=("jpg", "png"))
    folder = root / unreadable
    folder.chmod(0)
    try:
        proc = _command("train", f"--dataset=folder:{root}", *ONE_EPOCH,
                        f"--workdir={tmp_path / 'run'}", cwd=tmp_path)
    finally:
        folder.chmod(0o755)
    line = _error_line(proc)
    assert f"--dataset=folder:{root}: cannot read {kind} {folder}: permission denied" in line
    assert "chmod" in line
    assert not (tmp_path / "run").exists()


def test_evaluate_names_an_unreadable_class_folder(tmp_path, enforced, tiny_model):
    root = _flat(tmp_path)
    (root / "red_square").chmod(0)
    try:
        proc = _command("evaluate", f"--model={tiny_model}", f"--dataset=folder:{root}",
                        cwd=tmp_path)
    finally:
        (root / "red_square").chmod(0o755)
    assert f"cannot read class folder {root / 'red_square'}: permission denied" in \
        _error_line(proc)


# ------------------------------------------------------------------ unreadable files
def test_evaluate_skips_unreadable_files_naming_them(tmp_path, enforced, tiny_model):
    root = _flat(tmp_path)
    denied, loop = _bad_files(root / "green_disc")
    proc = _command("evaluate", f"--model={tiny_model}", f"--dataset=folder:{root}",
                    "--json", cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"skipping bad image {denied} ({DENIED_REASON}" in proc.stderr
    assert f"skipping bad image {loop} ({LOOP_REASON}" in proc.stderr
    assert "skipping bad image  (" not in proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["num_images"] == 4 * len(CLASSES)


@pytest.mark.parametrize("bad", ["denied", "loop"])
def test_train_error_policy_names_the_unreadable_file(tmp_path, enforced, bad):
    root = tmp_path / "data"
    # Three training files, one bad: two batches of two good ones span the first pass
    # over them, whatever its shuffled order.
    make_folder(root, per_class=1, splits=("train", "validation"), exts=("jpg",))
    make_bad, reason = (_denied, DENIED_REASON) if bad == "denied" else (_loop, LOOP_REASON)
    path = make_bad(root / "train" / "cat")
    proc = _command("train", f"--dataset=folder:{root}", *FAST, "--epochs=2",
                    "--batch_size=2", "--bad_images=error",
                    f"--workdir={tmp_path / 'run'}", cwd=tmp_path)
    line = _error_line(proc)
    assert f"--bad_images=error: bad image {path} ({reason})" in line
    assert "--bad_images=skip" in line


def test_train_error_policy_names_a_bad_file_met_by_the_evaluation(tmp_path, enforced):
    """The bad file is in the evaluation split: the failure comes out of the training
    loop's evaluation step, whose TensorFlow error has no stack to show."""
    root = tmp_path / "data"
    make_folder(root, per_class=2, splits=("train", "validation"), exts=("jpg",))
    path = _denied(root / "validation" / "cat")
    proc = _command("train", f"--dataset=folder:{root}", *FAST, "--epochs=1",
                    "--batch_size=2", "--bad_images=error",
                    f"--workdir={tmp_path / 'run'}", cwd=tmp_path)
    line = _error_line(proc)
    assert f"--bad_images=error: bad image {path} ({DENIED_REASON})" in line, line


def test_train_names_skipped_files_and_large_images(tmp_path, enforced):
    """The skip policy's warnings, and the warning of an image decoded at reduced scale
    (above --max_image_pixels), name their files."""
    root = _flat(tmp_path)
    denied, loop = _bad_files(root / "red_square")
    large = root / "blue_bar" / "large.jpg"
    large.write_bytes(encode(image_array(2, 480, 640), "JPEG"))
    proc = _command("train", f"--dataset=folder:{root}", *ONE_EPOCH, "--max_image_pixels=100000",
                    "--train_split=all", "--eval_split=all", f"--workdir={tmp_path / 'run'}",
                    cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"skipping bad image {denied} ({DENIED_REASON}" in proc.stderr
    assert f"skipping bad image {loop} ({LOOP_REASON}" in proc.stderr
    assert (f"WARNING: {large}: a 640x480 JPEG (307200 pixels) is above "
            "--max_image_pixels=100000: decoded at 1/2 scale") in proc.stderr


# ------------------------------------------------------------------ in-process
def _loop_folder(tmp_path):
    root = make_folder(tmp_path, classes=("a", "b"), per_class=3, splits=("train",),
                       exts=("jpg", "png"))
    return root, str(_loop(tmp_path / "train" / "b"))


@pytest.mark.parametrize("training", [False, True])
def test_pipeline_skips_a_symlink_loop_by_name(tmp_path, caplog, training):
    root, loop = _loop_folder(tmp_path)
    cfg = data.DataConfig(dataset=f"folder:{root}", image_size=16)
    inp = data.build_input(cfg, "train", training=training, global_batch_size=2)
    with caplog.at_level(logging.WARNING):
        if training:
            for _ in inp.input_fn(None).take(8):
                pass
        else:
            assert len(collect(inp.input_fn(None))[1]) == 6
    assert loop in inp.bad_images.examples
    assert f"skipping bad image {loop} ({LOOP_REASON}" in caplog.text
    assert [im.shape for im, _ in data.iterate_uint8(cfg, "train", 100)] == [(40, 48, 3)] * 6


def test_error_policy_in_a_function_names_the_file_in_one_line(tmp_path):
    """As a training or evaluation step meets it: inside a tf.function the error's first
    line is TensorFlow's "Graph execution error:"; ``bad_images_failure`` finds the
    message below it."""
    root, loop = _loop_folder(tmp_path)
    cfg = data.DataConfig(dataset=f"folder:{root}", image_size=16, bad_images="error")
    ds = data.build_input(cfg, "train", training=False, global_batch_size=2).input_fn(None)
    count = tf.function(lambda: ds.reduce(0, lambda n, batch: n + 1))
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        count()
    message = interface.bad_images_failure(str(caught.value))
    assert message == (f"--bad_images=error: bad image {loop} ({LOOP_REASON}); pass "
                       "--bad_images=skip to skip such files (they are counted, and the "
                       "first ones named)")
    assert interface.bad_images_failure("Graph execution error:\n\nsomething else") is None


@pytest.mark.parametrize("training", [False, True])
def test_reduced_scale_warning_names_the_file(tmp_path, capfd, training):
    root = make_folder(tmp_path, classes=("a",), per_class=2, splits=("train",))
    large = tmp_path / "train" / "a" / "large.jpg"
    large.write_bytes(encode(image_array(0, 480, 640), "JPEG"))
    cfg = data.DataConfig(dataset=f"folder:{root}", image_size=16, max_image_pixels=100_000)
    inp = data.build_input(cfg, "train", training=training, global_batch_size=3)
    for _ in inp.input_fn(None).take(1):
        pass
    if not training:
        list(data.iterate_uint8(cfg, "train", 100))
    err = capfd.readouterr().err
    warning = (f"WARNING: {large}: a 640x480 JPEG (307200 pixels) is above "
               "--max_image_pixels=100000: decoded at 1/2 scale")
    assert warning in err, err[-2000:]
