"""Turn "no space left on device" into one clear error that names the folder.

``write()`` reports ENOSPC without a file name, so the place that was being written says
which folder filled up. The callers clean up their temporary files themselves; running the
same command again after freeing space resumes where it stopped.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import DiskFullError

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


#: below this many free bytes, a failing SQLite write is put down to a full disk
NEARLY_FULL = 1024 * 1024


def nearly_full(folder: str | os.PathLike) -> bool:
    """Is the filesystem holding ``folder`` (about) out of space?"""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < NEARLY_FULL


def is_no_space(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in NO_SPACE


def disk_full(folder: str | os.PathLike, what: str, exc: OSError) -> DiskFullError:
    reason = "quota exceeded" if exc.errno == errno.EDQUOT else "no space left on device"
    return DiskFullError(
        f"{reason}: cannot write to {what} {os.fspath(folder)}",
        path=os.fspath(folder),
        hint="free some space, then run the same command again",
    )


@contextmanager
def space_for(folder: str | os.PathLike, what: str) -> Iterator[None]:
    """Raise :class:`DiskFullError` naming ``folder`` if the block runs out of space."""
    try:
        yield
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise disk_full(folder, what, exc) from None
        raise
