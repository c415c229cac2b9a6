"""Multi-worker start-up is bounded and interruptible, and non-chief scratch directories
do not outlive their processes. The waiting runs in subprocesses (cluster_startup imports
no TensorFlow, so they start in a fraction of a second); the two-worker training itself
is tests/test_train_distributed.py."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest

from mobilenet_tf import fileio
from mobilenet_tf.training import config as train_config, distribute
from helpers import REPO, free_port


WAIT_SCRIPT = textwrap.dedent("""
    import json, os, socket, sys, time
    from mobilenet_tf.training import cluster_startup
    real_sleep, said = time.sleep, []
    def sleep(seconds):  # first called inside the wait, after one round of probes
        if not said:
            said.append(print("WAITING", flush=True))
        real_sleep(seconds)
    time.sleep = sleep
    try:
        cluster_startup.wait_for_peers(float(sys.argv[1]))
    except cluster_startup.StartupError as e:
        print("STARTUP_ERROR", e, flush=True)
        sys.exit(2)
    print("READY", flush=True)
    # As TensorFlow's server would: take over this task's port until stdin closes.
    port = int(json.loads(os.environ["TF_CONFIG"])["cluster"]["worker"][
        int(json.loads(os.environ["TF_CONFIG"])["task"]["index"])].rsplit(":", 1)[1])
    with socket.create_server(("127.0.0.1", port)):
        sys.stdin.read()
""")


def _worker(ports, index, timeout):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    env = {**os.environ, "PYTHONPATH": REPO,
           "TF_CONFIG": json.dumps({"cluster": cluster,
                                    "task": {"type": "worker", "index": index}})}
    return subprocess.Popen([sys.executable, "-c", WAIT_SCRIPT, str(timeout)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_missing_peer_is_named_after_the_timeout():
    ports = [free_port(), free_port(), free_port()]
    proc = _worker(ports, 0, timeout=2)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert (f"worker 1 (127.0.0.1:{ports[1]}), worker 2 (127.0.0.1:{ports[2]}) did not "
            "answer within --startup_timeout=2 seconds") in out


def test_peers_that_start_find_each_other():
    ports = [free_port(), free_port()]
    procs = [_worker(ports, i, timeout=60) for i in range(2)]
    for p in procs:  # WAITING (when it had to wait), then READY or STARTUP_ERROR
        line = p.stdout.readline().strip()
        line = p.stdout.readline().strip() if line == "WAITING" else line
        assert line == "READY", (line, p.stdout.readline())
    outs = [p.communicate(timeout=90) for p in procs]  # closes stdin: both stop serving
    assert [p.returncode for p in procs] == [0, 0], outs


def test_sigterm_during_the_wait_exits_at_once():
    proc = _worker([free_port(), free_port()], 0, timeout=600)
    assert proc.stdout.readline().strip() == "WAITING"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)  # far below the 600 s it would wait
    assert proc.returncode == 128 + signal.SIGTERM
    assert "SIGTERM during multi-worker start-up: exiting" in err


def test_startup_timeout_is_validated():
    config = train_config.TrainConfig(startup_timeout=0)
    with pytest.raises(ValueError, match="--startup_timeout=0 is not valid: must be > 0"):
        config.validate()


def test_stale_scratch_directories_of_dead_processes_are_removed(tmp_path):
    host = fileio.host_tag()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f"worker_1.{host}.{sleeper.pid}.abc"
        dead = tmp_path / f"worker_1.{host}.999999999.abc"
        other_host = tmp_path / "worker_1.otherhost.1.abc"
        for d in (live, dead, other_host):
            d.mkdir()
            (d / "ckpt-1.index").write_bytes(b"x")
        assert distribute.clean_stale_scratch(str(tmp_path)) == [str(dead)]
        assert live.exists() and other_host.exists() and not dead.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert distribute.clean_stale_scratch(str(tmp_path)) == [str(live)]


KILLED_WORKER_SCRIPT = textwrap.dedent("""
    import os, sys
    from types import SimpleNamespace
    from mobilenet_tf.training import distribute
    resolver = SimpleNamespace(task_type="worker", task_id=1)
    strategy = SimpleNamespace(cluster_resolver=resolver)
    distribute.is_chief = lambda s: False
    path = distribute.write_dir(sys.argv[1], strategy)
    print(path, flush=True)
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), 9)
""")


def test_non_chief_scratch_is_removed_at_exit_and_after_a_kill(tmp_path):
    """A non-chief worker's scratch directory goes when its process exits; when the
    process is killed (-9), the next start on this host removes it."""
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}

    def worker(mode):
        proc = subprocess.run([sys.executable, "-c", KILLED_WORKER_SCRIPT, str(tmp_path),
                               mode], env=env, capture_output=True, text=True, timeout=300)
        return proc, proc.stdout.strip().splitlines()[-1]

    proc, path = worker("exit")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert os.path.dirname(path) == os.path.join(tempfile.gettempdir(),
                                                 distribute.SCRATCH_PARENT)
    assert not os.path.exists(path)
    proc, killed = worker("kill")
    assert proc.returncode == -9 and os.path.isdir(killed)
    proc, path = worker("exit")
    assert not os.path.exists(killed) and not os.path.exists(path)



def test_train_cli_exits_naming_the_missing_worker(tmp_path):
    """The whole path: --startup_timeout from the command line to the strategy."""
    ports = [free_port(), free_port()]
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3",
           "TF_CONFIG": json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                    "task": {"type": "worker", "index": 0}})}
    proc = subprocess.run(
        [sys.executable, "-m", "mobilenet_tf.train", f"--workdir={tmp_path}/run",
         "--strategy=multi_worker_mirrored", "--startup_timeout=2", "--dataset=synthetic",
         "--alpha=0.25", "--resolution=32", "--batch_size=4"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert (f"worker 1 (127.0.0.1:{ports[1]}) did not answer within --startup_timeout=2 "
            "seconds") in proc.stderr
