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
    """Decoded uint8 HxWx3 RGB image; ValueError naming the file (``display_path``: one
    line whatever the name holds) when it cannot be read.
    Images above ``max_pixels`` are decoded at reduced scale (baseline JPEG, with a
    warning) or refused before decoding (``preprocessing.decode_image``)."""
    try:
        with open(path, "rb") as f:
            encoded = f.read()
    except OSError as e:
        raise ValueError(f"{display_path(path)}: cannot open ({e.strerror or e})") from None
    if not encoded:
        raise ValueError(f"{display_path(path)}: empty file")
    try:
        return preprocessing.decode_image(tf.constant(encoded), max_pixels).numpy()
    except (tf.errors.OpError, ValueError) as e:
        message = getattr(e, "message", str(e)).strip()
        refused = re.search(r"image bomb refused[^'\"]*", message)
        if refused:
            raise ValueError(f"{display_path(path)}: {one_line(refused.group(0))}") from None
        message = message.splitlines()[0]
        message = re.sub(r"\{\{.*?\}\}|\[Op:.*$", "", message).strip()
        raise ValueError(f"{display_path(path)}: not a readable JPEG/PNG/BMP/GIF image "
                         f"({message})") from None


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


# What a bare word of a text line must not hold: the separators ", " and ": ", the quote
# that starts a JSON string; line breaks and other unprintable characters are caught by
# ``str.isprintable``.
_NAME_SPECIALS = (",", '"')
_PATH_SPECIALS = (",", ": ", '"')


def json_text(value) -> str:
    """``value`` as JSON on one line, non-ASCII kept readable; a file name that is not
    UTF-8 (Python's surrogate escapes) is written with ``\\u`` escapes instead, so the
    line can be printed in any locale and ``json.loads`` gives the name back."""
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value)
    return text


def _quoted(text: str, specials: tuple[str, ...]) -> str:
    """``text``, or its JSON string form when it holds one of ``specials``, a line break or
    another unprintable character, or space at either end (so a reader can always split
    the line, and each image stays on one line)."""
    if (any(c in text for c in specials) or not text.isprintable() or text != text.strip()
            or not text):
        return json_text(text)
    return text


def display_path(path: str) -> str:
    """``path`` as the text output writes it: as it is, or as a JSON string when it holds
    ``,``, ``: ``, a quote, a line break or another unprintable character."""
    return _quoted(path, _PATH_SPECIALS)


def one_line(text: str) -> str:
    """``text`` with its line breaks replaced by spaces (each output item is one line)."""
    return " ".join(text.splitlines())


def format_prediction(p: Prediction) -> str:
    """``PATH: NAME SCORE, NAME SCORE, ...`` (display names, best first); a path or a name
    that would make the line ambiguous (see ``display_path``; a name with a comma) is
    written as a JSON string (``"a, b" 0.5000``), so every image is one line that reads
    back. An unreadable file: ``ERROR <reason naming the file>``."""
    if p.error:
        return f"ERROR {one_line(p.error)}"
    items = [f"{_quoted(name, _NAME_SPECIALS)} {score:.4f}"
             for name, score in zip(p.names or p.labels, p.scores)]
    return f"{display_path(p.path)}: " + ", ".join(items)


def prediction_json(p: Prediction) -> str:
    """One JSON object on one line: ``{"path", "top_k": [{"label", "name", "class",
    "probability"}, ...]}`` best first, or ``{"path", "error"}``."""
    if p.error:
        return json_text({"path": p.path, "error": p.error})
    top = [{"label": label, "name": name, "class": cls, "probability": score}
           for label, name, cls, score in zip(p.labels, p.names, p.classes, p.scores)]
    return json_text({"path": p.path, "top_k": top})
