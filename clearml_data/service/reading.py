"""Reading one file of a version in place: a seekable, read-only file of ranged reads.

:func:`open_file` resolves a path of a final version to its content (the view), that
content to where its bytes are (the cache, or a stored pack or object: the same locations
``get`` reads, chosen by :func:`.locations.readable_locations`), and returns a
:class:`VersionFile`. Its reads are ranged reads (``StorageDriver.read_range``) of just the
extent they need, one request per run of missing blocks, kept in a small block cache; a
sequential reader has up to ``read_ahead`` bytes fetched ahead of it, in the background.

What is checked:

* every ranged read returns exactly the bytes asked for: a short one means the stored
  object is shorter than the catalog says (``IntegrityError``); reads never go past the
  file's size, so the extent read always lies inside the file;
* a file read to its end is checked against its SHA-256 before its last byte is returned.
  The hash runs along the blocks as they arrive; the blocks a reader jumped over are read
  (once) when the end is reached. A mismatch is an ``IntegrityError`` and the file returns
  nothing more;
* an external file registered without a hash is checked as ``get`` checks it: one stat at
  open, whose size and fingerprint must be those recorded;
* a content the local cache holds (intact, as the cache guard says) is read from there,
  with no storage request at all.

Bytes returned before the end was reached have passed the size checks only: a reader that
stops halfway gets no hash check. A reader that starts at the end (a Parquet footer) has
the whole content read and checked first. Once the whole content has been read and
checked, it enters the shared cache as ``get`` puts it there, and the open file reads on
from that copy; the next open, or ``get_local_copy``, reads nothing from storage for it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..catalog import DatasetRow, ObjectRow
from ..catalog.validate import check_empty, check_length, check_location
from ..errors import (
    ClearMLDataError,
    IntegrityError,
    NotAFileError,
    PathNotFoundError,
    ReadOnlyError,
    UsageError,
)
from ..parallel import ordered_map
from ..paths import describe, normalize_relpath
from ..storage import RANGED_READS, StorageDriver, redact_url
from ..storage.calls import storage_error
from .checkout import fetch_objects
from .external import check_link_unchanged, unhashed_links
from .locations import preferred_location, readable_locations, unstored
from .lookup import final
from .results import LinkInfo
from .views import view
from .workspace import Workspace

log = logging.getLogger(__name__)

#: bytes read at a time when they are read only to be hashed (the reader jumped over them)
HASH_BLOCK = 64 * 1024 * 1024
#: the most ranged reads one file runs at the same time (read-ahead, a long read)
MAX_AHEAD_WORKERS = 8
#: the read-ahead window is asked for in this many requests, in parallel
AHEAD_REQUESTS = 4
#: the longest single ranged read; a read that needs more is several, made in parallel
MAX_REQUEST = 16 * 1024 * 1024
#: bytes that reads put into the cache between two prunes to the cache_max_size setting
FIT_EVERY = 64 * 1024 * 1024


@dataclass(frozen=True)
class Extent:
    """Where a content's bytes are: ``length`` bytes of ``key`` in ``storage`` from ``offset``."""

    storage: str
    key: str
    offset: int
    length: int


def locate(ws: Workspace, row: DatasetRow, digest: str, size: int) -> Extent:
    """The stored extent to read a content of ``row`` from (its own storage preferred; an
    unchecked location confirmed by a stat first, as for ``get``)."""
    found = ws.catalog.locate_objects([digest])
    if not found.get(digest):
        raise unstored(row, digest)
    locs = readable_locations(ws, row, found)[digest]
    loc: ObjectRow = check_length(check_location(preferred_location(locs, row.storage)), size, row.id)
    return Extent(loc.storage, loc.key, loc.offset, loc.length)


def open_file(
    ws: Workspace,
    dataset_id: str,
    path: str,
    *,
    block_size: int | None = None,
    read_ahead: int | None = None,
    fill_cache: bool = True,
) -> VersionFile:
    """The file at ``path`` of the final version ``dataset_id``, open for reading.

    ``block_size`` (bytes) is the unit of the ranged reads and of the block cache;
    ``read_ahead`` (bytes, 0 for none) is how far ahead of a sequential reader blocks are
    fetched. Both default to the settings of the same names. With ``fill_cache`` a file
    read whole enters the local cache."""
    row = final(ws, dataset_id)
    rel = normalize_relpath(path)
    current = view(ws, row)
    entry = current.get(rel)
    if entry is None:
        if not rel or any(p.startswith(rel + "/") for p in current):
            raise NotAFileError(
                f"{describe(rel or '/')} is a folder of dataset {row.id}, not a file",
                hint="open a file in it; list them with clearml-data list or Dataset.list_files",
            )
        raise PathNotFoundError(
            f"dataset {row.id} has no file {describe(rel)}",
            path=rel,
            hint="list its files with clearml-data list or Dataset.list_files",
        )
    digest, size = entry[0], entry[1]
    bs = ws.settings.read_block_size if block_size is None else int(block_size)
    ahead = ws.settings.read_ahead if read_ahead is None else int(read_ahead)
    if bs < 1 or ahead < 0:
        raise UsageError(
            f"block_size must be at least 1 and read_ahead at least 0 (got {bs}, {ahead})",
            params=("block_size", "read_ahead"),
        )
    name = rel
    if size == 0:
        check_empty(digest, row.id)
        return VersionFile(name, 0, digest, _Empty(), block_size=bs, read_ahead=ahead)
    cached = _cached(ws, digest, size)
    if cached is not None:
        return VersionFile(name, size, digest, cached, block_size=bs, read_ahead=ahead)
    extent = locate(ws, row, digest, size)
    driver = ws.driver(extent.storage)
    # the links of this one file's origin only: an open costs no pass over the whole view
    link = unhashed_links(ws, row, {rel: entry}).get(digest)
    if link is not None:  # no hash to check: its size and fingerprint, as get checks them
        check_unhashed(driver, extent, link)
    if RANGED_READS not in (getattr(driver, "capabilities", None) or ()):
        # a storage that cannot read a range: the whole file into the cache, as get brings it
        ws.cache.ensure()
        try:
            with ws.cache.in_use():
                fetch_objects(ws, row, {rel: (digest, size)})
                whole = _CachedFile(ws.cache.object_file(digest))
        finally:
            ws.fit_cache()
        return VersionFile(name, size, digest, whole, block_size=bs, read_ahead=ahead)
    source = _Stored(driver, extent)
    spool = _Spool(ws, digest) if fill_cache else None
    return VersionFile(
        name,
        size,
        digest,
        source,
        block_size=bs,
        read_ahead=ahead,
        check_hash=link is None,
        spool=spool,
    )


def _cached(ws: Workspace, digest: str, size: int) -> _CachedFile | None:
    """The cached copy of a content, open, if the cache holds it intact (one pruned since the
    check is as good as missing: the content is read from storage)."""
    if not ws.cache.has(digest, size):
        return None
    try:
        return _CachedFile(ws.cache.object_file(digest))
    except FileNotFoundError:
        return None


def check_unhashed(driver: StorageDriver, extent: Extent, link: LinkInfo) -> None:
    """An external file registered without a hash is still what was registered: one stat,
    whose size and fingerprint must be the recorded ones (as ``get`` checks it)."""
    try:
        info = driver.stat(extent.key)
    except OSError as exc:
        raise storage_error(exc, extent.storage, extent.key, doing="read") from exc
    check_link_unchanged(link, info)


# -- where the bytes come from -------------------------------------------------------------
class _Source:
    """Bytes of one content: ``read_extent(offset, length)`` returns exactly that many."""

    requests = 0  #: reads made (what a test or a benchmark counts)
    remote = False

    def read_extent(self, offset: int, length: int) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _Empty(_Source):
    def read_extent(self, offset: int, length: int) -> bytes:
        return b""


class _CachedFile(_Source):
    """A content in the local cache: reads of the object file, no storage request."""

    def __init__(self, path: str):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)

    def read_extent(self, offset: int, length: int) -> bytes:
        self.requests += 1
        data = os.pread(self.fd, length, offset)
        if len(data) != length:
            raise IntegrityError(
                f"the cached copy {self.path} is shorter than its content",
                path=self.path,
                hint="run clearml-data verify --cache",
            )
        return data

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Stored(_Source):
    """An extent of a stored pack or object: each read is one ranged read of the driver."""

    remote = True

    def __init__(self, driver: StorageDriver, extent: Extent):
        self.driver = driver
        self.extent = extent
        self._lock = threading.Lock()

    def read_extent(self, offset: int, length: int) -> bytes:
        e = self.extent
        with self._lock:
            self.requests += 1
        try:
            data = self.driver.read_range(e.key, e.offset + offset, length)
        except ClearMLDataError:
            raise
        except OSError as exc:
            raise storage_error(exc, e.storage, e.key, doing="read") from exc
        if len(data) != length:
            raise IntegrityError(
                f"object {e.key} in {redact_url(e.storage)} is shorter than the catalog says: "
                f"{e.offset + offset + len(data):,} bytes where at least {e.offset + offset + length:,} "
                "were expected",
                hint="the stored object is damaged or the catalog was changed outside "
                "clearml-data; run clearml-data verify",
            )
        return bytes(data)


class _Spool:
    """The checked bytes of a content written, in order, to a temporary file of the cache
    (made when the first byte arrives); once all of them are there and their hash is right,
    the file enters the cache."""

    def __init__(self, ws: Workspace, digest: str):
        self.ws = ws
        self.digest = digest
        self.fh: Any = None
        self.tmp: str | None = None
        self.active = True  #: False once writing failed or was given up: the read goes on without it

    def write(self, data: bytes | memoryview) -> None:
        if not self.active:
            return
        try:
            if self.fh is None:
                fd, self.tmp = self.ws.cache.tempfile()
                self.fh = os.fdopen(fd, "wb")
            self.fh.write(data)
        except (OSError, ClearMLDataError) as exc:  # a full or read-only cache: read without it
            log.debug("not keeping %s… in the cache: %s", self.digest[:12], exc)
            self.discard()

    def finish(self, size: int) -> _CachedFile | None:
        """The whole content is written and its hash (or, unhashed, its size) was checked:
        into the cache with it; returns the cached copy, open (None if it could not be kept)."""
        if not self.active or self.fh is None or self.tmp is None:
            return None
        tmp = self.tmp
        cached: _CachedFile | None = None
        try:
            self.fh.close()
            self.fh, self.tmp, self.active = None, None, False
            with self.ws.cache.in_use():
                # the bytes written are exactly the bytes hashed and checked on the way
                self.ws.cache.add_file(self.digest, tmp, check_hash=False)
                cached = _CachedFile(self.ws.cache.object_file(self.digest))
            self.ws.read_since_fit += size
            if self.ws.read_since_fit >= FIT_EVERY:  # pruning walks the cache: not after each file
                self.ws.read_since_fit = 0
                self.ws.fit_cache()
        except (OSError, ClearMLDataError) as exc:
            log.debug("not keeping %s… in the cache: %s", self.digest[:12], exc)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        return cached

    def discard(self) -> None:
        self.active = False
        if self.fh is not None:
            try:
                self.fh.close()
            except OSError:
                pass
            self.fh = None
        if self.tmp is not None:
            if os.path.lexists(self.tmp):
                os.unlink(self.tmp)
            self.tmp = None


# -- the file ------------------------------------------------------------------------------
class VersionFile(io.RawIOBase):
    """One file of a version, open for reading: seekable, read-only, binary.

    ``size`` is its size in bytes and ``name`` its path in the version. Reads are served
    from a block cache filled by ranged reads of the stored content (or from the local
    cache); see the module's documentation for what each read checks.
    """

    def __init__(
        self,
        name: str,
        size: int,
        digest: str,
        source: _Source,
        *,
        block_size: int = 4 * 1024 * 1024,
        read_ahead: int = 0,
        check_hash: bool = True,
        spool: _Spool | None = None,
    ):
        super().__init__()
        self.name = name
        self.size = size
        self.hash = digest
        self.mode = "rb"
        self.block_size = max(1, int(block_size))
        self.read_ahead = max(0, int(read_ahead))
        self._source = source
        self._pos = 0
        self._lock = threading.RLock()
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        ahead_blocks = -(-self.read_ahead // self.block_size) if source.remote else 0
        self._ahead_blocks = ahead_blocks
        #: blocks of one read-ahead request: the window is fetched in AHEAD_REQUESTS parallel reads
        self._chunk_blocks = max(1, ahead_blocks // AHEAD_REQUESTS)
        self._ahead_next = 0  # the first block read-ahead has not asked for yet
        self._keep = self._chunk_blocks + 4  # blocks kept: the last request's, and a few behind
        #: block -> (first block of its read-ahead request, the request)
        self._pending: dict[int, tuple[int, Future[bytes]]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._last_end: int | None = None
        # the integrity check: blocks [0, _hashed) went through the hash, and into the spool
        self._hasher = hashlib.sha256() if source.remote and check_hash else None
        self._spool = spool if source.remote and spool is not None and spool.active else None
        self._hashed = 0
        #: nothing left to check: a cached copy (checked on its way in), or an unhashed
        #: external file (checked by size and fingerprint at open) that is not being kept
        self._verified = self._hasher is None and self._spool is None
        self._failed: ClearMLDataError | None = None
        self._requests_before = 0  # reads of the storage made before the source became the cache

    # -- io.RawIOBase -------------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        raise ReadOnlyError(
            f"{self.name} is a file of a dataset version and cannot be written",
            hint="versions are changed by creating a new one: clearml-data create --parents ...",
        )

    def truncate(self, size: int | None = None) -> int:
        self.write(b"")
        return 0

    def fileno(self) -> int:
        raise io.UnsupportedOperation("a file of a dataset version has no file descriptor")

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence ({whence!r}; 0, 1 or 2 are valid)")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = int(pos)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view_ = memoryview(buffer).cast("B")
        data = self.read(len(view_))
        view_[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        self._check_open()
        with self._lock:
            if self._failed is not None:
                raise self._failed
            start = self._pos
            end = self.size if size is None or size < 0 else min(self.size, start + size)
            if end <= start:
                return b""
            data = self.read_at(start, end - start)
            self._pos = end
            return data

    def peek(self, size: int = 0) -> bytes:
        """Bytes from the position to the end of its block, without moving the position
        (what ``readline`` uses to find line ends a block at a time)."""
        self._check_open()
        with self._lock:
            if self._pos >= self.size:
                return b""
            end = min(self.size, (self._pos // self.block_size + 1) * self.block_size)
            return self.read_at(self._pos, end - self._pos)

    def readall(self) -> bytes:
        return self.read(-1)

    def close(self) -> None:
        if self.closed:
            return
        with self._lock:
            self._stop_ahead()
            self._blocks.clear()
            if self._spool is not None:
                self._spool.discard()
                self._spool = None
            self._source.close()
        super().close()

    def __repr__(self) -> str:
        return f"<VersionFile {self.name!r} size={self.size}>"

    # -- reading ------------------------------------------------------------------------
    @property
    def requests(self) -> int:
        """Reads made so far of the content's sources (ranged reads of the storage, then
        reads of the cached copy once the file has been read whole)."""
        return self._requests_before + self._source.requests

    def read_at(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer only at the end of the file), without
        moving the position; the end of the file is checked as by :meth:`read`."""
        self._check_open()
        with self._lock:
            if self._failed is not None:
                raise self._failed
            end = min(self.size, offset + max(0, length))
            if end <= offset:
                return b""
            try:
                data = self._range(offset, end)
                if end == self.size and not self._verified:
                    self._verify_rest()  # before the last byte goes out
            except IntegrityError as exc:
                self._fail(exc)
                raise
            sequential = self._last_end == offset
            self._last_end = end
            if sequential or offset == 0:
                self._schedule_ahead(end)
            else:  # a jump: read-ahead starts again from the reader's new place
                self._ahead_next = end // self.block_size
            return data

    def _range(self, start: int, end: int) -> bytes:
        """Bytes [start, end) from the blocks, fetching the missing ones: each run of
        consecutive missing blocks is one ranged read (of at most MAX_REQUEST bytes; a longer
        run is several, made in parallel). Every block obtained is offered to the hash."""
        bs = self.block_size
        first, last = start // bs, (end - 1) // bs
        if first == last:
            block = self._block_or_fetch(first)
            return block[start - first * bs : end - first * bs]
        per_request = max(1, MAX_REQUEST // bs)
        requests: list[tuple[int, int]] = []  # [first block, end block) of each read
        for i in range(first, last + 1):
            if i in self._blocks or i in self._pending:
                continue
            if requests and requests[-1][1] == i and i - requests[-1][0] < per_request:
                requests[-1] = (requests[-1][0], i + 1)
            else:
                requests.append((i, i + 1))

        def fetch(req: tuple[int, int]) -> memoryview:
            lo, hi = req[0] * bs, min(self.size, req[1] * bs)
            return memoryview(self._source.read_extent(lo, hi - lo))

        workers = min(len(requests), MAX_AHEAD_WORKERS) if self._source.remote else 1
        got: dict[int, memoryview] = {}
        for (a, b), data in ordered_map(fetch, requests, workers, window=2 * max(1, workers)):
            for i in range(a, b):
                got[i] = data[(i - a) * bs : (i - a + 1) * bs]  # views of the read: no copies
        parts: list[bytes | memoryview] = []
        for i in range(first, last + 1):
            view_ = got.get(i)
            mv = view_ if view_ is not None else memoryview(self._block_or_fetch(i))
            self._offer(i, mv)
            parts.append(mv[max(start, i * bs) - i * bs : min(end, (i + 1) * bs) - i * bs])
        for i in range(max(first, last - self._keep + 1), last + 1):
            if i in got:  # the last blocks read stay (a reader often reads on from there)
                self._store(i, bytes(got[i]))
        return b"".join(parts)

    def _block_or_fetch(self, i: int) -> bytes:
        """Block ``i``: from the block cache, from a read-ahead request, or one ranged read."""
        block = self._blocks.get(i)
        if block is not None:
            self._blocks.move_to_end(i)
            self._offer(i, block)
            return block
        bs = self.block_size
        pending = self._pending.get(i)
        if pending is None:
            lo = i * bs
            block = self._source.read_extent(lo, min(self.size, lo + bs) - lo)
            self._offer(i, block)
            self._store(i, block)
            return block
        first, fut = pending
        data = memoryview(fut.result())
        # every block of that request is in: offered to the hash, and kept from block i on
        mine = b""
        for k in range(first, first + -(-len(data) // bs)):
            if self._pending.get(k, (None,))[0] == first:
                del self._pending[k]
            piece = data[(k - first) * bs : (k - first + 1) * bs]
            self._offer(k, piece)
            if k >= i:
                self._store(k, bytes(piece))
            if k == i:
                mine = bytes(piece)
        self._blocks.move_to_end(i)
        return mine

    def _store(self, i: int, block: bytes) -> None:
        self._blocks[i] = block
        self._blocks.move_to_end(i)
        while len(self._blocks) > self._keep:
            self._blocks.popitem(last=False)

    def _schedule_ahead(self, end: int) -> None:
        """Keep up to ``read_ahead`` bytes after ``end`` asked for, in the background: in
        requests of a quarter of the window each, made once a whole one fits in it (so that
        a reader moving on a little at a time still makes few, large requests)."""
        if not self._ahead_blocks or end >= self.size:
            return
        bs = self.block_size
        last_block = (self.size - 1) // bs
        window_end = min(last_block, (end + self.read_ahead - 1) // bs)  # the last block to have
        nxt = max(self._ahead_next, end // bs)
        while nxt <= window_end:
            if nxt in self._blocks or nxt in self._pending:
                nxt += 1
                continue
            stop = nxt
            while (
                stop <= last_block
                and stop - nxt < self._chunk_blocks
                and stop not in self._blocks
                and stop not in self._pending
            ):
                stop += 1
            if stop - 1 > window_end and stop - nxt == self._chunk_blocks:
                break  # a whole request does not fit in the window yet: later, in one piece
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=min(MAX_AHEAD_WORKERS, AHEAD_REQUESTS + 1),
                    thread_name_prefix="clearml-data-read-ahead",
                )
            lo, hi = nxt * bs, min(self.size, stop * bs)
            fut = self._pool.submit(self._source.read_extent, lo, hi - lo)
            for k in range(nxt, stop):
                self._pending[k] = (nxt, fut)
            nxt = stop
        self._ahead_next = nxt
        # requests wholly behind the reader are not waited for
        behind = end // bs - self._keep
        stale = {first for k, (first, _f) in self._pending.items() if k < behind}
        for k in [k for k, (first, _f) in self._pending.items() if first in stale]:
            _first, fut = self._pending.pop(k)
            fut.cancel()

    def _stop_ahead(self) -> None:
        for _first, fut in self._pending.values():
            fut.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    # -- the integrity check ------------------------------------------------------------------
    def _offer(self, i: int, block: bytes | memoryview) -> None:
        """Block ``i`` has arrived: if it is the next one the hash needs, it goes through
        the hash (and into the spool), and so do the blocks after it that are at hand."""
        bs = self.block_size
        if self._verified or i * bs != self._hashed:
            return
        while True:
            self._feed(block)
            if self._verified:
                return
            nxt = self._blocks.get(self._hashed // bs)
            if nxt is None:
                return
            block = nxt

    def _feed(self, block: bytes | memoryview) -> None:
        if self._hasher is not None:
            self._hasher.update(block)
        if self._spool is not None:
            self._spool.write(block)
        self._hashed += len(block)
        if self._hashed >= self.size:
            self._finish()

    def _verify_rest(self) -> None:
        """Before the last byte is returned: the blocks not hashed yet (those the reader
        jumped over, or that left the block cache before the hash reached them) are read
        and hashed, HASH_BLOCK bytes at a time."""
        while not self._verified:
            start = self._hashed
            self._range(start, min(self.size, start + HASH_BLOCK))
            if self._hashed == start:  # cannot happen: _range offers every block it reads
                raise IntegrityError(f"{self.name}: the hash of its content could not be completed")

    def _finish(self) -> None:
        if self._hasher is not None and self._hasher.hexdigest() != self.hash:
            raise IntegrityError(
                f"{self.name}: the bytes read do not match its SHA-256 {self.hash[:12]}…",
                path=self.name,
                hint="the stored object is damaged; run clearml-data verify",
            )
        self._verified = True
        spool, self._spool = self._spool, None
        cached = spool.finish(self.size) if spool is not None else None
        if cached is not None:  # from now on, reads are of the checked copy in the cache
            self._stop_ahead()
            self._requests_before += self._source.requests
            self._source.close()
            self._source = cached
            self._ahead_blocks = 0

    def _fail(self, exc: ClearMLDataError) -> None:
        self._failed = exc
        self._blocks.clear()
        if self._spool is not None:
            self._spool.discard()
            self._spool = None

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on a closed file")

    # -- what the filesystem and the tests look at ------------------------------------------
    @property
    def verified(self) -> bool:
        """Has the whole content been checked (or does it come from the local cache)?"""
        return self._verified


#: what a factory of open files looks like (the fsspec filesystem takes one)
Opener = Callable[[str, str], VersionFile]
