"""Atomic file writes: a reader (or a crash, or a full disk) sees the old file or the new
one, never half of one. Used for every file a run or an export writes.

Also the naming of temporary directories that a killed process may leave behind: they
carry ``host_tag()`` and the pid, and ``pid_alive`` tells whether their owner is gone."""

from __future__ import annotations

import os
import re
import socket
import tempfile


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()


def atomic_write_bytes(path: str, payload: bytes) -> None:
    """Writes ``payload`` to ``path`` so that ``path`` is either the old or the new file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=os.path.dirname(os.path.abspath(path)))
    try:
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes 0600 files
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def host_tag() -> str:
    """This host's name as it appears in temporary directory names ([A-Za-z0-9-])."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (a reused pid reads as alive, which
    only delays the removal of what a dead process left)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
