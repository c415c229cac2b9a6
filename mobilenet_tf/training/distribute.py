"""Choosing the tf.distribute strategy, who writes files in a multi-worker run, and the
SIGTERM that preempts a worker or a Ctrl-C (``StopFlag``).

Multi-worker start-up is bounded (``mobilenet_tf.training.cluster_startup``): the peers in
``TF_CONFIG`` must answer within ``startup_timeout`` seconds, else the worker exits naming
the missing tasks; SIGTERM during the wait exits at once. Non-chief workers' scratch
directories live under one parent with the pid in their names, so the next start removes
those of killed processes.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import tempfile

import tensorflow as tf

from mobilenet_tf import fileio
from mobilenet_tf.training import cluster_startup
from mobilenet_tf.training.config import DEFAULT_STARTUP_TIMEOUT, STRATEGIES  # noqa: E402

SCRATCH_PARENT = "mobilenet_tf_scratch"  # under the system temp directory


def make_strategy(name: str = "auto", tpu_address: str | None = None,
                  startup_timeout: float = DEFAULT_STARTUP_TIMEOUT) -> tf.distribute.Strategy:
    """The strategy ``name`` names.

    auto: ``multi_worker_mirrored`` when ``TF_CONFIG`` describes a cluster with more than
    one worker, ``mirrored`` when there are several GPUs, else ``default`` (TensorFlow's
    default strategy: the GPU if there is one, else the CPU; measured a few percent
    faster per CPU-second than ``one_device`` on CPU). ``tpu``: ``tpu_address`` (or the TPU VM's local TPU when empty).
    ``multi_worker_mirrored`` waits at most ``startup_timeout`` seconds for the other tasks
    (``cluster_startup.StartupError`` naming the missing ones).
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy={name!r} is not valid; allowed values: {list(STRATEGIES)}")
    if name == "auto":
        if _cluster_size() > 1:
            name = "multi_worker_mirrored"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker_mirrored":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy='multi_worker_mirrored' needs the TF_CONFIG environment "
                             "variable (cluster and task of this worker); see "
                             "docs/distributed.md")
        return cluster_startup.start_multi_worker(startup_timeout)
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _cluster_size() -> int:
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON: {err}") from err
    return sum(len(cluster.get(role, [])) for role in ("chief", "worker"))


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run directory (always, except on non-chief workers
    of a multi-worker cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def write_dir(workdir: str, strategy: tf.distribute.Strategy) -> str:
    """Where this process writes checkpoints: ``workdir`` on the chief, a scratch
    directory on other workers (every worker must take part in saving, per the TF
    multi-worker guide, but only the chief's files are kept). The scratch directory is
    removed when the process exits; those of killed processes are removed here."""
    if is_chief(strategy):
        return workdir
    resolver = strategy.cluster_resolver
    parent = os.path.join(tempfile.gettempdir(), SCRATCH_PARENT)
    os.makedirs(parent, exist_ok=True)
    clean_stale_scratch(parent)
    path = tempfile.mkdtemp(dir=parent, prefix=f"{resolver.task_type}_{resolver.task_id}."
                                               f"{fileio.host_tag()}.{os.getpid()}.")
    atexit.register(shutil.rmtree, path, True)
    return path


_SCRATCH = re.compile(r"^\w+_\d+\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[^.]+$")


def clean_stale_scratch(parent: str) -> list[str]:
    """Removes the scratch directories in ``parent`` of dead processes of this host
    (a reused pid only delays the cleanup); returns them."""
    removed = []
    for entry in sorted(os.listdir(parent)):
        m = _SCRATCH.match(entry)
        if m and m["host"] == fileio.host_tag() and not fileio.pid_alive(int(m["pid"])):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
            removed.append(os.path.join(parent, entry))
    return removed


class StopFlag:
    """Turns SIGTERM (how a preempted machine is told to stop) and a first Ctrl-C
    (SIGINT) into a flag the training loop checks between calls, so that it saves a
    checkpoint and stops (main thread only). ``signal`` is the name of the one that came.
    A second Ctrl-C ends the process at once: after the first, SIGINT is back at its
    default action, which needs no Python code to run (a handler would wait for the
    running TensorFlow call to return)."""

    def __init__(self):
        self.signal = None
        self.previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                self.previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread
                pass

    @property
    def flag(self) -> bool:
        return self.signal is not None

    def _handle(self, signum, frame):
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            # os.write: a print here could re-enter a print the loop was in.
            os.write(2, b"\nCtrl-C: stopping after the current steps with a checkpoint; "
                        b"press Ctrl-C again to stop at once without one.\n")
        self.signal = self.signal or signal.Signals(signum).name

    def restore(self):
        for signum, previous in self.previous.items():
            signal.signal(signum, previous)
