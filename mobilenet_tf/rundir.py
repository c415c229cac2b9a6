"""The run directory's layout: the contract between training (which writes it) and
evaluate, export and predict (which read it)."""

from __future__ import annotations

import dataclasses
import os

from mobilenet_tf.data.labels import LABELS_FILE

FLAGS_FILE = "flags.txt"
CONFIG_FILE = "config.json"
CHECKPOINTS_DIR = "checkpoints"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
MODELS = {"best": "best.keras", "final": "final.keras"}  # finished Keras models


@dataclasses.dataclass(frozen=True)
class RunFiles:
    """The paths of one run directory."""

    workdir: str

    def _path(self, name):
        return os.path.join(self.workdir, name)

    flags = property(lambda self: self._path(FLAGS_FILE))
    labels = property(lambda self: self._path(LABELS_FILE))
    config = property(lambda self: self._path(CONFIG_FILE))
    checkpoints = property(lambda self: self._path(CHECKPOINTS_DIR))
    metrics = property(lambda self: self._path(METRICS_FILE))
    summary = property(lambda self: self._path(SUMMARY_FILE))
    best = property(lambda self: self._path(MODELS["best"]))
    final = property(lambda self: self._path(MODELS["final"]))
