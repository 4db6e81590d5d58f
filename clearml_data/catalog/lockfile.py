"""The catalog's own lock file, for filesystems whose locks cannot be trusted.

SQLite serialises writers with POSIX advisory locks. On NFS, SMB, sshfs and other network
filesystems those locks are often missing, broken, or local to one client, and two writers
on different machines then corrupt the catalog. There, every transaction of the catalog
(reads included: a reader that sees another's rollback journal without a lock on the
database takes it for a crashed writer's and plays it back) runs while holding a lock file
next to the catalog, ``<catalog>.lock``:

- **Taken** with ``open(O_CREAT | O_EXCL)``, which is atomic on local disks and on NFSv3 and
  later; the file holds one JSON object: host, pid, a random token, the lease in seconds,
  when it was taken and when the lease ends (``expires``, Unix time).
- **Renewed** while held: a background thread rewrites the file (a temporary file renamed
  over it, so a reader never sees half of it) every third of the lease.
- **Broken** when stale: its lease has ended, or it was taken on this host by a process that
  no longer exists. Breaking renames the file aside (atomic), checks that what was moved is
  still what was judged stale, and puts it back if it changed in between.
- **Checked** before each commit: a holder that lost its lock (it was frozen for longer than
  its lease and someone broke it) rolls its transaction back instead of committing.
- **Waited for** up to a timeout, then :class:`~clearml_data.errors.CatalogLockedError`
  names the file, its holder and what to do.

Clocks of the machines sharing a catalog must agree to well within the lease (NTP does).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import CatalogLockedError

log = logging.getLogger(__name__)

#: seconds a lock stays valid without renewal; renewed every third of it while held
DEFAULT_LEASE = 30.0
#: seconds a writer waits for the lock before giving up with a clear error
DEFAULT_TIMEOUT = 120.0

LOCK_METHODS = ("auto", "file", "sqlite")


@dataclass(frozen=True)
class Holder:
    """What a lock file says about the process that holds it."""

    host: str
    pid: int
    token: str
    lease: float
    acquired: float
    expires: float

    def describe(self) -> str:
        return (
            f"pid {self.pid} on {self.host}, taken {_clock(self.acquired)}, "
            f"lease until {_clock(self.expires)}"
        )


def _clock(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _parse(raw: bytes) -> Holder | None:
    try:
        d = json.loads(raw.decode("utf-8"))
        return Holder(
            str(d["host"]),
            int(d["pid"]),
            str(d["token"]),
            float(d["lease"]),
            float(d["acquired"]),
            float(d["expires"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def pid_alive(pid: int) -> bool:
    """Is there a process with this id on this machine?"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class LockFile:
    """A lease-based lock file; reentrant within one process (all threads share it)."""

    def __init__(
        self, path: str | os.PathLike, *, lease: float = DEFAULT_LEASE, timeout: float = DEFAULT_TIMEOUT
    ):
        self.path = Path(path)
        self.lease = float(lease)
        self.timeout = float(timeout)
        self.host = socket.gethostname()
        self._mutex = threading.RLock()  # one holder per process; threads queue here
        self._depth = 0
        self._token: str | None = None
        self._acquired = 0.0
        self._stop: threading.Event | None = None
        self._renewer: threading.Thread | None = None
        #: how many stale locks this object broke (diagnostics and tests)
        self.broken = 0

    # -- public --------------------------------------------------------------------------
    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for the duration of the block (reentrant)."""
        self.acquire()
        try:
            yield
        finally:
            self.release()

    @property
    def is_held(self) -> bool:
        return self._depth > 0

    def acquire(self) -> None:
        self._mutex.acquire()
        if self._depth:
            self._depth += 1
            return
        try:
            self._take()
        except BaseException:
            self._mutex.release()
            raise
        self._depth = 1

    def release(self) -> None:
        if self._depth <= 0:
            raise RuntimeError("release of a lock file that is not held")
        self._depth -= 1
        try:
            if self._depth == 0:
                self._give_back()
        finally:
            self._mutex.release()

    def still_ours(self) -> bool:
        """Does the lock file still carry this holder's token? (checked before a commit)"""
        holder = _parse(self._read(self.path) or b"")
        return holder is not None and holder.token == self._token

    def holder(self) -> Holder | None:
        """The current holder, if the file exists and is readable."""
        return _parse(self._read(self.path) or b"")

    # -- taking and giving back ----------------------------------------------------------
    def _content(self, token: str, now: float) -> bytes:
        return json.dumps(
            {
                "host": self.host,
                "pid": os.getpid(),
                "token": token,
                "lease": self.lease,
                "acquired": self._acquired,
                "expires": now + self.lease,
            },
            sort_keys=True,
        ).encode("utf-8")

    def _take(self) -> None:
        deadline = time.monotonic() + self.timeout
        delay = 0.002
        while True:
            token = uuid.uuid4().hex
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pass
            else:
                now = time.time()
                self._acquired = now
                try:
                    os.write(fd, self._content(token, now))
                finally:
                    os.close(fd)
                self._token = token
                self._start_renewing()
                return
            if self._break_if_stale():
                continue
            if time.monotonic() >= deadline:
                raise self._timeout_error()
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.1)

    def _give_back(self) -> None:
        self._stop_renewing()
        token, self._token = self._token, None
        holder = _parse(self._read(self.path) or b"")
        if holder is not None and holder.token == token:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        else:
            log.warning("the catalog lock file %s was taken over while this process held it", self.path)

    def _timeout_error(self) -> CatalogLockedError:
        holder = self.holder()
        who = holder.describe() if holder else "a process that has not written its details yet"
        return CatalogLockedError(
            f"waited {self.timeout:g} s for the catalog lock file {self.path}, held by {who}",
            hint="let that process finish and try again; a lock whose holder died is broken "
            "automatically when its lease ends (or at once on the same host); delete the file "
            "only if no clearml-data process on any machine is using this catalog",
        )

    # -- stale locks ---------------------------------------------------------------------
    def _is_stale(self, raw: bytes) -> bool:
        holder = _parse(raw)
        if holder is None:
            # being written right now, or left empty by a crash between create and write:
            # stale once it is older than a lease
            try:
                age = time.time() - os.stat(self.path).st_mtime
            except FileNotFoundError:
                return False
            return age > self.lease
        if time.time() > holder.expires:
            return True
        return holder.host == self.host and not pid_alive(holder.pid)

    def _break_if_stale(self) -> bool:
        """Remove the lock file if it is stale; True if the caller should try to take it now."""
        raw = self._read(self.path)
        if raw is None:
            return True  # it went away: try again at once
        if not self._is_stale(raw):
            return False
        aside = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex[:12]}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True
        try:
            moved = self._read(aside)
            if moved != raw:
                # renewed or replaced between our look and the rename: it was live, put it back
                try:
                    os.link(aside, self.path)
                except FileExistsError:
                    log.warning(
                        "a live catalog lock file %s was moved aside while a newer one "
                        "appeared; its holder will roll back",
                        self.path,
                    )
                return False
            holder = _parse(raw)
            log.warning(
                "broke a stale catalog lock file %s (%s)", self.path, holder.describe() if holder else "empty"
            )
            self.broken += 1
            return True
        finally:
            try:
                os.unlink(aside)
            except FileNotFoundError:
                pass

    # -- renewal ---------------------------------------------------------------------------
    def _start_renewing(self) -> None:
        stop = threading.Event()
        self._stop = stop
        token = self._token
        t = threading.Thread(
            target=self._renew_loop, args=(stop, token), name=f"lease {self.path.name}", daemon=True
        )
        self._renewer = t
        t.start()

    def _stop_renewing(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join()
        self._stop = self._renewer = None

    def _renew_loop(self, stop: threading.Event, token: str) -> None:
        while not stop.wait(self.lease / 3):
            try:
                if not self._renew(token):
                    return
            except OSError as exc:  # a network hiccup: try again at the next tick
                log.warning("cannot renew the catalog lock file %s: %s", self.path, exc)

    def _renew(self, token: str) -> bool:
        holder = _parse(self._read(self.path) or b"")
        if holder is None or holder.token != token:
            log.warning("lost the catalog lock file %s to another process", self.path)
            return False
        tmp = self.path.with_name(f"{self.path.name}.renew-{token[:12]}")
        tmp.write_bytes(self._content(token, time.time()))
        os.replace(tmp, self.path)
        return True

    @staticmethod
    def _read(path: Path) -> bytes | None:
        try:
            with open(path, "rb") as fh:
                return fh.read(4096)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ESTALE, errno.EIO):  # NFS: the file was replaced under us
                return None
            raise


def resolve_lock_method(setting: str | None, fs_type: str, network: bool) -> str:
    """``file`` or ``sqlite``: what the catalog uses for a ``catalog_lock`` setting."""
    value = (setting or "auto").strip().lower()
    if value not in LOCK_METHODS:
        raise ValueError(f"unknown catalog lock method {setting!r} (use one of {', '.join(LOCK_METHODS)})")
    if value == "auto":
        return "file" if network else "sqlite"
    return value


class _Rows:
    """The rows of a finished statement, read like a cursor."""

    def __init__(self, cursor):
        self._rows = deque(cursor.fetchall())
        self.rowcount = cursor.rowcount
        self.description = cursor.description
        self.lastrowid = cursor.lastrowid

    def fetchone(self):
        return self._rows.popleft() if self._rows else None

    def fetchall(self):
        rows = list(self._rows)
        self._rows.clear()
        return rows

    def __iter__(self):
        while self._rows:
            yield self._rows.popleft()


class LockedConnection:
    """A sqlite3 connection whose statements outside a transaction run under the lock file.

    Inside a transaction (``Catalog.write()`` / ``read()``, which hold the lock for their
    whole block) statements pass straight through. A statement on its own is an implicit
    transaction: it runs to completion, rows fetched, while the lock is held.
    """

    def __init__(self, conn, lock: LockFile):
        self._conn = conn
        self.lock = lock

    def execute(self, sql: str, parameters=()):
        if self._conn.in_transaction:
            return self._conn.execute(sql, parameters)
        with self.lock.held():
            return _Rows(self._conn.execute(sql, parameters))

    def executemany(self, sql: str, seq):
        if self._conn.in_transaction:
            return self._conn.executemany(sql, seq)
        with self.lock.held():
            return _Rows(self._conn.executemany(sql, seq))

    def __getattr__(self, name: str):
        return getattr(self._conn, name)
