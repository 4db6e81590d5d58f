"""Manifests: a catalog you cannot lose.

- ``write_manifest``: called by finalize after the version's objects are stored and before
  its final flag; writes ``manifests/<id>.json.gz`` create-only (manifest.py has the format).
- ``retire_manifest`` / ``remove_manifest``: called by delete; a tombstone is written first,
  then the manifest is removed, so a rebuild never brings a deleted version back.
  ``drop_manifest`` removes the manifest of a draft whose finalize lost a race with a delete.
- ``rebuild_catalog``: restores every final version found in a storage (or some of them and
  their ancestors, for ``get --storage``) into this catalog.
- ``list_manifests`` / ``read_manifest``: what a storage holds, for rebuild and for gc.

A manifest describes only the storage it is in, and a location restored from one is
recorded *unchecked* (see locations.py): nothing is trusted before a stat confirms it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from typing import BinaryIO, cast

from .. import manifest as mf
from .. import tempfiles
from ..catalog import ChangeRow, DatasetRow, ObjectRow, refs
from ..errors import (
    ClearMLDataError,
    DatasetNotFoundError,
    ManifestError,
    StorageError,
    UsageError,
    VersionExistsError,
)
from ..packs import is_pack_key, object_key
from ..paths import check_relpath
from ..storage import StorageDriver, redact_url
from .external import split_url
from .lookup import ID_RE, normalize_storage, resolve_id, storage_url
from .results import RebuildReport
from .views import merge_views, view
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
    links = ws.catalog.links({origin for _h, _s, origin in current.values()})
    located = ws.catalog.object_locations({h for h, _s, _o in current.values()}, row.storage)
    record = {
        "id": row.id, "project": row.project, "name": row.name, "version": row.version,
        "description": row.description, "tags": list(row.tags), "metadata": row.metadata,
        "storage": row.storage, "created_at": row.created_at, "finalized_at": stamp,
        "file_count": len(current), "total_size": sum(v[1] for v in current.values()),
        "added": counts["added"], "modified": counts["modified"], "removed": counts["removed"],
        "parents": list(row.parents),
    }
    files = ((p, *current[p], links.get((current[p][2], p))) for p in sorted(current))
    ws.cache.ensure()
    fd, tmp = tempfiles.mkstemp(ws.cache.tmp, "manifest-", ".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            mf.write(fh, {k: record[k] for k in mf.RECORD_FIELDS}, ws.catalog.sorted_changes(row.id),
                     files, located.get)
        driver = ws.driver(row.storage)
        key = mf.manifest_key(row.id)
        try:
            storage_call(row.storage, key, driver.put_file, tmp, key, overwrite=False)
            return stamp
        except FileExistsError:
            pass
        except FileNotFoundError as exc:  # the bucket or container itself is gone
            raise StorageError(f"cannot write {key} to {redact_url(row.storage)}: {exc.strerror or exc}",
                               url=redact_url(row.storage), key=key,
                               hint="check that the storage (bucket, container or folder) exists") from None
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
            log.warning("could not check %s for a leftover manifest of draft %s: %s",
                        redact_url(row.storage), row.id, exc)
        return None
    if not storage_call(row.storage, key, driver.exists, key):
        return None
    tomb = mf.tombstone_key(row.id)
    try:
        storage_call(row.storage, tomb, driver.put_bytes,
                     mf.encode_tombstone(row.id, row.parents, stamp), tomb, overwrite=False)
    except FileExistsError:
        pass  # a delete that was interrupted and is run again
    return key


def remove_manifest(ws: Workspace, row: DatasetRow, key: str | None) -> None:
    if key is None:
        return
    driver = ws.driver(row.storage)
    try:
        storage_call(row.storage, key, driver.delete, key)
    except FileNotFoundError:
        pass
    except StorageError as exc:  # the tombstone already hides it from rebuild and gc
        log.warning("the manifest of deleted dataset %s stays in its storage: %s", row.id, exc)


# -- rebuilding the catalog -----------------------------------------------------------------
def rebuild_catalog(ws: Workspace, storage: str | None = None,
                    ids: Iterable[str] | None = None) -> RebuildReport:
    """Restore the final versions whose manifests are in ``storage`` into this catalog.

    With ``ids``: only those versions and their ancestors found there. Versions already
    in the catalog are left as they are; running it again changes nothing.
    """
    storage = storage_url(ws, storage)
    driver = ws.driver(storage)
    report = RebuildReport(storage=storage)
    live, tombs = list_manifests(driver, storage)
    report.deleted = len(tombs)
    live = {i: k for i, k in live.items() if i not in tombs}
    docs: dict[str, mf.Manifest] = {}
    tomb_parents: dict[str, list[str] | None] = {}

    def load(dataset_id: str) -> mf.Manifest | None:
        if dataset_id not in docs and dataset_id in live:
            key = live[dataset_id]
            try:
                m = read_manifest(driver, storage, key)
                if m.id != dataset_id:
                    raise ManifestError(f"{key} holds the manifest of another dataset ({m.id})")
            except FileNotFoundError:
                return None  # deleted meanwhile
            except ManifestError as exc:
                report.damaged.append(str(exc))
                live.pop(dataset_id)
                return None
            docs[dataset_id] = m
            report.manifests += 1
        return docs.get(dataset_id)

    def tomb(dataset_id: str) -> list[str] | None:
        if dataset_id not in tomb_parents:
            key = tombs[dataset_id]
            try:
                tomb_parents[dataset_id] = mf.decode_tombstone(_read_small(driver, storage, key), key)
            except (ManifestError, FileNotFoundError) as exc:
                report.damaged.append(str(exc))
                tomb_parents[dataset_id] = None
        return tomb_parents[dataset_id]

    if ids is None:
        wanted = sorted(live)
    else:
        wanted = list(ids)
        for i in wanted:
            if i not in live and ws.catalog.get_dataset(i) is None:
                raise DatasetNotFoundError(
                    f"no dataset with id {i} in the catalog or in {redact_url(storage)}"
                    + (" (it was deleted)" if i in tombs else ""))
    # load what is wanted and, through parents and tombstones, every ancestor found there
    todo, seen = list(wanted), set()
    while todo:
        i = todo.pop()
        if i in seen:
            continue
        seen.add(i)
        m = load(i)
        if m is not None:
            todo.extend(m.parents)
        elif i in tombs:
            todo.extend(tomb(i) or [])

    present = refs.all_ids(ws.catalog)
    done: set[str] = set()

    def effective_parents(m: mf.Manifest) -> tuple[list[str], bool]:
        """The manifest's parents that the catalog holds or will hold; a deleted one is
        replaced by its own parents, as a forced delete folds it into its children."""
        out: list[str] = []
        complete = True
        stack = list(reversed(m.parents))
        visiting: set[str] = set()
        while stack:
            pid = stack.pop()
            if pid in visiting:
                complete = False
                continue
            visiting.add(pid)
            if pid in present or pid in docs:
                if pid not in out:
                    out.append(pid)
            elif pid in tombs and (grandparents := tomb(pid)) is not None:
                stack.extend(reversed(grandparents))
            else:
                complete = False
        return out, complete

    def restore(i: str, path: tuple[str, ...]) -> None:
        if i in done or i in path:
            return
        m = docs[i]
        if i in present:
            done.add(i)
            report.present.append(i)
            with ws.catalog.write():
                report.objects += _restore_objects(ws, m, storage, report)
            return
        candidates, complete = effective_parents(m)
        for pid in candidates:      # parents first
            if pid in docs:
                restore(pid, (*path, i))
        done.add(i)
        parents = [p for p in candidates if p in present]
        complete = complete and len(parents) == len(candidates)
        try:
            objects = _restore_version(ws, m, parents, storage, report)
        except VersionExistsError as exc:
            report.conflicts.append(f"dataset {i} not restored: {exc}")
            return
        except ClearMLDataError as exc:
            report.damaged.append(f"dataset {i} not restored: {exc}")
            return
        present.add(i)
        report.restored.append(i)
        report.objects += objects
        if not complete:
            report.flattened.append(i)

    for i in sorted(docs, key=lambda d: (docs[d].record["finalized_at"], d)):
        restore(i, ())
    ws.forget_views()
    return report


def _restore_objects(ws: Workspace, m: mf.Manifest, storage: str, report: RebuildReport) -> int:
    """Record the locations a manifest read from ``storage`` can vouch for, all unchecked.

    A manifest describes only the storage it is in: a location there is recorded when it
    is where an upload puts content (its own object, or a pack entry) with the size the
    manifest gives the file. An external file's location is taken from its URL. Any other
    location (another storage, a local folder, a device) is refused: restoring that
    storage's manifests records it, as unchecked as these. Nothing is recorded over a row
    the catalog already has, and dedup and reads check a row before they trust it.
    """
    sizes = {h: size for h, size, _o, _l in m.files.values()}
    rows: dict[tuple[str, str], ObjectRow] = {}
    for h, size, _origin, link in m.files.values():
        loc = _link_location(link, h, size) if link is not None else None
        if loc is not None:
            rows.setdefault((loc.storage, h), loc)
    linked = {h for _s, h in rows}
    elsewhere = set(report.elsewhere)
    for h, (where, key, offset, length) in m.objects.items():
        if where is None and _stored_location(h, key, offset, length, sizes.get(h)):
            rows.setdefault((storage, h), ObjectRow(storage, h, key, offset, length))
        elif h not in linked:
            report.refused += 1
            if where is not None and where != storage:
                elsewhere.add(redact_url(where))
    report.elsewhere = sorted(elsewhere)
    ws.catalog.add_objects(rows.values())
    return len(rows)


def _restore_version(ws: Workspace, m: mf.Manifest, parents: list[str], storage: str,
                     report: RebuildReport) -> int:
    rec = m.record
    parent_view = merge_views([view(ws, resolve_id(ws, pid)) for pid in parents])
    target = {p: (h, s) for p, (h, s, _o, _l) in m.files.items()}
    rows: list[ChangeRow] = []
    for p, (h, s, _origin, link) in m.files.items():
        before = parent_view.get(p)
        if before is None:
            rows.append(ChangeRow(p, "added", h, s, None, link))
        elif before[0] != h:
            rows.append(ChangeRow(p, "modified", h, s, None, link))
    rows += [ChangeRow(p, "removed", None, None) for p in parent_view if p not in target]
    counts = {k: sum(1 for r in rows if r.kind == k) for k in ("added", "modified", "removed")}
    row = DatasetRow(id=rec["id"], project=rec["project"], name=rec["name"], version=rec["version"],
                     status="final", storage=storage, created_at=rec["created_at"],
                     updated_at=rec["finalized_at"], description=rec["description"],
                     tags=list(rec["tags"]), metadata=dict(rec["metadata"]),
                     finalized_at=rec["finalized_at"], file_count=len(m.files),
                     total_size=sum(s for _h, s, _o, _l in m.files.values()), parents=parents,
                     **counts)
    with ws.catalog.write():
        objects = _restore_objects(ws, m, storage, report)
        ws.catalog.insert_dataset(row)
        ws.catalog.replace_changes(row.id, rows)
        ws.catalog.update_dataset(row.id, updated_at=rec["finalized_at"])
    return objects


def resolve_or_restore(ws: Workspace, dataset_id: str | None, storage: str) -> DatasetRow:
    """The version with this id (or unique prefix) from the catalog, else restored from the
    manifests in ``storage`` (with its ancestors found there)."""
    if not dataset_id:
        raise UsageError("a storage was given without a dataset id", hint="pass --id with --storage")
    try:
        return resolve_id(ws, dataset_id)
    except DatasetNotFoundError:
        pass
    text = str(dataset_id).strip().lower()
    if not ID_RE.match(text):
        raise UsageError(f"{dataset_id!r} is not a dataset id")
    storage = normalize_storage(storage)
    driver = ws.driver(storage)
    live, tombs = list_manifests(driver, storage)
    found = sorted(i for i in live.keys() | tombs.keys() if i.startswith(text))
    if len(found) > 1:
        raise UsageError(f"dataset id prefix {text!r} is ambiguous in {redact_url(storage)}")
    if not found:
        raise DatasetNotFoundError(f"no dataset with id {text} in the catalog or in {redact_url(storage)}")
    report = rebuild_catalog(ws, storage, ids=found)
    if found[0] not in report.restored and found[0] not in report.present:
        problems = report.conflicts + report.damaged
        raise DatasetNotFoundError(problems[0] if problems else
                                   f"dataset {found[0]} could not be restored from {redact_url(storage)}")
    return resolve_id(ws, found[0])


# -- reading manifests -------------------------------------------------------------------
def read_manifest(driver: StorageDriver, storage: str, key: str,
                  reads: int = MANIFEST_READS) -> mf.Manifest:
    """Read and check a manifest, streamed (ranged reads, inflated as it is parsed; see
    manifest.decode for the bounds). A read that overlapped a finalize replacing it (a
    size taken before, bytes after) is read again before the manifest is called damaged."""
    for attempt in range(reads):
        try:
            size = storage_call(storage, key, driver.stat, key).size
            if size > mf.MAX_BYTES:
                raise ManifestError(f"{key} is not a readable manifest (too large: {size:,} bytes, "
                                    f"at most {mf.MAX_BYTES:,})")
            reader = cast(BinaryIO, _RangeReader(driver, storage, key, size))  # read, seek and tell suffice
            return mf.decode(reader, key, size)
        except ManifestError:
            if attempt == reads - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _read_small(driver: StorageDriver, storage: str, key: str) -> bytes:
    """A tombstone's bytes; one larger than any tombstone is refused unread."""
    size = storage_call(storage, key, driver.stat, key).size
    if size > mf.MAX_TOMBSTONE_BYTES:
        raise ManifestError(f"{key} is malformed: {size:,} bytes, a tombstone is at most "
                            f"{mf.MAX_TOMBSTONE_BYTES:,}")
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


def _stored_location(h: str, key: str, offset: int, length: int, size: int | None) -> bool:
    """Whether a manifest's location in its own storage is one an upload writes: the content's
    own object, or an entry of a pack, of the file's size."""
    if size is None or length != size:
        return False
    return (key == object_key(h) and offset == 0) or is_pack_key(key)


def _link_location(link: str, h: str, size: int) -> ObjectRow | None:
    """The location an external file's URL names (None if it names no object)."""
    parent, name = split_url(link)
    try:
        check_relpath(name)
    except ClearMLDataError:
        return None
    return ObjectRow(parent, h, name, 0, size)
