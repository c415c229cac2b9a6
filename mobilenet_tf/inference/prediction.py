"""Top-k predictions for image files with any model format, and their two output
formats: a text line per image (``format_prediction``) and a JSON object per image
(``prediction_json``, one per line: JSON Lines)."""

from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np
import tensorflow as tf

from mobilenet_tf.inference import loading
from mobilenet_tf.data import preprocessing
from mobilenet_tf.data.config import DEFAULT_MAX_IMAGE_PIXELS
from mobilenet_tf.data.labels import display_names
from mobilenet_tf.data.specs import IMAGE_EXTENSIONS


@dataclasses.dataclass
class Prediction:
    path: str
    classes: list[int] = dataclasses.field(default_factory=list)
    labels: list[str] = dataclasses.field(default_factory=list)  # as in labels.txt
    names: list[str] = dataclasses.field(default_factory=list)  # display names of labels
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
        labels = [classifier.class_names[i] for i in order]
        results.append(Prediction(path=path, classes=[int(i) for i in order], labels=labels,
                                  names=display_names(labels),
                                  scores=[float(probs[i]) for i in order]))
    return results


_NAME_SPECIALS = (",", '"')
_PATH_SPECIALS = (": ", '"', "\n")


def _quoted(text: str, specials: tuple[str, ...]) -> str:
    """``text``, or its JSON string form when it holds one of ``specials`` (so a reader
    can always split the line)."""
    if any(c in text for c in specials) or text != text.strip() or not text:
        return json.dumps(text, ensure_ascii=False)
    return text


def format_prediction(p: Prediction) -> str:
    """``PATH: NAME SCORE, NAME SCORE, ...`` (display names, best first); a path holding
    ``": "`` or a name holding a comma is written as a JSON string (``"a, b" 0.5000``).
    An unreadable file: ``ERROR <reason naming the file>``."""
    if p.error:
        return f"ERROR {p.error}"
    items = [f"{_quoted(name, _NAME_SPECIALS)} {score:.4f}"
             for name, score in zip(p.names or p.labels, p.scores)]
    return f"{_quoted(p.path, _PATH_SPECIALS)}: " + ", ".join(items)


def prediction_json(p: Prediction) -> str:
    """One JSON object on one line: ``{"path", "top_k": [{"label", "name", "class",
    "probability"}, ...]}`` best first, or ``{"path", "error"}``."""
    if p.error:
        return json.dumps({"path": p.path, "error": p.error}, ensure_ascii=False)
    top = [{"label": label, "name": name, "class": cls, "probability": score}
           for label, name, cls, score in zip(p.labels, p.names, p.classes, p.scores)]
    return json.dumps({"path": p.path, "top_k": top}, ensure_ascii=False)
