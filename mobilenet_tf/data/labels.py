"""The class list: index -> class name, fixed from the training split.

It is saved as ``labels.txt`` (one name per line, line i = class i) next to a run and
reused by evaluation, export (TFLite metadata) and predict.

The labels stay what the data calls its classes (ImageNet synset IDs such as
``n01440764`` for tfds/folder/tfrecord ImageNet data); ``display_names`` gives the names
people read (``tench``), shown by predict and written into the TFLite metadata.
"""

from __future__ import annotations

import functools
import os
import re

from mobilenet_tf import fileio

LABELS_FILE = "labels.txt"
# ImageNet-1k synset ID -> display name (the file's header names its source).
IMAGENET_NAMES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                   "imagenet_names.txt")
_SYNSET_ID = re.compile(r"n\d{8}")


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


@functools.lru_cache(maxsize=1)
def imagenet_names() -> dict[str, str]:
    """{synset ID: display name} of the 1,000 ImageNet-1k classes."""
    names = {}
    with open(IMAGENET_NAMES_FILE, encoding="utf-8") as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                synset, name = line.rstrip("\n").split("\t")
                names[synset] = name
    return names


def display_name(label: str) -> str:
    """The name people read for a label: an ImageNet synset ID's class name
    (``n01440764`` -> ``tench``), any other label unchanged."""
    label = str(label)
    if _SYNSET_ID.fullmatch(label):
        return imagenet_names().get(label, label)
    return label


def display_names(labels) -> list[str]:
    """``display_name`` of each label, in order."""
    return [display_name(label) for label in labels]
