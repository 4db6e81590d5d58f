"""Never serve a damaged cache file, without re-reading every file on every ``get``.

Every file of the local cache (an object in ``objects/``, or a file of a local copy in
``datasets/``) had its bytes hash-checked when it was made. At that moment its
(device, inode, size, mtime) is recorded with its hash, per inode, in the per-machine hash
memory (:class:`~clearml_data.cache.hashmemory.HashMemory`). Before a cached file is served, one
``stat`` is compared with that record:

- same inode, size and mtime, same hash, and still read-only: served as is (the warm path:
  one stat per file, no read);
- anything else (no record, another inode, size or mtime, or write permission given back):
  the file is hashed again; if its bytes are right the new stat is recorded (and the file
  made read-only again), otherwise it is reported as damaged so that the caller drops it and
  fetches it again.

A write through a hard link, even one its owner made writable with chmod, moves the mtime.
ctime is not compared: making or removing a hard link (building or deleting a local copy)
moves it too, and comparing it would re-hash the whole cache after every deleted copy. Damage
that leaves the inode, size and mtime as they were (bit rot on the medium, or an owner who
writes and then puts the mtime and mode back on purpose) is what ``clearml-data verify`` is for.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Iterable

from ..hashing import sha256_file
from ..parallel import batched, ordered_map

log = logging.getLogger(__name__)

_FLUSH_AT = 2000
_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH

#: (path served, its stat, the sha256 its bytes must have)
Item = tuple[str, os.stat_result, str]


def _same(st: os.stat_result, rec: tuple[int, int, int, str] | None, digest: str) -> bool:
    return (
        rec is not None
        and rec[3] == digest
        and rec[0] == st.st_size
        and rec[1] == st.st_mtime_ns
        and not st.st_mode & _WRITE_BITS
    )


class CacheGuard:
    """Records what entered the cache; tells which cached files may be served."""

    def __init__(self, memory=None):
        #: a HashMemory, or None: then nothing is remembered and every check re-hashes
        self.memory = memory
        self._pending: list[tuple[os.stat_result, str]] = []
        self._lock = threading.Lock()

    # -- recording -----------------------------------------------------------------------
    def entered(self, path: str, digest: str) -> None:
        """``path`` now holds bytes that were just checked to hash to ``digest``."""
        if self.memory is None:
            return
        st = os.stat(path)
        with self._lock:
            self._pending.append((st, digest))
            flush = len(self._pending) >= _FLUSH_AT
        if flush:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        if pending and self.memory is not None:
            self.memory.cached_store(pending)

    def relinked(self, items: Iterable[Item]) -> None:
        """Files just linked or copied from checked objects: record the new inodes.

        A hard link shares its object's inode and so its record; a new inode (a copy) is
        recorded as made.
        """
        if self.memory is None:
            return
        items = list(items)
        self.flush()
        known = self.memory.cached_lookup(st for _p, st, _d in items)
        self.memory.cached_store(
            [(st, digest) for _path, st, digest in items if (st.st_dev, st.st_ino) not in known]
        )

    def forget(self, stats: Iterable[os.stat_result]) -> None:
        if self.memory is not None:
            self.flush()
            self.memory.cached_forget(stats)

    # -- checking ------------------------------------------------------------------------
    def unchanged(self, items: list[Item]) -> tuple[list[Item], list[Item]]:
        """Split into (files whose stat matches their record, files to hash again)."""
        if self.memory is None:
            return [], list(items)
        self.flush()
        known = self.memory.cached_lookup(st for _p, st, _d in items)
        same: list[Item] = []
        changed: list[Item] = []
        for item in items:
            st = item[1]
            (same if _same(st, known.get((st.st_dev, st.st_ino)), item[2]) else changed).append(item)
        return same, changed

    def check(self, items: list[Item], max_workers: int | None = None) -> list[Item]:
        """The damaged files among ``items``: those whose stat changed and whose bytes are wrong
        (each with the stat of the damaged file, which may be newer than the one given).

        Files whose bytes are still right are recorded again (and made read-only again if
        someone made them writable), so the next check is one stat again.
        """
        _same_items, changed = self.unchanged(items)
        if not changed:
            return []
        log.debug("re-hashing %d cached file(s) whose stat changed", len(changed))
        bad: list[Item] = []
        good: list[tuple[os.stat_result, str]] = []
        for batch, results in ordered_map(_rehash_all, batched(changed), max_workers, window=16):
            for item, (ok, st_after) in zip(batch, results, strict=True):
                if ok and st_after is not None:  # a right file always has its stat
                    good.append((st_after, item[2]))
                else:  # with the stat of the file found damaged, if it could be read
                    bad.append((item[0], st_after or item[1], item[2]))
        if self.memory is not None:
            self.memory.cached_store(good)
            self.memory.cached_forget(st for _p, st, _d in bad)
        return bad


def _rehash_all(batch: list[Item]) -> list[tuple[bool, os.stat_result | None]]:
    return [_rehash(item) for item in batch]


def _rehash(item: Item) -> tuple[bool, os.stat_result | None]:
    """(bytes right and unchanged while read, the stat of the file read: the one to record,
    or the damaged one).

    The file is judged through one open descriptor: another process may atomically put a
    fresh copy of the same content at the path meanwhile (a concurrent fetch), and then it
    is that copy whose bytes are read and whose stat is recorded, never a mix of the two.
    """
    path, _before, digest = item
    try:
        with open(path, "rb", buffering=0) as fh:
            opened = os.fstat(fh.fileno())
            got, size = sha256_file(fh)
            after = os.fstat(fh.fileno())
            if (
                got != digest
                or size != opened.st_size
                or after.st_size != opened.st_size
                or after.st_mtime_ns != opened.st_mtime_ns
            ):
                return False, opened
            if after.st_mode & _WRITE_BITS:
                try:  # a cache file stays read-only
                    os.fchmod(fh.fileno(), stat.S_IMODE(after.st_mode) & ~_WRITE_BITS)
                    after = os.fstat(fh.fileno())
                except OSError:
                    pass
    except OSError as exc:
        log.debug("cannot re-hash %s: %s", path, exc)
        return False, None
    return True, after
