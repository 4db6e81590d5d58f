"""``Dataset``: ClearML Data's Python interface, on the serverless service.

ClearML's examples run with only the import line changed::

    from clearml_data import Dataset

    ds = Dataset.create(dataset_name="initial_version", dataset_project="dataset_example")
    ds.add_files("data_folder")
    ds.upload()
    ds.finalize()
    print(Dataset.get(dataset_id=ds.id).get_local_copy())
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

from .config import Settings
from .errors import ClearMLDataError, DatasetNotFoundError, UsageError
from .progress import ProgressFactory, bar_progress, null_progress
from .service import Service, ShadowedFile

log = logging.getLogger(__name__)

_services: dict[tuple, Service] = {}


def default_service() -> Service:
    """The service for the current settings (environment, config file, defaults)."""
    settings = Settings.load()
    key = (settings.catalog, settings.storage, settings.cache_dir, settings.cache_max_size)
    service = _services.get(key)
    if service is None:
        service = _services[key] = Service(settings)
    return service


@dataclass
class FileEntry:
    """One file of a version, as ClearML's ``FileEntry``."""

    relative_path: str
    hash: str
    parent_dataset_id: str
    size: int
    artifact_name: str | None = None
    local_path: str | None = None


@dataclass
class LinkEntry:
    """One external file of a version (registered in place), as ClearML's ``LinkEntry``."""

    link: str
    relative_path: str
    parent_dataset_id: str
    size: int
    hash: str


def _progress(show: bool) -> ProgressFactory:
    return bar_progress if show else null_progress


def _ids(parents) -> list[str]:
    out = []
    for p in parents or ():
        out.append(p.id if isinstance(p, Dataset) else str(p))
    return out


class Dataset:
    """A dataset version. Get one with :meth:`create` or :meth:`get`, never by calling the class."""

    def __init__(self, _row, _service: Service):
        self._row = _row
        self._service = _service

    def __repr__(self) -> str:
        r = self._row
        return f"<Dataset {r.project}/{r.name} {r.version} id={r.id} {r.status}>"

    def _refresh(self):
        self._row = self._service.resolve_id(self._row.id)
        return self._row

    # -- creating and finding -----------------------------------------------------------------
    @classmethod
    def create(
        cls,
        dataset_name: str | None = None,
        dataset_project: str | None = None,
        dataset_tags: Iterable[str] | None = None,
        parent_datasets: Iterable | None = None,
        use_current_task: bool = False,
        dataset_version: str | None = None,
        output_uri: str | None = None,
        description: str | None = None,
    ) -> Dataset:
        """Create a new draft version; parents (ids or Dataset objects) are merged in order."""
        if use_current_task:
            raise UsageError("use_current_task needs a ClearML Task; clearml-data has no tasks")
        service = default_service()
        row = service.create(
            name=dataset_name,
            project=dataset_project,
            parents=_ids(parent_datasets),
            version=dataset_version,
            storage=output_uri,
            tags=dataset_tags,
            description=description or "",
        )
        ds = cls(row, service)
        ds._warn_shadowed()
        return ds

    @classmethod
    def get(
        cls,
        dataset_id: str | None = None,
        dataset_project: str | None = None,
        dataset_name: str | None = None,
        dataset_tags: Iterable[str] | None = None,
        only_completed: bool = False,
        only_published: bool = False,
        include_archived: bool = False,
        auto_create: bool = False,
        writable_copy: bool = False,
        dataset_version: str | None = None,
        alias: str | None = None,
        overridable: bool = False,
        shallow_search: bool = False,
        **kwargs,
    ) -> Dataset:
        """Find a version by id, or the highest version of project/name (optionally version, tags)."""
        bad = [k for k in kwargs if not k.startswith("_")]
        if bad:
            raise TypeError(f"Dataset.get() got unexpected keyword argument(s) {', '.join(bad)}")
        service = default_service()
        try:
            row = service.get(
                dataset_id,
                dataset_project,
                dataset_name,
                dataset_version,
                dataset_tags,
                only_completed,
                only_published,
                writable_copy=writable_copy,
            )
        except DatasetNotFoundError:
            if not auto_create or dataset_id:
                raise
            return cls.create(
                dataset_name=dataset_name,
                dataset_project=dataset_project,
                dataset_tags=dataset_tags,
                dataset_version=dataset_version,
            )
        return cls(row, service)

    # -- properties ------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._row.id

    @property
    def project(self) -> str:
        return self._row.project

    @property
    def name(self) -> str:
        return self._row.name

    @property
    def version(self) -> str:
        return self._row.version

    @version.setter
    def version(self, value: str) -> None:
        self._row = self._service.update(self.id, version=str(value))

    @property
    def tags(self) -> list[str]:
        return list(self._row.tags)

    @tags.setter
    def tags(self, values: Iterable[str]) -> None:
        self._row = self._service.update(self.id, tags=list(values or ()))

    @property
    def description(self) -> str:
        return self._row.description

    @property
    def status(self) -> str:
        return self._row.status

    @property
    def parents(self) -> list[str]:
        return list(self._row.parents)

    @property
    def file_entries_dict(self) -> dict[str, FileEntry]:
        """relative path -> FileEntry of every file in this version's merged view."""
        return {
            p: FileEntry(p, f.hash, f.dataset_id, f.size, local_path=f.source)
            for p, f in self._service.file_entries(self._refresh()).items()
        }

    @property
    def file_entries(self) -> list[FileEntry]:
        return list(self.file_entries_dict.values())

    @property
    def link_entries_dict(self) -> dict[str, LinkEntry]:
        """relative path -> LinkEntry of every external file (add_external_files) in the view."""
        return {
            p: LinkEntry(i.link, p, i.dataset_id, i.size, i.hash)
            for p, i in self._service.link_entries(self._refresh()).items()
        }

    @property
    def link_entries(self) -> list[LinkEntry]:
        return list(self.link_entries_dict.values())

    @property
    def shadowed_files(self) -> list:
        """The files of earlier parents that later parents shadow in this version (a later
        parent wins a clash between a file and a folder of the same path), as
        ``clearml_data.service.ShadowedFile`` (path, hash, size, parent, by, clash, by_kind)."""
        return self._service.shadowed(self._refresh())

    def _warn_shadowed(self, found: list[ShadowedFile] | None = None) -> None:
        if found is None:
            found = self._service.shadowed(self._row)
        if found:
            log.warning(
                "dataset %s: %d file(s) of earlier parents are shadowed by later parents, "
                "e.g. %s (Dataset.shadowed_files lists them)",
                self.id,
                len(found),
                found[0].describe(),
            )

    def is_final(self) -> bool:
        return self._refresh().is_final

    def is_dirty(self) -> bool:
        return self._service.is_dirty(self._refresh())

    # -- changing a draft ---------------------------------------------------------------------
    def add_files(
        self,
        path: str | os.PathLike,
        wildcard: str | list[str] | None = None,
        local_base_folder: str | None = None,
        dataset_path: str | None = None,
        recursive: bool = True,
        verbose: bool = False,
        max_workers: int | None = None,
        *,
        follow_symlinks: bool = False,
    ) -> int:
        """Add a file or a folder's contents (at ``dataset_path``); returns the number of new files.

        Symbolic links whose target lies outside the folder are refused unless
        ``follow_symlinks`` (which follows every link, to files and folders alike)."""
        result = self._service.add_files(
            self.id,
            path,
            wildcard,
            local_base_folder,
            dataset_path,
            recursive,
            max_workers,
            follow_symlinks=follow_symlinks,
        )
        if verbose:
            log.info("%d added, %d modified, %d unchanged", result.added, result.modified, result.unchanged)
        self._refresh()
        return result.added

    def remove_files(
        self, dataset_path: str | None = None, recursive: bool = True, verbose: bool = False
    ) -> int:
        """Remove files matching ``dataset_path`` (a path, folder or wildcard); returns the count."""
        if not dataset_path:
            raise UsageError("remove_files needs a dataset_path (a path, folder or wildcard)")
        removed = self._service.remove(self.id, dataset_path, recursive)
        if verbose:
            for p in removed:
                log.info("removed %s", p)
        return len(removed)

    def add_external_files(
        self,
        source_url: str | Iterable[str],
        wildcard: str | list[str] | None = None,
        dataset_path: str | list[str] | None = None,
        recursive: bool = True,
        verbose: bool = False,
        max_workers: int | None = None,
        read_hash: bool = True,
    ) -> int:
        """Register files that already sit in a storage (a file, folder or prefix URL) in place.

        Each is read once to hash it (``read_hash`` is always on: a hash is what lets ``get``
        check the bytes); ``upload`` never copies them. Returns the number of new files.
        """
        result = self._service.add_external_files(
            self.id, source_url, wildcard, dataset_path, recursive, max_workers
        )
        if verbose:
            log.info("%d added, %d modified, %d unchanged", result.added, result.modified, result.unchanged)
        self._refresh()
        return result.added

    def sync_folder(
        self,
        local_path: str | os.PathLike,
        dataset_path: str | None = None,
        verbose: bool = False,
        *,
        follow_symlinks: bool = False,
    ) -> tuple[int, int, int]:
        """Mirror a local folder into ``dataset_path``; returns (removed, added, modified).

        The same sync as ``clearml-data sync --id ... --skip-close``: the draft stays open.
        Symbolic links as :meth:`add_files` takes them."""
        r = self._service.sync(
            local_path,
            dataset_id=self.id,
            dataset_path=dataset_path,
            skip_close=True,
            follow_symlinks=follow_symlinks,
        )
        return r.removed, r.added, r.modified

    def upload(
        self,
        show_progress: bool = True,
        verbose: bool = False,
        output_url: str | None = None,
        compression=None,
        chunk_size: int | None = None,
        max_workers: int | None = None,
        retries: int = 3,
        preview: bool = True,
        upload_as_external_links: bool = False,
    ):
        """Store the content this version adds in its storage (or ``output_url``).

        Returns True when there was nothing to upload, like ClearML.
        """
        if compression is not None:
            log.warning("compression=%r is ignored: clearml-data stores objects uncompressed", compression)
        if upload_as_external_links:
            raise UsageError("upload_as_external_links is not supported")
        result = self._service.upload(
            self.id,
            storage=output_url,
            chunk_size=chunk_size,
            max_workers=max_workers,
            progress=_progress(show_progress),
        )
        if verbose:
            log.info(
                "uploaded %d objects (%d bytes) to %s", result.objects, result.uploaded_bytes, result.storage
            )
        self._refresh()
        return True if result.files == 0 else None

    def finalize(self, verbose: bool = False, raise_on_error: bool = True, auto_upload: bool = False) -> bool:
        """Close the version: after this its content never changes. With ``auto_upload``,
        pending content is uploaded first (``clearml-data close``); without it, pending
        content is an error."""
        try:
            closed = self._service.close_dataset(self.id, upload=auto_upload)
        except ClearMLDataError:
            if raise_on_error:
                raise
            return False
        self._row = closed.row
        self._warn_shadowed(closed.shadowed)
        return True

    def publish(self, raise_on_error: bool = True) -> bool:
        try:
            self._row = self._service.publish(self.id)
        except ClearMLDataError:
            if raise_on_error:
                raise
            return False
        return True

    def set_description(self, description: str) -> None:
        self._row = self._service.update(self.id, description=str(description))

    def add_tags(self, tags: str | Iterable[str]) -> None:
        tags = [tags] if isinstance(tags, str) else list(tags)
        self.tags = self.tags + [t for t in tags if t not in self.tags]

    @property
    def metadata(self) -> dict:
        return {k: self._service.get_metadata(self._row, k) for k in self._refresh().metadata}

    def set_metadata(self, metadata, metadata_name: str = "metadata", ui_visible: bool = True) -> None:
        """Store a dict, any JSON-able value, or a pandas DataFrame (never pickled)."""
        self._service.set_metadata(self.id, metadata, metadata_name)
        self._refresh()

    def get_metadata(self, metadata_name: str = "metadata"):
        """The value stored by :meth:`set_metadata`, or None."""
        return self._service.get_metadata(self._refresh(), metadata_name)

    # -- versions and lineage ------------------------------------------------------------------
    def get_dependency_graph(self) -> dict[str, list[str]]:
        """{id: [direct parent ids]} of this version and every ancestor."""
        return self._service.dependency_graph(self._refresh())

    def list_added_files(self, dataset_id: str | None = None) -> list[str]:
        """Paths this version adds, against ``dataset_id`` (default: its merged parents)."""
        return self._service.changes_against(self._refresh(), dataset_id).added

    def list_modified_files(self, dataset_id: str | None = None) -> list[str]:
        return self._service.changes_against(self._refresh(), dataset_id).modified

    def list_removed_files(self, dataset_id: str | None = None) -> list[str]:
        return self._service.changes_against(self._refresh(), dataset_id).removed

    def get_num_chunks(self, include_parents: bool = True) -> int:
        """How many stored objects (packs and large-file objects) hold this version's files."""
        return self._service.num_chunks(self._refresh(), include_parents)

    def get_default_storage(self) -> str:
        """The storage URL of this version (credentials in it are hidden)."""
        from .storage import redact_url

        return redact_url(self._refresh().storage)

    def verify_dataset_hash(
        self, local_copy_path: str | os.PathLike | None = None, skip_hash: bool = False, verbose: bool = False
    ) -> list[str]:
        """Paths whose local copy is missing or differs (default: the version's content in the
        local cache, damaged cached files removed, then the cached local copy)."""
        problems = self._service.verify_local(self._refresh(), local_copy_path, skip_hash=skip_hash).problems
        if verbose:
            for p in problems:
                log.info("%s: %s %s", p.path, p.problem, p.detail)
        return sorted({p.path for p in problems})

    @classmethod
    def squash(
        cls,
        dataset_name: str,
        dataset_ids: Iterable | None = None,
        dataset_project_name_pairs: Iterable[tuple[str, str]] | None = None,
        output_url: str | None = None,
        close_squashed_dataset: bool = True,
    ) -> Dataset:
        """A new root version whose content is the merged view of the given versions, in order."""
        service = default_service()
        row = service.squash(
            dataset_name,
            ids=_ids(dataset_ids) or None,
            project_name_pairs=dataset_project_name_pairs,
            storage=output_url,
            close=close_squashed_dataset,
            progress=bar_progress,
        )
        return cls(row, service)

    @classmethod
    def rename(cls, new_dataset_name: str, dataset_project: str, dataset_name: str) -> None:
        """Rename every version of dataset_project/dataset_name."""
        default_service().rename(dataset_project, dataset_name, new_dataset_name)

    @classmethod
    def move_to_project(cls, new_dataset_project: str, dataset_project: str, dataset_name: str) -> None:
        """Move every version of dataset_project/dataset_name to another project."""
        default_service().move(dataset_project, dataset_name, new_dataset_project)

    @classmethod
    def rebuild_catalog(cls, storage: str | None = None):
        """Restore every final version whose manifest is in ``storage`` into the catalog
        (``clearml-data catalog rebuild``); returns a ``clearml_data.service.RebuildReport``."""
        return default_service().rebuild_catalog(storage)

    @classmethod
    def get_from_storage(cls, dataset_id: str, storage: str) -> Dataset:
        """The version with this id: from the catalog, else restored (with its ancestors) from
        the manifests in ``storage`` (``clearml-data get --storage URL --id ID``)."""
        service = default_service()
        return cls(service.resolve_or_restore(dataset_id, storage), service)

    @classmethod
    def garbage_collect(cls, storage: str | None = None, dry_run: bool = True, min_age: float | str = "24h"):
        """Find, and unless ``dry_run`` delete, the stored objects nothing needs (``clearml-data
        gc``); returns a ``clearml_data.service.GcReport``."""
        return default_service().collect_garbage(storage, delete=not dry_run, min_age=min_age)

    @classmethod
    def list_datasets(
        cls,
        dataset_project: str | None = None,
        partial_name: str | None = None,
        tags: Iterable[str] | None = None,
        ids: Iterable[str] | None = None,
        only_completed: bool = True,
        recursive_project_search: bool = True,
        include_archived: bool = True,
    ) -> list[dict]:
        """[{name, created, project, id, tags, version, status}] like ClearML's."""
        rows = default_service().search(
            project=dataset_project,
            partial_name=partial_name,
            tags=tags,
            ids=ids,
            only_completed=only_completed,
        )
        return [
            {
                "name": r.name,
                "created": r.created_at,
                "project": r.project,
                "id": r.id,
                "tags": list(r.tags),
                "version": r.version,
                "status": {"draft": "in_progress", "final": "completed"}.get(r.status, r.status),
            }
            for r in rows
        ]

    # -- reading -----------------------------------------------------------------------------
    def list_files(
        self, dataset_path: str | None = None, recursive: bool = True, dataset_id: str | None = None
    ) -> list[str]:
        """Sorted paths of the version's files (matching ``dataset_path``, a wildcard)."""
        only = self._service.resolve_id(dataset_id).id if dataset_id else None
        return [f.path for f in self._service.list_files(self._refresh(), dataset_path, recursive, only)]

    def get_local_copy(
        self,
        use_soft_links: bool | None = None,
        part: int | None = None,
        num_parts: int | None = None,
        raise_on_error: bool = True,
        max_workers: int | None = None,
        files: Iterable[str] | None = None,
        show_progress: bool = True,
    ) -> str | None:
        """A read-only cached folder with the version's merged view."""
        try:
            return self._service.get_local_copy(
                self.id,
                use_soft_links,
                max_workers,
                part,
                num_parts,
                files,
                progress=_progress(show_progress),
            )
        except ClearMLDataError:
            if raise_on_error:
                raise
            return None

    def get_mutable_local_copy(
        self,
        target_folder: str | os.PathLike,
        overwrite: bool = False,
        part: int | None = None,
        num_parts: int | None = None,
        raise_on_error: bool = True,
        max_workers: int | None = None,
        show_progress: bool = True,
    ) -> str | None:
        """Real, writable copies of the version's files in ``target_folder``."""
        try:
            return self._service.get_mutable_local_copy(
                self.id,
                target_folder,
                overwrite,
                max_workers,
                part,
                num_parts,
                progress=_progress(show_progress),
            )
        except ClearMLDataError:
            if raise_on_error:
                raise
            return None

    @classmethod
    def delete(
        cls,
        dataset_id: str | None = None,
        dataset_project: str | None = None,
        dataset_name: str | None = None,
        force: bool = False,
        dataset_version: str | None = None,
        entire_dataset: bool = False,
        shallow_search: bool = False,
        delete_files: bool = True,
        delete_external_files: bool = False,
    ) -> list[str]:
        """Delete a version (or with ``entire_dataset=True`` and ``force``, every version)."""
        if entire_dataset:
            if not dataset_project or not dataset_name:
                raise UsageError("entire_dataset needs dataset_project and dataset_name")
        elif not dataset_id and not (dataset_project and dataset_name):
            raise UsageError("Dataset.delete needs dataset_id, or both dataset_project and dataset_name")
        return default_service().delete(
            dataset_id,
            force=force,
            project=dataset_project,
            name=dataset_name,
            version=dataset_version,
            entire=entire_dataset,
        )
