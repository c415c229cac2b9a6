"""Atomic file writes: a reader (or a crash, or a full disk) sees the old file or the new
one, never half of one. Used for every file a run or an export writes."""

from __future__ import annotations

import os
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
