"""A per-machine memory of file hashes, so unchanged files are never read twice.

Adding a folder again (a new version after a small change, ``sync``) stats every file
but hashes only those whose (device, inode, size, mtime, ctime) differ from when they
were last hashed on this machine. The memory is a small SQLite file in the local cache
folder, never in the shared catalog: inode numbers mean nothing on another machine.

A file whose mtime is within a second of the hashing is not remembered (a change right
after the hash could keep the same timestamp on a coarse-grained filesystem), so it is
hashed again next time; any later change moves mtime or ctime, which are both compared. Any error here is
logged and ignored: the cache can only save work, never change a result.

The same file also remembers, per (device, inode), the stat of each file of the local cache
as it stood when its bytes were last hash-checked (see :mod:`clearml_data.cache.guard`). A
lost or unreadable memory only means that cached files are hashed again before use.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

RACY_NS = 1_000_000_000
_CHUNK = 500


def _key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class HashMemory:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._broken = False

    def _db(self) -> sqlite3.Connection | None:
        if self._broken:
            return None
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=5, check_same_thread=False, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=OFF")  # losing the newest entries only costs a re-hash
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, dev INTEGER, "
                    "ino INTEGER, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, "
                    "hash TEXT NOT NULL) WITHOUT ROWID"
                )
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS cache_files (dev INTEGER, ino INTEGER, "
                    "size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, hash TEXT NOT NULL, "
                    "PRIMARY KEY (dev, ino)) WITHOUT ROWID"
                )
                self._conn = conn
            except (sqlite3.Error, OSError) as exc:
                log.debug("hash memory %s unavailable: %s", self.path, exc)
                self._broken = True
                return None
        return self._conn

    def lookup(self, stats: dict[str, os.stat_result]) -> dict[str, str]:
        """{path: sha256} of the files whose stat still matches what was hashed."""
        found: dict[str, str] = {}
        with self._lock:
            db = self._db()
            if db is None:
                return found
            paths = list(stats)
            try:
                for i in range(0, len(paths), _CHUNK):
                    chunk = paths[i : i + _CHUNK]
                    q = (
                        f"SELECT path, dev, ino, size, mtime_ns, ctime_ns, hash FROM files "
                        f"WHERE path IN ({', '.join('?' * len(chunk))})"
                    )
                    for path, *key, digest in db.execute(q, chunk):
                        if tuple(key) == _key(stats[path]):
                            found[path] = digest
            except sqlite3.Error as exc:
                log.debug("hash memory lookup failed: %s", exc)
        return found

    def store(
        self, entries: Iterable[tuple[str, os.stat_result, str]], hashed_at_ns: int | None = None
    ) -> None:
        """Remember (path, stat before hashing, sha256); skips files changed too recently."""
        cutoff = (hashed_at_ns or time.time_ns()) - RACY_NS
        rows = [(path, *_key(st), digest) for path, st, digest in entries if st.st_mtime_ns < cutoff]
        self._write("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    # -- cache files, by inode (see cache.guard) --------------------------------------------
    def cached_lookup(
        self, stats: Iterable[os.stat_result]
    ) -> dict[tuple[int, int], tuple[int, int, int, str]]:
        """{(dev, ino): (size, mtime_ns, ctime_ns, sha256)} recorded for these files' inodes."""
        by_dev: dict[int, set[int]] = {}
        for st in stats:
            by_dev.setdefault(st.st_dev, set()).add(st.st_ino)
        found: dict[tuple[int, int], tuple[int, int, int, str]] = {}
        with self._lock:
            db = self._db()
            if db is None:
                return found
            try:
                for dev, inodes in by_dev.items():
                    inos = list(inodes)
                    for i in range(0, len(inos), _CHUNK):
                        chunk = inos[i : i + _CHUNK]
                        q = (
                            f"SELECT ino, size, mtime_ns, ctime_ns, hash FROM cache_files "
                            f"WHERE dev = ? AND ino IN ({', '.join('?' * len(chunk))})"
                        )
                        for ino, *rest in db.execute(q, [dev, *chunk]):
                            found[(dev, ino)] = tuple(rest)
            except sqlite3.Error as exc:
                log.debug("hash memory lookup of cache files failed: %s", exc)
        return found

    def cached_store(self, entries: Iterable[tuple[os.stat_result, str]]) -> None:
        """Remember (stat, sha256) of cache files whose bytes were just checked."""
        rows = [
            (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest)
            for st, digest in entries
        ]
        self._write("INSERT OR REPLACE INTO cache_files VALUES (?, ?, ?, ?, ?, ?)", rows)

    def cached_forget(self, stats: Iterable[os.stat_result]) -> None:
        """Forget what was recorded for these inodes (their bytes are damaged or gone)."""
        self._write(
            "DELETE FROM cache_files WHERE dev = ? AND ino = ?", [(st.st_dev, st.st_ino) for st in stats]
        )

    def _write(self, sql: str, rows: list[tuple]) -> None:
        if not rows:
            return
        with self._lock:
            db = self._db()
            if db is None:
                return
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(sql, rows)
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                log.debug("hash memory update failed: %s", exc)
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
