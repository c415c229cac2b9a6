"""TensorBoard output: the event files of tiny real runs (grouped tags with descriptions,
the typed hparams config whose metrics are tags that exist, the session's end status,
the model graph, images at several points) and the image renderers."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hp_metadata

from mobilenet_tf.rundir.errors import TrainingDivergedError
from mobilenet_tf.training import (tensorboard_images as ti, tensorboard_logging as tb,
                                   trainer)
from mobilenet_tf.training.config import TrainConfig
from train_helpers import toy_inputs

TINY = dict(alpha=0.25, resolution=32, batch_size=16, learning_rate=0.01,
            lr_schedule="constant", bn_momentum=0.9, eval_split="val", verbose=0,
            steps_per_loop=4, steps_per_epoch=4, checkpoint_every_steps=4, tag="screen-a")
SYNSETS = ["n01440764", "n02102040", "n02979186", "n03000684"]
NAMES = ["tench", "English springer", "cassette player", "chain saw"]


def _events(logdir):
    acc = EventAccumulator(logdir, size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    acc.Reload()
    return acc


def _values(acc, tag):
    return [float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]


def _hparams_plugin(acc, tag):
    return acc.SummaryMetadata(tag).plugin_data.content


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("tb") / "run")
    train, evaluation = toy_inputs(batch_size=16)
    train.class_names = evaluation.class_names = SYNSETS
    config = TrainConfig(epochs=3, ema_decay=0.9, **TINY)
    trainer.train_and_evaluate(config, workdir, train, evaluation)
    return workdir, config


def test_one_event_dir_grouped_tags_with_descriptions(run):
    workdir, _ = run
    logdir = os.path.join(workdir, "logs")
    assert [os.path.basename(os.path.dirname(p)) for p in
            glob.glob(os.path.join(logdir, "**", "events.*"), recursive=True)] \
        == ["logs"] * len(glob.glob(os.path.join(logdir, "events.*")))
    acc = _events(logdir)
    scalars = set(acc.Tags()["tensors"])  # TF2 scalars are tensor summaries
    for tag in ("train/loss", "train/top1", "train/learning_rate",
                "train/images_per_second", "train/epoch_loss", "train/epoch_top1",
                "val/loss", "val/top1", "val/best_top1", "train/epoch",
                "train/augmented_images", "val/confusion_matrix"):
        assert tag in scalars | set(acc.Tags()["images"]) | set(acc.Tags()["tensors"]), tag
        assert acc.SummaryMetadata(tag).summary_description == tb.DESCRIPTIONS[tag]
    # 4 classes: no top-5 (always 100%) anywhere.
    assert not [t for t in scalars if "top5" in t]
    # Time Series groups by the prefix and opens the first two: train and val only.
    cards = scalars | set(acc.Tags()["images"])
    assert {t.split("/")[0] for t in cards if not t.startswith("_hparams_")
            and t not in ("train_step", "flags")} == {"train", "val"}
    assert "label-smoothed" in tb.DESCRIPTIONS["train/loss"]
    assert "moving average" in tb.DESCRIPTIONS["val/loss"]
    epochs = _values(acc, "train/epoch")
    assert max(epochs) == 3.0 and min(epochs) > 0
    best, top1 = _values(acc, "val/best_top1"), _values(acc, "val/top1")
    assert len(best) == len(top1) == 3
    assert best == list(np.maximum.accumulate(top1))


def test_each_tag_has_its_own_description():
    texts = list(tb.DESCRIPTIONS.values())
    assert len(set(texts)) == len(texts)
    for tag, text in tb.DESCRIPTIONS.items():
        if "loss" not in tag:  # accuracy, images: no word about the loss
            assert "cross-entropy" not in text and "loss" not in text, tag


def test_top5_only_above_five_classes(tmp_path):
    for num_classes, top5 in ((5, False), (6, True)):
        writers = tb.Writers(str(tmp_path / str(num_classes)), True, num_classes)
        metrics = {"loss": 1.0, "top1": 0.5, "top5": 1.0}
        tb.train_scalars(writers, metrics, 0.1, 100.0, 0.5, 2)
        tb.epoch_scalars(writers, 1, 4, metrics, metrics, 0.5)
        tb.write_hparams(writers, TrainConfig(**TINY), "r", has_validation=True)
        writers.close()
        acc = _events(writers.logdir)
        tags = set(acc.Tags()["tensors"])
        assert {"train/top5", "train/epoch_top5", "val/top5"} <= tags if top5 else \
            not [t for t in tags if "top5" in t]
        exp = hp_metadata.parse_experiment_plugin_data(
            _hparams_plugin(acc, hp_metadata.EXPERIMENT_TAG))
        assert ("val/top5" in [m.name.tag for m in exp.metric_infos]) is top5


def test_hparams_typed_every_flag_metrics_exist_and_success(run):
    workdir, config = run
    acc = _events(os.path.join(workdir, "logs"))
    exp = hp_metadata.parse_experiment_plugin_data(
        _hparams_plugin(acc, hp_metadata.EXPERIMENT_TAG))
    # The curated hparams, named by rank (the dashboard sorts by name and ticks 5).
    names = sorted(h.name for h in exp.hparam_infos)
    infos = {h.display_name: h for h in exp.hparam_infos}
    assert [infos_name.split(" ", 1)[1] for infos_name in names][:5] \
        == ["tag", "learning_rate", "optimizer", "epochs", "batch_size"]
    assert set(infos) == (set(tb.HPARAMS) & set(config.flag_values())) \
        | {"num_replicas", "num_classes"}
    assert infos["batch_size"].type == api_pb2.DATA_TYPE_FLOAT64
    assert infos["batch_size"].HasField("domain_interval")
    assert infos["initial_weights"].type == api_pb2.DATA_TYPE_STRING
    assert infos["initial_weights"].HasField("domain_discrete")  # filterable
    assert infos["optimizer"].type == api_pb2.DATA_TYPE_STRING
    assert {v.string_value for v in infos["optimizer"].domain_discrete.values} \
        == {"rmsprop", "sgd", "adamw"}
    assert "Width multiplier" in infos["alpha"].description
    metric_tags = [m.name.tag for m in exp.metric_infos]
    assert {"val/top1", "val/best_top1"} <= set(metric_tags)
    assert all(m.name.group == "" for m in exp.metric_infos)
    assert set(metric_tags) <= set(acc.Tags()["tensors"])

    start = hp_metadata.parse_session_start_info_plugin_data(
        _hparams_plugin(acc, hp_metadata.SESSION_START_INFO_TAG))
    assert start.hparams[tb.hparam_name("batch_size")].number_value == 16
    assert start.hparams[tb.hparam_name("optimizer")].string_value == "rmsprop"
    assert start.hparams[tb.hparam_name("num_classes")].number_value == 4
    assert start.hparams[tb.hparam_name("tag")].string_value == "screen-a"
    flags = tf.make_ndarray(acc.Tensors("flags")[0].tensor_proto).item().decode()
    assert "| jit_compile | False |" in flags and "| bn_momentum | 0.9 |" in flags
    end = hp_metadata.parse_session_end_info_plugin_data(
        _hparams_plugin(acc, hp_metadata.SESSION_END_INFO_TAG))
    assert end.status == api_pb2.STATUS_SUCCESS


def test_augmentation_options_are_hparams_a_run_can_be_compared_by():
    """The augmentation a run used is a column of the hparams table (the from-scratch
    screenings compared runs by it), typed: on/off as a choice, strengths as numbers."""
    from mobilenet_tf.data.config import DataConfig

    config = TrainConfig(data=DataConfig(dataset="synthetic", randaugment=True,
                                         randaugment_magnitude=0.3, cutmix_alpha=1.0),
                         **TINY)
    domains = tb.hparam_domains(config)
    assert domains["randaugment"][0] is True
    assert list(domains["randaugment"][1].values) == [False, True]
    assert domains["randaugment_magnitude"][0] == 0.3
    assert domains["cutmix_alpha"][0] == 1.0 and domains["mixup_alpha"][0] == 0.0
    assert domains["color_jitter"][1].max_value == 1.0
    # appended after the older ones, so runs logged before keep their columns' names
    assert tb.hparam_name("seed") == "25 seed"
    assert tb.hparam_name("randaugment") == "26 randaugment"


def test_images_graph_and_display_names(run):
    workdir, _ = run
    acc = _events(os.path.join(workdir, "logs"))
    grids = acc.Tensors("train/augmented_images")  # [width, height, png]
    assert [g.step for g in grids] == [0, 4, 8]  # start, middle, last epoch (3 of 4 steps)
    width, height, png = tf.make_ndarray(grids[0].tensor_proto)
    assert int(width) == 3 * (ti.WIDTH // 3)
    assert tf.io.decode_png(png).shape == (int(height), int(width), 3)
    assert len(acc.Tensors("val/confusion_matrix")) == 3
    assert acc.Graph() is not None  # the model's graph, the Graphs tab's default
    ops = {node.name.split("/")[0] for node in acc.Graph().node}
    assert any(name.startswith("mobilenet") for name in ops), sorted(ops)[:10]
    assert "train_step" in acc.Tags()["tensors"]  # the traced training loop


def test_diverged_run_ends_with_failure(tmp_path):
    workdir = str(tmp_path / "run")
    train, evaluation = toy_inputs(batch_size=16)
    train.nan_after_batches = 2
    config = TrainConfig(epochs=1, log_images=False,
                         **{**TINY, "steps_per_loop": 1, "eval_split": "",
                            "steps_per_epoch": 0})
    with pytest.raises(TrainingDivergedError):
        trainer.train_and_evaluate(config, workdir, train, None)
    acc = _events(os.path.join(workdir, "logs"))
    end = hp_metadata.parse_session_end_info_plugin_data(
        _hparams_plugin(acc, hp_metadata.SESSION_END_INFO_TAG))
    assert end.status == api_pb2.STATUS_FAILURE
    exp = hp_metadata.parse_experiment_plugin_data(
        _hparams_plugin(acc, hp_metadata.EXPERIMENT_TAG))
    # No validation: only the training metrics, which exist.
    assert [m.name.tag for m in exp.metric_infos] == ["train/epoch_loss", "train/epoch_top1"]
    # steps_per_epoch=0 (auto): the value used, 256 examples // 16.
    start = hp_metadata.parse_session_start_info_plugin_data(
        _hparams_plugin(acc, hp_metadata.SESSION_START_INFO_TAG))
    assert start.hparams[tb.hparam_name("steps_per_epoch")].number_value == 16


# ------------------------------------------------------------------ renderers
def _dark(region):
    return int((np.asarray(region).min(axis=-1) < 100).sum())


def test_confusion_matrix_image_has_titles_names_and_size():
    rng = np.random.default_rng(0)
    matrix = np.diag(rng.integers(20, 50, 4)).astype(float) + rng.integers(0, 4, (4, 4))
    img = ti.confusion_matrix_image(matrix, SYNSETS)
    assert img.dtype == np.uint8 and img.shape[0] == 1 and img.shape[-1] == 3
    # Small enough for the card's ~300 x 210 px box at little scaling (legible text).
    assert 240 <= img.shape[2] <= 360 and img.shape[1] <= 260
    assert _dark(img[0, :20, :]) > 50  # the title line
    ten = ti.confusion_matrix_image(np.eye(10) * 30, [f"class_{i}" for i in range(10)])
    assert ten.shape[2] <= 360 and ten.shape[1] <= 260
    # Synset IDs are drawn as their display names.
    np.testing.assert_array_equal(img, ti.confusion_matrix_image(matrix, NAMES))
    assert not np.array_equal(img, ti.confusion_matrix_image(matrix, ["a", "b", "c", "d"]))


def test_confusion_matrix_many_classes_shows_the_most_confused():
    n = 100
    matrix = np.eye(n) * 20
    matrix[37, 81] = 15  # a confusion between two classes outside the first 30
    shown = ti.matrix_classes(matrix)
    assert len(shown) == ti.MAX_MATRIX_CLASSES and {37, 81} <= set(shown)
    img = ti.confusion_matrix_image(matrix, [f"class_{i}" for i in range(n)])
    assert img.shape[2] <= 600 and img.shape[1] <= 600


def test_image_grid_captions_each_tile_with_its_class():
    rng = np.random.default_rng(1)
    images = rng.normal(0, 0.3, (5, 32, 32, 3)).astype(np.float32)
    labels = np.eye(4)[[0, 1, 2, 3, 0]]
    grid = ti.image_grid(images, labels, SYNSETS)
    tile = ti.WIDTH // 3
    cap = ti.CAPTION
    assert grid.shape == (1, 2 * (tile + cap), 3 * tile, 3)
    assert grid.shape[2] <= 320 and grid.shape[1] <= 260  # the card shows it near 1:1
    caption = grid[0, tile:tile + cap, :tile]  # under the first tile
    assert _dark(caption) > 30
    assert _dark(grid[0, 2 * tile + cap:, 2 * tile:]) == 0  # the empty 6th cell
    np.testing.assert_array_equal(grid, ti.image_grid(images, labels, NAMES))
    np.testing.assert_array_equal(grid, ti.image_grid(images, labels.argmax(1), NAMES))


def test_image_epochs_start_middle_end():
    assert tb.image_epochs(1) == {0}
    assert tb.image_epochs(10) == {0, 5, 9}


def test_image_grids_leave_the_training_examples_unchanged(tmp_path):
    """The grids come from a pipeline of their own: with and without --log_images a run
    sees the same batches (at a learning rate of ~0 the training loss of each epoch is a
    function of the batches alone; a grid drawn from the training iterator would shift
    every later batch by one)."""
    losses = {}
    for log_images in (True, False):
        train, _ = toy_inputs(batch_size=16, n_train=64)
        config = TrainConfig(**{**TINY, "eval_split": "", "epochs": 3,
                                        "optimizer": "sgd", "learning_rate": 1e-12,
                                        "momentum": 0.0, "log_images": log_images})
        trainer.train_and_evaluate(config, str(tmp_path / str(log_images)), train, None)
        with open(tmp_path / str(log_images) / "metrics.csv") as f:
            header, *rows = [line.strip().split(",") for line in f]
        losses[log_images] = [float(r[header.index("train_loss")]) for r in rows]
    assert len(losses[True]) == 3
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-5)
