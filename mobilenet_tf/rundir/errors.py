"""Why a training run stopped, each with the exit status of ``python -m mobilenet_tf.train``
(docs/training.md, "Exit status"). No TensorFlow here."""

from __future__ import annotations


class RunError(RuntimeError):
    """A training run stopped for a reason its message states; ``exit_code`` is the
    command line's exit status."""

    exit_code = 2


class TrainingDivergedError(RunError):
    """The loss became NaN or Inf; the last good checkpoint is left in place."""

    exit_code = 3


class Preempted(RunError):
    """SIGTERM arrived; a checkpoint was written and the same command resumes."""

    exit_code = 4


class Interrupted(Preempted):
    """Ctrl-C (SIGINT) arrived; a checkpoint was written and the same command resumes.
    128 + SIGINT, the status a shell gives a command stopped by Ctrl-C."""

    exit_code = 130


class RunLocked(RunError):
    """Another trainer holds the run directory's lock."""

    exit_code = 5


class ResumeRefused(RunError):
    """The run directory holds a run this command may not resume (another configuration,
    history without a readable checkpoint); nothing was changed."""

    exit_code = 6


class OutputWriteError(RunError):
    """A file of the run could not be written (disk full, quota, permissions); the run
    stopped cleanly and resumes once the cause is fixed."""

    exit_code = 7


class writing:  # noqa: N801 - used as ``with writing(path):``
    """Turns an OSError while writing ``path`` into an OutputWriteError naming it."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if isinstance(err, OSError):
            reason = err.strerror or str(err)
            raise OutputWriteError(f"Could not write {self.path}: {reason}; fix that (free "
                                   "space, permissions) and run the same command to resume "
                                   "from the last checkpoint.") from err
        return False
