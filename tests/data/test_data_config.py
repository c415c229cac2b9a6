"""DataConfig validation, --dataset spec and split parsing."""

import dataclasses
import json
import os

import pytest

from mobilenet_tf import data
from mobilenet_tf.data.specs import DatasetSpec, SplitSpec


def test_defaults_match_the_contract():
    cfg = data.DataConfig()
    assert cfg.dataset == "synthetic" and cfg.image_size == (224, 224)
    assert (cfg.min_area, cfg.max_area) == (0.08, 1.0)
    assert (cfg.min_aspect, cfg.max_aspect) == pytest.approx((3 / 4, 4 / 3))
    assert cfg.flip and cfg.crop_fraction == 0.875 and cfg.bad_images == "skip"
    assert cfg.label_offset == 0 and cfg.seed == 0


def test_json_round_trip_with_lists():
    cfg = data.DataConfig(dataset="folder:/x", image_size=(160, 128), mixup_alpha=0.2)
    back = data.DataConfig(**json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert back == cfg and back.image_size == (160, 128)
    assert data.DataConfig(**cfg.to_dict()) == cfg
    assert data.DataConfig(image_size=[96, 96]).image_size == (96, 96)
    assert data.DataConfig(image_size=64).image_size == (64, 64)


@pytest.mark.parametrize("kwargs, flag", [
    ({"bad_images": "ignore"}, "--bad_images"),
    ({"min_area": 0.0}, "--min_area"),
    ({"min_area": 0.5, "max_area": 0.4}, "--min_area"),
    ({"min_aspect": 2.0, "max_aspect": 1.0}, "--min_aspect"),
    ({"crop_fraction": 1.5}, "--crop_fraction"),
    ({"cutmix_alpha": 2.0}, "--cutmix_alpha"),
    ({"mixup_alpha": -1.0}, "--mixup_alpha"),
    ({"color_jitter": 1.0}, "--color_jitter"),
    ({"randaugment_magnitude": 0.0}, "--randaugment_magnitude"),
    ({"randaugment_magnitude": 0.9},
     "--randaugment_magnitude=0.9 has no effect without --randaugment"),
    ({"image_size": "big"}, "--image_size"),
    ({"synthetic_num_classes": 1}, "--synthetic_num_classes"),
    ({"shuffle_buffer": 0}, "--shuffle_buffer"),
    ({"dataset": ""}, "--dataset"),
])
def test_invalid_values_name_the_flag(kwargs, flag):
    with pytest.raises(ValueError, match=flag):
        data.DataConfig(**kwargs)


@pytest.mark.parametrize("spec, expected", [
    ("synthetic", DatasetSpec("synthetic")),
    ("tfds:imagenette/160px-v2", DatasetSpec("tfds", name="imagenette", config="160px-v2")),
    ("tfds:imagenet2012", DatasetSpec("tfds", name="imagenet2012")),
    ("folder:/data/imagenet", DatasetSpec("folder", path="/data/imagenet")),
    ("folder:C:/odd:path", DatasetSpec("folder", path="C:/odd:path")),
    ("tfrecord:/data/{split}-*", DatasetSpec("tfrecord", path="/data/{split}-*")),
])
def test_parse_dataset_spec(spec, expected):
    assert data.parse_dataset_spec(spec) == expected


@pytest.mark.parametrize("spec", ["imagenet", "tfds:", "folder:", "tfds:Image Net",
                                  "tfds:a/b/c", "s3:bucket", "synthetic:10", "tfrecord"])
def test_malformed_specs_are_rejected_at_config_time(spec):
    with pytest.raises(ValueError, match="--dataset"):
        data.DataConfig(dataset=spec)


@pytest.mark.parametrize("split, expected", [
    ("train", SplitSpec("train")),
    ("train[:90%]", SplitSpec("train", None, 90.0)),
    ("train[90%:]", SplitSpec("train", 90.0, None)),
    ("validation[10%:20%]", SplitSpec("validation", 10.0, 20.0)),
])
def test_parse_split(split, expected):
    assert data.parse_split(split, "x") == expected


@pytest.mark.parametrize("split", ["train[:90]", "train[50%:10%]", "train[:120%]", "",
                                   "train[", "tr ain"])
def test_malformed_splits(split):
    with pytest.raises(ValueError, match="split"):
        data.parse_split(split, "folder:/x")


def test_percent_slices_partition_any_size():
    for n in range(0, 40):
        a, b = SplitSpec("t", None, 90).select(n), SplitSpec("t", 90, None).select(n)
        assert len(range(n)[a]) + len(range(n)[b]) == n and a.stop == b.start


def test_labels_file_round_trip_and_bad_names(tmp_path):
    from mobilenet_tf.data import labels

    names = ["tench", "English springer", "n03000684"]
    path = str(tmp_path / labels.LABELS_FILE)
    labels.write_labels(path, names)
    assert labels.read_labels(str(tmp_path)) == names
    assert labels.parse_labels(labels.format_labels(names)) == names
    for bad in ["", "two\nlines", "carriage\rreturn", " padded"]:
        with pytest.raises(ValueError, match="class name"):
            labels.format_labels(["ok", bad])
    assert not [p for p in os.listdir(tmp_path) if p != labels.LABELS_FILE]  # no temp files
