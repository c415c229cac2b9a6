"""The synthetic task is learnable by a small MobileNet (opt-in: one to two minutes of CPU).

    MOBILENET_TF_SLOW_TESTS=1 python -m pytest -q tests/data/test_data_synthetic_learnable.py
"""

import os

import pytest

from mobilenet_tf import data, mobilenet_v1

pytestmark = pytest.mark.skipif(os.environ.get("MOBILENET_TF_SLOW_TESTS") != "1",
                                reason="slow; set MOBILENET_TF_SLOW_TESTS=1")


def test_small_mobilenet_learns_synthetic():
    import keras
    keras.utils.set_random_seed(0)
    cfg = data.DataConfig(dataset="synthetic", image_size=64, min_area=0.25)
    train = data.build_input(cfg, "train", training=True, global_batch_size=64)
    val = data.build_input(cfg, "validation", training=False, global_batch_size=200)
    model = mobilenet_v1((64, 64, 3), alpha=0.25, num_classes=train.num_classes)
    model.compile(keras.optimizers.Adam(2e-3), "categorical_crossentropy")
    model.fit(train.input_fn(None), steps_per_epoch=train.steps_per_epoch, epochs=60,
              verbose=0)
    correct = total = 0
    for x, y in val.input_fn(None):
        correct += int((model(x, training=False).numpy().argmax(-1) == y.numpy()).sum())
        total += len(y)
    assert total == 1000 and correct / total > 0.85
