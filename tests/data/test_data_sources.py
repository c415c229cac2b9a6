"""Every source on tiny data: folder, tfrecord, synthetic, tfds (mocked)."""


import numpy as np
import pytest

from mobilenet_tf import data
from mobilenet_tf.data import synthetic
from mobilenet_tf.data.sources import make_source
from data_helpers import class_colour, collect, make_folder, make_tfrecords


def _names(cfg, split, class_names=None):
    src = make_source(cfg, split, class_names)
    return [n.decode() for _, _, n in src.dataset().as_numpy_iterator()], src


# ------------------------------------------------------------------ folder
def test_folder_classes_formats_and_labels(tmp_path):
    root = make_folder(tmp_path, classes=("dog", "cat", "bird"), per_class=6)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / "cat" / ".hidden.jpg").write_bytes(b"junk")
    (tmp_path / "train" / ".cache").mkdir()
    cfg = data.DataConfig(dataset=f"folder:{root}", image_size=32)
    inp = data.build_input(cfg, "train", training=False, global_batch_size=4)
    assert inp.class_names == ["bird", "cat", "dog"]  # sorted folder names
    assert inp.num_examples == 18  # jpg, PNG, bmp, gif, JPEG, png x 3 classes
    images, labels = collect(inp.input_fn(None))
    assert images.shape == (18, 32, 32, 3) and labels.dtype == np.int32
    np.testing.assert_array_equal(labels, np.repeat([0, 1, 2], 6))
    # The class colour fills the lower part of every image: labels match pixels.
    folder_index = {"dog": 0, "cat": 1, "bird": 2}  # order make_folder coloured them in
    for image, label in data.iterate_uint8(cfg, "train", 100):
        colour = class_colour(folder_index[inp.class_names[label]])
        assert np.abs(image[-5:].reshape(-1, 3).mean(0) - colour).max() < 12
    assert inp.bad_images.count == 0


def test_folder_split_slicing_is_per_class_seeded_and_partitions(tmp_path):
    root = make_folder(tmp_path, classes=("a", "b"), per_class=10, splits=("train",))
    cfg = data.DataConfig(dataset=f"folder:{root}")
    head, src_head = _names(cfg, "train[:70%]")
    tail, src_tail = _names(cfg, "train[70%:]")
    every, _ = _names(cfg, "train")
    assert not set(head) & set(tail) and sorted(head + tail) == sorted(every)
    assert src_head.num_examples == 14 and src_tail.num_examples == 6
    assert sum("/a/" in n for n in tail) == 3  # per class: 30% of 10
    assert _names(cfg, "train[70%:]")[0] == tail  # same seed, same files
    other, _ = _names(data.DataConfig(dataset=f"folder:{root}", seed=1), "train[70%:]")
    assert other != tail


def test_folder_class_names_fix_the_list(tmp_path):
    root = make_folder(tmp_path, classes=("a", "b"), per_class=2)
    cfg = data.DataConfig(dataset=f"folder:{root}", image_size=16)
    ev = data.build_input(cfg, "val", False, 8, class_names=["x", "b", "a"])
    assert ev.class_names == ["x", "b", "a"]
    _, labels = collect(ev.input_fn(None))
    np.testing.assert_array_equal(labels, [2, 2, 1, 1])  # folder a -> 2, b -> 1
    with pytest.raises(ValueError, match="not in the fixed class list.*'b'"):
        data.build_input(cfg, "val", False, 8, class_names=["a"])


# ------------------------------------------------------------------ tfrecord
def test_tfrecord_labels_offset_and_names(tmp_path):
    written = make_tfrecords(tmp_path, num_files=2, per_file=5, num_classes=3,
                             label_offset=1)
    cfg = data.DataConfig(dataset=f"tfrecord:{tmp_path}/train-*", label_offset=1,
                          image_size=24)
    inp = data.build_input(cfg, "train", False, 4)
    assert inp.num_examples == 10 and inp.class_names == ["0", "1", "2"]
    images, labels = collect(inp.input_fn(None))
    assert images.shape == (10, 24, 24, 3)
    np.testing.assert_array_equal(labels, np.arange(10) % 3)
    names, _ = _names(cfg, "train")
    assert names[6] == f"{written[1][0]}#1"
    with pytest.raises(ValueError, match="--label_offset"):
        data.build_input(data.DataConfig(dataset=cfg.dataset, label_offset=2), "train",
                         False, 4)


def test_tfrecord_split_forms_synsets_and_slicing(tmp_path):
    make_tfrecords(tmp_path, "train", num_files=3, per_file=4, synsets=True)
    make_tfrecords(tmp_path, "validation", num_files=1, per_file=6, synsets=True)
    by_dir = data.DataConfig(dataset=f"tfrecord:{tmp_path}")  # DIR -> DIR/{split}-*
    by_placeholder = data.DataConfig(dataset=f"tfrecord:{tmp_path}/{{split}}-*")
    for cfg in (by_dir, by_placeholder):
        assert make_source(cfg, "train").num_examples == 12
        assert make_source(cfg, "validation").num_examples == 6
    tr = make_source(by_dir, "train")
    assert tr.class_names == ["n00000000", "n00000001", "n00000002"]
    head, _ = _names(by_dir, "train[:50%]")
    tail, _ = _names(by_dir, "train[50%:]")
    every, _ = _names(by_dir, "train")
    assert not set(head) & set(tail) and sorted(head + tail) == sorted(every)
    # Eval classes are mapped by synset onto the training list.
    ev = data.build_input(by_dir, "validation", False, 6,
                          class_names=["n00000002", "n00000001", "n00000000"])
    _, labels = collect(ev.input_fn(None))
    np.testing.assert_array_equal(labels, [2, 1, 0, 2, 1, 0])
    with pytest.raises(ValueError, match="not in the fixed class list"):
        data.build_input(by_dir, "validation", False, 6, class_names=["n00000000"])


def test_tfrecord_labels_txt_names(tmp_path):
    make_tfrecords(tmp_path, num_files=1, per_file=3, num_classes=3)
    (tmp_path / "labels.txt").write_text("tench\ngoldfish\nshark\n")
    src = make_source(data.DataConfig(dataset=f"tfrecord:{tmp_path}/train-*"), "train")
    assert src.class_names == ["tench", "goldfish", "shark"]


# ------------------------------------------------------------------ synthetic
def test_synthetic_is_deterministic_by_seed_and_split():
    cfg = data.DataConfig(synthetic_num_classes=7, synthetic_num_examples=21,
                          synthetic_image_size=32)
    a = make_source(cfg, "train")
    assert a.class_names == synthetic.class_names(7) and a.class_names[0] == "red_circle"
    assert a.images.shape == (21, 32, 32, 3) and a.images.dtype == np.uint8
    np.testing.assert_array_equal(a.labels, np.arange(21) % 7)
    np.testing.assert_array_equal(make_source(cfg, "train").images, a.images)
    other_seed = make_source(data.DataConfig(**{**cfg.to_dict(), "seed": 3}), "train")
    assert not np.array_equal(other_seed.images, a.images)
    assert not np.array_equal(make_source(cfg, "validation").images, a.images)
    sliced, tail = make_source(cfg, "train[:67%]"), make_source(cfg, "train[67%:]")
    assert sliced.num_examples == 14 and tail.num_examples == 7  # 2 + 1 of 3 per class
    assert not set(sliced.names) & set(tail.names)
    keep = [int(n.split("#")[1]) for n in sliced.names]
    np.testing.assert_array_equal(sliced.images, a.images[keep])
    with pytest.raises(ValueError, match="split 'test2' does not exist"):
        make_source(cfg, "test2")
    with pytest.raises(ValueError, match="--synthetic_num_classes"):
        make_source(data.DataConfig(synthetic_num_classes=31), "train")


# ------------------------------------------------------------------ tfds (mocked)
@pytest.mark.parametrize("spec, num_classes", [("tfds:imagenette/160px-v2", 10),
                                               ("tfds:imagenette/320px", 10),
                                               ("tfds:imagenet2012", 1000)])
def test_tfds_sources_with_mock_data(spec, num_classes):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, num_examples=6):
        cfg = data.DataConfig(dataset=spec, image_size=32, data_dir="/nonexistent/tfds")
        tr = data.build_input(cfg, "train", True, 4)
        assert len(tr.class_names) == num_classes and tr.class_names[0] == "n01440764"
        x, y = next(iter(tr.input_fn(None)))
        assert x.shape == (4, 32, 32, 3) and y.shape == (4, num_classes)
        assert -1 <= x.numpy().min() and x.numpy().max() <= 1
        ev = data.build_input(cfg, "validation", False, 4, class_names=tr.class_names)
        images, labels = collect(ev.input_fn(None))
        assert ev.num_examples == 6 and images.shape == (6, 32, 32, 3)
        assert labels.dtype == np.int32 and labels.max() < num_classes
        assert tr.bad_images.count == 0 and ev.bad_images.count == 0


def test_tfds_errors():
    with pytest.raises(ValueError, match="--dataset=tfds:no_such_dataset_xyz.*unknown"):
        data.build_input(data.DataConfig(dataset="tfds:no_such_dataset_xyz"), "train")
    # tensorflow-datasets 4.9 has no imagewoof: the error points to the folder source.
    with pytest.raises(ValueError, match="unknown tfds dataset.*folder:PATH"):
        data.build_input(data.DataConfig(dataset="tfds:imagewoof"), "train")
    with pytest.raises(ValueError, match="--dataset=tfds:imagenette/999px"):
        data.build_input(data.DataConfig(dataset="tfds:imagenette/999px"), "train")


def test_tfds_imagenet2012_needs_manual_download(tmp_path):
    with pytest.raises(ValueError, match=r"manual dir .*downloads/manual.*ILSVRC2012_img_train"):
        data.build_input(data.DataConfig(dataset="tfds:imagenet2012",
                                         data_dir=str(tmp_path)), "train")
