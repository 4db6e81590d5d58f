"""Upload and finalize: a draft's content into its storage, then the version made final.

:func:`close` is the one definition of closing a draft (``clearml-data close`` and
``sync``, ``Dataset.finalize``): upload what is pending, then finalize.

Write order, so that a crash at any moment leaves a resumable draft or a complete
version: objects into storage, then their catalog rows (:func:`record_stored`, one object
at a time, so an interrupted upload resumes where it stopped), then the manifest, then the
final flag. A concurrent gc of the same storage may delete an object between its put and
its rows, or between the upload and the final flag: both are seen inside a catalog write
transaction and the content is uploaded again, up to :data:`FINALIZE_ATTEMPTS` times.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from .. import _crashpoints as crashpoints
from .. import packs
from ..cache import Cache
from ..catalog import ChangeRow, DatasetRow, ObjectRow
from ..diskspace import space_for
from ..errors import ClearMLDataError, DatasetStateError, StorageError, UsageError
from ..parallel import ordered_map
from ..paths import shorten
from ..progress import ProgressFactory, Streamed, null_progress
from ..storage import StorageDriver
from ..storage.calls import storage_error
from . import manifests
from .locations import confirm_stored
from .lookup import draft, normalize_storage, now, parent_row, resolve_id
from .results import Closed, UploadResult, WorkflowEvents
from .views import shadowed, tree_clash, view
from .workspace import Workspace, storage_call

log = logging.getLogger(__name__)

FINALIZE_ATTEMPTS = 3


def pending_uploads(ws: Workspace, row: DatasetRow, storage: str | None = None) -> list[ChangeRow]:
    """Change rows whose content the storage does not hold yet."""
    return _split_uploads(ws, row, storage)[1]


def has_pending_uploads(ws: Workspace, row: DatasetRow, storage: str | None = None) -> bool:
    """Whether a content of the draft's rows is missing from the storage (the draft's own by default)."""
    return ws.catalog.has_missing_objects(row.id, storage or row.storage)


def is_dirty(ws: Workspace, row: DatasetRow) -> bool:
    """A draft with content not yet uploaded."""
    return not row.is_final and has_pending_uploads(ws, row)


def _split_uploads(
    ws: Workspace, row: DatasetRow, storage: str | None
) -> tuple[list[ChangeRow], list[ChangeRow]]:
    """(rows that carry content, those of them whose content the storage lacks)."""
    rows = [c for c in ws.catalog.changes(row.id) if c.kind != "removed" and c.link is None]
    storage = storage or row.storage  # dedup trusts checked rows only: see the others first
    hashes = {c.hash for c in rows if c.hash is not None}
    confirm_stored(ws, storage, ws.catalog.unchecked_objects(storage, hashes))
    missing = ws.catalog.missing_objects(storage, hashes)
    return rows, [c for c in rows if c.hash in missing]


def upload(
    ws: Workspace,
    dataset_id: str,
    storage: str | None = None,
    chunk_size: float | None = None,
    max_workers: int | None = None,
    progress: ProgressFactory = null_progress,
    _attempt: int = 1,
) -> UploadResult:
    """Store the draft's content its storage lacks: small files in packs, large ones as their own
    objects, each recorded as soon as it is stored. ``storage`` moves the draft to another one."""
    row = draft(ws, dataset_id)
    if storage:
        storage = normalize_storage(storage)
        ws.driver(storage)  # a URL the driver refuses (credentials in it) is never recorded
        if storage != row.storage:
            ws.catalog.update_dataset(row.id, storage=storage, updated_at=now())
            row.storage = storage
    storage = row.storage
    driver = ws.driver(storage)
    _sweep_temporaries(ws.cache, lambda: driver)  # what an interrupted upload left behind
    result = UploadResult(storage=storage)
    content_rows, pending = _split_uploads(ws, row, storage)
    result.skipped = len({c.hash for c in content_rows} - {c.hash for c in pending})
    unique: dict[str, packs.PendingFile] = {}
    gone: list[packs.PendingFile] = []
    for c in pending:
        if c.hash is None or c.size is None or c.hash in unique:
            continue
        source = c.source if c.source and os.path.isfile(c.source) else None
        if source is None and ws.cache.has(c.hash, c.size):
            source = str(ws.cache.object_path(c.hash))
        if source is None:
            gone.append(packs.PendingFile(c.hash, c.size, c.source or "", c.path))
            continue
        unique[c.hash] = packs.PendingFile(c.hash, c.size, source, c.path)
    if gone:  # every file that is gone, in one error, before anything is written
        raise _gone(row, gone)
    result.files = len(pending)
    plan = packs.plan_upload(unique.values(), chunk_size)
    crashpoints.reach("upload.planned")
    tasks = [("pack", group) for group in plan.packs] + [("large", [f]) for f in plan.large]
    bar = Streamed(progress(plan.total_bytes, "B", "Uploading", files=len(unique)))
    tmp_dir = str(ws.cache.tmp)

    def run(task: tuple[str, list[packs.PendingFile]]) -> list[ObjectRow]:
        kind, files = task
        if kind == "large":
            f = files[0]
            with ws.cache.in_use():
                local = ws.cache.ingest(f)  # upload exactly what was hashed
                crashpoints.reach("upload.cached")
                key = packs.object_key(f.hash)
                _put(driver, str(local), key, storage, callback=bar.callback(f.hash))
            return [ObjectRow(storage, f.hash, key, 0, f.size)]
        # a pack's bytes count half as its files are packed (one by one: the bar moves on many
        # small files) and half as the pack is sent
        with space_for(ws.cache.root, "the cache"):
            digest, tmp, entries = packs.write_pack(
                files, tmp_dir, on_file=lambda f: bar.moved(id(task), f.size / 2, files=1)
            )
        crashpoints.reach("upload.pack_written")
        try:
            key = packs.pack_key(digest)
            _put(driver, tmp, key, storage, callback=bar.callback(id(task), scale=0.5))
        finally:
            os.unlink(tmp)
        return [ObjectRow(storage, h, key, off, length) for h, off, length in entries]

    lost = 0
    try:
        workers = max_workers or driver.default_max_workers
        ws.plugins.budget.ensure(workers)  # --max-workers may ask for more than the drivers' default
        for task, objects in ordered_map(run, tasks, workers, window=64):
            if not record_stored(ws, driver, storage, objects):  # recorded as soon as stored: resumable
                lost += 1
                continue
            crashpoints.reach("upload.object_recorded")
            nbytes = sum(f.size for f in task[1])
            result.objects += 1
            result.uploaded_bytes += nbytes
            bar.done(task[1][0].hash if task[0] == "large" else id(task), nbytes, files=len(task[1]))
    finally:
        bar.close()
        ws.fit_cache()  # large files went through the cache: its size limit holds after an upload too
    if lost and _attempt < FINALIZE_ATTEMPTS:  # a concurrent gc deleted what was just stored
        again = upload(ws, row.id, None, chunk_size, max_workers, progress, _attempt + 1)
        result.objects += again.objects
        result.uploaded_bytes += again.uploaded_bytes
    crashpoints.reach("upload.done")
    return result


def _gone(row: DatasetRow, gone: list[packs.PendingFile]) -> ClearMLDataError:
    """The error for local files gone before their content was stored: put them back, or
    remove them from the draft."""
    if len(gone) == 1:
        return packs.source_gone(gone[0], row.id)
    import shlex

    shown = ", ".join(repr(f.path) for f in gone[:3]) + (
        f" and {len(gone) - 3} more" if len(gone) > 3 else ""
    )
    paths = " ".join(shlex.quote(f.path) for f in gone[:3])
    return UsageError(
        f"{len(gone)} local files of dataset {row.id} are gone since they were added ({shown}), "
        "and no storage holds their content",
        hint=f"put them back, or take them out of the draft: clearml-data remove --id {row.id} --files "
        f"{paths}{' ...' if len(gone) > 3 else ''} (Dataset.remove_files(PATH) for each)",
    )


def _put(
    driver: StorageDriver, local: str, key: str, storage: str, callback: Callable[[int], None] | None = None
) -> None:
    try:
        driver.put_file(local, key, callback=callback)
        crashpoints.reach("upload.object_put")
    except ClearMLDataError:
        raise
    except OSError as exc:
        raise storage_error(exc, storage, key, doing="write") from exc


def record_stored(ws: Workspace, driver: StorageDriver, storage: str, objects: list[ObjectRow]) -> bool:
    """Record an uploaded object's rows, unless a concurrent gc deleted it after the put.

    gc deletes objects only inside a catalog write transaction, so an object seen inside
    this one stays until its rows are committed, and from then on gc sees them.
    """
    key = objects[0].key
    with ws.catalog.write():
        if not storage_call(storage, key, driver.exists, key):
            log.info("object %s vanished after its upload (a concurrent gc); uploading it again", key)
            return False
        ws.catalog.add_objects(objects, checked=True)  # written by this catalog, seen there
    return True


def close(
    ws: Workspace,
    dataset_id: str,
    storage: str | None = None,
    with_upload: bool = True,
    chunk_size: float | None = None,
    max_workers: int | None = None,
    progress: ProgressFactory = null_progress,
    events: WorkflowEvents | None = None,
) -> Closed:
    """Close a draft: upload what its storage lacks (into ``storage`` when given, which then
    becomes the dataset's storage), then finalize. Without ``with_upload``, content still to
    upload is an error and nothing is written. Closing a final version is an error that says
    so (ClearML's finalize raises too): nothing is left to close."""
    row = resolve_id(ws, dataset_id)
    if row.is_final:
        raise DatasetStateError(
            f"dataset {row.id} ({row.project}/{row.name} version {row.version}) is already final: "
            "there is nothing to close",
            hint="to change its files, make a child version: "
            f"clearml-data create --parents {row.id} --name NAME",
        )
    uploaded = None
    if has_pending_uploads(ws, row, storage) or (storage and storage != row.storage):
        if not with_upload:
            raise _pending(row)
        (events or WorkflowEvents()).uploading(row, storage or row.storage)
        uploaded = upload(ws, row.id, storage, chunk_size, max_workers, progress)
    # finalize checks again what the storage holds; what it finds missing is uploaded too
    final = finalize(ws, row.id, with_upload, chunk_size, max_workers, progress)
    return Closed(final, uploaded, shadowed(ws, final))


def _pending(row: DatasetRow) -> DatasetStateError:
    return DatasetStateError(
        f"cannot finalize dataset {row.id}: pending uploads",
        hint="call Dataset.upload() first, or use finalize(auto_upload=True) / clearml-data close",
    )


def finalize(
    ws: Workspace,
    dataset_id: str,
    auto_upload: bool = False,
    chunk_size: float | None = None,
    max_workers: int | None = None,
    progress: ProgressFactory = null_progress,
) -> DatasetRow:
    """Make the draft a final version: check its parents, upload what is pending (with
    ``auto_upload``), write its manifest, then set the final flag."""
    row = draft(ws, dataset_id)
    for pid in row.parents:
        parent = parent_row(ws, row, pid)
        if not parent.is_final:
            raise DatasetStateError(f"parent dataset {pid} is not final")
    confirm_stored(ws, row.storage, ws.catalog.unchecked_objects_of(row.id, row.storage))
    if has_pending_uploads(ws, row):
        if not auto_upload:
            raise _pending(row)
        upload(ws, row.id, chunk_size=chunk_size, max_workers=max_workers, progress=progress)
        if has_pending_uploads(ws, row):
            raise StorageError(f"dataset {row.id} still has pending uploads after upload")
    _sweep_temporaries(ws.cache, lambda: ws.driver(row.storage))
    crashpoints.reach("finalize.checked")
    for _attempt in range(FINALIZE_ATTEMPTS):
        current_view = view(ws, row)
        clash = tree_clash(current_view)
        if clash is not None:  # the add checks keep this out; a catalog from elsewhere may not
            raise DatasetStateError(
                f"cannot finalize dataset {row.id}: {shorten(clash)} is both a file "
                "and a folder in it, which no local copy can hold",
                hint=f"remove one of them: clearml-data remove --id {row.id} --files ...",
            )
        counts = ws.catalog.count_changes(row.id)
        # after the objects, before the flag (looked up on the module, so it can be observed)
        stamp = manifests.write_manifest(ws, row, current_view, counts, now())
        crashpoints.reach("finalize.manifest_written")
        with ws.catalog.write():
            current = ws.catalog.get_dataset(row.id)
            if current is None or current.is_final:
                if current is None:
                    manifests.drop_manifest(ws, row)
                raise DatasetStateError(f"dataset {row.id} was finalized or deleted by another process")
            lost = has_pending_uploads(ws, row)  # a concurrent gc removed content since the upload
            if not lost:
                ws.catalog.clear_sources(row.id)
                ws.catalog.update_dataset(
                    row.id,
                    status="final",
                    finalized_at=stamp,
                    updated_at=stamp,
                    file_count=len(current_view),
                    total_size=sum(v[1] for v in current_view.values()),
                    added=counts["added"],
                    modified=counts["modified"],
                    removed=counts["removed"],
                )
        if not lost:
            crashpoints.reach("finalize.committed")
            return resolve_id(ws, row.id)
        upload(ws, row.id, chunk_size=chunk_size, max_workers=max_workers, progress=progress)
    raise StorageError(
        f"dataset {row.id} lost stored content to a concurrent gc {FINALIZE_ATTEMPTS} times",
        hint="close it again",
    )


def _sweep_temporaries(cache: Cache, open_driver: Callable[[], StorageDriver]) -> None:
    """Sweep the local cache's and a storage's temporary files (before an upload, a finalize).

    ``open_driver()`` gives the storage's driver; it is called inside the guard, so a storage
    whose plugin is missing does not fail an operation that needs no transfer.
    """
    try:
        cache.sweep_tmp()
        open_driver().clean_temporaries()
    except Exception as exc:  # noqa: BLE001 - a plugin's sweep must never fail what it precedes
        log.debug("sweeping temporary files failed: %s", exc)
