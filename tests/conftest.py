"""Shared fixtures: a small, really trained run directory and the images it learned.
Each is made once per test session, also under pytest-xdist (``_made_once``).

The run directory is written by the trainer itself (``trainer.train_and_evaluate``): a
tiny MobileNet trained to tell apart coloured shapes drawn on noisy backgrounds, with the
layout and record of mobilenet_tf/rundir/record.py. The helpers these fixtures share with
the tests are in helpers.py.
"""

from __future__ import annotations

import fcntl
import glob
import os
import pickle
import shutil
import tempfile

import pytest

from helpers import CLASSES, RUN_CONFIG, write_image_folder

# Quiet TensorFlow's C++ logging and keep tests on the CPU.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def _share_the_cores_between_workers() -> None:
    """Under pytest-xdist each worker, and each command it starts, gets its share of the
    cores for TensorFlow's thread pools instead of one thread per core each: with
    ``-n 2`` on 2 cores that is one thread each (measured about 8% faster, noisily:
    docs/benchmarks.md, "The test suite: one TensorFlow thread per worker"). Read by
    TensorFlow when its runtime starts, so it must be set before the first op."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        share = str(max(1, (os.cpu_count() or 1) // workers))
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", share)
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", share)


_share_the_cores_between_workers()


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """Every temporary file of the session, and of the commands the tests start, goes to a
    folder under pytest's own base folder, which pytest prunes: TensorFlow's AutoGraph and
    tensorflow_datasets write to the system's temporary folder and clean up only at a
    normal exit, which the processes the tests kill (and xdist's workers) never get.
    Set before collection, so the tests' module-level environments inherit it."""
    # pytest's own factory (xdist uses it the same way), so each worker gets its own;
    # absent under -p no:tmpdir, where the system's folder stays.
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None:
        return
    folder = str(factory.mktemp("tmp"))
    os.environ["TMPDIR"] = tempfile.tempdir = folder


def _made_once(tmp_path_factory, name: str, make):
    """``make(folder)``'s result, made once for the whole session: under pytest-xdist the
    first worker to ask makes it in the folder the workers share (the pattern of xdist's
    documentation, with the standard library's ``fcntl.flock`` as the lock) while the
    others wait, then reuse it. The fixtures below are only read by the tests."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp(name)
        return make(str(folder))
    shared = tmp_path_factory.getbasetemp().parent  # this session's, one per run
    folder, result = shared / name, shared / f"{name}.result.pickle"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not result.exists():  # not made, or a worker died while making it
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            with open(f"{result}.tmp", "wb") as f:
                pickle.dump(make(str(folder)), f)
            os.replace(f"{result}.tmp", result)
    with open(result, "rb") as f:
        return pickle.load(f)


def _write_shapes(root: str) -> str:
    write_image_folder(os.path.join(root, "train"), per_class=60, seed=1)
    write_image_folder(os.path.join(root, "validation"), per_class=8, seed=2)
    return root


@pytest.fixture(scope="session")
def image_root(tmp_path_factory) -> str:
    """folder dataset: ROOT/train/<class>/*.jpg and ROOT/validation/<class>/*.jpg."""
    return _made_once(tmp_path_factory, "shapes", _write_shapes)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, image_root) -> str:
    """A finished run directory written by ``trainer.train_and_evaluate`` on the shapes
    folder with ``RUN_CONFIG`` (the slowest fixture: it trains for real)."""
    from mobilenet_tf.data.config import DataConfig
    from mobilenet_tf.training.config import TrainConfig
    from mobilenet_tf.training.trainer import train_and_evaluate

    def train(run: str) -> str:
        config = TrainConfig(data=DataConfig(dataset=f"folder:{image_root}", min_area=0.5),
                             **RUN_CONFIG)
        train_and_evaluate(config, run)
        return run

    return _made_once(tmp_path_factory, "run", train)


@pytest.fixture(scope="session")
def real_jpegs(tmp_path_factory, image_root) -> list[str]:
    """A few real photos (Imagenette) when the tarball is there, else the test's JPEGs."""
    from mobilenet_tf.benchmarks import imagenette

    if not os.path.exists(imagenette.DEFAULT_TAR):
        folder = os.path.join(image_root, "validation")
        return sorted(os.path.join(folder, c, f) for c in CLASSES
                      for f in os.listdir(os.path.join(folder, c)))[:12]
    root = imagenette.extract_subset(str(tmp_path_factory.mktemp("imagenette")), 2)
    return sorted(glob.glob(os.path.join(root, "train", "*", "*.JPEG")))[:12]


@pytest.fixture(scope="session")
def exported(run_dir, tmp_path_factory) -> tuple[str, dict]:
    """The run exported to every format (export dir, report)."""
    from mobilenet_tf.serving import exporter
    from mobilenet_tf.serving.config import ExportConfig

    def export(export_dir: str) -> tuple[str, dict]:
        return export_dir, exporter.export(ExportConfig(
            workdir=run_dir, export_dir=export_dir, representative_images=30,
            verification_images=24, latency_runs=3))

    return _made_once(tmp_path_factory, "export", export)
