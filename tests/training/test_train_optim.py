"""Learning-rate schedules, weight-decay groups, the weight average."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mobilenet_tf.training import optim
from mobilenet_tf.training.config import TrainConfig
from mobilenet_tf.model.builder import mobilenet_v1


def test_exponential_is_slims_staircase():
    # slim: lr * 0.94 ** floor(step / decay_steps), decay_steps = 2.5 epochs.
    lr = optim.LearningRate(0.045, "exponential", total_steps=10_000, decay_steps=250)
    for step, want in [(0, 0.045), (249, 0.045), (250, 0.045 * 0.94), (1000, 0.045 * 0.94 ** 4)]:
        assert float(lr(step)) == pytest.approx(want, rel=1e-6)


def test_cosine_with_linear_warmup():
    lr = optim.LearningRate(0.1, "cosine", total_steps=1100, warmup_steps=100)
    assert float(lr(0)) == pytest.approx(0.1 / 100)
    assert float(lr(49)) == pytest.approx(0.1 * 50 / 100)
    assert float(lr(100)) == pytest.approx(0.1)
    assert float(lr(600)) == pytest.approx(0.05, rel=1e-5)  # half way: cos(pi/2)
    assert float(lr(1100)) == pytest.approx(0.0, abs=1e-7)
    assert float(optim.LearningRate(0.1, "constant", 10)(7)) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="lr_schedule"):
        optim.LearningRate(0.1, "step", 10)


def test_decay_groups_leave_out_depthwise_bn_and_bias():
    model = mobilenet_v1((32, 32, 3), alpha=0.25, num_classes=3)
    regular, depthwise = optim.decay_groups(model)
    assert len(depthwise) == 13 and len(regular) == 1 + 13 + 1  # conv1, pointwise, preds
    assert all("conv_dw_" in v.path for v in depthwise)
    decayed = {id(v) for v in regular + depthwise}
    for v in model.trainable_variables:  # batch-norm gamma/beta and the bias: no decay
        if id(v) not in decayed:
            assert v.path.endswith(("gamma", "beta", "bias")), v.path
    value = float(optim.l2_loss(regular, 4e-5))
    want = 4e-5 * sum(float(np.sum(np.square(v.numpy()))) / 2 for v in regular)
    assert value == pytest.approx(want, rel=1e-5)


def test_weight_average_swaps_in_and_out():
    v = keras.Variable(np.zeros(3, np.float32))
    ema = optim.WeightAverage([v], decay=0.5)
    v.assign(np.ones(3, np.float32) * 4)
    ema.update(tf.constant(1000))  # decay = min(0.5, 1001/1010) = 0.5
    np.testing.assert_allclose(ema.averaged_values()[0], [2, 2, 2])
    with ema.swapped_in():
        np.testing.assert_allclose(v.numpy(), [2, 2, 2])
    np.testing.assert_allclose(v.numpy(), [4, 4, 4])
    ema.update(tf.constant(0))  # warm-up: decay = min(0.5, 1/10) = 0.1
    np.testing.assert_allclose(ema.averaged_values()[0], [0.2 + 3.6] * 3, rtol=1e-6)


@pytest.mark.parametrize("nesterov, moved", [(False, 0.1), (True, 0.1 * (1 + 0.9))])
def test_sgd_nesterov_first_step(nesterov, moved):
    # Keras' SGD: v = m v - lr g; plain w += v, Nesterov w += m v - lr g. From v = 0 the
    # first step moves lr g, or lr g (1 + m) with Nesterov.
    v = keras.Variable(np.zeros(2, np.float32))
    opt = optim.build_optimizer("sgd", 0.1, momentum=0.9, nesterov=nesterov)
    opt.apply_gradients([(tf.ones(2), v)])
    np.testing.assert_allclose(v.numpy(), [-moved] * 2, rtol=1e-6)


def test_nesterov_needs_sgd():
    with pytest.raises(ValueError, match="nesterov"):
        TrainConfig(optimizer="rmsprop", nesterov=True).validate()
    TrainConfig(optimizer="sgd", nesterov=True).validate()
