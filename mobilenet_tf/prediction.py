"""Top-k predictions for image files with any model format."""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import tensorflow as tf

from mobilenet_tf import loading
from mobilenet_tf.data import preprocessing
from mobilenet_tf.data.config import DEFAULT_MAX_IMAGE_PIXELS
from mobilenet_tf.data.sources import IMAGE_EXTENSIONS


@dataclasses.dataclass
class Prediction:
    path: str
    classes: list[int] = dataclasses.field(default_factory=list)
    labels: list[str] = dataclasses.field(default_factory=list)
    scores: list[float] = dataclasses.field(default_factory=list)
    error: str | None = None  # why the image could not be classified


def expand_inputs(inputs) -> list[str]:
    """Files as given; directories -> their image files (by extension, recursively,
    sorted). Paths that do not exist are kept (and reported by ``predict_paths``)."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            found = []
            for root, _, files in os.walk(item):
                found += [os.path.join(root, f) for f in files
                          if f.lower().endswith(IMAGE_EXTENSIONS)]
            paths += sorted(found)
        else:
            paths.append(item)
    return paths


def read_image(path: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decoded uint8 HxWx3 RGB image; ValueError naming the file when it cannot be read.
    Images above ``max_pixels`` are decoded at reduced scale (baseline JPEG, with a
    warning) or refused before decoding (``preprocessing.decode_image``)."""
    try:
        with open(path, "rb") as f:
            encoded = f.read()
    except OSError as e:
        raise ValueError(f"{path}: cannot open ({e.strerror or e})") from None
    if not encoded:
        raise ValueError(f"{path}: empty file")
    try:
        return preprocessing.decode_image(tf.constant(encoded), max_pixels).numpy()
    except (tf.errors.OpError, ValueError) as e:
        message = getattr(e, "message", str(e)).strip()
        refused = re.search(r"image bomb refused[^'\"]*", message)
        if refused:
            raise ValueError(f"{path}: {refused.group(0)}") from None
        message = message.splitlines()[0]
        message = re.sub(r"\{\{.*?\}\}|\[Op:.*$", "", message).strip()
        raise ValueError(f"{path}: not a readable JPEG/PNG/BMP/GIF image ({message})") from None


def predict_paths(classifier: loading.Classifier, paths, top_k: int = 5) -> list[Prediction]:
    """One Prediction per path; unreadable files get ``error`` set and do not stop the rest."""
    if top_k < 1:
        raise ValueError(f"top_k={top_k} must be >= 1")
    k = min(top_k, classifier.num_classes)
    results = []
    for path in paths:
        try:
            image = read_image(path)
        except ValueError as e:
            results.append(Prediction(path=path, error=str(e)))
            continue
        probs = classifier.predict_proba([image])[0]
        order = np.argsort(-probs, kind="stable")[:k]
        results.append(Prediction(path=path, classes=[int(i) for i in order],
                                  labels=[classifier.class_names[i] for i in order],
                                  scores=[float(probs[i]) for i in order]))
    return results


def format_prediction(p: Prediction) -> str:
    if p.error:
        return f"ERROR {p.error}"
    return f"{p.path}: " + ", ".join(f"{l} {s:.4f}" for l, s in zip(p.labels, p.scores))
