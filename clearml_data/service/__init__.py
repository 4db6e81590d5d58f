"""The service layer: every operation of clearml-data, under both the CLI and the API.

:class:`Service` is the one surface the faces use. It builds a
:class:`~clearml_data.service.workspace.Workspace` (settings, catalog, cache, plugins,
hash memory, remembered views) and each public method calls one function of the module
that owns the operation:

==============  ==========================================================================
workspace       the Workspace, and storage_call (a driver's OSError as a StorageError)
results         the result dataclasses
lookup          resolve_id, resolve_ref, get, search; label, tag and storage URL checks
views           view, shadowed, list_files, selected_files, summary; merge and tree rules
locations       where content lives, when a recorded location is trusted, check_writable
drafts          create, add_files, remove_files, sync_folder, update, publish
external        add_external_files, link_entries, remove_links, version_files
manifests       manifests in storage: write, tombstone, list and read them
upload          upload, finalize, pending uploads, record_stored
checkout        get_local_copy, get_mutable_local_copy, fetch_objects, the cache limit
reading         open_file: one file of a version, read in place (ranged reads, checked)
lineage         dependency_graph, changes_against, num_chunks, squash, rename, move, delete
metadata        set_metadata, get_metadata
remote          single files and folders at storage URLs (StorageManager)
reports         the tables, plots, images and text reported on a version (get_logger)
clearml_import  read_session, import_session: a dataset ClearML wrote in offline mode
verify          verify_storage, verify_cache, verify_folder
repair          repair: store again what verify found damaged, from local sources
rebuild         rebuild_catalog, resolve_or_restore
gc              collect_garbage
doctor          doctor and its probes
==============  ==========================================================================

Each module imports only modules listed above it here (and the layers below the service:
catalog, storage, cache and the format modules), never this facade, so the imports form
a DAG (tests/test_architecture.py checks it).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from ..cache import Cache, CacheUsage, PruneResult
from ..cache.hashmemory import HashMemory
from ..catalog import Catalog, ChangeRow, DatasetRow, ObjectRow
from ..config import Settings
from ..progress import ProgressFactory, null_progress
from ..storage import PluginManager, StorageDriver
from ..urls import DatasetURL
from . import (
    checkout,
    clearml_import,
    doctor,
    drafts,
    external,
    gc,
    lineage,
    locations,
    lookup,
    manifests,
    metadata,
    reading,
    rebuild,
    remote,
    repair,
    reports,
    upload,
    verify,
    views,
)
from . import upload as _upload  # the name `upload` is also a parameter of close_dataset
from .external import link_url, split_url
from .gc import DEFAULT_MIN_AGE, duration
from .lookup import ID_RE, MIN_PREFIX, normalize_storage, now
from .metadata import METADATA_MAX_BYTES
from .reading import VersionFile
from .results import (
    AddResult,
    Closed,
    Diff,
    FileInfo,
    GcReport,
    LinkInfo,
    ListedFile,
    LocalCopy,
    PluginInfo,
    PluginsReport,
    Problem,
    RebuildReport,
    RepairReport,
    ShadowedFile,
    SyncOutcome,
    SyncResult,
    UploadResult,
    VerifyReport,
    VersionSummary,
    WorkflowEvents,
)
from .upload import FINALIZE_ATTEMPTS
from .views import merge_views, tree_clash
from .workspace import View, Workspace

__all__ = [
    "DEFAULT_MIN_AGE",
    "FINALIZE_ATTEMPTS",
    "ID_RE",
    "METADATA_MAX_BYTES",
    "MIN_PREFIX",
    "AddResult",
    "Closed",
    "DatasetRow",
    "Diff",
    "FileInfo",
    "GcReport",
    "LinkInfo",
    "ListedFile",
    "LocalCopy",
    "PluginInfo",
    "PluginManager",
    "PluginsReport",
    "Problem",
    "RebuildReport",
    "RepairReport",
    "Service",
    "ShadowedFile",
    "SyncOutcome",
    "SyncResult",
    "UploadResult",
    "VerifyReport",
    "VersionFile",
    "VersionSummary",
    "View",
    "WorkflowEvents",
    "Workspace",
    "duration",
    "link_url",
    "merge_views",
    "normalize_storage",
    "now",
    "split_url",
    "tree_clash",
]


def _new_plugins() -> PluginManager:
    # looked up here at call time, so a test or an embedding program can swap the manager class
    return PluginManager()


class Service:
    """Operations on one catalog, its storages and the local cache."""

    def __init__(self, settings: Settings | None = None, plugins: PluginManager | None = None):
        self.workspace = Workspace(settings or Settings.load(), plugins, _new_plugins)

    # -- collaborators ----------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self.workspace.settings

    @property
    def catalog(self) -> Catalog:
        return self.workspace.catalog

    @property
    def _catalog(self) -> Catalog | None:
        return self.workspace._catalog

    @_catalog.setter
    def _catalog(self, catalog: Catalog | None) -> None:  # a catalog opened with other options
        self.workspace.catalog = catalog

    @property
    def plugins(self) -> PluginManager:
        return self.workspace.plugins

    @property
    def cache(self) -> Cache:
        return self.workspace.cache

    @property
    def hash_memory(self) -> HashMemory:
        return self.workspace.hash_memory

    @property
    def _views(self) -> OrderedDict[str, View]:
        return self.workspace.views

    def driver(self, storage: str) -> StorageDriver:
        return self.workspace.driver(storage)

    def close(self) -> None:
        self.workspace.close()

    # -- finding versions (lookup) --------------------------------------------------------------
    def resolve_id(self, dataset_id: str) -> DatasetRow:
        return lookup.resolve_id(self.workspace, dataset_id)

    def get(
        self,
        dataset_id: str | None = None,
        project: str | None = None,
        name: str | None = None,
        version: str | None = None,
        tags: str | Iterable[str] | None = None,
        only_completed: bool = False,
        only_published: bool = False,
        writable_copy: bool = False,
    ) -> DatasetRow:
        return drafts.get(
            self.workspace,
            dataset_id,
            project,
            name,
            version,
            tags,
            only_completed,
            only_published,
            writable_copy,
        )

    def resolve_ref(self, ref: str) -> DatasetRow:
        return lookup.resolve_ref(self.workspace, ref)

    def resolve_url(self, url: str | DatasetURL) -> DatasetRow:
        return lookup.resolve_url(self.workspace, url)

    def summary(self, row: DatasetRow) -> VersionSummary:
        return views.summary(self.workspace, row)

    def search(
        self,
        project: str | None = None,
        partial_name: str | None = None,
        tags: str | Iterable[str] | None = None,
        ids: Iterable[str] | None = None,
        only_completed: bool = True,
    ) -> list[DatasetRow]:
        return lookup.search(self.workspace, project, partial_name, tags, ids, only_completed)

    # -- views ----------------------------------------------------------------------------------
    def view(self, row: DatasetRow) -> View:
        return views.view(self.workspace, row)

    def shadowed(self, row: DatasetRow) -> list[ShadowedFile]:
        return views.shadowed(self.workspace, row)

    def list_files(
        self,
        row: DatasetRow,
        pattern: str | Iterable[str] | None = None,
        recursive: bool = True,
        only_from: str | None = None,
    ) -> list[FileInfo]:
        return views.list_files(self.workspace, row, pattern, recursive, only_from)

    def selected_files(
        self,
        row: DatasetRow,
        part: int | None = None,
        num_parts: int | None = None,
        files: Iterable[str] | None = None,
    ) -> tuple[dict[str, tuple[str, int]], str]:
        return views.selected_files(self.workspace, row, part, num_parts, files)

    # -- drafts -----------------------------------------------------------------------------------
    def create(
        self,
        name: str | None,
        project: str | None = None,
        parents: Iterable[str] = (),
        version: str | None = None,
        storage: str | None = None,
        tags: str | Iterable[str] | None = None,
        description: str = "",
        check_storage: bool = False,
    ) -> DatasetRow:
        return drafts.create(
            self.workspace, name, project, parents, version, storage, tags, description, check_storage
        )

    def add_files(
        self,
        dataset_id: str,
        path: str | os.PathLike | Iterable[str | os.PathLike],
        wildcard: str | list[str] | None = None,
        local_base_folder: str | None = None,
        dataset_path: str | None = None,
        recursive: bool = True,
        max_workers: int | None = None,
        progress: ProgressFactory = null_progress,
        follow_symlinks: bool = False,
    ) -> AddResult:
        return drafts.add_files(
            self.workspace,
            dataset_id,
            path,
            wildcard,
            local_base_folder,
            dataset_path,
            recursive,
            max_workers,
            progress,
            follow_symlinks,
        )

    def remove_files(self, dataset_id: str, pattern: str, recursive: bool = True) -> list[str]:
        return drafts.remove_files(self.workspace, dataset_id, pattern, recursive)

    def remove(self, dataset_id: str, pattern: str, recursive: bool = True) -> list[str]:
        return external.remove(self.workspace, dataset_id, pattern, recursive)

    def sync_folder(
        self,
        dataset_id: str,
        local_path: str | os.PathLike,
        dataset_path: str | None = None,
        max_workers: int | None = None,
        progress: ProgressFactory = null_progress,
        follow_symlinks: bool = False,
    ) -> SyncResult:
        return drafts.sync_folder(
            self.workspace, dataset_id, local_path, dataset_path, max_workers, progress, follow_symlinks
        )

    def update(self, dataset_id: str, **fields: Any) -> DatasetRow:
        return drafts.update(self.workspace, dataset_id, **fields)

    def publish(self, dataset_id: str) -> DatasetRow:
        return drafts.publish(self.workspace, dataset_id)

    # -- external files -----------------------------------------------------------------------------
    def add_external_files(
        self,
        dataset_id: str,
        source_url: str | Iterable[str],
        wildcard: str | list[str] | None = None,
        dataset_path: str | list[str] | None = None,
        recursive: bool = True,
        max_workers: int | None = None,
        progress: ProgressFactory = null_progress,
        read_hash: bool = False,
    ) -> AddResult:
        return external.add_external_files(
            self.workspace,
            dataset_id,
            source_url,
            wildcard,
            dataset_path,
            recursive,
            max_workers,
            progress,
            read_hash,
        )

    def add(
        self,
        dataset_id: str,
        paths: Iterable[str | os.PathLike] = (),
        urls: Iterable[str] = (),
        wildcard: str | list[str] | None = None,
        dataset_path: str | None = None,
        recursive: bool = True,
        max_workers: int | None = None,
        progress: ProgressFactory = null_progress,
        read_hash: bool = False,
        follow_symlinks: bool = False,
    ) -> AddResult:
        return external.add(
            self.workspace,
            dataset_id,
            paths,
            urls,
            wildcard,
            dataset_path,
            recursive,
            max_workers,
            progress,
            read_hash,
            follow_symlinks,
        )

    def link_entries(self, row: DatasetRow) -> dict[str, LinkInfo]:
        return external.link_entries(self.workspace, row)

    def file_entries(self, row: DatasetRow) -> dict[str, FileInfo]:
        return external.file_entries(self.workspace, row)

    def remove_all(
        self, dataset_id: str, patterns: Iterable[str], recursive: bool = True
    ) -> list[tuple[str, list[str]]]:
        return external.remove_all(self.workspace, dataset_id, patterns, recursive)

    def version_files(
        self,
        row: DatasetRow,
        part: int | None = None,
        num_parts: int | None = None,
        files: str | Iterable[str] | None = None,
    ) -> list[ListedFile]:
        return external.version_files(self.workspace, row, part, num_parts, files)

    def remove_links(self, dataset_id: str, url_pattern: str) -> list[str]:
        return external.remove_links(self.workspace, dataset_id, url_pattern)

    # -- upload and finalize ------------------------------------------------------------------------
    def pending_uploads(self, row: DatasetRow, storage: str | None = None) -> list[ChangeRow]:
        return upload.pending_uploads(self.workspace, row, storage)

    def has_pending_uploads(self, row: DatasetRow, storage: str | None = None) -> bool:
        return upload.has_pending_uploads(self.workspace, row, storage)

    def is_dirty(self, row: DatasetRow) -> bool:
        return upload.is_dirty(self.workspace, row)

    def upload(
        self,
        dataset_id: str,
        storage: str | None = None,
        chunk_size: float | None = None,
        max_workers: int | None = None,
        progress: ProgressFactory = null_progress,
    ) -> UploadResult:
        return upload.upload(self.workspace, dataset_id, storage, chunk_size, max_workers, progress)

    def finalize(
        self,
        dataset_id: str,
        auto_upload: bool = False,
        chunk_size: float | None = None,
        max_workers: int | None = None,
        progress: ProgressFactory = null_progress,
    ) -> DatasetRow:
        return upload.finalize(self.workspace, dataset_id, auto_upload, chunk_size, max_workers, progress)

    def close_dataset(
        self,
        dataset_id: str,
        storage: str | None = None,
        upload: bool = True,
        chunk_size: float | None = None,
        max_workers: int | None = None,
        progress: ProgressFactory = null_progress,
        events: WorkflowEvents | None = None,
    ) -> Closed:
        return _upload.close(
            self.workspace, dataset_id, storage, upload, chunk_size, max_workers, progress, events
        )

    def sync(
        self,
        folder: str | os.PathLike,
        dataset_id: str | None = None,
        dataset_path: str | None = None,
        project: str | None = None,
        name: str | None = None,
        parents: Iterable[str] = (),
        version: str | None = None,
        storage: str | None = None,
        tags: Iterable[str] | None = None,
        skip_close: bool = False,
        chunk_size: float | None = None,
        max_workers: int | None = None,
        progress: ProgressFactory = null_progress,
        events: WorkflowEvents | None = None,
        follow_symlinks: bool = False,
    ) -> SyncOutcome:
        return lineage.sync(
            self.workspace,
            folder,
            dataset_id,
            dataset_path,
            project,
            name,
            parents,
            version,
            storage,
            tags,
            skip_close,
            chunk_size,
            max_workers,
            progress,
            events,
            follow_symlinks,
        )

    # -- importing from ClearML ---------------------------------------------------------------------
    def import_offline_session(
        self,
        path: str | os.PathLike,
        upload: bool = True,
        finalize: bool = False,
        storage: str | None = None,
        max_workers: int | None = None,
        progress: ProgressFactory = null_progress,
    ) -> tuple[DatasetRow, clearml_import.OfflineSession]:
        return clearml_import.import_session(
            self.workspace, path, upload, finalize, storage, max_workers, progress
        )

    # -- local copies -------------------------------------------------------------------------------
    def get_local_copy(
        self,
        dataset_id: str,
        use_soft_links: bool | None = None,
        max_workers: int | None = None,
        part: int | None = None,
        num_parts: int | None = None,
        files: Iterable[str] | None = None,
        progress: ProgressFactory = null_progress,
    ) -> str:
        return checkout.get_local_copy(
            self.workspace, dataset_id, use_soft_links, max_workers, part, num_parts, files, progress
        )

    def get_mutable_local_copy(
        self,
        dataset_id: str,
        target_folder: str | os.PathLike,
        overwrite: bool = False,
        max_workers: int | None = None,
        part: int | None = None,
        num_parts: int | None = None,
        progress: ProgressFactory = null_progress,
    ) -> str:
        return checkout.get_mutable_local_copy(
            self.workspace, dataset_id, target_folder, overwrite, max_workers, part, num_parts, progress
        )

    def local_copy(
        self,
        dataset_id: str,
        copy_to: str | os.PathLike | None = None,
        link: str | os.PathLike | None = None,
        overwrite: bool = False,
        max_workers: int | None = None,
        part: int | None = None,
        num_parts: int | None = None,
        progress: ProgressFactory = null_progress,
        files: Iterable[str] | None = None,
    ) -> LocalCopy:
        return checkout.local_copy(
            self.workspace,
            dataset_id,
            copy_to,
            link,
            overwrite,
            max_workers,
            part,
            num_parts,
            progress,
            files,
        )

    # -- reading in place ------------------------------------------------------------------------
    def open_file(
        self,
        dataset_id: str,
        path: str,
        *,
        block_size: int | None = None,
        read_ahead: int | None = None,
        fill_cache: bool = True,
    ) -> VersionFile:
        return reading.open_file(
            self.workspace,
            dataset_id,
            path,
            block_size=block_size,
            read_ahead=read_ahead,
            fill_cache=fill_cache,
        )

    # -- the local cache ----------------------------------------------------------------------------
    def prune_cache(self, size: str | int | None = None) -> PruneResult:
        return checkout.prune_cache(self.workspace, size)

    def clear_cache(self) -> PruneResult:
        return checkout.clear_cache(self.workspace)

    def cache_usage(self) -> CacheUsage:
        return checkout.cache_usage(self.workspace)

    # -- across versions ----------------------------------------------------------------------------
    def dependency_graph(self, row: DatasetRow) -> dict[str, list[str]]:
        return lineage.dependency_graph(self.workspace, row)

    def changes_against(self, row: DatasetRow, baseline_id: str | None = None) -> Diff:
        return lineage.changes_against(self.workspace, row, baseline_id)

    def num_chunks(self, row: DatasetRow, include_parents: bool = True) -> int:
        return lineage.num_chunks(self.workspace, row, include_parents)

    def squash(
        self,
        name: str,
        ids: Iterable[str] | None = None,
        project_name_pairs: Iterable[tuple[str, str]] | None = None,
        storage: str | None = None,
        project: str | None = None,
        close: bool = True,
        progress: ProgressFactory = null_progress,
    ) -> DatasetRow:
        return lineage.squash(
            self.workspace, name, ids, project_name_pairs, storage, project, close, progress
        )

    def rename(self, project: str, name: str, new_name: str) -> list[str]:
        return lineage.rename(self.workspace, project, name, new_name)

    def move(self, project: str, name: str, new_project: str) -> list[str]:
        return lineage.move(self.workspace, project, name, new_project)

    def delete(
        self,
        dataset_id: str | None = None,
        force: bool = False,
        project: str | None = None,
        name: str | None = None,
        version: str | None = None,
        entire: bool = False,
    ) -> list[str]:
        return lineage.delete(self.workspace, dataset_id, force, project, name, version, entire)

    def delete_versions(self, project: str, name: str, force: bool = False) -> list[str]:
        return lineage.delete_versions(self.workspace, project, name, force)

    # -- metadata -----------------------------------------------------------------------------------
    def set_metadata(self, dataset_id: str, value: Any, metadata_name: str = "metadata") -> None:
        metadata.set_metadata(self.workspace, dataset_id, value, metadata_name)

    def get_metadata(self, row: DatasetRow, metadata_name: str = "metadata") -> Any:
        return metadata.get_metadata(row, metadata_name)

    # -- reports (Dataset.get_logger) ---------------------------------------------------------------
    def report(self, dataset_id: str, kind: str, **fields: Any) -> dict:
        return reports.report(self.workspace, dataset_id, kind, **fields)

    def reports(self, row: DatasetRow) -> list[dict]:
        return reports.reports(row)

    def report_media_bytes(self, row: DatasetRow, report: dict) -> bytes:
        return reports.media_bytes(self.workspace, row, report)

    # -- files at storage URLs (StorageManager) ------------------------------------------------------
    def remote_local_copy(
        self,
        remote_url: str,
        cache_context: str | None = None,
        extract_archive: bool = True,
        name: str | None = None,
        force_download: bool = False,
    ) -> str:
        return remote.get_local_copy(
            self.workspace, remote_url, cache_context, extract_archive, name, force_download
        )

    def remote_download_file(
        self,
        remote_url: str,
        local_folder: str | os.PathLike | None = None,
        overwrite: bool = False,
        skip_zero_size_check: bool = False,
    ) -> str:
        return remote.download_file(self.workspace, remote_url, local_folder, overwrite, skip_zero_size_check)

    def remote_download_folder(
        self,
        remote_url: str,
        local_folder: str | os.PathLike | None = None,
        match_wildcard: str | None = None,
        overwrite: bool = False,
        skip_zero_size_check: bool = False,
    ) -> str:
        return remote.download_folder(
            self.workspace, remote_url, local_folder, match_wildcard, overwrite, skip_zero_size_check
        )

    def remote_upload_file(
        self, local_file: str | os.PathLike, remote_url: str, retries: int | None = None
    ) -> str:
        return remote.upload_file(self.workspace, local_file, remote_url, retries)

    def remote_upload_folder(
        self,
        local_folder: str | os.PathLike,
        remote_url: str,
        match_wildcard: str | None = None,
        retries: int | None = None,
    ) -> str:
        return remote.upload_folder(self.workspace, local_folder, remote_url, match_wildcard, retries)

    def remote_list(self, remote_url: str) -> tuple[str, list[tuple[str, int]]] | None:
        return remote.list_folder(self.workspace, remote_url)

    def remote_exists(self, remote_url: str) -> bool:
        return remote.exists_file(self.workspace, remote_url)

    def remote_size(self, remote_url: str) -> int:
        return remote.file_size(self.workspace, remote_url)

    def remote_downloads_folder(self, cache_context: str | None = None) -> str:
        return remote.downloads_folder(self.workspace, cache_context)

    # -- verification -------------------------------------------------------------------------------
    def verify_storage(
        self,
        row: DatasetRow,
        full: bool = True,
        max_workers: int | None = None,
        progress: ProgressFactory = null_progress,
        cache: bool = True,
    ) -> VerifyReport:
        return verify.verify_storage(self.workspace, row, full, max_workers, progress, cache)

    def verify_cache(
        self,
        row: DatasetRow,
        full: bool = True,
        max_workers: int | None = None,
        progress: ProgressFactory = null_progress,
    ) -> VerifyReport:
        return verify.verify_cache(self.workspace, row, full, max_workers, progress)

    def verify_folder(
        self,
        row: DatasetRow,
        folder: str | os.PathLike,
        skip_hash: bool = False,
        max_workers: int | None = None,
        progress: ProgressFactory = null_progress,
    ) -> VerifyReport:
        return verify.verify_folder(self.workspace, row, folder, skip_hash, max_workers, progress)

    def verify_local(
        self,
        row: DatasetRow,
        folder: str | os.PathLike | None = None,
        skip_hash: bool = False,
        max_workers: int | None = None,
        progress: ProgressFactory = null_progress,
    ) -> VerifyReport:
        return verify.verify_local(self.workspace, row, folder, skip_hash, max_workers, progress)

    def repair(
        self,
        row: DatasetRow,
        folder: str | os.PathLike | None = None,
        max_workers: int | None = None,
        progress: ProgressFactory = null_progress,
    ) -> RepairReport:
        return repair.repair(self.workspace, row, folder, max_workers, progress)

    def still_damaged(self, found: VerifyReport, fixed: RepairReport | None = None) -> list[str]:
        return repair.still_damaged(found, fixed)

    # -- manifests, rebuild and gc ------------------------------------------------------------------
    def write_manifest(self, row: DatasetRow, view: View, counts: dict[str, int], stamp: str) -> str:
        return manifests.write_manifest(self.workspace, row, view, counts, stamp)

    def confirm_stored(self, storage: str, rows: list[ObjectRow]) -> int:
        return locations.confirm_stored(self.workspace, storage, rows)

    def rebuild_catalog(self, storage: str | None = None, ids: Iterable[str] | None = None) -> RebuildReport:
        return rebuild.rebuild_catalog(self.workspace, storage, ids)

    def resolve_or_restore(self, dataset_id: str | None, storage: str) -> DatasetRow:
        return rebuild.resolve_or_restore(self.workspace, dataset_id, storage)

    def collect_garbage(
        self,
        storage: str | None = None,
        delete: bool = False,
        min_age: float | str = DEFAULT_MIN_AGE,
        now: float | None = None,
    ) -> GcReport:
        return gc.collect_garbage(self.workspace, storage, delete, min_age, now)

    # -- diagnostics --------------------------------------------------------------------------------
    def doctor(self) -> dict[str, Any]:
        return doctor.doctor(self.workspace)

    def plugins_report(self) -> PluginsReport:
        return doctor.plugins_report(self.workspace)


# -- one service per process and settings ------------------------------------------------------
_shared: dict[tuple, Service] = {}
_shared_lock = threading.Lock()


def shared_service(settings: Settings) -> Service:
    """The service of this process for ``settings``, made on first use and kept: what the
    Python API, the clearml-data:// filesystem and the PyTorch datasets read through. A
    forked child (a DataLoader or Dask worker) gets a service of its own, since a catalog
    connection must not cross a fork."""
    key = (os.getpid(), settings.catalog, settings.storage, settings.cache_dir, settings.cache_max_size)
    with _shared_lock:
        service = _shared.get(key)
        if service is None:
            service = _shared[key] = Service(settings)
    return service


def close_shared_services() -> None:
    """Close and forget every service :func:`shared_service` kept."""
    with _shared_lock:
        services = list(_shared.values())
        _shared.clear()
    for service in services:
        service.close()
