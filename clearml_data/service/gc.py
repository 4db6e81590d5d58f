"""Garbage collection of storage objects.

``collect_garbage`` deletes the objects of a storage that no manifest there and no version
of this catalog needs, older than a minimum age, and aborts the unfinished uploads (killed
multipart uploads, resumable sessions, uncommitted blocks) a killed writer left.

Race with a concurrent upload (in this catalog): gc deletes the catalog rows of an object and
the object itself inside one catalog write transaction, after checking in that transaction
that no change row (of a draft either) needs it. An upload records an object's rows only
after seeing, inside its own write transaction, that the object is still there. And finalize
checks, in the transaction that sets the final flag, that every content still has a row in
the storage, uploading again otherwise. Hence a final version never names a deleted object.
"""

from __future__ import annotations

import logging
import math
import time

from ..catalog import refs
from ..errors import ManifestError, UsageError
from ..packs import is_pack_key
from ..storage import ObjectInfo, StorageDriver, redact_url
from .lookup import storage_url
from .manifests import list_manifests, read_manifest
from .results import GcReport
from .workspace import Workspace, storage_call

log = logging.getLogger(__name__)

#: objects younger than this (seconds) are never collected unless asked: another catalog
#: sharing the storage may be uploading a draft that no manifest names yet
DEFAULT_MIN_AGE = 24 * 3600.0
GC_BATCH = 100
#: times gc re-reads the catalog outside the lock before it re-reads it under the lock
GC_OPTIMISTIC_TRIES = 3


class _Stale(Exception):
    """The catalog changed since gc's snapshot."""


def duration(text: str | float) -> float:
    """Seconds from "90", "90s", "30m", "6h", "7d"."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        s = str(text).strip().lower()
        scale = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(s[-1:])
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
    return (
        len(parts) == 3
        and parts[0] == "objects"
        and len(parts[2]) == 64
        and all(ch in "0123456789abcdef" for ch in parts[2])
        and parts[1] == parts[2][:2]
    )


def collect_garbage(
    ws: Workspace,
    storage: str | None = None,
    delete: bool = False,
    min_age: float | str = DEFAULT_MIN_AGE,
    now: float | None = None,
) -> GcReport:
    """Find (and with ``delete``, remove) the objects of a storage that nothing needs.

    Needed: every key a live manifest in the storage names, and every key holding content
    that a version of this catalog (a draft too) has a change row for. Objects modified
    less than ``min_age`` seconds ago are kept.
    """
    storage = storage_url(ws, storage)
    min_age = duration(min_age)
    driver = ws.driver(storage)
    report = GcReport(storage=storage, dry_run=not delete, min_age=min_age)
    listed: dict[str, ObjectInfo] = {}
    for prefix in ("objects/", "packs/"):
        for info in storage_call(storage, prefix, lambda p=prefix: list(driver.list(p))):
            if _gc_key(info.key):
                listed[info.key] = info
    report.listed = len(listed)
    from_manifests = _manifest_keys(driver, storage, report)
    snap = refs.snapshot(ws.catalog, storage)
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
            snap = _delete_batch(
                ws, driver, storage, keys[start : start + GC_BATCH], from_manifests, snap, report
            )
        report.deleted_bytes = sum(sizes[k] for k in report.deleted)
    _collect_unfinished(driver, storage, delete, min_age, cutoff, report)
    return report


def _collect_unfinished(
    driver: StorageDriver, storage: str, delete: bool, min_age: float, cutoff: float, report: GcReport
) -> None:
    """Uploads under the storage's prefix that a killed writer never finished: listed, and
    with ``delete`` aborted, once they started at least ``min_age`` ago."""
    uploads = storage_call(storage, "", lambda: list(driver.list_unfinished("")))
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
            log.warning(
                "could not abort the unfinished upload of %s in %s: %s",
                key,
                redact_url(storage),
                exc.strerror or exc,
            )
        else:
            report.aborted.append(key)


def _manifest_keys(driver: StorageDriver, storage: str, report: GcReport) -> set[str]:
    live, tombs = list_manifests(driver, storage)
    needed: set[str] = set()
    for dataset_id, key in sorted(live.items()):
        if dataset_id in tombs:
            continue
        try:
            m = read_manifest(driver, storage, key)
        except FileNotFoundError:
            continue
        except ManifestError as exc:
            # a manifest that cannot be read might still need anything: collect nothing
            raise ManifestError(
                f"{exc}; garbage collection stopped, nothing was deleted",
                hint="move the damaged manifest away, or rebuild it by closing the version again",
            ) from None
        report.manifests += 1
        needed |= m.local_keys()
        needed |= {loc[1] for loc in m.objects.values() if loc[0] == storage}
    return needed


def _delete_batch(
    ws: Workspace,
    driver: StorageDriver,
    storage: str,
    batch: list[str],
    from_manifests: set[str],
    snap: refs.Snapshot,
    report: GcReport,
) -> refs.Snapshot:
    for attempt in range(GC_OPTIMISTIC_TRIES + 1):
        locked_read = attempt == GC_OPTIMISTIC_TRIES
        failure: BaseException | None = None
        try:
            with ws.catalog.write():
                if refs.data_version(ws.catalog) != snap.version:
                    if not locked_read:
                        raise _Stale()
                    snap = refs.snapshot(ws.catalog, storage)  # under the lock: exact
                doomed = []
                for key in batch:
                    if key in snap.referenced or key in from_manifests:
                        report.kept_by_recheck += 1
                    else:
                        doomed.append(key)
                refs.forget_objects(
                    ws.catalog, storage, [(h, k) for k in doomed for h in snap.hashes.get(k, ())]
                )
                for key in doomed:
                    try:
                        storage_call(storage, key, driver.delete, key)
                    except FileNotFoundError:
                        pass
                    except BaseException as exc:  # noqa: BLE001  commit the deleted rows even on
                        # Ctrl-C: rows naming a deleted object would be worse than an unrecorded object
                        failure = exc
                        break
                    report.deleted.append(key)
        except _Stale:
            snap = refs.snapshot(ws.catalog, storage)
            continue
        if failure is not None:
            raise failure
        return snap
    return snap
