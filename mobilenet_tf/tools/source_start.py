"""How good is --classifier_init=source before any training? Held-out top-1 of the mapped
classifier (mobilenet_tf.training.classifier_init) for several sharpening powers, with the
affinity taken from the trainer's own sample (training crops) or from whole photos.

  python -m mobilenet_tf.tools.source_start --data=DIR --weights=W

DIR holds train/<class>/ and validation/<class>/ folders (the 100/class split of
docs/results.md); W is a pretrained .weights.h5 file with its ImageNet classifier.
"""

import argparse

import numpy as np
import tensorflow as tf

from mobilenet_tf.training import classifier_init
from mobilenet_tf.model import pretrained
from mobilenet_tf.data import DataConfig, build_input
from mobilenet_tf.model.builder import mobilenet_v1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--alpha", type=float, default=0.75)
    p.add_argument("--resolution", type=int, default=224)
    a = p.parse_args()
    cfg = DataConfig(dataset=f"folder:{a.data}", image_size=(a.resolution,) * 2,
                     crop_fraction=1.0, min_area=0.25)
    train = build_input(cfg, "train", training=True, global_batch_size=32)
    names = train.class_names
    model = mobilenet_v1((a.resolution,) * 2 + (3,), alpha=a.alpha,
                         num_classes=len(names), classifier_activation=None)
    report = pretrained.load_initial_weights(model, a.weights, a.alpha, a.resolution)
    kernel, bias = report.source_classifier
    kernel = np.asarray(kernel, np.float64).reshape(-1, kernel.shape[-1])
    limit = classifier_init.sample_size(len(names))
    held_out = build_input(cfg, "validation", training=False, global_batch_size=50,
                           class_names=names)
    fv, yv = classifier_init.sample_features(model, held_out.input_fn(None), 10**9)
    samples = {"training crops (the trainer's)": train.input_fn(tf.distribute.InputContext()),
               "whole photos": build_input(cfg, "train", training=False,
                                           global_batch_size=50).input_fn(None)
               .unbatch().shuffle(10**4, seed=0).batch(50)}
    for name, batches in samples.items():
        f, y = classifier_init.sample_features(model, batches, limit)
        sums, mass = classifier_init.affinity(f, y, kernel, np.asarray(bias, np.float64))
        rows = sums / mass[:, None]
        for power in (1, 2, 4, 8):
            k, b = classifier_init.mapped_classifier(rows, kernel, bias, sharpen=power)
            top1 = np.mean(np.argmax(fv @ k + b, 1) == np.argmax(yv, 1))
            print(f"affinity from {len(f)} {name}, power {power}: held-out top-1 "
                  f"{100 * top1:.1f}% ({len(fv)} photos)")


if __name__ == "__main__":
    main()
