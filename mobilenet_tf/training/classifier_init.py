"""A new classifier started from the weights file's own (``--classifier_init=source``).

When the class count changes, the file's classifier (ImageNet's 1001 classes, say) cannot
be loaded, and by default the new one starts at zero. ``source`` maps the old classifier
onto the new classes instead, from what it predicts on the training images:

1. the pretrained network looks at a few hundred training images (``batches``)
   and the old classifier's softmax on each is averaged per new class (soft labels, as
   MixUp makes them, weigh each image): ``affinity[c, k]``, how much new class c looks
   like old class k to the pretrained network;
2. each new class gets the old classes' weights mixed by its sharpened affinity row
   (``affinity ** SHARPEN``, normalized): a new class that is one of the old ones gets
   that class's weights, one that resembles several a mix of theirs. So its logit is the
   same mix of the old logits, ``z_c = sum_k Q[c, k] s_k``.

A class that the old classifier cannot tell apart from the others (a task unlike the
file's classes) gets a row much like theirs: the start is then close to the zero start,
and the head phase learns what the old classes cannot say. Where the new classes are
among the file's classes (Imagenette and ImageNet), the start is as good as the old
classifier restricted to them; docs/results.md measures both cases and says why the
first must not be read as accuracy on unseen photos.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from mobilenet_tf.model.builder import CLASSIFIER_LAYER

SHARPEN = 2.0  # powers 2, 4 and 8 did equally well, 1 clearly worse (results.md)
SAMPLES_PER_CLASS = 50  # training images looked at, per class on average
MAX_SAMPLES = 4096  # but no more than this (1000 classes: about 4 each)


def sample_size(num_classes: int) -> int:
    """How many training images ``init_from_source`` looks at for ``num_classes``."""
    return min(SAMPLES_PER_CLASS * int(num_classes), MAX_SAMPLES)


@dataclasses.dataclass
class SourceInit:
    """What ``init_from_source`` did (printed, and recorded in the run directory)."""

    source_classes: int  # outputs of the file's classifier
    examples: float  # training images looked at (label mass: MixUp mixes count as one)
    sample_top1: float  # the new classifier's top-1 on those images
    top_source_class: list  # per new class: the old class it resembles most
    top_affinity: list  # and its share of the affinity row

    def summary(self) -> str:
        return (f"Classifier: started from the weights file's {self.source_classes}-class "
                f"classifier, mapped by its predictions on {self.examples:g} training "
                f"images (top-1 on them: {100 * self.sample_top1:.1f}%).")

    def record(self) -> dict:
        return {"classifier_init": "source", "source_classes": self.source_classes,
                "examples": self.examples, "sample_top1": self.sample_top1,
                "top_source_class": self.top_source_class,
                "top_affinity": self.top_affinity}


def affinity(features, labels, kernel, bias):
    """Per new class, the label-weighted sum of the old classifier's softmax over
    ``features`` (N x D), and the label mass: (C x K sums, C masses). ``labels``: N ints or
    N x C (one-hot or mixed)."""
    logits = features @ kernel + bias
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return labels.T @ probs, labels.sum(axis=0)


def mapped_classifier(affinity_rows, kernel, bias, sharpen: float = SHARPEN):
    """(D x C kernel, C bias): the old ``kernel`` (D x K) and ``bias`` mixed by the
    sharpened, row-normalized ``affinity_rows`` (C x K). An all-zero row (a class with
    no image looked at) mixes every old class equally."""
    q = np.asarray(affinity_rows, np.float64) ** sharpen
    totals = q.sum(axis=1, keepdims=True)
    q = np.where(totals > 0, q / np.where(totals > 0, totals, 1), 1.0 / q.shape[1])
    return (kernel.astype(np.float64) @ q.T).astype(np.float32), \
        (q @ bias.astype(np.float64)).astype(np.float32)


def _one_hot(labels, num_classes):
    labels = np.asarray(labels)
    if labels.ndim == 1:
        return np.eye(num_classes, dtype=np.float64)[labels]
    return labels.astype(np.float64)


def sample_features(model: keras.Model, batches, limit: int):
    """(N x D pooled features the classifier sees, N x C float labels) of the first
    batches of ``batches`` ((images, int or one-hot labels)) that hold ``limit`` images,
    computed in inference mode."""
    layer = model.get_layer(CLASSIFIER_LAYER)
    num_classes = int(layer.kernel.shape[-1])
    features_of = tf.function(keras.Model(model.inputs, layer.input))
    feats, labels, seen = [], [], 0
    for images, y in batches:
        f = np.asarray(features_of(images, training=False), np.float64)
        feats.append(f.reshape(f.shape[0], -1))
        labels.append(_one_hot(y, num_classes))
        seen += f.shape[0]
        if seen >= limit:
            break
    if not feats:
        raise ValueError("--classifier_init=source: the training split gave no images to "
                         "map the weights file's classifier with")
    return np.concatenate(feats), np.concatenate(labels)


def set_classifier(model: keras.Model, kernel, bias) -> None:
    """Writes a [features, classes] ``kernel`` and [classes] ``bias`` into ``model``'s
    1x1-conv classifier (``conv_preds``)."""
    layer = model.get_layer(CLASSIFIER_LAYER)
    layer.kernel.assign(np.reshape(kernel, layer.kernel.shape))
    layer.bias.assign(bias)


def init_from_source(model: keras.Model, source_classifier, batches,
                     limit: int) -> SourceInit:
    """Sets ``model``'s classifier (``conv_preds``) from ``source_classifier`` (the
    file's (kernel, bias), pretrained.LoadReport.source_classifier), looking at up to
    ``limit`` images of ``batches`` ((images, labels) batches: int or one-hot labels)."""
    layer = model.get_layer(CLASSIFIER_LAYER)
    kernel = np.asarray(source_classifier[0], np.float64)
    kernel = kernel.reshape(-1, kernel.shape[-1])  # 1x1xDxK -> DxK
    bias = np.asarray(source_classifier[1], np.float64)
    if kernel.shape[0] != layer.kernel.shape[-2]:
        raise ValueError(f"--classifier_init=source: the weights file's classifier takes "
                         f"{kernel.shape[0]} features, this model gives it "
                         f"{layer.kernel.shape[-2]}; use --classifier_init=zeros")
    f, y = sample_features(model, batches, limit)
    sums, mass = affinity(f, y, kernel, bias)
    rows = sums / np.maximum(mass, 1e-12)[:, None]
    new_kernel, new_bias = mapped_classifier(rows, kernel, bias)
    set_classifier(model, new_kernel, new_bias)
    top1 = float(np.mean(np.argmax(f @ new_kernel + new_bias, 1) == np.argmax(y, 1)))
    return SourceInit(source_classes=int(kernel.shape[1]), examples=float(mass.sum()),
                      sample_top1=top1,
                      top_source_class=[int(k) for k in rows.argmax(axis=1)],
                      top_affinity=[round(float(a), 4) for a in rows.max(axis=1)])
