"""Temporary files a crash can leave behind, and sweeping them up.

Every temporary file clearml-data writes before renaming it into place (cache contents,
packs, objects in a folder storage, the CLI state) is named

    <prefix><host>.<pid>.<random><suffix>

so that a later run can tell an abandoned one from one being written right now: it is
removed when its writer ran on this host and that process is gone, or, whoever wrote it,
when it has not changed for :data:`STALE_AFTER` seconds. A file of a live writer is
never touched (a reused pid only delays the sweep). In a folder of temporary files only (the
cache's ``tmp/``), the tag is looked for anywhere in a name, since a storage driver may write
the file it was asked for under a name of its own made from it. Sweeping is best effort: an error
is logged, never raised, since it can only save space, never change a result.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import stat
import tempfile
import time
import uuid
from collections.abc import Iterable

log = logging.getLogger(__name__)

#: a temporary file untouched this long is abandoned, whichever host wrote it
STALE_AFTER = 24 * 3600

_host_tag: str | None = None
_TAG = re.compile(r"^(?P<host>[A-Za-z0-9-]{1,32})\.(?P<pid>[0-9]{1,10})\.")


def _host() -> str:
    global _host_tag
    if _host_tag is None:
        _host_tag = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname() or "host")[:32] or "host"
    return _host_tag


def owner_tag() -> str:
    """``<host>.<pid>.``: who writes a temporary file (the pid is read each time: forks)."""
    return f"{_host()}.{os.getpid()}."


def mkstemp(folder: str | os.PathLike, prefix: str, suffix: str = "") -> tuple[int, str]:
    """``tempfile.mkstemp`` in ``folder``, with the owner tag after ``prefix``."""
    return tempfile.mkstemp(dir=folder, prefix=prefix + owner_tag(), suffix=suffix)


def temp_path(folder: str | os.PathLike, prefix: str) -> str:
    """A fresh temporary path in ``folder`` (not created)."""
    return os.path.join(os.fspath(folder), f"{prefix}{owner_tag()}{uuid.uuid4().hex}")


def is_abandoned(name: str, prefix: str, mtime: float, now: float | None = None) -> bool:
    """Is the temporary file ``name`` (a base name starting with ``prefix``) left by a dead writer?"""
    if not name.startswith(prefix):
        return False
    if (now if now is not None else time.time()) - mtime > STALE_AFTER:
        return True
    m = _TAG.match(name[len(prefix) :])
    if m is None or m.group("host") != _host():
        return False
    return not _alive(int(m.group("pid")))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OSError:
        return True
    return True


def is_abandoned_within(name: str, prefixes: tuple[str, ...], mtime: float, now: float | None = None) -> bool:
    """Is ``name``, a file in a folder that holds nothing but temporary files, left by a dead writer?

    A storage driver may wrap the temporary name it was given (``.obj-<tag>….tmp.s3-….tmp``),
    so the first ``<prefix><host>.<pid>.`` anywhere in the name tells who wrote it; a file
    that names no writer is abandoned once it is stale.
    """
    if (now if now is not None else time.time()) - mtime > STALE_AFTER:
        return True
    m = _within(prefixes).search(name)
    if m is None or m.group("host") != _host():
        return False
    return not _alive(int(m.group("pid")))


_within_cache: dict[tuple[str, ...], re.Pattern] = {}


def _within(prefixes: tuple[str, ...]) -> re.Pattern:
    pattern = _within_cache.get(prefixes)
    if pattern is None:
        alternatives = "|".join(re.escape(p) for p in prefixes)
        pattern = _within_cache[prefixes] = re.compile(
            rf"(?:{alternatives})(?P<host>[A-Za-z0-9-]{{1,32}})\.(?P<pid>[0-9]{{1,10}})\."
        )
    return pattern


def sweep(folder: str | os.PathLike[str], prefixes: Iterable[str], only_temporaries: bool = False) -> int:
    """Remove the abandoned temporary files directly in ``folder``; returns how many.

    With ``only_temporaries`` (a folder of temporary files only, such as the cache's ``tmp/``),
    every file in it is one, whatever a driver added around the name: see
    :func:`is_abandoned_within`.
    """
    prefixes = tuple(prefixes)
    removed = 0
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    except OSError as exc:
        log.debug("cannot list %s for temporary files: %s", folder, exc)
        return 0
    for entry in entries:
        prefix = next((p for p in prefixes if entry.name.startswith(p)), None)
        if prefix is None and not only_temporaries:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                continue
            if only_temporaries or prefix is None:  # no prefix: only_temporaries
                abandoned = is_abandoned_within(entry.name, prefixes, st.st_mtime, now)
            else:
                abandoned = is_abandoned(entry.name, prefix, st.st_mtime, now)
            if abandoned:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.debug("cannot remove the temporary file %s: %s", entry.path, exc)
    if removed:
        log.debug("removed %d abandoned temporary file(s) from %s", removed, folder)
    return removed
