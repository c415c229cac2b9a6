"""--classifier_init=source (mobilenet_tf.training.classifier_init): the new classifier is the
weights file's own, mixed by what it predicts on the training images; its logits are that
mix of the old logits; it transfers the old classifier to new classes that are groups of
old ones; the trainer does it once at step 0 (EMA included), records it, and names the
flag when the file has no classifier."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from mobilenet_tf.training import classifier_init, trainer
from mobilenet_tf.training.config import TrainConfig
from mobilenet_tf.model import pretrained
from mobilenet_tf.rundir import record as run_record
from mobilenet_tf.model.builder import mobilenet_v1
from train_helpers import toy_inputs, toy_task

OLD = 7  # classes of the "pretrained" file
GROUPS = [[0, 1], [2, 3], [4, 5, 6]]  # the new task's classes, as groups of old ones


def _net(num_classes, seed=0, include_top=True):
    keras.utils.set_random_seed(seed)
    return mobilenet_v1((32, 32, 3), alpha=0.25, num_classes=num_classes,
                        classifier_activation=None, include_top=include_top)


def test_new_logits_are_the_sharpened_affinity_mix_of_the_old_ones():
    rng = np.random.default_rng(0)
    kernel, bias = rng.normal(size=(16, OLD)), rng.normal(size=OLD)
    rows = rng.uniform(size=(3, OLD))
    rows[2] = 0.0  # a class no image was looked at for
    new_kernel, new_bias = classifier_init.mapped_classifier(rows, kernel, bias)
    features = rng.normal(size=(50, 16))
    q = rows[:2] ** 2 / (rows[:2] ** 2).sum(axis=1, keepdims=True)
    old = features @ kernel + bias
    np.testing.assert_allclose((features @ new_kernel + new_bias)[:, :2], old @ q.T,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose((features @ new_kernel + new_bias)[:, 2], old.mean(axis=1),
                               rtol=1e-4, atol=1e-4)


def test_affinity_weighs_each_image_by_its_label_mass():
    rng = np.random.default_rng(1)
    kernel, bias = rng.normal(size=(8, 5)), rng.normal(size=5)
    features = rng.normal(size=(6, 8))
    labels = rng.dirichlet(np.ones(3), size=6)  # MixUp-like soft labels
    sums, mass = classifier_init.affinity(features, labels, kernel, bias)
    probs = np.array([np.exp(s - s.max()) / np.exp(s - s.max()).sum()
                      for s in features @ kernel + bias])
    for c in range(3):
        np.testing.assert_allclose(sums[c], sum(labels[i, c] * probs[i] for i in range(6)))
    np.testing.assert_allclose(mass, labels.sum(axis=0))


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A small "pretrained" network: 7 toy classes (a bright square: quadrant k % 4,
    colour channel k % 3), fitted for a few epochs."""
    keras.utils.set_random_seed(4)
    model = mobilenet_v1((32, 32, 3), alpha=0.25, num_classes=OLD, dropout=0.0,
                         classifier_activation=None, bn_momentum=0.8)
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images, labels = toy_task(512, 32, OLD, seed=3)
    model.fit(images, labels, batch_size=32, epochs=3, verbose=0)
    path = str(tmp_path_factory.mktemp("w") / "old.weights.h5")
    model.save_weights(path)
    return path


def test_source_start_transfers_the_old_classifier_to_grouped_classes(weights_file):
    images, old_labels = toy_task(400, 32, OLD, seed=8)  # images it was not fitted on
    group_of = {k: g for g, members in enumerate(GROUPS) for k in members}
    labels = np.array([group_of[int(k)] for k in old_labels])
    new = _net(len(GROUPS), seed=5)
    report = pretrained.load_initial_weights(new, weights_file)
    assert report.source_classifier is not None
    batches = tf.data.Dataset.from_tensor_slices((images[:200], labels[:200])).batch(50)
    done = classifier_init.init_from_source(new, report.source_classifier, batches, 200)
    held_out = np.argmax(new.predict(images[200:], verbose=0), axis=1)
    top1 = float(np.mean(held_out == labels[200:]))
    print(f"held-out top-1 {top1:.3f}, sample {done.sample_top1:.3f}")
    # The old classifier tells its 7 classes apart at about 98%; a group's logit is the
    # mean of its members' (about 80% here). The zero start predicts one class: 2/7.
    assert top1 >= 0.7 and done.sample_top1 >= 0.7
    assert done.examples == 200 and done.source_classes == OLD
    for group, k in zip(GROUPS, done.top_source_class):
        assert k in group


def _setup(workdir, weights, run=False, **options):
    """The trainer after its setup's prepare() (the classifier started), or after run()."""
    train, evaluation = toy_inputs(batch_size=16, n_train=128)
    config = TrainConfig(**{**dict(
        alpha=0.25, resolution=32, batch_size=16, epochs=1, steps_per_epoch=2,
        eval_split="val", verbose=0, log_images=False, optimizer="adamw",
        weight_decay=0.0, initial_weights=weights, freeze_backbone_epochs=1), **options})
    runner = trainer.Trainer(config, str(workdir), train, evaluation)
    if run:
        runner.run()
    else:
        runner.state = runner.setup.prepare()
    return runner, train


def test_trainer_starts_from_the_mapped_classifier_once_and_records_it(weights_file,
                                                                        tmp_path):
    run, train = _setup(tmp_path / "run", weights_file, classifier_init="source",
                        ema_decay=0.99)
    # The same mapping, redone by hand from the same pipeline and weights.
    keras.utils.set_random_seed(9)
    again = mobilenet_v1((32, 32, 3), alpha=0.25, num_classes=run.setup.num_classes,
                         classifier_activation=None, fused_batch_norm=True)  # as trained
    report = pretrained.load_initial_weights(again, weights_file)
    keras.utils.set_random_seed(run.config.seed)  # the global seed orders the toy input
    classifier_init.init_from_source(again, report.source_classifier,
                                     train.input_fn(tf.distribute.InputContext()),
                                     classifier_init.sample_size(run.setup.num_classes))
    got = run.model.get_layer("conv_preds").get_weights()
    for a, b in zip(got, again.get_layer("conv_preds").get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert np.abs(got[0]).max() > 0  # not the zero start
    ema = run.state.task.ema
    shadows = {id(w): s for w, s in zip(ema.model_weights, ema.shadows)}
    np.testing.assert_array_equal(shadows[id(run.model.get_layer("conv_preds").kernel)],
                                  got[0])
    recorded = json.load(open(run_record.RunFiles(str(tmp_path / "run")).config))
    assert recorded["weights"]["source"]["classifier"]["source_classes"] == OLD


def test_a_resumed_run_keeps_its_trained_classifier(weights_file, tmp_path):
    first, _ = _setup(tmp_path / "run", weights_file, run=True, classifier_init="source")
    trained = first.model.get_layer("conv_preds").get_weights()
    resumed, _ = _setup(tmp_path / "run", weights_file, classifier_init="source", epochs=2)
    for a, b in zip(trained, resumed.model.get_layer("conv_preds").get_weights()):
        np.testing.assert_array_equal(a, b)  # restored, not mapped again
    recorded = json.load(open(run_record.RunFiles(str(tmp_path / "run")).config))
    assert recorded["weights"]["source"]["classifier"]["classifier_init"] == "source"


def test_a_classifier_of_the_same_classes_is_loaded_as_it_is(tmp_path, capsys):
    path = str(tmp_path / "same.weights.h5")
    same = _net(4, seed=6)  # the toy task's 4 classes
    same.save_weights(path)
    run, _ = _setup(tmp_path / "run", path, classifier_init="source", verbose=2)
    for a, b in zip(run.model.get_layer("conv_preds").get_weights(),
                    same.get_layer("conv_preds").get_weights()):
        np.testing.assert_array_equal(a, b)
    assert "Classifier: loaded from the weights file (same classes)." in capsys.readouterr().out


def test_source_start_needs_a_file_with_a_classifier(tmp_path):
    path = str(tmp_path / "notop.weights.h5")
    _net(OLD, include_top=False).save_weights(path)
    with pytest.raises(ValueError, match="--classifier_init=source: .* has no classifier"):
        _setup(tmp_path / "run", path, classifier_init="source")


def test_a_file_classifier_of_another_width_is_refused(tmp_path):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False,
                            name="conv1")(inputs)  # loads into the builder's stem
    x = keras.layers.Conv2D(5, 1, name="narrow")(x)
    outputs = keras.layers.Conv2D(OLD, 1, name="conv_preds")(x)  # 5 features, not 256
    path = str(tmp_path / "odd.weights.h5")
    keras.Model(inputs, outputs).save_weights(path)
    new = _net(3)
    report = pretrained.load_initial_weights(new, path)
    assert report.source_classifier[0].shape == (1, 1, 5, OLD)
    batches = tf.data.Dataset.from_tensor_slices(
        (np.zeros((4, 32, 32, 3), "float32"), np.zeros(4, "int32"))).batch(2)
    with pytest.raises(ValueError, match="takes 5 features, this model gives it 256"):
        classifier_init.init_from_source(new, report.source_classifier, batches, 4)


@pytest.mark.parametrize("options, message", [
    (dict(classifier_init="imagenet1k"), "--classifier_init='imagenet1k' .*'zeros', 'source'"),
    (dict(classifier_init="source"), "--classifier_init='source' .*needs --initial_weights"),
])
def test_invalid_classifier_init_is_named(options, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options).validate()
