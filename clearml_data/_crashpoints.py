"""Named crash points: make the process die at one exact step, to test crash safety.

Each step of add / upload / close / delete / squash / get --copy that leaves something on disk calls
``reach("<point>")``. Normally that is one environment lookup and nothing else. With

    CLEARML_DATA_CRASH_AT=<point>        the first time the point is reached, or
    CLEARML_DATA_CRASH_AT=<point>@<n>    the n-th time (counted in this process)

the process exits at once with :data:`EXIT_CODE` through ``os._exit``: no ``finally``
blocks, no rollback, no buffered writes flushed, no temporary file removed, as after
``kill -9``. ``CLEARML_DATA_CRASH_TRACE=<file>`` appends the name of every point reached
to that file, one a line (a crash adds ``crash <point>@<n>``), so a test learns how often
each point is reached and which step a random ``SIGKILL`` interrupted.

:data:`POINTS` lists every point with what has happened when it is reached; a test checks
that each one is called somewhere and hit by the crash tests.

This is a hook for clearml-data's own crash tests, not a supported interface: the module is
private, and its points, environment variables and exit code may change in any release.
"""

from __future__ import annotations

import os
import threading

from .errors import UsageError

ENV = "CLEARML_DATA_CRASH_AT"
TRACE_ENV = "CLEARML_DATA_CRASH_TRACE"
#: exit status of a process stopped at a crash point
EXIT_CODE = 86

#: every crash point, in the order a version's life reaches them, and the state it leaves
POINTS: dict[str, str] = {
    "add.hashed": "the files are hashed; none of their change rows is written",
    "add.recorded": "the draft's change rows are committed; the command has not returned",
    "catalog.before_commit": "a catalog write transaction has run its statements but not committed",
    "cache.temp_written": "content is written to a temporary file in the cache, not yet renamed into it",
    "upload.planned": "the contents to upload are split into packs and objects; nothing is written",
    "upload.cached": "a large file is copied into the cache; it is not yet put into storage",
    "upload.pack_written": "a pack is written to a temporary file; it is not yet put into storage",
    "storage.temp_written": (
        "an object's (or manifest's) bytes are in a storage temporary file, not at its key"
    ),
    "upload.object_put": "an object is in storage; the catalog does not record it yet",
    "upload.object_recorded": "an object is in storage and recorded in the catalog",
    "upload.done": "every object is in storage and recorded; the version is still a draft",
    "finalize.checked": "finalize found nothing pending; the final flag is not set",
    "finalize.manifest_written": "the version's manifest is in its storage; the final flag is not set",
    "finalize.committed": "the final flag is committed; the command has not returned",
    "delete.checked": "delete found the version and its children; nothing is changed",
    "delete.committed": "the version is gone from the catalog; its tombstoned manifest is not yet removed",
    "squash.created": "squash made its new draft; it has no change rows yet",
    "squash.recorded": "the squashed view is written as the draft's change rows; no content is copied",
    "squash.fetched": "content the target storage lacks is in the local cache; nothing is uploaded",
    "copy.file_written": (
        "a file of a mutable copy (get --copy) is written beside its place, not yet renamed to its name"
    ),
}

_lock = threading.Lock()
_counts: dict[str, int] = {}
_armed: tuple[str | None, str | None] = (None, None)
_environ = os.environ


def reach(point: str) -> None:
    """Die here if CLEARML_DATA_CRASH_AT names this point (and this is its n-th time)."""
    spec = _environ.get(ENV)
    trace = _environ.get(TRACE_ENV)
    if spec is None and trace is None:
        return
    _reached(point, spec or None, trace or None)


def parse(spec: str) -> tuple[str, int]:
    """``"point@n"`` -> (point, n); ``"point"`` -> (point, 1)."""
    name, sep, count = spec.strip().partition("@")
    if name not in POINTS:
        raise UsageError(
            f"{ENV} names an unknown crash point {name!r}", hint=f"known points: {', '.join(POINTS)}"
        )
    if not sep:
        return name, 1
    try:
        n = int(count)
    except ValueError:
        n = 0
    if n < 1:
        raise UsageError(f"{ENV}={spec!r}: the count after '@' must be a positive integer")
    return name, n


def _reached(point: str, spec: str | None, trace: str | None) -> None:
    if point not in POINTS:
        raise ValueError(f"unknown crash point {point!r}")
    target = parse(spec) if spec else None
    global _armed
    with _lock:
        if _armed != (spec, trace):  # counts start afresh whenever the settings change
            _armed = (spec, trace)
            _counts.clear()
        n = _counts.get(point, 0) + 1
        _counts[point] = n
        crash = target is not None and target == (point, n)
        if trace:
            line = f"crash {point}@{n}\n" if crash else f"{point}\n"
            fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        if crash:
            os._exit(EXIT_CODE)
