"""--weight_decay_to_start (L2-SP): the penalty is coefficient * sum((w - w0)^2) / 2 over
the backbone's kernels, w0 the loaded weights; training with it ends nearer the start
than without; a resumed run keeps pulling towards the same start (checkpointed), and the
flag needs --initial_weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mobilenet_tf.model.builder import mobilenet_v1
from mobilenet_tf.training import optim, trainer
from mobilenet_tf.training.config import TrainConfig
from mobilenet_tf.training.task import backbone_kernels
from train_helpers import toy_inputs

BASE = dict(alpha=0.25, resolution=32, batch_size=16, learning_rate=0.05,
            lr_schedule="constant", eval_split="val", verbose=0, steps_per_loop=2,
            steps_per_epoch=4, checkpoint_every_steps=4, log_images=False, optimizer="sgd",
            weight_decay=0.0, baseline=False, epochs=2)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    keras.utils.set_random_seed(3)
    model = mobilenet_v1((32, 32, 3), alpha=0.25, num_classes=7, classifier_activation=None)
    path = str(tmp_path_factory.mktemp("weights") / "pre.weights.h5")
    model.save_weights(path)
    return path, model


def test_penalty_is_half_the_squared_distance_to_the_start():
    a = tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3))
    b = tf.Variable(np.ones(4, np.float32))
    start = optim.StartingPoint([a, b])
    assert float(start.loss(0.5)) == 0.0
    a.assign_add(np.full((2, 3), 2.0, np.float32))
    b.assign(np.zeros(4, np.float32))
    assert float(start.loss(0.5)) == pytest.approx(0.5 * (6 * 4.0 + 4 * 1.0) / 2)
    start.reset()
    assert float(start.loss(0.5)) == 0.0


def test_backbone_kernels_are_every_conv_kernel_but_the_classifier():
    model = mobilenet_v1((32, 32, 3), alpha=0.25, num_classes=3)
    kernels = backbone_kernels(model)
    assert len(kernels) == 27  # the stem, 13 depthwise and 13 pointwise convolutions
    assert all("conv_preds" not in v.path for v in kernels)


def _distance(model, source):
    by_name = {v.path: v for v in backbone_kernels(source)}
    return sum(float(np.sum((v.numpy() - by_name[v.path].numpy()) ** 2))
               for v in backbone_kernels(model))


def _train(workdir, **overrides):
    train, evaluation = toy_inputs(batch_size=16, n_train=128)
    run = trainer.Trainer(TrainConfig(**{**BASE, **overrides}), str(workdir), train,
                          evaluation)
    run.run()
    return run


def test_training_with_it_stays_nearer_the_start(weights_file, tmp_path):
    path, source = weights_file
    free = _train(tmp_path / "free", initial_weights=path)
    pulled = _train(tmp_path / "pulled", initial_weights=path, weight_decay_to_start=5.0)
    d_free, d_pulled = _distance(free.model, source), _distance(pulled.model, source)
    assert d_free > 0 and d_pulled < 0.5 * d_free, (d_free, d_pulled)


def test_resume_keeps_the_start(weights_file, tmp_path):
    path, source = weights_file
    workdir = tmp_path / "run"
    _train(workdir, initial_weights=path, weight_decay_to_start=1.0, epochs=1)
    resumed = _train(workdir, initial_weights=path, weight_decay_to_start=1.0, epochs=2)
    start = resumed.state.task.starting_point
    by_name = {v.path: v for v in backbone_kernels(source)}
    for anchor, v in zip(start.anchors, backbone_kernels(resumed.model)):
        np.testing.assert_array_equal(anchor.numpy(), by_name[v.path].numpy())
    assert _distance(resumed.model, source) > 0  # it trained


def test_needs_initial_weights():
    with pytest.raises(ValueError, match="--weight_decay_to_start.*initial_weights"):
        TrainConfig(**{**BASE, "weight_decay_to_start": 0.1}).validate()
    with pytest.raises(ValueError, match="--weight_decay_to_start"):
        TrainConfig(**{**BASE, "weight_decay_to_start": -1.0}).validate()
