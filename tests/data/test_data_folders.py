"""folder:PATH without split folders (PATH/<class>/<image>): layout detection, the
seeded per-class held-out split, slicing on top of it, and the errors."""

import os

import numpy as np
import pytest

from mobilenet_tf import data
from mobilenet_tf.data.folders import default_eval_split, folder_layout
from mobilenet_tf.data.sources import make_source
from mobilenet_tf.data.specs import holdout_count
from data_helpers import class_colour, collect, make_folder


def _files(root, split, **cfg):
    src = make_source(data.DataConfig(dataset=f"folder:{root}", **cfg), split)
    return [n.decode() for _, _, n in src.dataset().as_numpy_iterator()], src


def _flat(tmp_path, classes=("cat", "dog", "owl"), per_class=10):
    return make_folder(tmp_path / "photos", classes=classes, per_class=per_class,
                       splits=("",))


def test_flat_folder_splits_partition_each_class(tmp_path):
    root = _flat(tmp_path)
    assert folder_layout(root) == "classes"
    train, src = _files(root, "train")
    val, _ = _files(root, "validation")
    every, _ = _files(root, "all")
    assert src.class_names == ["cat", "dog", "owl"]
    assert len(every) == 30 and sorted(train + val) == sorted(every)
    assert not set(train) & set(val)
    for c in ("cat", "dog", "owl"):  # 10% of 10 per class
        assert sum(f"/{c}/" in f for f in val) == 1
    # Labels come from the class folders.
    cfg = data.DataConfig(dataset=f"folder:{root}", image_size=24)
    colours = {name: class_colour(i) for i, name in enumerate(("cat", "dog", "owl"))}
    for image, label in data.iterate_uint8(cfg, "validation", 10):
        want = colours[src.class_names[label]]
        assert np.abs(image[-5:].reshape(-1, 3).mean(0) - want).max() < 12


def test_held_out_images_ignore_seed_and_survive_new_classes(tmp_path):
    root = _flat(tmp_path)
    val, _ = _files(root, "validation")
    assert _files(root, "validation", seed=7)[0] == val  # --seed does not move them
    make_folder(tmp_path / "photos", classes=("ant",), per_class=10, splits=("",))
    grown, _ = _files(root, "validation")
    assert [f for f in grown if "/ant/" not in f] == val


def test_holdout_fraction(tmp_path):
    root = _flat(tmp_path, per_class=20)
    val, _ = _files(root, "validation", holdout_fraction=0.25)
    assert len(val) == 15
    small, _ = _files(root, "validation", holdout_fraction=0.1)
    assert len(small) == 6 and set(small) <= set(val)  # one permutation, cut later
    with pytest.raises(ValueError, match="selects no images.*--holdout_fraction=0"):
        _files(root, "validation", holdout_fraction=0.0)
    assert len(_files(root, "train", holdout_fraction=0.0)[0]) == 60
    with pytest.raises(ValueError, match="--holdout_fraction"):
        data.DataConfig(dataset=f"folder:{root}", holdout_fraction=1.0)


def test_holdout_count_keeps_one_of_each_side():
    assert [holdout_count(n, 0.1) for n in (0, 1, 2, 5, 10, 14, 15, 100)] == \
        [0, 0, 1, 1, 1, 1, 2, 10]
    assert holdout_count(3, 0.9) == 2 and holdout_count(50, 0.0) == 0


def test_slices_apply_within_the_flat_splits(tmp_path):
    root = _flat(tmp_path, per_class=20)
    train, _ = _files(root, "train")
    head, _ = _files(root, "train[:50%]")
    tail, _ = _files(root, "train[50%:]")
    assert sorted(head + tail) == sorted(train) and len(head) == 27  # 9 of 18 per class
    assert not set(head) & set(_files(root, "validation")[0])


def test_split_layout_still_works_and_all_is_a_folder_name_there(tmp_path):
    root = make_folder(tmp_path, classes=("a", "b"), per_class=4, splits=("train", "val"))
    assert folder_layout(root) == "splits"
    assert len(_files(root, "val")[0]) == 8
    with pytest.raises(ValueError, match="split folder .*all does not exist"):
        _files(root, "all")
    assert default_eval_split(f"folder:{root}") == "validation"
    assert default_eval_split(f"folder:{_flat(tmp_path)}") == "all"
    assert default_eval_split("synthetic") == "validation"


def test_flat_folder_errors(tmp_path):
    root = _flat(tmp_path)
    with pytest.raises(ValueError, match="'train'.*'validation'.*'all'"):
        _files(root, "val")
    # A split folder beside class folders: ambiguous.
    make_folder(tmp_path / "photos", classes=("x",), per_class=2, splits=("extra",))
    with pytest.raises(ValueError, match=r"mixes class folders .*'cat'.*split folders .*"
                                         r"'extra'"):
        _files(root, "train")
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "a.jpg").write_bytes(open(os.path.join(root, "cat", "000.jpg"), "rb").read())
    with pytest.raises(ValueError, match="1 images lie directly in it"):
        _files(str(loose), "train")
    with pytest.raises(ValueError, match="does not exist"):
        folder_layout(str(tmp_path / "missing"))


def test_flat_folder_through_the_pipeline(tmp_path):
    root = _flat(tmp_path, classes=("cat", "dog"), per_class=10)
    cfg = data.DataConfig(dataset=f"folder:{root}", image_size=32)
    train = data.build_input(cfg, "train", training=True, global_batch_size=6)
    x, y = next(iter(train.input_fn(None)))
    assert x.shape == (6, 32, 32, 3) and y.shape == (6, 2)
    ev = data.build_input(cfg, "validation", training=False, global_batch_size=8,
                          class_names=train.class_names)
    images, labels = collect(ev.input_fn(None))
    assert images.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(labels, [0, 1])
