"""The fine-tuning schedule in the trainer (--freeze_backbone_epochs, --backbone_lr_scale,
--freeze_bn): the head phase leaves the backbone bit-identical, the whole phase trains it
at the scaled rate, batch norm stays frozen with --freeze_bn, the weights' provenance is
recorded, the new options refuse changes on resume, and the flag checks."""

import re

import keras
import numpy as np
import pytest

from mobilenet_tf.rundir.errors import ResumeRefused
from mobilenet_tf.training import finetune, trainer
from mobilenet_tf.training.config import TrainConfig
from mobilenet_tf.rundir import record as run_record
from mobilenet_tf.model.builder import mobilenet_v1
from train_helpers import toy_inputs

BASE = dict(alpha=0.25, resolution=32, batch_size=16, learning_rate=0.01,
            lr_schedule="constant", bn_momentum=0.9, eval_split="val", verbose=0,
            steps_per_loop=3, steps_per_epoch=4, checkpoint_every_steps=4,
            log_images=False, optimizer="adamw", weight_decay=0.0)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A 'pretrained' network of another class count (7) with distinct BN statistics."""
    keras.utils.set_random_seed(5)
    model = mobilenet_v1((32, 32, 3), alpha=0.25, num_classes=7, classifier_activation=None)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, layer.moving_variance.shape))
    path = str(tmp_path_factory.mktemp("weights") / "pre.weights.h5")
    model.save_weights(path)
    return path, {(layer.name, i): np.array(w) for layer in model.layers
                  for i, w in enumerate(layer.weights)}


class Snapshots(trainer.Trainer):
    """Records every layer's weights at each epoch end (a test hook)."""

    def end_of_epoch(self, epoch, train_metrics, images_per_second):
        self.snapshots = getattr(self, "snapshots", {})
        self.snapshots[epoch] = {(layer.name, i): np.array(w) for layer in self.model.layers
                                 for i, w in enumerate(layer.weights)}
        self.rates = getattr(self, "rates", {})
        task = self.state.task
        self.rates[epoch] = (task.learning_rate(), task.backbone_learning_rate())
        super().end_of_epoch(epoch, train_metrics, images_per_second)


def _run(workdir, **overrides):
    train, evaluation = toy_inputs(batch_size=16, n_train=128)
    config = TrainConfig(**{**BASE, **overrides})
    run = Snapshots(config, str(workdir), train, evaluation)
    run.run()
    return run


def _is_bn_stat(model, key):
    layer = model.get_layer(key[0])
    return isinstance(layer, keras.layers.BatchNormalization) and key[1] >= 2


@pytest.mark.parametrize("freeze_bn", [False, True])
def test_head_phase_keeps_backbone_bit_identical_then_backbone_trains_at_scaled_rate(
        weights_file, tmp_path, freeze_bn, capsys):
    path, pre = weights_file
    run = _run(tmp_path / "run", epochs=2, freeze_backbone_epochs=1, backbone_lr_scale=0.1,
               freeze_bn=freeze_bn, initial_weights=path, verbose=2)
    head, whole = run.snapshots[1], run.snapshots[2]
    for key, value in head.items():
        if key[0] == "conv_preds":
            assert np.any(value != 0), key  # zero-initialized, then trained
        else:  # weights and BN statistics, even though BN is not --freeze_bn
            np.testing.assert_array_equal(value, pre[key], err_msg=str(key))
    bn_stats = [k for k in whole if _is_bn_stat(run.model, k)]
    bn_params = [k for k in whole if isinstance(run.model.get_layer(k[0]),
                                                keras.layers.BatchNormalization)
                 and k[1] < 2]
    convs = [k for k in whole if k not in bn_stats and k not in bn_params]
    changed = {k for k in whole if np.any(whole[k] != head[k])}
    assert ("conv_pw_13", 0) in changed and ("conv_preds", 0) in changed
    if freeze_bn:  # the fixture's random network in inference mode saturates ReLU6 in
        # some early layers (zero gradients there): only the BN claim is exact
        assert not changed & set(bn_stats + bn_params)
    else:
        assert set(convs) <= changed  # every conv kernel and the classifier moved
        assert set(bn_stats + bn_params) <= changed
    # The rates: classifier at the schedule, backbone at 0.1x it, stepped only after
    # the switch (4 steps).
    assert run.rates[1][0] == pytest.approx(0.01)
    assert run.rates[2] == pytest.approx((0.01, 0.001))
    assert int(run.state.task.backbone_optimizer.iterations.numpy()) == 4
    assert int(run.state.task.optimizer.iterations.numpy()) == 8
    out = capsys.readouterr().out
    assert "Epoch 2: backbone unfrozen at 0.1x the learning rate" in out
    assert re.search(r"loaded (\d+) of (\d+) tensors .*; 1 layers not loaded:\n"
                     r"  conv_preds: shapes differ", out), out
    record = run_record.read_record(str(tmp_path / "run"))
    assert record.weights.source["sha256"] and record.weights.source["path"] == path
    assert record.weights.source["not_loaded"].keys() == {"conv_preds"}
    assert "conv1" in record.weights.loaded_layers


def test_fractional_head_phase_switches_inside_an_epoch(weights_file, tmp_path):
    """1.5 head epochs of 4 steps: the loop call that would cross step 6 stops there."""
    path, pre = weights_file
    run = _run(tmp_path / "run", epochs=2, freeze_backbone_epochs=1.5,
               backbone_lr_scale=0.5, freeze_bn=True, initial_weights=path)
    assert [s for s, _ in run.history] == [3, 4, 6, 8]  # steps_per_loop 3, cut at 6
    assert int(run.state.task.backbone_optimizer.iterations.numpy()) == 2
    assert run.phase_for_step(5) == finetune.HEAD and run.phase_for_step(6) == finetune.WHOLE


def test_head_only_run_is_a_linear_probe(weights_file, tmp_path):
    path, pre = weights_file
    run = _run(tmp_path / "run", epochs=1, freeze_backbone_epochs=1, initial_weights=path)
    for key, value in run.snapshots[1].items():
        if key[0] != "conv_preds":
            np.testing.assert_array_equal(value, pre[key], err_msg=str(key))
    assert run.state.task.backbone_optimizer is None  # --backbone_lr_scale=1: one optimizer


@pytest.mark.parametrize("change", [dict(freeze_backbone_epochs=0.5),
                                    dict(backbone_lr_scale=0.2), dict(freeze_bn=False)])
def test_resume_refuses_a_changed_fine_tuning_option(weights_file, tmp_path, change):
    path, _ = weights_file
    options = dict(epochs=1, freeze_backbone_epochs=1, backbone_lr_scale=0.1,
                   freeze_bn=True, initial_weights=path, checkpoint_every_steps=2)
    _run(tmp_path / "run", **{**options, "epochs": 1})
    name = next(iter(change))
    with pytest.raises(ResumeRefused, match=f"--{name}"):
        _run(tmp_path / "run", **{**options, "epochs": 2, **change})


@pytest.mark.parametrize("options, message", [
    (dict(freeze_backbone_epochs=2, epochs=1, initial_weights="x"), "in \\[0, --epochs=1\\]"),
    (dict(backbone_lr_scale=0.0), "must be in \\(0, 1\\]"),
    (dict(backbone_lr_scale=1.5), "must be in \\(0, 1\\]"),
    (dict(freeze_bn=True), "--freeze_bn=True is not valid: needs --initial_weights"),
    (dict(freeze_backbone_epochs=0.5), "--freeze_backbone_epochs=0.5 .*--initial_weights"),
    (dict(frozen_blocks=14, initial_weights="x"), "--frozen_blocks=14 .*in \\[0, 13\\]"),
    (dict(frozen_blocks=3), "--frozen_blocks=3 is not valid: needs --initial_weights"),
])
def test_invalid_fine_tuning_options_are_named(options, message, weights_file):
    if options.get("initial_weights") == "x":
        options = {**options, "initial_weights": weights_file[0]}
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options).validate()


def test_scaled_rate_follows_the_schedule_from_the_switch():
    from mobilenet_tf.training import optim

    schedule = optim.LearningRate(0.1, "cosine", total_steps=100)
    rate = finetune.ScaledRate(schedule, 0.01, offset=30)
    for step in (0, 10, 70):
        assert float(rate(step)) == pytest.approx(0.01 * float(schedule(step + 30)))


def test_set_phase_trainability():
    model = mobilenet_v1((32, 32, 3), alpha=0.25, num_classes=3)
    finetune.set_phase(model, finetune.HEAD, freeze_bn=False)
    assert [v.path for v in model.trainable_variables] == [
        v.path for v in model.get_layer("conv_preds").weights]
    finetune.set_phase(model, finetune.WHOLE, freeze_bn=True)
    trainable = {id(v) for v in model.trainable_variables}
    for layer in model.layers:
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        assert layer.trainable != is_bn, layer.name
        if not is_bn:
            assert all(id(w) in trainable for w in layer.weights), layer.name
    head, backbone = finetune.variable_groups(model, freeze_bn=False)
    assert len(head) == 2 and len(backbone) == len(model.trainable_variables) - 2
    with pytest.raises(ValueError, match="phase='both'"):
        finetune.set_phase(model, "both", False)


def test_frozen_blocks_stay_bit_identical_while_later_blocks_fine_tune(weights_file, tmp_path,
                                                                      capsys):
    """--frozen_blocks=6: after the head phase, the stem and blocks 1-6 (weights and BN
    statistics) stay exactly as loaded; block 7 on and the classifier train."""
    path, pre = weights_file
    run = _run(tmp_path / "run", epochs=2, freeze_backbone_epochs=1, backbone_lr_scale=0.1,
               frozen_blocks=6, initial_weights=path, verbose=2)
    whole = run.snapshots[2]
    frozen = [k for k in whole if finetune.block_of(run.model.get_layer(k[0])) is not None
              and finetune.block_of(run.model.get_layer(k[0])) <= 6]
    assert ("conv1", 0) in frozen and ("conv_pw_6_bn", 3) in frozen
    for key in frozen:
        np.testing.assert_array_equal(whole[key], pre[key], err_msg=str(key))
    frozen_ids = {id(run.model.get_layer(name).weights[i]) for name, i in frozen}
    assert run.state.task.backbone_variables  # the optimizer holds no slots for frozen weights
    assert not frozen_ids & {id(v) for v in run.state.task.backbone_variables}
    changed = {k for k in whole if np.any(whole[k] != run.snapshots[1][k])}  # since the head
    for key in [("conv_dw_7", 0), ("conv_pw_7", 0), ("conv_pw_13", 0), ("conv_pw_13_bn", 2),
                ("conv_preds", 0)]:
        assert key in changed, key
    assert "Epoch 2: backbone from block 7 on unfrozen at 0.1x" in capsys.readouterr().out


def test_block_of_names_every_backbone_layer():
    model = mobilenet_v1((32, 32, 3), alpha=0.25, num_classes=3)
    blocks = {layer.name: finetune.block_of(layer) for layer in model.layers}
    assert blocks["conv1"] == blocks["conv1_bn"] == blocks["conv1_relu"] == 0
    assert blocks["conv_pad_2"] == blocks["conv_dw_2_bn"] == blocks["conv_pw_2_relu"] == 2
    assert blocks["conv_pw_13"] == 13 and blocks["conv_preds"] is None
    assert all(b is not None for name, b in blocks.items() if model.get_layer(name).weights
               and name != "conv_preds")
    conv = mobilenet_v1((32, 32, 3), alpha=0.25, num_classes=3, variant="conv")
    assert {finetune.block_of(layer) for layer in conv.layers
            if layer.name.startswith("conv_1")} == {1, 10, 11, 12, 13}
