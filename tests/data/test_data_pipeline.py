"""build_input semantics: train/eval elements, batching, sharding, tf.distribute, mixing."""

import hashlib

import numpy as np
import pytest
import tensorflow as tf

from mobilenet_tf import data
from data_helpers import collect, make_folder, make_tfrecords
from helpers import REPO

SYN = dict(dataset="synthetic", synthetic_num_classes=5, synthetic_num_examples=30,
           synthetic_image_size=32, image_size=(24, 20))


def _ctx(n, i, replicas=None):
    return tf.distribute.InputContext(num_input_pipelines=n, input_pipeline_id=i,
                                      num_replicas_in_sync=replicas or n)


def test_train_elements():
    inp = data.build_input(data.DataConfig(**SYN), "train", training=True,
                           global_batch_size=8)
    assert inp.num_examples == 30 and inp.num_classes == 5 and inp.steps_per_epoch == 3
    ds = inp.input_fn(None)
    assert ds.element_spec[0].shape == (8, 24, 20, 3)  # drop_remainder: static batch
    assert ds.element_spec[1] == tf.TensorSpec((8, 5), tf.float32)
    batches = list(ds.take(10))  # more than one epoch: repeated
    for x, y in batches:
        assert x.dtype == tf.float32 and -1 <= x.numpy().min() and x.numpy().max() <= 1
        np.testing.assert_array_equal(y.numpy().sum(1), 1)
        assert set(np.unique(y.numpy())) <= {0.0, 1.0}
    first_epoch = np.concatenate([y.numpy().argmax(1) for _, y in batches[:3]])
    assert len(set(first_epoch.tolist())) == 5
    assert not np.array_equal(first_epoch, np.arange(24) % 5)  # shuffled


def test_eval_elements_one_pass_partial_batch_kept():
    inp = data.build_input(data.DataConfig(**SYN), "validation", training=False,
                           global_batch_size=8)
    assert inp.steps_per_epoch == 4
    sizes = [int(y.shape[0]) for _, y in inp.input_fn(None)]
    assert sizes == [8, 8, 8, 6]
    images, labels = collect(inp.input_fn(None))
    assert labels.dtype == np.int32 and images.dtype == np.float32
    np.testing.assert_array_equal(labels, np.arange(30) % 5)  # fixed order


def test_per_replica_batch_and_options():
    inp = data.build_input(data.DataConfig(**SYN), "train", True, global_batch_size=8)
    ds = inp.input_fn(_ctx(1, 0, replicas=2))
    assert ds.element_spec[0].shape[0] == 4
    assert (ds.options().experimental_distribute.auto_shard_policy
            == tf.data.experimental.AutoShardPolicy.OFF)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    dist = strategy.distribute_datasets_from_function(inp.input_fn)
    x, y = next(iter(dist))
    assert x.shape == (8, 24, 20, 3) and y.shape == (8, 5)


def _digests(dataset):
    images, labels = collect(dataset)
    return [hashlib.sha1(im.tobytes()).hexdigest() + str(y) for im, y in zip(images, labels)]


def _check_shards(cfg, split="train"):
    inp = data.build_input(cfg, split, training=False, global_batch_size=4)
    every = _digests(inp.input_fn(None))
    assert len(set(every)) == len(every) == inp.num_examples  # examples are distinct
    shards = [_digests(inp.input_fn(_ctx(2, i))) for i in range(2)]
    assert shards[0] and shards[1]
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == sorted(every)


def test_sharding_synthetic():
    _check_shards(data.DataConfig(**SYN))


def test_sharding_folder(tmp_path):
    root = make_folder(tmp_path, per_class=5, splits=("train",), exts=("jpg", "png"))
    _check_shards(data.DataConfig(dataset=f"folder:{root}", image_size=16))


@pytest.mark.parametrize("num_files", [4, 1])  # by files / by examples
def test_sharding_tfrecord(tmp_path, num_files):
    make_tfrecords(tmp_path, num_files=num_files, per_file=12 // num_files)
    src = data.sources.make_source(
        data.DataConfig(dataset=f"tfrecord:{tmp_path}/train-*"), "train")
    # by files: each pipeline reads whole files of its own
    assert (src.num_files() >= 2) == (num_files == 4)
    _check_shards(data.DataConfig(dataset=f"tfrecord:{tmp_path}/train-*", image_size=16))


def test_sharding_train_mode_folder(tmp_path):
    root = make_folder(tmp_path, classes=("a", "b", "c", "d"), per_class=1,
                       splits=("train",), exts=("png",))
    cfg = data.DataConfig(dataset=f"folder:{root}", image_size=16, min_area=1.0, flip=False)
    inp = data.build_input(cfg, "train", True, global_batch_size=4)
    seen = []
    for i in range(2):
        seen.append(set())
        # 10 examples: at least 5 in order from one decode block = two whole epochs.
        for x, y in inp.input_fn(_ctx(2, i)).take(5):
            assert x.shape == (2, 16, 16, 3)
            seen[-1] |= set(y.numpy().argmax(1).tolist())
    assert not seen[0] & seen[1] and seen[0] | seen[1] == {0, 1, 2, 3}


@pytest.mark.parametrize("aug", [dict(mixup_alpha=0.4), dict(cutmix_alpha=1.0),
                                 dict(mixup_alpha=0.4, cutmix_alpha=1.0)])
def test_mixup_cutmix_mix_labels(aug):
    cfg = data.DataConfig(**SYN, **aug)
    x, y = next(iter(data.build_input(cfg, "train", True, 16).input_fn(None)))
    assert x.shape == (16, 24, 20, 3) and y.shape == (16, 5)
    assert -1 <= x.numpy().min() and x.numpy().max() <= 1
    np.testing.assert_allclose(y.numpy().sum(1), 1, atol=1e-5)
    assert ((y.numpy() > 1e-3) & (y.numpy() < 1 - 1e-3)).any()  # soft labels


def test_randaugment_and_color_jitter_run_in_tf_data():
    cfg = data.DataConfig(**SYN, randaugment=True, color_jitter=0.3)
    plain = data.DataConfig(**SYN)
    x, y = next(iter(data.build_input(cfg, "train", True, 8).input_fn(None)))
    x0, _ = next(iter(data.build_input(plain, "train", True, 8).input_fn(None)))
    assert x.shape == (8, 24, 20, 3) and x.dtype == tf.float32
    assert -1 <= x.numpy().min() and x.numpy().max() <= 1
    assert not np.allclose(x.numpy(), x0.numpy())
    np.testing.assert_array_equal(y.numpy().sum(1), 1)


def test_build_input_argument_errors():
    with pytest.raises(ValueError, match="DataConfig"):
        data.build_input({"dataset": "synthetic"})
    with pytest.raises(ValueError, match="global_batch_size"):
        data.build_input(data.DataConfig(**SYN), global_batch_size=0)


def test_iterate_uint8_fixed_order_and_limit():
    cfg = data.DataConfig(**SYN)
    got = list(data.iterate_uint8(cfg, "validation", 7))
    again = list(data.iterate_uint8(cfg, "validation", 7))
    assert len(got) == 7 and [l for _, l in got] == [0, 1, 2, 3, 4, 0, 1]
    for (a, la), (b, lb) in zip(got, again):
        assert a.dtype == np.uint8 and a.shape == (32, 32, 3) and la == lb
        np.testing.assert_array_equal(a, b)


def test_sharding_tfds_mock():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, num_examples=8):
        _check_shards(data.DataConfig(dataset="tfds:imagenette/160px-v2", image_size=16))


def test_training_order_is_a_fresh_seeded_permutation_every_epoch():
    from mobilenet_tf.data.source_base import indexed
    stream = [int(k) for k in indexed(8, True, seed=3).take(24)]
    epochs = [stream[i:i + 8] for i in (0, 8, 16)]
    assert all(sorted(e) == list(range(8)) for e in epochs)  # every example once per epoch
    assert len({tuple(e) for e in epochs}) == 3  # reshuffled each epoch
    assert [int(k) for k in indexed(8, True, seed=3).take(8)] == epochs[0]  # seeded
    assert [int(k) for k in indexed(5, False, seed=3)] == [0, 1, 2, 3, 4]


_MIRRORED = r'''
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from mobilenet_tf import data
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
cfg = data.DataConfig(dataset="folder:" + sys.argv[1], image_size=16)
train = data.build_input(cfg, "train", True, global_batch_size=4)
x, y = next(iter(strategy.distribute_datasets_from_function(train.input_fn)))
shapes = [tuple(t.shape) for t in strategy.experimental_local_results(x)]
assert shapes == [(2, 16, 16, 3)] * 2, shapes
ev = data.build_input(cfg, "train", False, global_batch_size=4)
n = sum(int(t.shape[0]) for x, y in strategy.distribute_datasets_from_function(ev.input_fn)
        for t in strategy.experimental_local_results(y))
assert n == 6 and ev.bad_images.count == 1, (n, ev.bad_images)
print("OK")
'''


def test_mirrored_strategy_two_replicas(tmp_path):
    """Two replicas (logical CPUs, so a fresh process): per-replica batches, every eval
    example once, bad images counted."""
    import os
    import subprocess
    import sys
    root = make_folder(tmp_path, per_class=3, splits=("train",), exts=("jpg", "png"))
    (tmp_path / "train" / "cat" / "broken.jpg").write_bytes(b"")
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", _MIRRORED, root], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]
