"""Checkpoints of a training run: verified saves, restore with fallback, pruning.

``CheckpointStore`` owns ``RUN/checkpoints``:

* ``save(step)`` writes ``ckpt-STEP`` with ``tf.train.Checkpoint.write``, reads every
  tensor back (``tf.train.load_checkpoint``: a short or corrupt file fails its size or
  CRC check), and only then names it in the ``checkpoint`` index file and deletes the
  oldest beyond ``keep``; no checkpoint is deleted before a newer one is verified. A
  failed write (disk full) removes its partial files (``ckpt-STEP_temp/``, ...) and
  raises ``OutputWriteError`` naming the path.
* ``restore()`` tries the checkpoints newest first (found by their ``.index`` files, so
  a lost ``checkpoint`` index file loses nothing); an unreadable one is reported (both
  paths and the reason), renamed aside (``ckpt-STEP.unreadable.*``) and the next one
  tried. Checkpoints that exist but none readable: ``ResumeRefused``.
* ``history`` is a JSON string variable inside every checkpoint: the per-epoch metrics
  rows up to that checkpoint, from which ``metrics.csv`` is rewritten on resume.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil

import tensorflow as tf

from mobilenet_tf import fileio
from mobilenet_tf.failures import first_line
from mobilenet_tf.rundir.errors import OutputWriteError, ResumeRefused

PREFIX = "ckpt"
INDEX_FILE = "checkpoint"  # tf.train.latest_checkpoint's index
_INDEX_RE = re.compile(rf"^{PREFIX}-(\d+)\.index$")
REQUIRED_KEY = "global_step/.ATTRIBUTES/VARIABLE_VALUE"


class Unreadable(Exception):
    """A checkpoint failed verification."""


def list_checkpoints(directory: str) -> list[tuple[int, str]]:
    """(step, prefix) of the checkpoints in ``directory``, newest first."""
    found = []
    for name in os.listdir(directory) if os.path.isdir(directory) else ():
        match = _INDEX_RE.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(directory, name[:-6])))
    return sorted(found, reverse=True)


def verify(prefix: str) -> None:
    """Reads every tensor of the checkpoint ``prefix``; Unreadable(reason) if one fails."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = reader.get_variable_to_shape_map()
        if REQUIRED_KEY not in names:
            raise Unreadable(f"it has no {REQUIRED_KEY} (not a training checkpoint)")
        for name in names:
            reader.get_tensor(name)
    except Unreadable:
        raise
    except Exception as err:  # noqa: BLE001 - DataLoss, OutOfRange, IndexError, ...
        raise Unreadable(f"{type(err).__name__}: {first_line(err)}") from err


class CheckpointStore:
    """The checkpoints of one run (see the module docstring). ``read_dir`` is the run's
    checkpoint directory; ``write_dir`` where this process writes (a scratch directory
    on non-chief workers); ``chief``: whether this process maintains the index, renames
    unreadable checkpoints and prunes the run's directory."""

    def __init__(self, checkpoint: tf.train.Checkpoint, read_dir: str, write_dir: str,
                 keep: int, chief: bool, say=print):
        self.checkpoint = checkpoint
        checkpoint.save_counter  # noqa: B018 - created now, so every save holds it
        self.read_dir, self.write_dir = read_dir, write_dir
        self.keep, self.chief, self.say = keep, chief, say
        self.latest_path = None

    # ------------------------------------------------------------------ restore
    def candidates(self) -> list[tuple[int, str]]:
        return list_checkpoints(self.read_dir)

    def clean_partial_writes(self) -> None:
        """Removes what a killed or failed save left: ``ckpt-N_temp*`` directories and
        data files without their ``.index`` (the index is written last)."""
        if not self.chief or not os.path.isdir(self.write_dir):
            return
        for path in glob.glob(os.path.join(self.write_dir, f"{PREFIX}-*_temp*")):
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
        for path in glob.glob(os.path.join(self.write_dir, f"{PREFIX}-*.data-*")):
            prefix = path.split(".data-")[0]
            if not os.path.exists(prefix + ".index"):
                os.remove(path)

    def restore(self) -> str | None:
        """Restores the newest readable checkpoint and returns its prefix (None when there
        is none); see the module docstring."""
        candidates = self.candidates()
        failed = []
        for step, prefix in candidates:
            try:
                verify(prefix)
            except Unreadable as err:
                failed.append((prefix, str(err)))
                continue
            for bad, reason in failed:
                self._set_aside(bad, reason, fallback=prefix)
            self.checkpoint.restore(prefix).assert_existing_objects_matched()
            self.latest_path = prefix
            return prefix
        if failed:
            listing = "\n".join(f"  {p}: {reason}" for p, reason in failed)
            raise ResumeRefused(
                f"No checkpoint in {self.read_dir} is readable:\n{listing}\nNothing was "
                "changed. Restore them from a backup, or start over with a new --workdir.")
        return None

    def _set_aside(self, prefix, reason, fallback):
        moved = f"{prefix}.unreadable"
        if self.chief:
            for path in glob.glob(glob.escape(prefix) + ".*"):
                if ".unreadable" not in path:
                    os.replace(path, path.replace(prefix, moved, 1))
        self.say(f"Checkpoint {prefix} is unreadable ({reason}); "
                 f"{'moved aside to ' + moved + '.*; ' if self.chief else ''}"
                 f"falling back to {fallback}.")

    # --------------------------------------------------------------------- save
    def save(self, step: int) -> str:
        """Writes, verifies and indexes ``ckpt-STEP``; prunes older ones after that."""
        prefix = os.path.join(self.write_dir, f"{PREFIX}-{step}")
        try:
            os.makedirs(self.write_dir, exist_ok=True)
            self.checkpoint.write(prefix)
        except (tf.errors.OpError, OSError) as err:
            self._remove(prefix)
            raise OutputWriteError(f"Could not write checkpoint {prefix}: "
                                   f"{first_line(err)}") from err
        try:
            verify(prefix)
        except Unreadable as err:
            self._remove(prefix)
            raise OutputWriteError(f"Checkpoint {prefix} did not read back ({err}); it was "
                                   "removed and the older checkpoints kept.") from err
        self.latest_path = prefix
        kept = [p for _, p in list_checkpoints(self.write_dir)][:self.keep]
        if self.chief:
            self._write_index(kept)
        for _, old in list_checkpoints(self.write_dir)[self.keep:]:
            self._remove(old)
        return prefix

    def _write_index(self, kept):
        names = [os.path.basename(p) for p in reversed(kept)]
        lines = [f'model_checkpoint_path: "{names[-1]}"']
        lines += [f'all_model_checkpoint_paths: "{n}"' for n in names]
        try:
            fileio.atomic_write_text(os.path.join(self.write_dir, INDEX_FILE),
                                     "\n".join(lines) + "\n")
        except OSError as err:
            raise OutputWriteError(f"Could not write {os.path.join(self.write_dir, INDEX_FILE)}"
                                   f": {err.strerror or err}") from err

    @staticmethod
    def _remove(prefix):
        for path in glob.glob(glob.escape(prefix) + ".*") + glob.glob(
                glob.escape(prefix) + "_temp*"):
            if ".unreadable" in path:
                continue
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.remove(path)
                except FileNotFoundError:
                    pass


class MetricsHistory:
    """The per-epoch metrics rows, kept in the checkpoint as one JSON string variable
    (created outside any strategy scope: a plain host variable, saved by every worker)."""

    def __init__(self):
        with tf.init_scope():
            self.variable = tf.Variable("[]", dtype=tf.string, trainable=False,
                                        name="metrics_history")

    def rows(self) -> list[dict]:
        return json.loads(self.variable.numpy().decode("utf-8"))

    def append(self, row: dict) -> None:
        rows = [r for r in self.rows() if r["epoch"] < row["epoch"]]
        self.variable.assign(json.dumps(rows + [row]))
