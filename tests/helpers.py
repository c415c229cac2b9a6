"""Helpers shared by the tests: the repository's paths and the coloured-shapes images.

The fixtures that use these live in conftest.py; tests import the helpers from here
(``tests/`` is on the path through setup.cfg's ``pythonpath``). The on-disk datasets of
the data tests are in data_helpers.py and the trainer's toy inputs in train_helpers.py.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess

import pytest

import numpy as np
from PIL import Image

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)

# In label order: the order a folder dataset lists its classes (sorted), as training does.
CLASSES = ("blue_bar", "green_disc", "red_square")
COLOURS = {"red_square": (220, 30, 30), "green_disc": (30, 200, 40), "blue_bar": (30, 40, 220)}
IMAGE_SIZE = 64

# The training options of conftest's ``run_dir``, the run the evaluate, export and predict
# tests read. A learning rate of 1e-2 makes it accurate and confident over seeds and both
# batch-norm paths; 3e-3 came too close to the tests' 80% floor and to the MediaPipe
# comparison's tolerance.
RUN_CONFIG = dict(alpha=0.25, resolution=IMAGE_SIZE, batch_size=30, epochs=12, dropout=0.0,
                  optimizer="adamw", learning_rate=1e-2, lr_schedule="cosine",
                  bn_momentum=0.9, label_smoothing=0.0, weight_decay=0.0,
                  eval_split="validation", eval_every_epochs=4, log_images=False, verbose=0)


def draw_shape(cls: str, rng: np.random.Generator, size=(80, 96)) -> np.ndarray:
    """A uint8 RGB image: noisy grey background with one coloured shape of class ``cls``."""
    h, w = size
    img = rng.integers(60, 190, size=(h, w, 3)).astype(np.float32)
    img = img * 0.3 + rng.integers(60, 190, size=(1, 1, 3)) * 0.7
    cy, cx = h // 2 + rng.integers(-6, 7), w // 2 + rng.integers(-6, 7)
    r = int(rng.integers(min(h, w) // 5, min(h, w) // 3))
    yy, xx = np.mgrid[:h, :w]
    if cls == "red_square":
        mask = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
    elif cls == "green_disc":
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    else:
        mask = (abs(yy - cy) <= r // 3) & (abs(xx - cx) <= r * 1.4)
    colour = np.array(COLOURS[cls]) + rng.integers(-20, 21, size=3)
    img[mask] = colour
    return np.clip(img, 0, 255).astype(np.uint8)


def write_image_folder(root: str, per_class: int, seed: int, fmt: str = "JPEG") -> None:
    """``root/<class>/<class>_<i>.jpg`` (or .png): ``per_class`` shapes of each class."""
    rng = np.random.default_rng(seed)
    for cls in CLASSES:
        os.makedirs(os.path.join(root, cls), exist_ok=True)
        for i in range(per_class):
            ext = "jpg" if fmt == "JPEG" else "png"
            Image.fromarray(draw_shape(cls, rng)).save(
                os.path.join(root, cls, f"{cls}_{i:03d}.{ext}"), format=fmt)


def jpeg_bytes(image: np.ndarray) -> bytes:
    """``image`` (uint8 HxWx3) encoded as a JPEG file's bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG")
    return buf.getvalue()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for multi-worker clusters)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def randomize_weights(model, seed: int) -> None:
    """Random values in every weight of a Keras ``model``, the batch-norm moving statistics
    included (variances stay positive), so that two models agree only if their maths does.
    """
    rng = np.random.default_rng(seed)
    model.set_weights([(rng.uniform(0.5, 1.5, w.shape) if "variance" in v.path else
                        rng.normal(0.0, 0.1, w.shape)).astype("float32")
                       for v, w in zip(model.weights, model.get_weights())])


def tiny_classifier_tflite(folder) -> bytes:
    """A real (tiny, untrained, seeded) 3-class image classifier on 16x16 inputs, converted
    by the TFLite converter through a SavedModel written under ``folder``."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    path = os.path.join(str(folder), "sm")
    model.export(path, format="tf_saved_model", verbose=False,
                 input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32)])
    return tf.lite.TFLiteConverter.from_saved_model(path).convert()


# ----------------------------------------------------------------------------- refusals
def tree_state(root) -> dict:
    """{relative path: (mode, bytes)} of everything under ``root``: what a refused
    command must leave unchanged."""
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            content = None
            if os.path.isfile(path) and os.stat(path).st_mode & 0o444:
                with open(path, "rb") as f:
                    content = f.read()
            state[os.path.relpath(path, root)] = (os.stat(path).st_mode, content)
    return state


# ----------------------------------------------------------------------------- permissions
# Root ignores file modes. A command started through ``setpriv`` without the capabilities
# that bypass them (``unprivileged``) sees a chmod 000 file as a user does.
_NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def unprivileged(cmd: list[str]) -> list[str]:
    """``cmd`` prefixed so that file permissions apply to it (as root: without the
    capabilities that bypass them; as another user: unchanged)."""
    return [*_NO_DAC, *cmd] if os.geteuid() == 0 else list(cmd)


def permissions_enforced(tmp_dir: str) -> bool:
    """Whether ``unprivileged`` commands are refused a chmod 000 file (False where setpriv
    is missing or not permitted, e.g. in a container without CAP_SETPCAP: skip then)."""
    probe = os.path.join(tmp_dir, ".permission_probe")
    with open(probe, "w") as f:
        f.write("x")
    os.chmod(probe, 0)
    try:
        done = subprocess.run(unprivileged(["cat", probe]), capture_output=True)
    except OSError:
        return False
    finally:
        os.chmod(probe, 0o644)
        os.remove(probe)
    return done.returncode != 0


# ----------------------------------------------------------------------------- full disks
@contextlib.contextmanager
def tmpfs(path, size):
    """A real tmpfs of ``size`` (e.g. "9m") mounted at ``path`` for the block; the test is
    skipped where mounting is not permitted."""
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                      capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)]).returncode:
            subprocess.run(["umount", "-l", str(path)])
