"""An export directory that appears whole in one rename, or not at all.

``staged(export_dir)`` yields a temporary sibling directory ``.NAME.export-tmp.HOST.PID.R``
in which the exporter writes everything (SavedModel, every .tflite, labels, report); on
success it is swapped in for ``export_dir`` with one ``renameat2(RENAME_EXCHANGE)`` (Linux;
elsewhere: rename the old export aside, rename the new one in), and the old export is
removed. A crash at any moment leaves ``export_dir`` holding the complete old or the
complete new export, plus hidden siblings that the next export removes.

Leftovers are removed only when they belong to a dead process of this host: the host and
pid are in their names, so a concurrently running export's directory is never touched (a
reused pid only delays a cleanup). When the fallback's two renames were interrupted
between them, ``export_dir`` is missing and its ``.NAME.export-old.*`` holds the complete old
export: the next export puts it back first.

Exporting replaces the whole directory, so ``check_replaceable`` refuses a directory that
holds anything other than a previous export.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import shutil
import tempfile

from mobilenet_tf import fileio

REPORT_JSON = "export_report.json"
# What an export directory holds (report["files"] lists them exactly; older reports did
# not, so these names, and the hidden temporaries of older versions, are recognized too).
_KNOWN = re.compile(r"^(saved_model|labels\.txt|model_\w+\.tflite|export_report\.(json|md))$")
_OLD_TEMPS = re.compile(r"^\.(tflite_source\.|saved_model\.|labels\.|model_\w+\.tflite\.|"
                        r"labels\.txt\.|export_report\.)")
_SIBLING = re.compile(r"^\.(?P<name>.+)\.export-(?P<kind>tmp|old)\.(?P<host>[A-Za-z0-9-]+)"
                      r"\.(?P<pid>\d+)\.[^.]+$")


def _sibling(final: str, kind: str) -> str:
    parent, name = os.path.split(final)
    path = tempfile.mkdtemp(dir=parent, prefix=f".{name}.export-{kind}."
                                               f"{fileio.host_tag()}.{os.getpid()}.")
    os.chmod(path, 0o777 & ~fileio.UMASK)  # mkdtemp makes 0700 directories
    return path


def leftovers(final: str) -> list[tuple[str, str]]:
    """(kind, path) of the hidden siblings of ``final`` left by dead exports on this host."""
    parent, name = os.path.split(os.path.abspath(final))
    found = []
    for entry in sorted(os.listdir(parent)) if os.path.isdir(parent) else []:
        m = _SIBLING.match(entry)
        if (m and m["name"] == name and m["host"] == fileio.host_tag()
                and not fileio.pid_alive(int(m["pid"]))):
            found.append((m["kind"], os.path.join(parent, entry)))
    return found


def clean_leftovers(final: str) -> list[str]:
    """Removes what killed exports into ``final`` left behind (after restoring the old
    export if a fallback swap was cut between its renames); returns the removed paths."""
    final = os.path.abspath(final)
    found = leftovers(final)
    if not os.path.lexists(final):
        olds = [path for kind, path in found if kind == "old"]
        if olds:
            os.rename(olds[-1], final)
            found = [(k, p) for k, p in found if p != olds[-1]]
    for _, path in found:
        shutil.rmtree(path, ignore_errors=True)
    return [path for _, path in found]


def check_replaceable(final: str) -> None:
    """ValueError when ``final`` exists and holds anything but a previous export."""
    if not os.path.lexists(final):
        return
    if not os.path.isdir(final) or os.path.islink(final):
        raise ValueError(f"--export_dir={final} is not a directory; pass a new or empty "
                         "directory (exporting replaces it whole)")
    listed = set()
    try:
        with open(os.path.join(final, REPORT_JSON), encoding="utf-8") as f:
            listed = {p.split("/")[0] for p in json.load(f).get("files", {})}
    except (OSError, ValueError, AttributeError):
        pass
    foreign = sorted(e for e in os.listdir(final)
                     if not (e in listed or _KNOWN.match(e) or _OLD_TEMPS.match(e)))
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ValueError(f"--export_dir={final} holds files that are not part of an export "
                         f"({shown}); exporting replaces the whole directory, so pass a new "
                         "or empty directory, or move those files away")


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(a: str, b: str) -> bool:
    """Atomically swaps two paths (Linux renameat2); False when the system or the file
    system cannot (``swap_in`` then falls back to two renames)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system cannot
        return False
    raise OSError(errno, f"cannot swap {b} with {a}: {os.strerror(errno)}")


def swap_in(new: str, final: str) -> None:
    """Makes the finished directory ``new`` be ``final``; the old ``final`` is removed."""
    if not os.path.lexists(final):
        os.rename(new, final)
        return
    if exchange(new, final):
        shutil.rmtree(new, ignore_errors=True)  # now holds the old export
        return
    old = _sibling(final, "old")
    os.rmdir(old)
    os.rename(final, old)
    os.rename(new, final)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged(final: str):
    """Yields a temporary directory to fill; swaps it in for ``final`` when the block
    ends normally, removes it when the block raises. Leftovers of killed exports into
    ``final`` are removed first."""
    final = os.path.abspath(final)
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    clean_leftovers(final)
    check_replaceable(final)
    tmp = _sibling(final, "tmp")
    try:
        yield tmp
        swap_in(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for path in (final, parent):  # make the renames durable
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def manifest(directory: str, exclude=(REPORT_JSON,)) -> dict:
    """{relative path: {"size_bytes", "sha256"}} of every file under ``directory``."""
    files = {}
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, directory).replace(os.sep, "/")
            if rel in exclude:
                continue
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            files[rel] = {"size_bytes": os.path.getsize(path), "sha256": digest.hexdigest()}
    return files


def verify(directory: str) -> list[str]:
    """What differs between an export directory and the file list in its report
    (empty when the report describes exactly the files beside it)."""
    try:
        with open(os.path.join(directory, REPORT_JSON), encoding="utf-8") as f:
            listed = json.load(f).get("files")
    except (OSError, ValueError) as e:
        return [f"{directory}: no readable {REPORT_JSON} ({e})"]
    if not isinstance(listed, dict):
        return [f"{directory}/{REPORT_JSON} lists no files (written by an older version)"]
    actual = manifest(directory)
    problems = [f"missing: {p}" for p in sorted(set(listed) - set(actual))]
    problems += [f"not in the report: {p}" for p in sorted(set(actual) - set(listed))]
    problems += [f"differs from the report: {p}" for p in sorted(set(listed) & set(actual))
                 if listed[p] != actual[p]]
    return problems
