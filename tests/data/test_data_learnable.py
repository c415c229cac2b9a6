"""Training refuses, before any step and before the run directory is written, what
cannot be learned or measured: one class, a class that the held-out split leaves without
images, a held-out split that selects no images (mobilenet_tf/data/learnable.py)."""

import os
import shutil
import subprocess
import sys

import pytest

import helpers
from helpers import REPO

QUICKSTART = os.path.join(REPO, "experiments", "quickstart.cfg")
ENV = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """flat: 3 classes of 3 images; one: a single class; thin: red_square has 1 image."""
    root = tmp_path_factory.mktemp("learnable")
    helpers.write_image_folder(str(root / "flat"), per_class=3, seed=0)
    shutil.copytree(root / "flat" / "red_square", root / "one" / "red_square")
    shutil.copytree(root / "flat", root / "thin")
    for name in sorted(os.listdir(root / "thin" / "red_square"))[1:]:
        os.remove(root / "thin" / "red_square" / name)
    return root


@pytest.mark.parametrize("folder, argv, expected", [
    ("one", [], "--dataset=folder:{root}/one: training needs at least 2 classes, and "
                "--train_split=train has 1 (red_square); add a class folder"),
    ("thin", ["--eval_split=validation"],
     "--eval_split=validation has no image of class red_square of --dataset=folder:"
     "{root}/thin: --holdout_fraction=0.1 holds out that share of each class for "
     "'validation', so a class needs at least 2 images for one to be held out"),
    ("thin", ["--train_split=train[:90%]", "--eval_split=train[90%:]"],
     "--eval_split=train[90%:] selects no images of --dataset=folder:{root}/thin:"),
])
def test_unlearnable_folder_is_refused_before_training(folders, folder, argv, expected):
    workdir = folders / f"run_{folder}_{len(argv)}"
    proc = subprocess.run(
        [sys.executable, "-m", "mobilenet_tf.train", f"--flagfile={QUICKSTART}",
         f"--dataset=folder:{folders / folder}", f"--workdir={workdir}", "--epochs=1",
         "--batch_size=2", *argv],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("error: " + expected.format(root=folders)), errors[0]
    assert "Epoch" not in proc.stdout + proc.stderr
    assert not workdir.exists()


def test_fewest_images_per_class():
    from mobilenet_tf.data.learnable import fewest_images, images_kept
    from mobilenet_tf.data.specs import parse_split

    validation, tail = parse_split("validation", "x"), parse_split("train[90%:]", "x")
    assert fewest_images(validation, "validation", 0.1) == 2  # one held out of 2
    assert images_kept(1, validation, "validation", 0.1) == 0
    # NAME[90%:] of a class of n images keeps images round(0.9 n)..n: none below 5.
    assert [images_kept(n, tail, None, 0.1) for n in range(1, 7)] == [0, 0, 0, 0, 1, 1]
    assert fewest_images(tail, None, 0.1) == 5
    assert fewest_images(validation, "validation", 0.0) is None  # nothing is held out
