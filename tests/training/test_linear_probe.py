"""The head-only baseline (mobilenet_tf.training.linear_probe) and what a fine-tuning run
does with it: the number equals a logistic regression fitted by hand on the same
features; --classifier_init=linear_probe starts exactly there (LP-FT); the run's summary,
console, TensorBoard and export report carry it; a resumed run keeps it; --nobaseline
skips it."""

import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score

from mobilenet_tf.model import pretrained
from mobilenet_tf.model.builder import mobilenet_v1
from mobilenet_tf.rundir import record as run_record
from mobilenet_tf.serving import report as export_report
from mobilenet_tf.training import classifier_init, linear_probe, trainer
from mobilenet_tf.training.config import TrainConfig
from train_helpers import toy_inputs, toy_task


def _blobs(n=120, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = rng.normal(scale=2.0, size=(classes, d))
    return centres[y] + rng.normal(size=(n, d)) * rng.uniform(0.2, 3.0, d), y


def test_the_baseline_is_a_logistic_regression_fitted_by_hand():
    x, y = _blobs()
    probe = linear_probe.fit(x, y, seed=3)
    # By hand on the raw features: centring moves only the (unpenalized) intercept, and
    # scaling every feature by 1/s is a strength of C / s^2 on the raw weights.
    s = np.sqrt(np.mean((x - x.mean(axis=0)) ** 2))
    by_hand = LogisticRegression(C=probe.c / s ** 2, max_iter=5000, tol=1e-10).fit(x, y)
    test_x, test_y = _blobs(seed=1)
    np.testing.assert_array_equal(probe.predict(test_x), by_hand.predict(test_x))
    assert probe.score(test_x, test_y) == by_hand.score(test_x, test_y)
    # The strength is the one 5-fold cross-validation prefers among the grid.
    folds = StratifiedKFold(5, shuffle=True, random_state=3)
    scores = [cross_val_score(LogisticRegression(C=c, max_iter=1000), (x - x.mean(0)) / s,
                              y, cv=folds).mean() for c in linear_probe.C_GRID]
    assert probe.c == linear_probe.C_GRID[int(np.argmax(scores))]
    assert probe.cv_top1 == pytest.approx(max(scores))


def test_two_classes_and_one_photo_per_class_still_give_a_classifier():
    x, y = _blobs(classes=2)
    probe = linear_probe.fit(x, y)
    assert probe.kernel.shape == (6, 2) and probe.score(x, y) > 0.8
    tiny = linear_probe.fit(x[:0].tolist() + [[0.0] * 6, [1.0] * 6], [0, 1])
    assert tiny.predict(np.array([[0.0] * 6, [1.0] * 6])).tolist() == [0, 1]
    assert np.isnan(tiny.cv_top1)
    assert tiny.record()["cv_top1"] is None  # config.json stays standard JSON
    assert "nan" not in tiny.summary()


def test_features_that_do_not_vary_give_the_class_prior_not_huge_weights():
    # A collapsed network: every photo gives the same features up to float rounding.
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [30, 15, 9])
    x = rng.uniform(0, 6, 256) + 1e-10 * rng.normal(size=(len(y), 256))
    probe = linear_probe.fit(x, y)
    # Scaled to unit spread, the rounding noise would get weights of about 1e7 (the
    # int8 export's converter and XNNPACK cannot hold the classifier then).
    assert np.abs(probe.kernel).max() < 1.0, np.abs(probe.kernel).max()
    unseen = x[:5] + 1e-10 * rng.normal(size=(5, 256))
    assert probe.predict(unseen).tolist() == [0] * 5  # the most frequent class


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A small "pretrained" network (7 toy classes), fitted for two epochs."""
    keras.utils.set_random_seed(4)
    model = mobilenet_v1((32, 32, 3), alpha=0.25, num_classes=7, dropout=0.0,
                         classifier_activation=None, bn_momentum=0.8)
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images, labels = toy_task(384, 32, 7, seed=3)
    model.fit(images, labels, batch_size=32, epochs=2, verbose=0)
    path = str(tmp_path_factory.mktemp("w") / "old.weights.h5")
    model.save_weights(path)
    return path


def _trainer(workdir, weights, run=False, **options):
    train, evaluation = toy_inputs(batch_size=16, n_train=128)
    config = TrainConfig(**{**dict(
        alpha=0.25, resolution=32, batch_size=16, epochs=1, steps_per_epoch=2,
        eval_split="val", verbose=2, log_images=False, optimizer="adamw",
        weight_decay=0.0, initial_weights=weights), **options})
    runner = trainer.Trainer(config, str(workdir), train, evaluation)
    if run:
        runner.run()
    else:
        runner.state = runner.setup.prepare()
    return runner, train, evaluation


def _features(model, inp, limit):
    f, y = classifier_init.sample_features(
        model, inp.input_fn(tf.distribute.InputContext()), limit)
    return f, y.argmax(axis=1)


def test_the_run_fits_the_baseline_on_its_training_photos(weights_file, tmp_path):
    run, train, evaluation = _trainer(tmp_path / "run", weights_file)
    recorded = run.setup.record.weights.source["baseline"]
    again = mobilenet_v1((32, 32, 3), alpha=0.25, num_classes=4, classifier_activation=None)
    pretrained.load_initial_weights(again, weights_file)
    keras.utils.set_random_seed(run.config.seed)  # the toy input's order
    fx, fy = _features(again, train, train.num_examples)
    probe = linear_probe.fit(fx, fy, seed=run.config.seed)
    ex, ey = _features(again, evaluation, evaluation.num_examples)
    assert recorded["eval_top1"] == pytest.approx(probe.score(ex, ey))
    assert recorded["C"] == probe.c and recorded["train_examples"] == train.num_examples
    assert recorded["eval_examples"] == evaluation.num_examples


def test_linear_probe_start_scores_the_baseline_before_any_step(weights_file, tmp_path):
    run, _, evaluation = _trainer(tmp_path / "run", weights_file,
                                  classifier_init="linear_probe", ema_decay=0.9)
    baseline = run.setup.baseline_top1()
    images = np.concatenate([x for x, _ in evaluation.input_fn(tf.distribute.InputContext())])
    labels = np.concatenate([y for _, y in evaluation.input_fn(tf.distribute.InputContext())])
    top1 = np.mean(np.argmax(run.model.predict(images, verbose=0), 1) == labels)
    assert top1 == pytest.approx(baseline)
    assert baseline > 0.5  # the toy classes are told apart, not a uniform start
    ema = run.state.task.ema  # the weight average starts from it too
    shadows = {id(w): s for w, s in zip(ema.model_weights, ema.shadows)}
    kernel = run.model.get_layer("conv_preds").kernel
    np.testing.assert_array_equal(shadows[id(kernel)], kernel.numpy())


def test_summary_console_tensorboard_and_export_report_carry_it(weights_file, tmp_path,
                                                               capsys):
    workdir = tmp_path / "run"
    _trainer(workdir, weights_file, run=True, classifier_init="linear_probe", epochs=2)
    out = capsys.readouterr().out
    summary = run_record.read_summary(str(workdir))
    record = run_record.read_record(str(workdir))
    baseline = record.weights.source["baseline"]["eval_top1"]
    assert summary.baseline_top1 == baseline
    assert "Head-only baseline (logistic regression" in out
    assert (f"Fine-tuned {100 * summary.top1:.2f}%, head-only baseline "
            f"{100 * baseline:.2f}%") in out
    values = _scalars(workdir, "val/baseline_top1")
    assert values and all(v == pytest.approx(baseline) for v in values)
    ft = export_report.fine_tuning(record, summary)
    assert ft["points"] == pytest.approx(100 * (summary.top1 - baseline))
    assert "head-only baseline" in export_report.fine_tuning_line(ft)


def _scalars(workdir, tag):
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(workdir / "logs"),
                                             size_guidance={"tensors": 0})
    acc.Reload()
    if tag not in acc.Tags().get("tensors", []):
        return []
    return [float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]


def test_a_resumed_run_keeps_the_baseline_without_refitting(weights_file, tmp_path, capsys):
    workdir = tmp_path / "run"
    _trainer(workdir, weights_file, run=True)
    first = run_record.read_record(str(workdir)).weights.source["baseline"]
    capsys.readouterr()
    _trainer(workdir, weights_file, run=True, epochs=2)
    assert "Head-only baseline" not in capsys.readouterr().out
    recorded = json.load(open(run_record.RunFiles(str(workdir)).config))
    assert recorded["weights"]["source"]["baseline"] == first
    assert run_record.read_summary(str(workdir)).baseline_top1 == first["eval_top1"]


def test_nobaseline_skips_it(weights_file, tmp_path, capsys):
    workdir = tmp_path / "run"
    _trainer(workdir, weights_file, run=True, baseline=False)
    assert "head-only" not in capsys.readouterr().out.lower()
    assert "baseline" not in run_record.read_record(str(workdir)).weights.source
    assert run_record.read_summary(str(workdir)).baseline_top1 is None


def _refit_c(out, train):
    """The strength the refit printed (the last time it ran)."""
    found = re.findall(r"Classifier refitted on the trained network's features of "
                       rf"{train.num_examples} whole training photos \(logistic "
                       r"regression, C=([0-9.e+-]+) by", out)
    assert found, out[-2000:]
    return float(found[-1])


def _assert_saved_head_is_the_refit(workdir, train, evaluation, c):
    """final.keras' classifier is a logistic regression at strength ``c`` on
    final.keras' own (averaged) features of the training photos, fitted by hand."""
    final = keras.models.load_model(str(workdir / "final.keras"))
    x, y = _features(final, train, train.num_examples)  # any order
    s = np.sqrt(np.mean((x - x.mean(axis=0)) ** 2))  # the baseline's scaling
    by_hand = LogisticRegression(C=c / s ** 2, max_iter=5000, tol=1e-10).fit(x, y)
    ex, ey = _features(final, evaluation, evaluation.num_examples)
    layer = final.get_layer("conv_preds")
    logits = ex @ layer.kernel.numpy().reshape(ex.shape[1], -1) + layer.bias.numpy()
    want = by_hand.decision_function(ex)  # logits up to a shift per photo
    got, want = logits - logits.mean(1, keepdims=True), want - want.mean(1, keepdims=True)
    np.testing.assert_allclose(got, want, rtol=0.05, atol=0.02 * np.abs(want).max())
    # A photo whose by-hand top-two margin exceeds twice the two fits' largest logit
    # difference on it gets the same prediction from both (so no separate argmax check);
    # the rest are near-ties either solver may break. Most photos must be clear.
    top2 = np.sort(want, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * np.abs(got - want).max(axis=1)
    assert clear.mean() > 0.8
    summary = run_record.read_summary(str(workdir))
    assert abs(summary.top1 - np.mean(by_hand.predict(ex) == ey)) <= np.mean(~clear) + 1e-6
    return layer


def test_refit_head_fits_the_trained_features_and_saves_that_head(weights_file, tmp_path,
                                                                  capsys):
    workdir = tmp_path / "run"
    run, train, evaluation = _trainer(workdir, weights_file, run=True, epochs=2,
                                      refit_head=True, ema_decay=0.9)
    c = _refit_c(capsys.readouterr().out, train)
    layer = _assert_saved_head_is_the_refit(workdir, train, evaluation, c)
    # The raw weights carry it too (a run continued with more epochs starts from it).
    np.testing.assert_array_equal(run.model.get_layer("conv_preds").kernel.numpy(),
                                  layer.kernel.numpy())
    refit = run_record.read_record(str(workdir)).weights.source["refit_head"]
    assert refit["C"] == c and refit["train_examples"] == train.num_examples


def test_a_crash_between_the_refit_and_its_checkpoint_refits_on_resume(
        weights_file, tmp_path, capsys, monkeypatch):
    workdir = tmp_path / "run"
    save = trainer.Trainer.save_checkpoint

    def crash_after_the_last_step(self, step):
        if step >= self.setup.total_steps:  # refitted, not yet checkpointed
            raise KeyboardInterrupt("killed")
        return save(self, step)

    monkeypatch.setattr(trainer.Trainer, "save_checkpoint", crash_after_the_last_step)
    with pytest.raises(KeyboardInterrupt):
        _trainer(workdir, weights_file, run=True, epochs=2, refit_head=True, ema_decay=0.9)
    assert not (workdir / "final.keras").exists()
    assert "refit_head" in run_record.read_record(str(workdir)).weights.source
    monkeypatch.setattr(trainer.Trainer, "save_checkpoint", save)
    capsys.readouterr()
    _, train, evaluation = _trainer(workdir, weights_file, run=True, epochs=2,
                                    refit_head=True, ema_decay=0.9)
    out = capsys.readouterr().out
    assert "Resuming from" in out and "step 2" in out  # the end of epoch 1
    c = _refit_c(out, train)  # the last epoch trained again, then refitted again
    _assert_saved_head_is_the_refit(workdir, train, evaluation, c)
    assert run_record.read_record(str(workdir)).weights.source["refit_head"]["C"] == c
