"""Balanced subsets of the Imagenette train tarball as folder datasets.

The project develops and benchmarks on ``<repo>/../shared/data/imagenette-224-train.tar``
(``imagenette-224/train/<wnid>/<file>.JPEG``). Benchmarks and the tests that use real
photos extract a few images per class from it into a temporary folder, never into the
repository; without the tarball they skip or fall back to generated images.
"""

from __future__ import annotations

import collections
import os
import tarfile

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_TAR = os.path.join(os.path.dirname(_REPO), "shared", "data",
                           "imagenette-224-train.tar")


def extract_subset(dest: str, per_class: int, classes=None, tar_path: str = DEFAULT_TAR,
                   split: str = "train") -> str:
    """Extracts the first ``per_class`` JPEGs (in archive order) of each class in
    ``classes`` (default: all) to ``dest/<split>/<class>/``; returns ``dest``, the root
    of a ``folder:`` dataset whose split ``split`` holds the images."""
    if not os.path.exists(tar_path):
        raise ValueError(f"Imagenette tarball {tar_path} does not exist; pass a folder of "
                         "images (DIR/<class>/*.JPEG) instead")
    taken = collections.Counter()
    members = []
    with tarfile.open(tar_path) as tar:
        for m in tar:
            if not (m.isfile() and m.name.lower().endswith((".jpeg", ".jpg"))):
                continue
            wnid = os.path.basename(os.path.dirname(m.name))
            if (classes is None or wnid in classes) and taken[wnid] < per_class:
                taken[wnid] += 1
                m.name = os.path.join(split, wnid, os.path.basename(m.name))
                members.append(m)
        tar.extractall(dest, members=members, filter="data")
    return dest
