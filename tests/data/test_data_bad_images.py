"""Bad input: corrupt/truncated/empty/non-image files, and configuration errors."""

import logging

import numpy as np
import pytest
import tensorflow as tf

from mobilenet_tf import data
from data_helpers import collect, encode, image_array, make_folder, make_tfrecords, tree_digest


def _bad_folder(tmp_path):
    root = make_folder(tmp_path, classes=("a", "b"), per_class=4, splits=("train",),
                       exts=("jpg", "png"))
    good_jpeg = encode(image_array(0, 64, 64), "JPEG")
    good_png = encode(image_array(1, 64, 64), "PNG")
    bad = {
        "a/empty.jpg": b"",
        "a/truncated.jpg": good_jpeg[: len(good_jpeg) // 2],
        "b/truncated.png": good_png[: len(good_png) // 2],
        "b/text.png": b"hello, I am not an image\n" * 10,
        "b/random.BMP": np.random.default_rng(0).bytes(500),
        "a/corrupt.jpg": good_jpeg[:200] + b"\x00" * 50 + good_jpeg[250:300],
    }
    for rel, content in bad.items():
        (tmp_path / "train" / rel).write_bytes(content)
    paths = {str(tmp_path / "train" / rel) for rel in bad}
    return root, paths


def test_skip_counts_names_and_logs(tmp_path, caplog):
    root, bad_paths = _bad_folder(tmp_path)
    before = tree_digest(tmp_path)
    cfg = data.DataConfig(dataset=f"folder:{root}", image_size=16)
    inp = data.build_input(cfg, "train", training=False, global_batch_size=3)
    assert inp.num_examples == 14  # listed; bad ones are found while reading
    with caplog.at_level(logging.WARNING):
        images, labels = collect(inp.input_fn(None))
    assert len(labels) == 8 and images.shape[1:] == (16, 16, 3)
    assert inp.bad_images.count == len(bad_paths)
    assert set(inp.bad_images.examples) == bad_paths
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert all(p in logged for p in bad_paths)
    # Another pass does not double count.
    collect(inp.input_fn(None))
    assert inp.bad_images.count == len(bad_paths)
    # Training skips them too (the crop-window JPEG decode fails on the same files).
    tr = data.build_input(cfg, "train", training=True, global_batch_size=4)
    for x, y in tr.input_fn(None).take(30):
        assert x.shape == (4, 16, 16, 3)
    assert tr.bad_images.count == len(bad_paths)
    # iterate_uint8 skips them as well.
    assert len(list(data.iterate_uint8(cfg, "train", 100))) == 8
    assert tree_digest(tmp_path) == before  # the data directory is never modified


@pytest.mark.parametrize("training", [False, True])
def test_error_policy_names_the_file(tmp_path, training):
    root = make_folder(tmp_path, classes=("a",), per_class=2, splits=("train",))
    bad = tmp_path / "train" / "a" / "zz_broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    cfg = data.DataConfig(dataset=f"folder:{root}", image_size=16, bad_images="error")
    inp = data.build_input(cfg, "train", training=training, global_batch_size=2)
    with pytest.raises(tf.errors.InvalidArgumentError, match=str(bad)):
        for _ in inp.input_fn(None).take(40):
            pass


def test_bad_tfrecord_record_is_named(tmp_path):
    written = make_tfrecords(tmp_path, num_files=2, per_file=3, bad_record_at=4)
    cfg = data.DataConfig(dataset=f"tfrecord:{tmp_path}/train-*", image_size=16)
    inp = data.build_input(cfg, "train", training=False, global_batch_size=4)
    _, labels = collect(inp.input_fn(None))
    assert len(labels) == 5 and inp.bad_images.examples == [f"{written[1][0]}#1"]


# ------------------------------------------------------------------ config errors
def test_missing_path(tmp_path):
    with pytest.raises(ValueError, match=r"--dataset=folder:.*does not exist"):
        data.build_input(data.DataConfig(dataset=f"folder:{tmp_path}/nope"), "train")


def test_missing_split_folder_lists_what_exists(tmp_path):
    root = make_folder(tmp_path, per_class=1, splits=("train",), exts=("png",))
    with pytest.raises(ValueError, match=r"split folder .*validation does not exist.*'train'"):
        data.build_input(data.DataConfig(dataset=f"folder:{root}"), "validation")


def test_empty_dataset(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(ValueError, match="--dataset=folder:.*no class sub-folders"):
        data.build_input(data.DataConfig(dataset=f"folder:{tmp_path}"), "train")


def test_empty_class_folder(tmp_path):
    root = make_folder(tmp_path, per_class=1, splits=("train",), exts=("png",))
    (tmp_path / "train" / "empty_class").mkdir()
    (tmp_path / "train" / "empty_class" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="class folder .*empty_class has no images"):
        data.build_input(data.DataConfig(dataset=f"folder:{root}"), "train")


def test_tfrecord_glob_matches_nothing(tmp_path):
    with pytest.raises(ValueError, match="--dataset=tfrecord:.*no files match"):
        data.build_input(data.DataConfig(dataset=f"tfrecord:{tmp_path}/x-*"), "train")


def test_tfrecord_not_tf_examples(tmp_path):
    (tmp_path / "train-0").write_bytes(b"garbage, not a TFRecord file")
    with pytest.raises(ValueError, match="--dataset=tfrecord:.*cannot read"):
        data.build_input(data.DataConfig(dataset=f"tfrecord:{tmp_path}/train-*"), "train")


def test_unknown_tfds_name_and_malformed_spec():
    with pytest.raises(ValueError, match="--dataset=tfds:definitely_not_a_dataset"):
        data.build_input(data.DataConfig(dataset="tfds:definitely_not_a_dataset"), "train")
    with pytest.raises(ValueError, match="--dataset='imagenet' is malformed"):
        data.DataConfig(dataset="imagenet")


def test_bad_split_spec(tmp_path):
    root = make_folder(tmp_path, per_class=1, splits=("train",), exts=("png",))
    with pytest.raises(ValueError, match="split 'train\\[:90\\]'.* malformed"):
        data.build_input(data.DataConfig(dataset=f"folder:{root}"), "train[:90]")
