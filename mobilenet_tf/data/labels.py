"""The class list: index -> class name, fixed from the training split.

It is saved as ``labels.txt`` (one name per line, line i = class i) next to a run and
reused by evaluation, export (TFLite metadata) and predict.
"""

from __future__ import annotations

import os

from mobilenet_tf import fileio

LABELS_FILE = "labels.txt"


def format_labels(class_names) -> str:
    """The text of a labels file: one name per line (line i = class i)."""
    names = [str(n) for n in class_names]
    for n in names:
        if not n.strip() or len(n.splitlines()) != 1 or n != n.strip():
            raise ValueError(f"class name {n!r} cannot be written to a labels file: names "
                             "must be non-empty single lines without surrounding spaces")
    return "\n".join(names) + "\n"


def parse_labels(text: str) -> list[str]:
    """The inverse of ``format_labels`` (blank lines ignored)."""
    return [line.strip() for line in text.split("\n") if line.strip()]


def write_labels(path: str, class_names) -> None:
    fileio.atomic_write_text(path, format_labels(class_names))


def read_labels(path: str) -> list[str]:
    if os.path.isdir(path):
        path = os.path.join(path, LABELS_FILE)
    if not os.path.exists(path):
        raise ValueError(f"labels file {path} does not exist; a run directory holds "
                         f"{LABELS_FILE} written by training")
    with open(path, encoding="utf-8") as f:
        names = parse_labels(f.read())
    if not names:
        raise ValueError(f"labels file {path} is empty")
    return names
