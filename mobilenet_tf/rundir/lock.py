"""One trainer per run directory: ``RUN/.lock``.

The live check is ``fcntl.flock`` on the run directory itself (the kernel drops it when
the holder dies, however it dies; deleting ``RUN/.lock`` cannot release it, as it would a
lock on that file: a second trainer would lock a new file). Where a file system cannot
lock a directory, the lock file is locked instead. The file's content names the holder
(host, pid, start time) for the message a second trainer prints. A lock file that names a
holder whose lock is gone is stale (the holder was killed): it is taken over, with a
message saying so.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket

from mobilenet_tf import fileio
from mobilenet_tf.rundir.record import RunFiles
from mobilenet_tf.rundir.errors import RunLocked


def _holder_text(holder: dict) -> str:
    return (f"pid {holder.get('pid')} on host {holder.get('host')}, started "
            f"{holder.get('started')}")


class RunLock:
    """``with RunLock(workdir, say):`` holds the run directory's lock (RunLocked when
    another process holds it)."""

    def __init__(self, workdir: str, say=print):
        self.path = RunFiles(workdir).lock
        self.say = say
        self._fd = self._locked = None

    def acquire(self):
        workdir = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(workdir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        locked = fd
        try:
            locked = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.flock(locked, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno not in (errno.EBADF, errno.ENOLCK, errno.EINVAL, errno.ENOTSUP):
                    raise
                os.close(locked)  # a file system that cannot lock a directory
                locked = fd
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            for opened in {fd, locked}:
                os.close(opened)
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = self._read(self.path)
            raise RunLocked(
                f"{os.path.dirname(os.path.abspath(self.path))} is in use by another trainer "
                f"({_holder_text(holder) if holder else 'holder unknown'}; lock file "
                f"{self.path}). Wait for it to finish or stop it; two trainers on one run "
                "directory would overwrite each other's checkpoints and metrics.") from None
        previous = self._read(self.path)
        if previous:
            pid, here = previous.get("pid"), previous.get("host") == socket.gethostname()
            gone = here and not (isinstance(pid, int) and pid > 0 and fileio.pid_alive(pid))
            state = ("no longer running" if gone
                     else "its lock was released without cleanup")
            self.say(f"Taking over the stale lock {self.path} of {_holder_text(previous)} "
                     f"({state}).")
        holder = {"host": socket.gethostname(), "pid": os.getpid(),
                  "started": datetime.datetime.now().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd, self._locked = fd, locked
        return self

    def release(self):
        """Empties the file (no holder) and drops the flock. The file stays: deleting it
        would let a third process lock a new file while a second one waits on the old."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        fcntl.flock(self._locked, fcntl.LOCK_UN)
        for opened in {self._fd, self._locked}:
            os.close(opened)
        self._fd = self._locked = None

    @staticmethod
    def _read(path) -> dict:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read().strip()
            return json.loads(text) if text else {}
        except (OSError, ValueError):
            return {"pid": "?", "host": "?", "started": "? (unreadable lock file)"}

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
