"""Folders and files of a folder dataset that cannot be read -- this user may not (chmod
000), or nobody can (a symlink loop) -- and images large enough to be decoded at reduced
scale, as the commands meet them: every message names the folder or file at fault, in one
line, without a traceback.

The permission tests run the command through ``unprivileged`` (root ignores file modes)
and skip where that cannot be done (``permissions_enforced``).
"""

import os
import subprocess
import sys

import pytest

from data_helpers import make_folder
from helpers import CLASSES, REPO, permissions_enforced, unprivileged, write_image_folder
from mobilenet_tf import data

ENV = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
FAST = ["--alpha=0.25", "--resolution=32", "--steps_per_loop=1"]
ONE_EPOCH = [*FAST, "--epochs=1", "--batch_size=4"]


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
