"""Manifests in storage: what makes the catalog one you cannot lose.

Each final version has a manifest in its storage naming its whole view and where each
content lives, so that the catalog can be rebuilt from the storage alone (rebuild.py).

- ``write_manifest``: called by finalize after the version's objects are stored and before
  its final flag; writes ``manifests/<id>.json.gz`` create-only (manifest.py has the format).
- ``retire_manifest`` / ``remove_manifest``: called by delete; a tombstone is written first,
  then the manifest is removed, so a rebuild never brings a deleted version back.
  ``drop_manifest`` removes the manifest of a draft whose finalize lost a race with a delete.
- ``list_manifests`` / ``read_manifest``: what a storage holds, for rebuild (rebuild.py)
  and for gc.

Reads are streamed by ranges and bounded (manifest.decode), and a read that overlaps a
finalize replacing the manifest is tried again before the manifest is called damaged.
"""

from __future__ import annotations

import logging
import os
import time
from typing import BinaryIO, cast

from .. import manifest as mf
from .. import tempfiles
from ..catalog import DatasetRow
from ..errors import ClearMLDataError, ManifestError, StorageError
from ..storage import StorageDriver, redact_url
from .workspace import View, Workspace, storage_call

log = logging.getLogger(__name__)

#: reads of a manifest before it is called damaged
MANIFEST_READS = 3


def list_manifests(driver: StorageDriver, storage: str) -> tuple[dict[str, str], dict[str, str]]:
    """({dataset id: manifest key}, {dataset id: tombstone key}) of the manifests a storage holds;
    keys that are neither are left out."""
    live: dict[str, str] = {}
    tombs: dict[str, str] = {}
    for info in storage_call(storage, mf.PREFIX, lambda: list(driver.list(mf.PREFIX))):
        parsed = mf.parse_key(info.key)
        if parsed is not None:
            (live if parsed[0] == "manifest" else tombs)[parsed[1]] = info.key
    return live, tombs


# -- writing manifests (finalize) -----------------------------------------------------------
def write_manifest(ws: Workspace, row: DatasetRow, current: View, counts: dict[str, int], stamp: str) -> str:
    """Write the manifest of a draft being finalized; returns the finalize time it records.

    The manifest is streamed into a temporary file of the cache and put from there, so a
    version of a million files never has its whole manifest document in memory."""
    origins = {origin for _h, _s, origin in current.values()}
    links = ws.catalog.links(origins)
    prints = ws.catalog.link_fingerprints(origins) if links else {}
    located = ws.catalog.object_locations({h for h, _s, _o in current.values()}, row.storage)
    record = {
        "id": row.id,
        "project": row.project,
        "name": row.name,
        "version": row.version,
        "description": row.description,
        "tags": list(row.tags),
        "metadata": row.metadata,
        "storage": row.storage,
        "created_at": row.created_at,
        "finalized_at": stamp,
        "file_count": len(current),
        "total_size": sum(v[1] for v in current.values()),
        "added": counts["added"],
        "modified": counts["modified"],
        "removed": counts["removed"],
        "parents": list(row.parents),
    }
    files = ((p, *current[p], links.get((current[p][2], p))) for p in sorted(current))
    ws.cache.ensure()
    fd, tmp = tempfiles.mkstemp(ws.cache.tmp, "manifest-", ".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            mf.write(
                fh,
                {k: record[k] for k in mf.RECORD_FIELDS},
                ws.catalog.sorted_changes(row.id),
                files,
                located.get,
                sorted((p, prints[(current[p][2], p)]) for p in current if (current[p][2], p) in prints),
            )
        driver = ws.driver(row.storage)
        key = mf.manifest_key(row.id)
        try:
            storage_call(row.storage, key, driver.put_file, tmp, key, overwrite=False)
            return stamp
        except FileExistsError:
            pass
        except FileNotFoundError as exc:  # the bucket or container itself is gone
            raise StorageError(
                f"cannot write {key} to {redact_url(row.storage)}: {exc.strerror or exc}",
                url=redact_url(row.storage),
                key=key,
                hint="check that the storage (bucket, container or folder) exists",
            ) from None
        # a manifest of this draft exists: another finalize of it ran (concurrently, or before a crash)
        with open(tmp, "rb") as fh:
            new = mf.decode(fh, key, os.fstat(fh.fileno()).st_size)
        try:
            old = read_manifest(driver, row.storage, key, reads=1)
        except (ManifestError, FileNotFoundError):
            old = None
        if old is not None and old.content() == new.content():
            return old.record["finalized_at"]  # the same version: keep its time, so both agree
        # a leftover of a finalize that never set the final flag, for content that has changed since
        storage_call(row.storage, key, driver.put_file, tmp, key, overwrite=True)
        return stamp
    finally:
        os.unlink(tmp)


def drop_manifest(ws: Workspace, row: DatasetRow) -> None:
    """Remove the manifest of a draft whose finalize lost (the draft was deleted meanwhile)."""
    driver = ws.driver(row.storage)
    key = mf.manifest_key(row.id)
    try:
        storage_call(row.storage, key, driver.delete, key)
    except FileNotFoundError:
        pass


# -- deleting (delete) --------------------------------------------------------------------
def retire_manifest(ws: Workspace, row: DatasetRow, stamp: str) -> str | None:
    """Before a final version leaves the catalog: tombstone its manifest (if it has one).

    Returns the manifest key to remove once the catalog rows are gone, or None.
    """
    driver = ws.driver(row.storage)
    key = mf.manifest_key(row.id)
    if not row.is_final:  # a manifest of a draft is a leftover of a finalize that never ended
        try:
            storage_call(row.storage, key, driver.delete, key)
        except FileNotFoundError:
            pass
        except ClearMLDataError as exc:
            log.warning(
                "could not check %s for a leftover manifest of draft %s: %s",
                redact_url(row.storage),
                row.id,
                exc,
            )
        return None
    if not storage_call(row.storage, key, driver.exists, key):
        return None
    tomb = mf.tombstone_key(row.id)
    try:
        storage_call(
            row.storage,
            tomb,
            driver.put_bytes,
            mf.encode_tombstone(row.id, row.parents, stamp),
            tomb,
            overwrite=False,
        )
    except FileExistsError:
        pass  # a delete that was interrupted and is run again
    return key


def remove_manifest(ws: Workspace, row: DatasetRow, key: str | None) -> None:
    """After the catalog rows of a deleted version are gone: remove the manifest that
    :func:`retire_manifest` tombstoned (a failure only leaves it, hidden by its tombstone)."""
    if key is None:
        return
    driver = ws.driver(row.storage)
    try:
        storage_call(row.storage, key, driver.delete, key)
    except FileNotFoundError:
        pass
    except StorageError as exc:  # the tombstone already hides it from rebuild and gc
        log.warning("the manifest of deleted dataset %s stays in its storage: %s", row.id, exc)


# -- reading manifests -------------------------------------------------------------------
def read_manifest(driver: StorageDriver, storage: str, key: str, reads: int = MANIFEST_READS) -> mf.Manifest:
    """Read and check a manifest, streamed (ranged reads, inflated as it is parsed; see
    manifest.decode for the bounds). A read that overlapped a finalize replacing it (a
    size taken before, bytes after) is read again before the manifest is called damaged."""
    for attempt in range(reads):
        try:
            size = storage_call(storage, key, driver.stat, key).size
            if size > mf.MAX_BYTES:
                raise ManifestError(
                    f"{key} is not a readable manifest (too large: {size:,} bytes, at most {mf.MAX_BYTES:,})"
                )
            reader = cast(BinaryIO, _RangeReader(driver, storage, key, size))  # read, seek and tell suffice
            return mf.decode(reader, key, size)
        except ManifestError:
            if attempt == reads - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def read_small(driver: StorageDriver, storage: str, key: str) -> bytes:
    """A tombstone's bytes; one larger than any tombstone is refused unread."""
    size = storage_call(storage, key, driver.stat, key).size
    if size > mf.MAX_TOMBSTONE_BYTES:
        raise ManifestError(
            f"{key} is malformed: {size:,} bytes, a tombstone is at most {mf.MAX_TOMBSTONE_BYTES:,}"
        )
    return storage_call(storage, key, driver.read_range, key, 0, size) if size else b""


class _RangeReader:
    """A storage object as a read-only binary file, read by ranges (never held whole)."""

    def __init__(self, driver: StorageDriver, storage: str, key: str, size: int):
        self._call = lambda *args: storage_call(storage, key, driver.read_range, key, *args)
        self._size = size
        self._pos = 0

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = pos if whence == 0 else self._size + pos if whence == 2 else self._pos + pos
        return self._pos

    def read(self, n: int = -1) -> bytes:
        n = self._size - self._pos if n < 0 else min(n, self._size - self._pos)
        if n <= 0:
            return b""
        data = self._call(self._pos, n)[:n]
        self._pos += len(data)
        return data
