"""Bounded, interruptible multi-worker start-up.

``MultiWorkerMirroredStrategy()`` blocks in C++ until every task of ``TF_CONFIG`` has
joined, forever by default, and a Python SIGTERM handler cannot run meanwhile. So
``start_multi_worker(timeout)`` first waits in Python: it listens on this task's own port
(so that peers probing it see it: the kernel completes their TCP handshakes, nothing is
accepted) and TCP-connects to every peer until all answer. Peers missing after
``timeout`` seconds: :class:`StartupError` naming them. SIGTERM during that wait exits at
once (status 143). Then the listener is closed (TensorFlow's server takes the port) and
the strategy is created with SIGTERM at its default action (the process ends at once) and
TensorFlow's own start-up barrier bounded by the same timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time

COLLECTIVE_ROLES = ("chief", "worker")  # the tasks that take part in the collectives


class StartupError(ValueError):
    """Some tasks of the cluster did not start in time."""


def cluster_tasks(tf_config: dict) -> tuple[list[tuple[str, int, str]], tuple[str, int]]:
    """([(role, index, "host:port")] of the collective tasks, (this task's role, index))."""
    cluster = tf_config.get("cluster") or {}
    task = tf_config.get("task") or {}
    tasks = [(role, i, addr) for role in COLLECTIVE_ROLES
             for i, addr in enumerate(cluster.get(role) or [])]
    return tasks, (str(task.get("type", "")), int(task.get("index", 0)))


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _answers(address: str, timeout: float) -> bool:
    try:
        with socket.create_connection(_split(address), timeout=max(0.05, timeout)):
            return True
    except OSError:
        return False


def _listen(address: str):
    """A listening socket on this task's port (None when it cannot be had: TensorFlow's
    own server will then report the problem)."""
    _, port = _split(address)
    try:
        if socket.has_dualstack_ipv6():
            return socket.create_server(("", port), family=socket.AF_INET6,
                                        dualstack_ipv6=True, reuse_port=False, backlog=64)
        return socket.create_server(("", port), backlog=64)
    except OSError:
        return None


@contextlib.contextmanager
def _sigterm(handler):
    """``handler`` for SIGTERM in the block (main thread only; elsewhere nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum, frame):
    print("SIGTERM during multi-worker start-up: exiting", file=sys.stderr, flush=True)
    raise SystemExit(128 + signal.SIGTERM)


def wait_for_peers(timeout: float, tf_config: dict | None = None, poll: float = 0.5) -> None:
    """Returns once every other collective task's address accepts a TCP connection;
    StartupError naming the missing tasks after ``timeout`` seconds."""
    if tf_config is None:
        tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    tasks, me = cluster_tasks(tf_config)
    own = [addr for role, i, addr in tasks if (role, i) == me]
    pending = [(role, i, addr) for role, i, addr in tasks if (role, i) != me]
    deadline = time.monotonic() + timeout
    listener = _listen(own[0]) if own else None
    try:
        with _sigterm(_exit_on_sigterm):
            while pending:
                pending = [t for t in pending if not _answers(
                    t[2], min(1.0, deadline - time.monotonic()))]
                if not pending:
                    break
                if time.monotonic() >= deadline:
                    missing = ", ".join(f"{role} {i} ({addr})" for role, i, addr in pending)
                    raise StartupError(
                        f"multi-worker start-up: {missing} did not answer within "
                        f"--startup_timeout={timeout:g} seconds; start every task listed in "
                        "TF_CONFIG (same cluster, each its own task) or fix their addresses")
                time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
    finally:
        if listener is not None:
            listener.close()


def start_multi_worker(timeout: float):
    """``tf.distribute.MultiWorkerMirroredStrategy()`` with a bounded, interruptible
    start-up (see the module docstring)."""
    import tensorflow as tf
    from tensorflow.python.distribute import collective_all_reduce_strategy as cars

    wait_for_peers(timeout)
    extended = cars.CollectiveAllReduceExtended
    previous = extended._check_health_initial_timeout
    extended._check_health_initial_timeout = max(1, int(timeout))
    try:
        with _sigterm(signal.SIG_DFL):
            return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as err:
        if "Timeout waiting for the cluster" not in str(err):
            raise
        raise StartupError(f"multi-worker start-up: the cluster did not form within "
                           f"--startup_timeout={timeout:g} seconds although every task "
                           f"answered (did one exit meanwhile?): {err}") from None
    finally:
        extended._check_health_initial_timeout = previous
