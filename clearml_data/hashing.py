"""SHA-256 of files, in a thread pool (hashlib releases the GIL on large updates; the pool is
parallel.ordered_map)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from typing import Protocol

from .parallel import ordered_map

BLOCK = 1 << 20
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Readable(Protocol):
    def readinto(self, buffer: bytearray, /) -> int | None: ...


def sha256_file(path: str | os.PathLike | _Readable) -> tuple[str, int]:
    """Return (hex digest, size) of the file's bytes, read once (``path`` may also be a file
    already open for reading in binary mode, read from where it stands)."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        return _sha256_read(path)
    with open(path, "rb", buffering=0) as fh:
        return _sha256_read(fh)


def _sha256_read(fh: _Readable) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    while True:
        n = fh.readinto(buf)
        if not n:
            break
        h.update(view[:n])
        size += n
    return h.hexdigest(), size


def hash_files(
    stats: dict[str, os.stat_result],
    memory=None,
    max_workers: int | None = None,
    on_done: Callable[[int], None] | None = None,
) -> Iterator[tuple[str, str, int]]:
    """Yield (path, digest, size) for each already-stat'ed file, in input order, hashing in
    parallel only the files ``memory`` (a :class:`~clearml_data.cache.hashmemory.HashMemory`) does
    not know unchanged. ``on_done(nbytes)`` is called once per file, from the calling thread."""
    import time

    known = memory.lookup(stats) if memory is not None else {}
    if on_done:
        for p in known:
            on_done(stats[p].st_size)
    todo = [p for p in stats if p not in known]
    started = time.time_ns()
    fresh: dict[str, tuple[str, int]] = {}
    for p, result in ordered_map(sha256_file, todo, max_workers):
        fresh[p] = result
        if on_done:
            on_done(result[1])
    if memory is not None and fresh:
        memory.store(
            ((p, stats[p], fresh[p][0]) for p in fresh if fresh[p][1] == stats[p].st_size),
            hashed_at_ns=started,
        )
    for p, st in stats.items():
        digest, size = fresh[p] if p in fresh else (known[p], st.st_size)
        yield p, digest, size
