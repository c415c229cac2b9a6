"""predict's output: text lines that stay unambiguous with commas in names, JSON Lines
with labels and display names (ImageNet synset IDs -> class names), a quiet stderr."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from mobilenet_tf.inference import prediction
from mobilenet_tf.data import labels as labels_lib
from helpers import REPO, tiny_classifier_tflite

SYNSETS = ["n01440764", "n01443537", "n03710721"]
NAMES = ["tench", "goldfish", "tank suit"]
# A C++/absl log line (I0000 00:00:... file.cc:12] ...) or TensorFlow's Python logger.
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog|oneDNN|cuInit|cuda|"
                         r"^WARNING:tensorflow|^INFO:tensorflow")


def test_display_names_of_synsets_and_other_labels():
    assert labels_lib.display_names(SYNSETS) == NAMES
    assert labels_lib.display_names(["red_circle", "n99999999", "3"]) == [
        "red_circle", "n99999999", "3"]  # unknown IDs and other labels stay as they are
    table = labels_lib.imagenet_names()
    assert len(table) == 1000 and len(set(table.values())) == 1000  # one name per class


def read_text_line(line: str) -> tuple[str, list[tuple[str, float]]]:
    """What a reader of predict's text output does: the path (a JSON string or the text
    before the first ": "), then items of a name (a JSON string or bare words) and a score,
    separated by ", "."""
    decoder = json.JSONDecoder()
    if line.startswith('"'):
        path, end = decoder.raw_decode(line)
        assert line[end:end + 2] == ": "
        rest = line[end + 2:]
    else:
        path, _, rest = line.partition(": ")
    items = []
    while rest:
        if rest.startswith('"'):
            name, end = decoder.raw_decode(rest)
            score, _, rest = rest[end:].strip().partition(", ")
        else:
            item, _, rest = rest.partition(", ")
            name, _, score = item.rpartition(" ")
        items.append((name, float(score)))
    return path, items


def test_text_line_quotes_names_with_commas_and_reads_back():
    p = prediction.Prediction(path="dir: x/img.jpg", classes=[2, 0], labels=["a, b", 'say "hi"'],
                              names=["a, b", 'say "hi"'], scores=[0.75, 0.25])
    line = prediction.format_prediction(p)
    assert line == '"dir: x/img.jpg": "a, b" 0.7500, "say \\"hi\\"" 0.2500'
    assert read_text_line(line) == (p.path, [("a, b", 0.75), ('say "hi"', 0.25)])
    plain = prediction.Prediction(path="img.jpg", classes=[0], labels=["n01440764"],
                                  names=["tench"], scores=[1.0])
    assert prediction.format_prediction(plain) == "img.jpg: tench 1.0000"


ODD_PATHS = ["fish, maybe.png", "a: b.jpg", 'say "hi".jpg', "new\nline.jpg", "tab\tx.jpg",
             "cr\rx.jpg", " lead.jpg", "not-utf8-\udcff.jpg", "été, 2.jpg"]


@pytest.mark.parametrize("path", ODD_PATHS)
def test_text_line_of_any_path_is_one_line_that_reads_back(path):
    p = prediction.Prediction(path=path, classes=[1, 0], labels=["b", "a"],
                              names=["tank suit", "a"], scores=[0.5, 0.25])
    line = prediction.format_prediction(p)
    assert line.startswith('"')  # each holds a separator or an unprintable character
    assert line.splitlines() == [line]
    line.encode("utf-8")  # printable in a strict UTF-8 locale (no lone surrogates)
    assert read_text_line(line) == (path, [("tank suit", 0.5), ("a", 0.25)])
    assert json.loads(prediction.prediction_json(p))["path"] == path
    prediction.prediction_json(p).encode("utf-8")


@pytest.mark.parametrize("path", ODD_PATHS)
def test_error_line_of_any_path_is_one_line_naming_it(tmp_path, path):
    target = os.path.join(str(tmp_path), path)
    with open(target, "wb") as f:
        f.write(b"not an image")
    with pytest.raises(ValueError) as info:
        prediction.read_image(target)
    line = prediction.format_prediction(prediction.Prediction(path=target, error=str(info.value)))
    assert line.splitlines() == [line] and line.startswith("ERROR ")
    named = line[len("ERROR "):]
    if named.startswith('"'):
        named, _ = json.JSONDecoder().raw_decode(named)
    assert named.startswith(target)


def test_json_line():
    p = prediction.Prediction(path="img.jpg", classes=[0, 1], labels=SYNSETS[:2],
                              names=NAMES[:2], scores=[0.9, 0.1])
    assert json.loads(prediction.prediction_json(p)) == {"path": "img.jpg", "top_k": [
        {"label": "n01440764", "name": "tench", "class": 0, "probability": 0.9},
        {"label": "n01443537", "name": "goldfish", "class": 1, "probability": 0.1}]}
    bad = prediction.Prediction(path="x.jpg", error="x.jpg: empty file")
    assert json.loads(prediction.prediction_json(bad)) == {"path": "x.jpg",
                                                           "error": "x.jpg: empty file"}


@pytest.fixture(scope="module")
def synset_tflite(tmp_path_factory) -> str:
    """A tiny real .tflite classifier over three ImageNet synsets, with our metadata."""
    from mobilenet_tf.serving import tflite_metadata as writer

    folder = tmp_path_factory.mktemp("synset_model")
    flat = tiny_classifier_tflite(folder)
    path = folder / "tiny.tflite"
    path.write_bytes(writer.add_image_classifier_metadata(
        flat, labels=SYNSETS, mean=[127.5] * 3, std=[127.5] * 3, name="tiny",
        description="test", version="1"))
    return str(path)


def test_cli_json_lines_with_display_names_and_a_quiet_stderr(synset_tflite, tmp_path):
    from PIL import Image

    good = tmp_path / "fish, maybe.png"  # a comma in the path too
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 24, 3), np.uint8)).save(good)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-m", "mobilenet_tf.predict",
                           f"--model={synset_tflite}", "--json", "--top_k=3", str(good),
                           str(broken)], cwd=REPO, env={**env, "PYTHONPATH": REPO},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1  # one image could not be read
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["path"] for r in records] == [str(good), str(broken)]
    top = records[0]["top_k"]
    assert sorted(t["label"] for t in top) == SYNSETS
    assert all(t["name"] == NAMES[SYNSETS.index(t["label"])] == NAMES[t["class"]]
               for t in top)
    probs = [t["probability"] for t in top]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=1e-4)
    assert "broken.jpg" in records[1]["error"] and "top_k" not in records[1]
    # stderr: our one summary line, no TensorFlow/absl log lines
    assert proc.stderr.strip().splitlines() == ["1 of 2 images could not be read"], proc.stderr
    # the text form of the same run shows the display names
    text = subprocess.run([sys.executable, "-m", "mobilenet_tf.predict",
                           f"--model={synset_tflite}", "--top_k=1", str(good)], cwd=REPO,
                          env={**env, "PYTHONPATH": REPO}, capture_output=True, text=True,
                          timeout=300)
    assert text.returncode == 0 and text.stderr == "", text.stderr
    path, items = read_text_line(text.stdout.rstrip("\n"))
    assert path == str(good) and text.stdout.startswith(f'"{good}": ')  # the comma: quoted
    assert items[0][0] in NAMES
    assert not any(TF_LOG_LINE.search(l) for l in text.stderr.splitlines())


def test_cli_text_output_is_one_line_per_image_whatever_the_file_names(synset_tflite,
                                                                      tmp_path):
    from PIL import Image

    folder = tmp_path / "odd"
    folder.mkdir()
    pixels = np.random.default_rng(2).integers(0, 256, (20, 24, 3), np.uint8)
    good = [folder / name for name in ("new\nline.png", 'a, "b": c.png', "not-utf8-\udcff.png")]
    for path in good:
        Image.fromarray(pixels).save(path, format="PNG")
    broken = folder / "broken\nname.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    # a strict UTF-8 locale (the C.UTF-8 default lets Python print lone surrogates)
    env = {**{k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
           "PYTHONPATH": REPO, "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.run([sys.executable, "-m", "mobilenet_tf.predict",
                           f"--model={synset_tflite}", "--top_k=2", str(folder)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300,
                          errors="surrogateescape")
    assert proc.returncode == 1, proc.stderr  # one image could not be read
    lines = proc.stdout.splitlines()
    assert sorted(read_text_line(line)[0] for line in lines) == sorted(map(str, good))
    assert all(len(read_text_line(line)[1]) == 2 for line in lines)
    errors = proc.stderr.splitlines()
    assert len(errors) == 2 and errors[1] == "1 of 4 images could not be read", proc.stderr
    assert errors[0].startswith(f"ERROR {json.dumps(str(broken))}: not a readable"), errors
