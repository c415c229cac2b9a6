"""The one place where a command's failure becomes one line and an exit status
(mobilenet_tf.failures, called by cli.run), with the traceback only under --debug."""

import errno
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

from mobilenet_tf import failures
from mobilenet_tf.rundir import errors

WORKER_LOST = ("Graph execution error:\n\nDetected at node while/CollectiveReduceV2 defined at "
               "(most recent call last):\n  File \"train.py\", line 64, in <module>\n\n"
               "Collective ops is aborted by: recvmsg:Connection reset by peer\nAdditional "
               "GRPC error information from remote target /job:worker/replica:0/task:1 ...")


@pytest.mark.parametrize("err, status, words", [
    (OSError(errno.ENOSPC, "No space left on device", "/run/x"), 7, ["/run/x", "free"]),
    (PermissionError(errno.EACCES, "Permission denied", "/ro/run"), 7, ["/ro/run", "permis"]),
    (OSError(errno.EROFS, "Read-only file system", "/ro"), 7, ["/ro"]),
    (FileExistsError(errno.EEXIST, "File exists", "/run"), 1, ["/run"]),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/f/run"), 1, ["/f/run"]),
    (tf.errors.PermissionDeniedError(None, None, "data/b; Permission denied"), 7, ["data/b"]),
    (tf.errors.ResourceExhaustedError(None, None, "/e/x.pb; No space left on device"), 7,
     ["/e/x.pb", "free"]),
    (tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor"), 1,
     ["--batch_size"]),
    (tf.errors.UnavailableError(None, None, WORKER_LOST), 8, ["worker 1", "again"]),
    (tf.errors.NotFoundError(None, None, "x.h5; No such file"), 1, ["x.h5"]),
    (KeyboardInterrupt(), 130, ["Ctrl-C"]),
    (MemoryError(), 1, ["memory"]),
    (errors.ResumeRefused("changed --alpha"), 6, ["ResumeRefused", "--alpha"]),
    (errors.Interrupted("Ctrl-C: saved"), 130, ["Interrupted"]),
    (ValueError("--alpha=0 is not valid: must be > 0"), 1, ["--alpha=0"]),
    (ZeroDivisionError("division by zero"), 70, ["internal error", "--debug"]),
])
def test_every_failure_has_one_line_and_its_status(err, status, words):
    message, code = failures.describe(err)
    assert code == status
    assert "\n" not in message and "{{function_node" not in message
    for word in words:
        assert word in message


def test_the_cause_of_a_graph_execution_error_is_its_line():
    message, _ = failures.describe(tf.errors.UnavailableError(None, None, WORKER_LOST))
    assert "Connection reset by peer" in message and "Graph execution" not in message


def test_an_unavailable_error_that_names_no_worker_is_not_called_a_lost_worker():
    message, code = failures.describe(tf.errors.UnavailableError(None, None, "gs:// down"))
    assert code == 70 and "worker" not in message


_PROGRAM = textwrap.dedent("""
    import sys
    from mobilenet_tf import cli

    def main(argv):
        raise {error}

    cli.run(main, "doc")
""")


@pytest.mark.parametrize("error, status", [
    ("PermissionError(13, 'Permission denied', '/ro/run')", 7),
    ("KeyboardInterrupt()", 130),
    ("RuntimeError('a bug')", 70),
])
def test_cli_run_prints_one_line_and_the_traceback_only_with_debug(error, status):
    program = _PROGRAM.format(error=error)
    quiet = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert quiet.returncode == status, quiet.stderr
    assert quiet.stderr.startswith("error: ") and quiet.stderr.count("\n") == 1, quiet.stderr
    assert "Traceback" not in quiet.stderr
    debug = subprocess.run([sys.executable, "-c", program, "--debug"], capture_output=True,
                           text=True)
    assert debug.returncode == status
    assert "Traceback" in debug.stderr and debug.stderr.splitlines()[-1].startswith("error: ")
