"""predict: top-k labels per image for any model format; bad files reported, not fatal."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from helpers import CLASSES, IMAGE_SIZE
from mobilenet_tf.inference import loading, prediction


@pytest.fixture()
def folder_with_corrupt_file(image_root, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for cls in CLASSES:
        shutil.copy(os.path.join(image_root, "validation", cls, f"{cls}_000.jpg"), folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (folder / "notes.txt").write_text("not an image, ignored in folders")
    return folder


@pytest.mark.parametrize("model", ["run", "saved_model", "model_int8.tflite"])
def test_predict_paths_any_format(exported, run_dir, folder_with_corrupt_file, model):
    path = run_dir if model == "run" else os.path.join(exported[0], model)
    clf = loading.load_classifier(path)
    paths = prediction.expand_inputs([str(folder_with_corrupt_file)])
    assert [os.path.basename(p) for p in paths] == sorted(
        ["broken.jpg"] + [f"{c}_000.jpg" for c in CLASSES])
    results = {os.path.basename(r.path): r for r in prediction.predict_paths(clf, paths, 2)}
    assert "broken.jpg" in results["broken.jpg"].error
    keras_top1 = _keras_top1(run_dir, folder_with_corrupt_file)
    for cls in CLASSES:
        r = results[f"{cls}_000.jpg"]
        assert r.error is None and len(r.labels) == 2 and r.labels[0] == keras_top1[cls]
        assert r.scores[0] >= r.scores[1]


def _keras_top1(run_dir, folder):
    """The Keras model's own top-1 label for each good image of the folder."""
    clf = loading.load_classifier(run_dir)
    out = {}
    for cls in CLASSES:
        image = prediction.read_image(str(folder / f"{cls}_000.jpg"))
        out[cls] = CLASSES[int(clf.predict_proba([image])[0].argmax())]
    return out


def test_cli_reports_corrupt_file_and_goes_on(exported, run_dir, folder_with_corrupt_file):
    model = os.path.join(exported[0], "model_float32.tflite")
    proc = subprocess.run([sys.executable, "-m", "mobilenet_tf.predict", f"--model={model}",
                           "--top_k=3", str(folder_with_corrupt_file)],
                          capture_output=True, text=True)
    assert proc.returncode == 1  # some image could not be read
    lines = [l for l in proc.stdout.splitlines() if l.endswith(tuple("0123456789"))]
    assert len(lines) == len(CLASSES)
    keras_top1 = _keras_top1(run_dir, folder_with_corrupt_file)
    for cls in CLASSES:
        line = next(l for l in lines if f"{cls}_000.jpg:" in l)
        assert line.split(": ", 1)[1].startswith(keras_top1[cls] + " ")
    assert "broken.jpg" in proc.stderr and "not a readable" in proc.stderr


def test_cli_resolution_predicts_with_the_network_at_that_size(run_dir,
                                                              folder_with_corrupt_file):
    # predict --resolution=N: the run's network rebuilt at N px gives each image's top-k,
    # the same as the loader's classifier at that size computes in this process.
    size = IMAGE_SIZE + 32
    proc = subprocess.run([sys.executable, "-m", "mobilenet_tf.predict",
                           f"--model={run_dir}", f"--resolution={size}", "--json",
                           "--top_k=1", str(folder_with_corrupt_file)],
                          capture_output=True, text=True)
    rows = {os.path.basename(r["path"]): r for r in map(json.loads, proc.stdout.splitlines())}
    clf = loading.load_classifier(run_dir, resolution=size)
    for cls in CLASSES:
        image = prediction.read_image(str(folder_with_corrupt_file / f"{cls}_000.jpg"))
        probs = clf.predict_proba([image])[0]
        top = rows[f"{cls}_000.jpg"]["top_k"][0]
        assert top["class"] == int(probs.argmax())
        assert top["probability"] == pytest.approx(float(probs.max()), abs=1e-5)
    assert "error" in rows["broken.jpg"] and proc.returncode == 1
