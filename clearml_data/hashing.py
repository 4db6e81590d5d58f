"""SHA-256 of files, in a thread pool (hashlib releases the GIL on large updates)."""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, TypeVar

T = TypeVar("T")
R = TypeVar("R")

BLOCK = 1 << 20
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def default_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike | BinaryIO) -> tuple[str, int]:
    """Return (hex digest, size) of the file's bytes, read once (``path`` may also be a file
    already open for reading in binary mode, read from where it stands)."""
    if hasattr(path, "readinto"):
        return _sha256_read(path)
    with open(path, "rb", buffering=0) as fh:
        return _sha256_read(fh)


def _sha256_read(fh: BinaryIO) -> tuple[str, int]:
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


def ordered_map(fn: Callable[[T], R], items: Iterable[T], max_workers: int | None = None,
                window: int = 1024) -> Iterator[tuple[T, R]]:
    """Yield (item, fn(item)) in input order, running ``fn`` in a thread pool.

    At most ``window`` calls are in flight, so memory stays flat however many items
    there are. With one worker everything runs in the calling thread.
    """
    workers = max_workers or default_workers()
    if workers <= 1:
        for item in items:
            yield item, fn(item)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clearml-data") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append((item, pool.submit(fn, item)))
                if len(pending) >= window:
                    item0, fut = pending.popleft()
                    yield item0, fut.result()
            while pending:
                item0, fut = pending.popleft()
                yield item0, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()


def hash_files(stats: dict[str, os.stat_result], memory=None, max_workers: int | None = None,
                on_done: Callable[[int], None] | None = None) -> Iterator[tuple[str, str, int]]:
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
        memory.store(((p, stats[p], fresh[p][0]) for p in fresh if fresh[p][1] == stats[p].st_size),
                     hashed_at_ns=started)
    for p, st in stats.items():
        digest, size = fresh[p] if p in fresh else (known[p], st.st_size)
        yield p, digest, size

