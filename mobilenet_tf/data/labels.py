"""The class list: index -> class name, fixed from the training split.

It is saved as ``labels.txt`` (one name per line, line i = class i) next to a run and
reused by evaluation, export (TFLite metadata) and predict.
"""

from __future__ import annotations

import os

LABELS_FILE = "labels.txt"


def write_labels(path: str, class_names) -> None:
    names = [str(n) for n in class_names]
    for n in names:
        if not n or "\n" in n:
            raise ValueError(f"class name {n!r} cannot be written to {path}: names must be "
                             "non-empty single lines")
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(names) + "\n")
    os.replace(tmp, path)


def read_labels(path: str) -> list[str]:
    if os.path.isdir(path):
        path = os.path.join(path, LABELS_FILE)
    if not os.path.exists(path):
        raise ValueError(f"labels file {path} does not exist; a run directory holds "
                         f"{LABELS_FILE} written by training")
    with open(path, encoding="utf-8") as f:
        names = [line.rstrip("\n") for line in f if line.strip()]
    if not names:
        raise ValueError(f"labels file {path} is empty")
    return names
