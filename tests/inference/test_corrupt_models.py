"""A damaged model or labels file given to evaluate or predict is one ``error:`` line that
names the file and says what would be valid, never a parser's traceback or its unnamed
message (a truncated .tflite used to give ``struct.error`` or "The model is not a valid
Flatbuffer buffer"; one cut inside its attached labels ran with made-up class names).
Damaged .keras files: test_corrupt_keras.py."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mobilenet_tf.inference import loading
from helpers import REPO, jpeg_bytes, tiny_classifier_tflite, write_image_folder

EXPORT_REMEDY = "export one with python -m mobilenet_tf.export"


def _tiny_keras_model():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """Whole tiny models: ``tflite`` (no metadata), ``tflite_meta`` (labels attached),
    ``keras`` (a .keras file with a labels.txt beside it) and ``saved_model`` (written by
    the exporter's ``write_saved_model``)."""
    from mobilenet_tf.data import labels as labels_lib
    from mobilenet_tf.serving import exporter, tflite_metadata

    folder = tmp_path_factory.mktemp("whole")
    flat = tiny_classifier_tflite(folder)
    (folder / "tiny.tflite").write_bytes(flat)
    (folder / "meta.tflite").write_bytes(tflite_metadata.add_image_classifier_metadata(
        flat, labels=["x", "y", "z"], mean=[127.5] * 3, std=[127.5] * 3, name="tiny",
        description="test", version="1"))
    model = _tiny_keras_model()
    (folder / "k").mkdir()
    model.save(folder / "k" / "model.keras")
    labels_lib.write_labels(str(folder / "k" / "labels.txt"), ["a", "b", "c"])
    exporter.write_saved_model(model, ["a", "b", "c"], (16, 16), 0.875, 5,
                               str(folder / "saved_model"))
    return {"tflite": folder / "tiny.tflite", "tflite_meta": folder / "meta.tflite",
            "keras": folder / "k" / "model.keras", "saved_model": folder / "saved_model"}


def _damaged_tflite(models, tmp_path, how) -> str:
    whole = models["tflite_meta" if how == "cut_in_labels" else "tflite"].read_bytes()
    path = tmp_path / "model.tflite"
    if how == "directory":
        path.mkdir()
        return str(path)
    path.write_bytes({"empty": b"", "first_20_bytes": whole[:20],
                      "half": whole[:len(whole) // 2], "last_16_bytes_cut": whole[:-16],
                      "cut_in_labels": whole[:-10],
                      "random_bytes": np.random.default_rng(0).bytes(5000)}[how])
    return str(path)


TFLITE_DAMAGE = ["empty", "first_20_bytes", "half", "last_16_bytes_cut", "random_bytes",
                 "directory", "cut_in_labels"]


@pytest.mark.parametrize("how", TFLITE_DAMAGE)
def test_damaged_tflite_is_a_value_error_naming_the_file(models, tmp_path, how):
    path = _damaged_tflite(models, tmp_path, how)
    with pytest.raises(ValueError) as info:
        loading.load_classifier(path)
    message = str(info.value)
    assert message.startswith(f"{path} is not a readable TFLite model (")
    assert message.endswith(EXPORT_REMEDY) and "\n" not in message


def _command(args):
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=300)


def _assert_one_error_line(proc, *named):
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert all(name in errors[0] for name in named), errors[0]
    return errors[0]


@pytest.mark.parametrize("command", ["predict", "evaluate"])
@pytest.mark.parametrize("how", ["first_20_bytes", "last_16_bytes_cut"])
def test_commands_report_a_truncated_tflite_in_one_line(models, tmp_path, command, how):
    path = _damaged_tflite(models, tmp_path, how)
    if command == "predict":
        image = tmp_path / "img.jpg"
        image.write_bytes(jpeg_bytes(np.zeros((20, 20, 3), np.uint8)))
        args = ["mobilenet_tf.predict", f"--model={path}", str(image)]
    else:
        write_image_folder(str(tmp_path / "data"), per_class=1, seed=0)
        args = ["mobilenet_tf.evaluate", f"--model={path}",
                f"--dataset=folder:{tmp_path}/data"]
    line = _assert_one_error_line(_command(args), path)
    assert "is not a readable TFLite model" in line and EXPORT_REMEDY in line


def _damaged_saved_model(models, tmp_path, how) -> str:
    path = tmp_path / "saved_model"
    shutil.copytree(models["saved_model"], path)
    data = path / "variables" / "variables.data-00000-of-00001"
    if how == "no_saved_model_pb":
        (path / "saved_model.pb").unlink()
    elif how == "empty_saved_model_pb":
        (path / "saved_model.pb").write_bytes(b"")
    elif how == "truncated_saved_model_pb":
        (path / "saved_model.pb").write_bytes((path / "saved_model.pb").read_bytes()[:1000])
    elif how == "no_variables":
        shutil.rmtree(path / "variables")
    elif how == "truncated_variables_data":
        data.write_bytes(data.read_bytes()[:100])
    elif how == "truncated_variables_index":
        index = path / "variables" / "variables.index"
        index.write_bytes(index.read_bytes()[:50])
    return str(path)


@pytest.mark.parametrize("how", [
    "no_saved_model_pb", "empty_saved_model_pb", "truncated_saved_model_pb", "no_variables",
    "truncated_variables_data", "truncated_variables_index"])
def test_damaged_saved_model_is_a_value_error_naming_it(models, tmp_path, how):
    path = _damaged_saved_model(models, tmp_path, how)
    with pytest.raises(ValueError) as info:
        loading.load_classifier(path)
    message = str(info.value)
    assert message.startswith(f"SavedModel {path} ")
    assert message.endswith(EXPORT_REMEDY) and "\n" not in message


def test_evaluate_reports_truncated_saved_model_variables_in_one_line(models, tmp_path):
    path = _damaged_saved_model(models, tmp_path, "truncated_variables_data")
    write_image_folder(str(tmp_path / "data"), per_class=1, seed=0)
    proc = _command(["mobilenet_tf.evaluate", f"--model={path}",
                     f"--dataset=folder:{tmp_path}/data"])
    assert "its variables are cut short or damaged" in _assert_one_error_line(proc, path)


def test_an_export_directory_names_the_models_in_it(models, tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    shutil.copytree(models["saved_model"], export / "saved_model")
    shutil.copy(models["tflite_meta"], export / "model_float32.tflite")
    (export / "export_report.json").write_text("{}")
    with pytest.raises(ValueError, match="is an export directory, not a model: pass one of "
                       f"the models in it \\({export}/model_float32.tflite, "
                       f"{export}/saved_model\\)$"):
        loading.load_classifier(str(export))
    (export / "saved_model" / "saved_model.pb").unlink()  # an export written in part
    with pytest.raises(ValueError, match=f"SavedModel {export}/saved_model has no "
                       "saved_model.pb: it was written in part"):
        loading.load_classifier(str(export / "saved_model"))


def _with_labels(models, tmp_path, kind, labels: bytes | None) -> tuple[str, str]:
    folder = tmp_path / "m"
    folder.mkdir()
    path = folder / ("model.keras" if kind == "keras" else "model.tflite")
    shutil.copy(models[kind], path)
    if labels is not None:
        (folder / "labels.txt").write_bytes(labels)
    else:
        (folder / "labels.txt").mkdir()
    return str(path), str(folder / "labels.txt")


@pytest.mark.parametrize("kind", ["keras", "tflite"])
def test_a_labels_file_of_the_wrong_length_is_named(models, tmp_path, kind):
    path, labels = _with_labels(models, tmp_path, kind, b"a\nb\n")
    with pytest.raises(ValueError) as info:
        loading.load_classifier(path)
    assert str(info.value) == (
        f"model {path} has 3 outputs but 2 class names come from labels file {labels}; "
        "they must give one class name per line, line i = class i, one per output")


@pytest.mark.parametrize("labels", [b"\xff\xfe\x00a\n", None], ids=["not_utf8", "directory"])
def test_an_unreadable_labels_file_is_named(models, tmp_path, labels):
    path, labels_path = _with_labels(models, tmp_path, "keras", labels)
    with pytest.raises(ValueError) as info:
        loading.load_classifier(path)
    assert str(info.value).startswith(f"labels file {labels_path} is ")
    assert "one class name per line" in str(info.value)


def test_a_directory_named_like_a_keras_file_is_named(tmp_path):
    path = tmp_path / "model.keras"
    path.mkdir()
    with pytest.raises(ValueError, match=f"^Keras model {path} is a directory, not a "
                                         r"\.keras file$"):
        loading.load_classifier(str(path))


def _run_with_labels(run_dir, tmp_path, labels: bytes) -> tuple[str, str]:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("final.keras", "config.json"):
        shutil.copy(os.path.join(run_dir, name), run / name)
    (run / "labels.txt").write_bytes(labels)
    return str(run), str(run / "labels.txt")


@pytest.mark.parametrize("labels", [b"a\nb\n", b"\xff\xfe\x00a\n"],
                         ids=["wrong_length", "not_utf8"])
def test_a_run_directory_names_its_bad_labels_file(run_dir, tmp_path, labels):
    """evaluate/predict (``load_classifier``) and export read a run's labels.txt alike."""
    from mobilenet_tf.serving import exporter
    from mobilenet_tf.serving.config import ExportConfig

    run, labels_path = _run_with_labels(run_dir, tmp_path, labels)
    expected = (f"2 class names come from labels file {labels_path}" if labels == b"a\nb\n"
                else f"labels file {labels_path} is not UTF-8 text")
    for load in (lambda: loading.load_classifier(run),
                 lambda: exporter.export(ExportConfig(workdir=run, latency_runs=0))):
        with pytest.raises(ValueError, match=expected):
            load()
    assert sorted(os.listdir(run)) == ["config.json", "final.keras", "labels.txt"]


@pytest.fixture(scope="module")
def vector_models(tmp_path_factory) -> dict:
    """Whole models of another kind: a .keras and a .tflite taking vectors [1, 5]."""
    import keras
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("vector")
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    model.save(folder / "vector.keras")
    model.export(str(folder / "sm"), format="tf_saved_model", verbose=False,
                 input_signature=[tf.TensorSpec([1, 5], tf.float32)])
    (folder / "vector.tflite").write_bytes(
        tf.lite.TFLiteConverter.from_saved_model(str(folder / "sm")).convert())
    return {"keras": folder / "vector.keras", "tflite": folder / "vector.tflite"}


@pytest.mark.parametrize("kind", ["keras", "tflite"])
def test_a_model_that_is_not_an_image_classifier_is_named(vector_models, kind):
    path = str(vector_models[kind])
    with pytest.raises(ValueError, match=f"^model {path} is not an image classifier of "
                       r"fixed input size: it takes \[(1|\?), 5\] and gives \[(1|\?), 3\]"):
        loading.load_classifier(path)
