"""Atomic file writes that respect the user's umask and clean up after killed writers.

``atomic_write`` writes a temporary file beside the target (``.tmp-<pid>-<random><ext>``), then
renames it over the target, so a reader never sees a half-written file. ``mkstemp`` creates the
temporary file 0600; before the rename it gets ``0666 & ~umask``, the mode ``open()`` would give.

A writer killed mid-write (kill -9, power loss) leaves its temporary file behind. Each write
removes the temporaries of its own kind (same folder, our name pattern, same extension) that no
one has written to for ``STALE_AFTER_S`` seconds: a live writer keeps its file's mtime fresh and
renames it seconds after its last write, so only dead writers' files are that old.
"""
from __future__ import annotations

import os
import re
import tempfile
import time

__all__ = ["atomic_write", "remove_stale_temporaries", "STALE_AFTER_S", "file_in_the_way"]

PREFIX = ".tmp-"
STALE_AFTER_S = 600.0


def file_in_the_way(folder: str) -> str | None:
    """The existing file (not a folder) that stops ``folder`` from being created or used, if any:
    ``folder`` itself or one of its parents."""
    path = os.path.abspath(folder)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    return None if os.path.isdir(path) else path


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (threads may create files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pattern(suffix: str) -> re.Pattern:
    # ours: .tmp-<pid>-<8 mkstemp characters><suffix>; earlier versions wrote .tmp-<8 characters><suffix>
    return re.compile(r"^" + re.escape(PREFIX) + r"(\d+-)?[a-z0-9_]{8}" + re.escape(suffix) + r"$")


def remove_stale_temporaries(folder: str, suffix: str, stale_after_s: float = STALE_AFTER_S) -> list[str]:
    """Delete this module's temporary files ending in ``suffix`` in ``folder`` that were last
    modified more than ``stale_after_s`` seconds ago; returns their paths."""
    pattern, now, removed = _pattern(suffix), time.time(), []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not pattern.match(name):
            continue
        path = os.path.join(folder, name)
        try:
            if now - os.stat(path).st_mtime > stale_after_s:
                os.remove(path)
                removed.append(path)
        except OSError:  # another process removed or renamed it meanwhile
            pass
    return removed


def atomic_write(path: str, write, durable: bool = False) -> None:
    """``write(binary file)`` into a temporary file beside ``path``, then rename it over ``path``
    (``durable``: fsync before the rename). Stale temporaries of earlier writers are removed."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    remove_stale_temporaries(folder, suffix)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{PREFIX}{os.getpid()}-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
