"""Every command's failures as one line and a documented exit status (the table in
docs/training.md, "Exit status"); the Python traceback only with ``--debug``.

``describe(err)`` is the one mapping from an exception to (message, status). It knows
TensorFlow's error classes by name, so this module (like ``--help``) imports no
TensorFlow. ``cli.run`` calls it for whatever a command's ``main`` raises.
"""

from __future__ import annotations

import errno
import re

EXIT_USAGE = 1          # a bad flag, argument, data or model file (the message names it)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
EXIT_WRITE = 7          # a file could not be written or read: space, quota, permissions
EXIT_WORKER_LOST = 8    # a worker of a multi-worker run stopped answering
EXIT_INTERNAL = 70      # a bug (EX_SOFTWARE): the message asks for --debug and a report

_SPACE = (errno.ENOSPC, errno.EDQUOT)
_ACCESS = (errno.EACCES, errno.EPERM, errno.EROFS)
_TF_ERRORS = "tensorflow.python.framework.errors_impl"
_NOT_THE_CAUSE = ("Graph execution error:", "Detected at node", "File ",
                  "<stack traces unavailable>")
_TASK = re.compile(r"/job:(\w+)/replica:\d+/task:(\d+)")
_FREE_SPACE = "free some space (or raise the quota) and run the same command again."
_FIX_PERMISSIONS = ("this user may not read or write it; fix its permissions or choose "
                    "another path.")


def message(err: BaseException) -> str:
    """The text of an exception (a TensorFlow error's ``message``, else ``str``)."""
    return str(getattr(err, "message", None) or err)


def first_line(err: BaseException) -> str:
    """The first line of an error's message that says what happened: without TensorFlow's
    ``{{function_node ...}}`` / ``{{node ...}}`` tags and ``[Op:Name]`` suffix, nor the
    ``Graph execution error:`` heading and the stack of the node that failed, which come
    before the cause; the type's name when the message is empty."""
    text = re.sub(r"\{\{.*?\}\}|\[Op:[^\]]*\]?", "", message(err))
    for line in (line.strip() for line in text.splitlines()):
        if line and not line.startswith(_NOT_THE_CAUSE):
            return line
    return type(err).__name__


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` (an OSError or a TensorFlow error) says the disk or quota is full."""
    if isinstance(err, OSError) and err.errno in _SPACE:
        return True
    text = str(err)
    return "No space left on device" in text or "Disk quota exceeded" in text


def _tf_error(err: BaseException) -> str | None:
    """The class name of a TensorFlow ``OpError`` (``PermissionDeniedError``, ...)."""
    for cls in type(err).__mro__:
        if cls.__module__ == _TF_ERRORS:
            return type(err).__name__
    return None


def _os_error(err: OSError) -> tuple[str, int]:
    path = " -> ".join(str(p) for p in (err.filename, err.filename2) if p)
    reason = err.strerror or str(err)
    where = f"{path}: " if path else ""
    if err.errno in _SPACE:
        return f"{where}{reason}: {_FREE_SPACE}", EXIT_WRITE
    if err.errno in _ACCESS:
        return f"{where}{reason}: {_FIX_PERMISSIONS}", EXIT_WRITE
    if isinstance(err, (FileNotFoundError, NotADirectoryError, IsADirectoryError,
                        FileExistsError)) or err.errno == errno.ELOOP:
        return f"{where}{reason}.", EXIT_USAGE
    return f"{where}{reason}.", EXIT_WRITE


def _lost_worker(err: BaseException) -> str | None:
    """Which task of the cluster an error names (``worker 1``), or ``a worker`` for a
    collective that was aborted; None when it names none."""
    text = message(err)
    task = _TASK.search(text)
    if task:
        return f"{task[1]} {task[2]}"
    return "a worker" if "collective" in text.lower() else None


def _tf_op_error(name: str, err: BaseException) -> tuple[str, int] | None:
    from mobilenet_tf.data.interface import bad_images_failure  # no TensorFlow there

    bad_images = bad_images_failure(message(err))
    if bad_images:  # --bad_images=error, raised inside the input pipeline's graph
        return bad_images, EXIT_USAGE
    text = first_line(err)
    if is_disk_full(err):
        return f"{text}: {_FREE_SPACE}", EXIT_WRITE
    if name == "PermissionDeniedError":
        return f"{text}: {_FIX_PERMISSIONS}", EXIT_WRITE
    worker = _lost_worker(err) if name in ("UnavailableError", "DeadlineExceededError",
                                           "AbortedError", "CancelledError") else None
    if worker:
        return (f"{worker} of the cluster stopped answering ({text}); start every worker "
                "again with the same command to resume from the last checkpoint.",
                EXIT_WORKER_LOST)
    if name == "ResourceExhaustedError":
        return (f"out of memory ({text}); lower --batch_size or --resolution.",
                EXIT_USAGE)
    if name in ("NotFoundError", "DataLossError", "InvalidArgumentError"):
        return f"{text}.", EXIT_USAGE
    return None


def describe(err: BaseException) -> tuple[str, int]:
    """(one-line message, exit status) for an exception that ended a command."""
    from mobilenet_tf.rundir.errors import RunError  # no TensorFlow there

    if isinstance(err, KeyboardInterrupt):
        return "interrupted (Ctrl-C).", EXIT_INTERRUPTED
    if isinstance(err, RunError):
        return f"{type(err).__name__}: {err}", err.exit_code
    if isinstance(err, MemoryError):
        return ("out of memory; lower --batch_size or --resolution (or free memory).",
                EXIT_USAGE)
    if isinstance(err, OSError):
        return _os_error(err)
    if isinstance(err, ValueError):  # the library's way to name a bad flag, file or data
        return str(err) or type(err).__name__, EXIT_USAGE
    name = _tf_error(err)
    known = _tf_op_error(name, err) if name else None
    if known:
        return known
    return (f"internal error: {type(err).__name__}: {first_line(err)} (a bug: run the "
            "same command with --debug for the traceback and report it).", EXIT_INTERNAL)
