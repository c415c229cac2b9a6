"""``--refit_head``: after the last epoch, the classifier is fitted again, as a logistic
regression on the trained network's features of the whole training photos.

Training fits the classifier on augmented crops (random-resized crops of 25-100% of the
photo, flips), through dropout and against smoothed labels; evaluation, ``predict`` and
the phone see whole photos. The pooled features of the two differ (an object fills more
of a crop than of the photo), so the classifier learnt on crops is not the best one for
whole photos: the train-test discrepancy of FixRes (Touvron et al. 2019, "Fixing the
train-test resolution discrepancy"), which fixes it by fitting the classifier again on
test-time inputs. Here that fit is the head-only baseline's own (linear_probe.py: the same
solver and 5-fold cross-validated strength) on the fine-tuned features, training photos
only (the held-out ones stay held out). Measured in docs/results.md.
"""

from __future__ import annotations

import contextlib

import numpy as np

from mobilenet_tf.model.builder import CLASSIFIER_LAYER
from mobilenet_tf.training import classifier_init, linear_probe


def refit(model, batches, limit: int, ema=None, seed: int = 0) -> linear_probe.Probe:
    """Fits the classifier of ``model`` on its features of ``batches`` (up to ``limit``
    images, evaluation preprocessing) and writes it in; with a weight average ``ema``,
    the features are the averaged network's (what is evaluated and saved) and the new
    classifier goes into the average as well as into the raw weights."""
    swapped = ema.swapped_in() if ema is not None else contextlib.nullcontext()
    with swapped:
        features, labels = classifier_init.sample_features(model, batches, limit)
    probe = linear_probe.fit(features, labels.argmax(axis=1), seed=seed)
    classifier_init.set_classifier(model, probe.kernel, probe.bias)
    if ema is not None:
        layer = model.get_layer(CLASSIFIER_LAYER)
        values = {id(layer.kernel): np.reshape(probe.kernel, layer.kernel.shape),
                  id(layer.bias): probe.bias}
        for shadow, weight in zip(ema.shadows, ema.model_weights):
            if id(weight) in values:
                shadow.assign(values[id(weight)].astype(shadow.dtype.as_numpy_dtype))
    return probe


def record(probe: linear_probe.Probe) -> dict:
    """What config.json keeps of the refit (``weights.source.refit_head``)."""
    return {"method": "logistic regression on the trained network's features of the "
                      "whole training photos (linear_probe.fit)",
            "C": probe.c, "train_examples": probe.train_examples,
            "cv_top1": probe.record()["cv_top1"]}


def message(probe: linear_probe.Probe) -> str:
    return (f"Classifier refitted on the trained network's features of "
            f"{probe.train_examples} whole training photos (logistic regression, "
            f"C={probe.c:.3g} by cross-validation; --norefit_head: keep the trained one).")
