"""A catalog you cannot lose, and garbage collection of storage objects.

- ``write_manifest``: called by finalize after the version's objects are stored and before
  its final flag; writes ``manifests/<id>.json.gz`` create-only (manifest.py has the format).
- ``retire_manifest`` / ``drop_manifest``: called by delete; a tombstone is written first,
  then the manifest is removed, so a rebuild never brings a deleted version back.
- ``rebuild_catalog``: restores every final version found in a storage (or some of them and
  their ancestors, for ``get --storage``) into this catalog.
- ``collect_garbage``: deletes the objects of a storage that no manifest there and no version
  of this catalog needs, older than a minimum age.

Race with a concurrent upload (in this catalog): gc deletes the catalog rows of an object and
the object itself inside one catalog write transaction, after checking in that transaction
that no change row (of a draft either) needs it. An upload records an object's rows only
after seeing, inside its own write transaction, that the object is still there. And finalize
checks, in the transaction that sets the final flag, that every content still has a row in
the storage, uploading again otherwise. Hence a final version never names a deleted object.
"""

from __future__ import annotations

import logging
import os
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import manifest as mf
from .cache import tempfiles
from .catalog import ChangeRow, DatasetRow, ObjectRow, refs
from .errors import (
    ClearMLDataError,
    DatasetNotFoundError,
    ManifestError,
    StorageError,
    UsageError,
    VersionExistsError,
)
from .hashing import ordered_map
from .packs import is_pack_key, object_key
from .paths import check_relpath
from .rowcheck import extent_problem
from .storage import StorageDriver, redact_url

log = logging.getLogger(__name__)

#: objects younger than this (seconds) are never collected unless asked: another catalog
#: sharing the storage may be uploading a draft that no manifest names yet
DEFAULT_MIN_AGE = 24 * 3600.0
GC_BATCH = 100
#: times gc re-reads the catalog outside the lock before it re-reads it under the lock
GC_OPTIMISTIC_TRIES = 3
FINALIZE_ATTEMPTS = 3
#: reads of a manifest before it is called damaged
MANIFEST_READS = 3


class _Stale(Exception):
    """The catalog changed since gc's snapshot."""


@dataclass
class RebuildReport:
    storage: str
    manifests: int = 0          # manifests read
    restored: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)      # already in this catalog
    flattened: list[str] = field(default_factory=list)    # restored without a missing parent
    deleted: int = 0            # tombstones found
    conflicts: list[str] = field(default_factory=list)    # messages
    damaged: list[str] = field(default_factory=list)      # messages
    objects: int = 0            # objects rows written
    refused: int = 0            # locations not recorded: outside the storage read, or not as its writer puts them
    elsewhere: list[str] = field(default_factory=list)    # other storages named (credentials hidden)


@dataclass
class GcReport:
    storage: str
    dry_run: bool
    min_age: float
    manifests: int = 0          # live manifests read
    listed: int = 0             # objects and packs found in the storage
    referenced: int = 0         # of them, needed by a manifest or a version of this catalog
    too_young: int = 0          # unreferenced but younger than min_age (kept)
    unreferenced: list[tuple[str, int]] = field(default_factory=list)   # (key, size) to delete
    deleted: list[str] = field(default_factory=list)
    deleted_bytes: int = 0
    kept_by_recheck: int = 0    # candidates a concurrent writer started needing (kept)
    #: unfinished uploads (killed multipart uploads, resumable sessions, uncommitted blocks)
    #: older than min_age: (key, started, upload id); aborted with delete
    unfinished: list[tuple[str, float | None, str]] = field(default_factory=list)
    unfinished_too_young: int = 0
    aborted: list[str] = field(default_factory=list)
    abort_failed: int = 0


def duration(text: str | float) -> float:
    """Seconds from "90", "90s", "30m", "6h", "7d"."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        s = str(text).strip().lower()
        scale = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(s[-1:], None)
        try:
            value = float(s[:-1] if scale else s) * (scale or 1)
        except ValueError:
            raise UsageError(f"{text!r} is not a duration", hint="e.g. 0, 90s, 30m, 6h, 7d") from None
    if value < 0 or math.isnan(value):
        raise UsageError(f"{text!r} is not a duration", hint="e.g. 0, 90s, 30m, 6h, 7d")
    return value


def _gc_key(key: str) -> bool:
    """Only content-addressed keys are ever collected; anything else in the storage is left alone."""
    if is_pack_key(key):
        return True
    parts = key.split("/")
    return (len(parts) == 3 and parts[0] == "objects" and len(parts[2]) == 64
            and all(ch in "0123456789abcdef" for ch in parts[2]) and parts[1] == parts[2][:2])


class RecoveryMixin:
    """Manifests, catalog rebuild and storage gc (mixed into ``Service``)."""

    # -- writing manifests (finalize) -----------------------------------------------------------
    def write_manifest(self, row: DatasetRow, view, counts: dict, stamp: str) -> str:
        """Write the manifest of a draft being finalized; returns the finalize time it records.

        The manifest is streamed into a temporary file of the cache and put from there, so a
        version of a million files never has its whole manifest document in memory."""
        links = self.catalog.links({origin for _h, _s, origin in view.values()})
        located = self.catalog.object_locations({h for h, _s, _o in view.values()}, row.storage)
        record = {
            "id": row.id, "project": row.project, "name": row.name, "version": row.version,
            "description": row.description, "tags": list(row.tags), "metadata": row.metadata,
            "storage": row.storage, "created_at": row.created_at, "finalized_at": stamp,
            "file_count": len(view), "total_size": sum(v[1] for v in view.values()),
            "added": counts["added"], "modified": counts["modified"], "removed": counts["removed"],
            "parents": list(row.parents),
        }
        files = ((p, *view[p], links.get((view[p][2], p))) for p in sorted(view))
        self.cache.ensure()
        fd, tmp = tempfiles.mkstemp(self.cache.tmp, "manifest-", ".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                mf.write(fh, {k: record[k] for k in mf.RECORD_FIELDS}, self.catalog.sorted_changes(row.id),
                         files, located.get)
            driver = self.driver(row.storage)
            key = mf.manifest_key(row.id)
            try:
                self._storage_call(driver, row.storage, key, driver.put_file, tmp, key, overwrite=False)
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
                old = self._read_manifest(driver, row.storage, key, reads=1)
            except (ManifestError, FileNotFoundError):
                old = None
            if old is not None and old.content() == new.content():
                return old.record["finalized_at"]  # the same version: keep its time, so both agree
            # a leftover of a finalize that never set the final flag, for content that has changed since
            self._storage_call(driver, row.storage, key, driver.put_file, tmp, key, overwrite=True)
            return stamp
        finally:
            os.unlink(tmp)

    def drop_manifest(self, row: DatasetRow) -> None:
        """Remove the manifest of a draft whose finalize lost (the draft was deleted meanwhile)."""
        driver = self.driver(row.storage)
        key = mf.manifest_key(row.id)
        try:
            self._storage_call(driver, row.storage, key, driver.delete, key)
        except FileNotFoundError:
            pass

    # -- deleting (delete) --------------------------------------------------------------------
    def retire_manifest(self, row: DatasetRow, stamp: str) -> str | None:
        """Before a final version leaves the catalog: tombstone its manifest (if it has one).

        Returns the manifest key to remove once the catalog rows are gone, or None.
        """
        driver = self.driver(row.storage)
        key = mf.manifest_key(row.id)
        if not row.is_final:  # a manifest of a draft is a leftover of a finalize that never ended
            try:
                self._storage_call(driver, row.storage, key, driver.delete, key)
            except FileNotFoundError:
                pass
            except ClearMLDataError as exc:
                log.warning("could not check %s for a leftover manifest of draft %s: %s",
                            redact_url(row.storage), row.id, exc)
            return None
        if not self._storage_call(driver, row.storage, key, driver.exists, key):
            return None
        tomb = mf.tombstone_key(row.id)
        try:
            self._storage_call(driver, row.storage, tomb, driver.put_bytes,
                               mf.encode_tombstone(row.id, row.parents, stamp), tomb, overwrite=False)
        except FileExistsError:
            pass  # a delete that was interrupted and is run again
        return key

    def remove_manifest(self, row: DatasetRow, key: str | None) -> None:
        if key is None:
            return
        driver = self.driver(row.storage)
        try:
            self._storage_call(driver, row.storage, key, driver.delete, key)
        except FileNotFoundError:
            pass
        except StorageError as exc:  # the tombstone already hides it from rebuild and gc
            log.warning("the manifest of deleted dataset %s stays in its storage: %s", row.id, exc)

    # -- recording uploads (upload) ---------------------------------------------------------
    def record_stored(self, driver: StorageDriver, storage: str, objects: list[ObjectRow]) -> bool:
        """Record an uploaded object's rows, unless a concurrent gc deleted it after the put.

        gc deletes objects only inside a catalog write transaction, so an object seen inside
        this one stays until its rows are committed, and from then on gc sees them.
        """
        key = objects[0].key
        with self.catalog.write():
            if not self._storage_call(driver, storage, key, driver.exists, key):
                log.info("object %s vanished after its upload (a concurrent gc); uploading it again", key)
                return False
            self.catalog.add_objects(objects, checked=True)  # written by this catalog, seen there
        return True

    # -- rebuilding the catalog -----------------------------------------------------------------
    def rebuild_catalog(self, storage: str | None = None, ids: Iterable[str] | None = None) -> RebuildReport:
        """Restore the final versions whose manifests are in ``storage`` into this catalog.

        With ``ids``: only those versions and their ancestors found there. Versions already
        in the catalog are left as they are; running it again changes nothing.
        """
        from .service import normalize_storage

        storage = normalize_storage(storage or self.settings.storage)
        driver = self.driver(storage)
        report = RebuildReport(storage=storage)
        live: dict[str, str] = {}
        tombs: dict[str, str] = {}
        for info in self._storage_call(driver, storage, mf.PREFIX, lambda: list(driver.list(mf.PREFIX))):
            parsed = mf.parse_key(info.key)
            if parsed is not None:
                (live if parsed[0] == "manifest" else tombs)[parsed[1]] = info.key
        report.deleted = len(tombs)
        live = {i: k for i, k in live.items() if i not in tombs}
        docs: dict[str, mf.Manifest] = {}
        tomb_parents: dict[str, list[str] | None] = {}

        def load(dataset_id: str) -> mf.Manifest | None:
            if dataset_id not in docs and dataset_id in live:
                key = live[dataset_id]
                try:
                    m = self._read_manifest(driver, storage, key)
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
                    tomb_parents[dataset_id] = mf.decode_tombstone(self._read_small(driver, storage, key), key)
                except (ManifestError, FileNotFoundError) as exc:
                    report.damaged.append(str(exc))
                    tomb_parents[dataset_id] = None
            return tomb_parents[dataset_id]

        if ids is None:
            wanted = sorted(live)
        else:
            wanted = list(ids)
            for i in wanted:
                if i not in live and self.catalog.get_dataset(i) is None:
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

        present = refs.all_ids(self.catalog)
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
                elif pid in tombs and tomb(pid) is not None:
                    stack.extend(reversed(tomb(pid)))
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
                with self.catalog.write():
                    report.objects += self._restore_objects(m, storage, report)
                return
            candidates, complete = effective_parents(m)
            for pid in candidates:      # parents first
                if pid in docs:
                    restore(pid, path + (i,))
            done.add(i)
            parents = [p for p in candidates if p in present]
            complete = complete and len(parents) == len(candidates)
            try:
                objects = self._restore_version(m, parents, storage, report)
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
        self._views.clear()
        return report

    def _restore_objects(self, m: mf.Manifest, storage: str, report: RebuildReport) -> int:
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
        self.catalog.add_objects(rows.values())
        return len(rows)

    def _restore_version(self, m: mf.Manifest, parents: list[str], storage: str, report: RebuildReport) -> int:
        rec = m.record
        from .service import merge_views

        parent_view = merge_views([self.view(self.catalog.get_dataset(pid)) for pid in parents])
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
        with self.catalog.write():
            objects = self._restore_objects(m, storage, report)
            self.catalog.insert_dataset(row)
            self.catalog.replace_changes(row.id, rows)
            self.catalog.update_dataset(row.id, updated_at=rec["finalized_at"])
        return objects

    def resolve_or_restore(self, dataset_id: str | None, storage: str) -> DatasetRow:
        """The version with this id (or unique prefix) from the catalog, else restored from the
        manifests in ``storage`` (with its ancestors found there)."""
        from .service import ID_RE

        if not dataset_id:
            raise UsageError("a storage was given without a dataset id", hint="pass --id with --storage")
        try:
            return self.resolve_id(dataset_id)
        except DatasetNotFoundError:
            pass
        from .service import normalize_storage

        text = str(dataset_id).strip().lower()
        if not ID_RE.match(text):
            raise UsageError(f"{dataset_id!r} is not a dataset id")
        storage = normalize_storage(storage)
        driver = self.driver(storage)
        found = sorted({p[1] for info in self._storage_call(driver, storage, mf.PREFIX,
                                                              lambda: list(driver.list(mf.PREFIX)))
                        if (p := mf.parse_key(info.key)) is not None and p[1].startswith(text)})
        if len(found) > 1:
            raise UsageError(f"dataset id prefix {text!r} is ambiguous in {redact_url(storage)}")
        if not found:
            raise DatasetNotFoundError(f"no dataset with id {text} in the catalog or in {redact_url(storage)}")
        report = self.rebuild_catalog(storage, ids=found)
        if found[0] not in report.restored and found[0] not in report.present:
            problems = report.conflicts + report.damaged
            raise DatasetNotFoundError(problems[0] if problems else
                                       f"dataset {found[0]} could not be restored from {redact_url(storage)}")
        return self.resolve_id(found[0])

    # -- garbage collection ----------------------------------------------------------------------
    def collect_garbage(self, storage: str | None = None, delete: bool = False,
                        min_age: float | str = DEFAULT_MIN_AGE, now: float | None = None) -> GcReport:
        """Find (and with ``delete``, remove) the objects of a storage that nothing needs.

        Needed: every key a live manifest in the storage names, and every key holding content
        that a version of this catalog (a draft too) has a change row for. Objects modified
        less than ``min_age`` seconds ago are kept.
        """
        from .service import normalize_storage

        storage = normalize_storage(storage or self.settings.storage)
        min_age = duration(min_age)
        driver = self.driver(storage)
        report = GcReport(storage=storage, dry_run=not delete, min_age=min_age)
        listed = {}
        for prefix in ("objects/", "packs/"):
            for info in self._storage_call(driver, storage, prefix, lambda p=prefix: list(driver.list(p))):
                if _gc_key(info.key):
                    listed[info.key] = info
        report.listed = len(listed)
        from_manifests = self._manifest_keys(driver, storage, report)
        snap = refs.snapshot(self.catalog, storage)
        needed = from_manifests | snap.referenced
        cutoff = (time.time() if now is None else now) - min_age
        for key in sorted(listed):
            info = listed[key]
            if key in needed:
                report.referenced += 1
            elif min_age > 0 and (info.mtime is None or info.mtime > cutoff):
                report.too_young += 1
            else:
                report.unreferenced.append((key, info.size))
        if delete:
            sizes = dict(report.unreferenced)
            keys = [k for k, _s in report.unreferenced]
            for start in range(0, len(keys), GC_BATCH):
                snap = self._delete_batch(driver, storage, keys[start:start + GC_BATCH], from_manifests,
                                          snap, report)
            report.deleted_bytes = sum(sizes[k] for k in report.deleted)
        self._collect_unfinished(driver, storage, delete, min_age, cutoff, report)
        return report

    def _collect_unfinished(self, driver: StorageDriver, storage: str, delete: bool, min_age: float,
                            cutoff: float, report: GcReport) -> None:
        """Uploads under the storage's prefix that a killed writer never finished: listed, and
        with ``delete`` aborted, once they started at least ``min_age`` ago."""
        uploads = self._storage_call(driver, storage, "", lambda: list(driver.list_unfinished("")))
        for upload in sorted(uploads, key=lambda u: (u.key, u.started or 0.0)):
            if min_age > 0 and (upload.started is None or upload.started > cutoff):
                report.unfinished_too_young += 1
            else:
                report.unfinished.append((upload.key, upload.started, upload.upload_id))
        if not delete:
            return
        by_id = {(u.key, u.upload_id): u for u in uploads}
        for key, _started, upload_id in report.unfinished:
            try:
                driver.abort_unfinished(by_id[key, upload_id])
            except OSError as exc:
                report.abort_failed += 1
                log.warning("could not abort the unfinished upload of %s in %s: %s", key,
                            redact_url(storage), exc.strerror or exc)
            else:
                report.aborted.append(key)

    def _manifest_keys(self, driver: StorageDriver, storage: str, report: GcReport) -> set[str]:
        live, tombs = {}, set()
        for info in self._storage_call(driver, storage, mf.PREFIX, lambda: list(driver.list(mf.PREFIX))):
            parsed = mf.parse_key(info.key)
            if parsed is not None:
                if parsed[0] == "manifest":
                    live[parsed[1]] = info.key
                else:
                    tombs.add(parsed[1])
        needed: set[str] = set()
        for dataset_id, key in sorted(live.items()):
            if dataset_id in tombs:
                continue
            try:
                m = self._read_manifest(driver, storage, key)
            except FileNotFoundError:
                continue
            except ManifestError as exc:
                # a manifest that cannot be read might still need anything: collect nothing
                raise ManifestError(f"{exc}; garbage collection stopped, nothing was deleted",
                                    hint="move the damaged manifest away, or rebuild it by closing "
                                         "the version again") from None
            report.manifests += 1
            needed |= m.local_keys()
            needed |= {loc[1] for loc in m.objects.values() if loc[0] == storage}
        return needed

    def _delete_batch(self, driver: StorageDriver, storage: str, batch: list[str], from_manifests: set[str],
                      snap: refs.Snapshot, report: GcReport) -> refs.Snapshot:
        for attempt in range(GC_OPTIMISTIC_TRIES + 1):
            locked_read = attempt == GC_OPTIMISTIC_TRIES
            failure: BaseException | None = None
            try:
                with self.catalog.write():
                    if refs.data_version(self.catalog) != snap.version:
                        if not locked_read:
                            raise _Stale()
                        snap = refs.snapshot(self.catalog, storage)   # under the lock: exact
                    doomed = []
                    for key in batch:
                        if key in snap.referenced or key in from_manifests:
                            report.kept_by_recheck += 1
                        else:
                            doomed.append(key)
                    refs.forget_objects(self.catalog, storage,
                                        [(h, k) for k in doomed for h in snap.hashes.get(k, ())])
                    for key in doomed:
                        try:
                            self._storage_call(driver, storage, key, driver.delete, key)
                        except FileNotFoundError:
                            pass
                        except BaseException as exc:  # noqa: BLE001  commit the deleted rows even on
                            # Ctrl-C: rows naming a deleted object would be worse than an unrecorded object
                            failure = exc
                            break
                        report.deleted.append(key)
            except _Stale:
                snap = refs.snapshot(self.catalog, storage)
                continue
            if failure is not None:
                raise failure
            return snap
        return snap

    # -- plumbing ----------------------------------------------------------------------------
    def _read_manifest(self, driver: StorageDriver, storage: str, key: str,
                       reads: int = MANIFEST_READS) -> mf.Manifest:
        """Read and check a manifest, streamed (ranged reads, inflated as it is parsed; see
        manifest.decode for the bounds). A read that overlapped a finalize replacing it (a
        size taken before, bytes after) is read again before the manifest is called damaged."""
        for attempt in range(reads):
            try:
                size = self._storage_call(driver, storage, key, driver.stat, key).size
                if size > mf.MAX_BYTES:
                    raise ManifestError(f"{key} is not a readable manifest (too large: {size:,} bytes, "
                                        f"at most {mf.MAX_BYTES:,})")
                return mf.decode(_RangeReader(self, driver, storage, key, size), key, size)
            except ManifestError:
                if attempt == reads - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _read_small(self, driver: StorageDriver, storage: str, key: str) -> bytes:
        """A tombstone's bytes; one larger than any tombstone is refused unread."""
        size = self._storage_call(driver, storage, key, driver.stat, key).size
        if size > mf.MAX_TOMBSTONE_BYTES:
            raise ManifestError(f"{key} is malformed: {size:,} bytes, a tombstone is at most "
                                f"{mf.MAX_TOMBSTONE_BYTES:,}")
        return self._storage_call(driver, storage, key, driver.read_range, key, 0, size) if size else b""

    # -- trusting locations (dedup and reads) --------------------------------------------------
    def confirm_stored(self, storage: str, rows: list[ObjectRow]) -> int:
        """Before dedup skips a content: each unchecked row of ``storage`` (the rows given, as
        ``Catalog.unchecked_objects`` finds them) is seen there first, one stat per key, and
        marked checked if it is where an upload puts content (the content's own object of its
        size, or a pack entry the pack covers and whose bytes hash right). A row that is not
        stays unchecked, so the content counts as missing and is uploaded (its row then
        replaced). Returns the rows marked."""
        if not rows:
            return 0
        problems = self._confirm(storage, rows, dedup=True)
        good = [r for r in rows if r not in problems]
        if good:
            self.catalog.mark_checked(good)
        for r, why in list(problems.items())[:3]:
            log.info("not trusting the recorded location of %s: %s", r.hash[:12], why)
        return len(good)

    def readable_locations(self, row: DatasetRow, locations: dict[str, list[ObjectRow]]
                           ) -> dict[str, list[ObjectRow]]:
        """The location to read each content from: the version's own storage first, then the
        others; an unchecked one is read only once a stat shows it holds enough bytes (it is
        then marked checked), else the next is tried. Contents with rows but no readable
        location raise StorageError; those without rows are left to the caller."""
        order = {h: sorted(locs, key=lambda x: x.storage != row.storage) for h, locs in locations.items()}
        chosen: dict[str, list[ObjectRow]] = {}
        why: dict[str, str] = {}
        turn = {h: 0 for h in order if order[h]}
        while turn:
            doubtful: dict[str, list[ObjectRow]] = {}
            for h, i in turn.items():
                loc = order[h][i]
                if loc.checked:
                    chosen[h] = [loc]
                else:
                    doubtful.setdefault(loc.storage, []).append(loc)
            problems: dict[ObjectRow, str] = {}
            for storage, locs in doubtful.items():
                problems.update(self._confirm(storage, locs, dedup=False))
            good = [loc for locs in doubtful.values() for loc in locs if loc not in problems]
            if good:
                self.catalog.mark_checked(good)
            for loc in good:
                chosen[loc.hash] = [loc]
            nxt = {}
            for loc, reason in problems.items():
                why.setdefault(loc.hash, reason)
                if turn[loc.hash] + 1 < len(order[loc.hash]):
                    nxt[loc.hash] = turn[loc.hash] + 1
            turn = nxt
        lost = sorted(h for h in why if h not in chosen)
        if lost:
            raise StorageError(f"no readable location for content {lost[0][:12]}… of dataset {row.id}"
                               + (f" (and {len(lost) - 1} more)" if len(lost) > 1 else "") + f": {why[lost[0]]}",
                               hint="the catalog (or the manifest it was rebuilt from) names bytes that are not "
                                    "there; run clearml-data verify")
        return chosen

    def _confirm(self, storage: str, rows: list[ObjectRow], dedup: bool) -> dict[ObjectRow, str]:
        """{row: why it cannot be trusted} for the rows of one storage that a stat refutes."""
        driver = self.driver(storage)

        def size_of(key: str) -> int | None:
            try:
                return self._storage_call(driver, storage, key, driver.stat, key).size
            except FileNotFoundError:
                return None

        def entry_hash(r: ObjectRow) -> str | None:
            from .verify import _hash_range

            try:
                return self._storage_call(driver, storage, r.key, _hash_range, driver, r.key, r.offset, r.length)
            except FileNotFoundError:
                return None

        keys = sorted({r.key for r in rows})
        sizes = dict(ordered_map(size_of, keys, driver.default_max_workers, window=64))
        problems = {}
        for r in rows:
            reason = _misfit(r, sizes[r.key], dedup)
            if reason is not None:
                problems[r] = f"{r.key} in {redact_url(storage)} {reason}"
        # a pack's name says nothing of its entries: before dedup relies on one, its bytes are hashed
        entries = [r for r in rows if dedup and r not in problems and is_pack_key(r.key)]
        for r, digest in ordered_map(entry_hash, entries, driver.default_max_workers, window=64):
            if digest != r.hash:
                problems[r] = f"{r.key} in {redact_url(storage)} holds other bytes at {r.offset:,}"
        return problems

    @staticmethod
    def _storage_call(driver: StorageDriver, storage: str, key: str, fn, *args, **kwargs):
        """Call a driver method; FileNotFoundError and FileExistsError pass, other OSErrors
        become StorageError naming the storage (credentials hidden)."""
        try:
            return fn(*args, **kwargs)
        except (FileNotFoundError, FileExistsError, ClearMLDataError):
            raise
        except OSError as exc:
            raise StorageError(f"cannot access {key} in {redact_url(storage)}: {exc.strerror or exc}",
                               url=redact_url(storage), key=key) from None


class _RangeReader:
    """A storage object as a read-only binary file, read by ranges (never held whole)."""

    def __init__(self, service, driver: StorageDriver, storage: str, key: str, size: int):
        self._call = lambda *args: service._storage_call(driver, storage, key, driver.read_range, key, *args)
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
    from .external import split_url

    parent, name = split_url(link)
    try:
        check_relpath(name)
    except ClearMLDataError:
        return None
    return ObjectRow(parent, h, name, 0, size)


def _misfit(r: ObjectRow, size: int | None, dedup: bool) -> str | None:
    """Why a stat of ``size`` bytes (None: no object) refutes a location, or None.

    A pack must cover the entry; any other object must be exactly the content. For dedup the
    key must also be where an upload puts the content (its own object, or a pack)."""
    if size is None:
        return "is missing"
    if not is_pack_key(r.key):
        if dedup and r.key != object_key(r.hash):
            return "is not where an upload stores this content"
        if r.offset != 0:
            return f"holds one content, but the catalog reads it from byte {r.offset:,}"
    return extent_problem(r.key, [(r.hash, r.offset, r.length)], size) or None
