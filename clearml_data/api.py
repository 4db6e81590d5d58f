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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .config import Settings
from .errors import ClearMLDataError, DatasetNotFoundError, UnexpectedArgumentError, UsageError
from .progress import ProgressFactory, bar_progress, null_progress
from .service import Service, ShadowedFile, shared_service
from .service.metadata import RESERVED_PREFIX
from .task import out_of_scope

log = logging.getLogger(__name__)


def default_service() -> Service:
    """The service for the current settings (environment, config file, defaults)."""
    return shared_service(Settings.load())


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
    #: SHA-256 of its bytes; None when it was added without read_hash (as in ClearML)
    hash: str | None = None
    #: what its storage said of it when added (ETag, version id, checksum or mtime, as JSON)
    fingerprint: str | None = None


class DatasetFile:
    """One file of a version, as :meth:`Dataset.iter_files` yields it: its path in the
    version, size and SHA-256 (None for an external file registered without reading it),
    and :meth:`open` to read it in place. Listing files reads nothing from storage."""

    __slots__ = ("_dataset", "dataset_id", "hash", "path", "size")

    def __init__(self, dataset: Dataset, path: str, size: int, hash: str | None, dataset_id: str):
        self._dataset = dataset
        self.path = path
        self.size = size
        self.hash = hash
        #: the version that introduced the file (the version listed, or one of its ancestors)
        self.dataset_id = dataset_id

    def __repr__(self) -> str:
        return f"<DatasetFile {self.path} size={self.size}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DatasetFile):
            return NotImplemented
        return (self._dataset.id, self.path, self.size, self.hash) == (
            other._dataset.id,
            other.path,
            other.size,
            other.hash,
        )

    def __hash__(self) -> int:
        return hash((self._dataset.id, self.path))

    def open(self, mode: str = "rb", **options):
        """The file opened for reading, as :meth:`Dataset.open` opens it (``options``:
        ``block_size``, ``read_ahead``): a seekable binary file read in place."""
        return self._dataset.open(self.path, mode, **options)


def _progress(show: bool) -> ProgressFactory:
    return bar_progress if show else null_progress


def _say(*lines: str) -> None:
    """What ``verbose=True`` shows: printed on stdout, as ClearML prints it (logging would
    show nothing unless the program configured a handler)."""
    for line in lines:
        print(line, flush=True)


def _changed_paths(before: dict, after: dict) -> list[str]:
    """``verbose`` lines for the files a call added, modified and removed (views before and after)."""
    lines = []
    for p in sorted(after):
        old = before.get(p)
        if old is None:
            lines.append(f"Added {p}")
        elif old[0] != after[p][0]:
            lines.append(f"Modified {p}")
    lines += [f"Removed {p}" for p in sorted(before) if p not in after]
    return lines


def _ids(parents) -> list[str]:
    out = []
    for p in parents or ():
        out.append(p.id if isinstance(p, Dataset) else str(p))
    return out


#: ClearML's switch for offline mode, read while :meth:`Dataset.set_offline` has not been called
ENV_OFFLINE = "CLEARML_OFFLINE_MODE"


class Dataset:
    """A dataset version. Get one with :meth:`create` or :meth:`get`, never by calling the class."""

    #: set by :meth:`set_offline`; None: as ``$CLEARML_OFFLINE_MODE`` says
    _offline_mode: bool | None = None

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
        dataset_tags: str | Iterable[str] | None = None,
        parent_datasets: Iterable | None = None,
        use_current_task: bool = False,
        dataset_version: str | None = None,
        output_uri: str | None = None,
        description: str | None = None,
    ) -> Dataset:
        """Create a new draft version; parents (ids or Dataset objects) are merged in order."""
        if use_current_task:
            out_of_scope("Dataset.create(use_current_task=True)")
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
        dataset_tags: str | Iterable[str] | None = None,
        only_completed: bool = False,
        only_published: bool = False,
        include_archived: bool = False,
        auto_create: bool = False,
        writable_copy: bool = False,
        dataset_version: str | None = None,
        alias: str | None = None,
        overridable: bool = False,
        shallow_search: bool = False,
        silence_alias_warnings: bool = False,
        **kwargs,
    ) -> Dataset:
        """Find a version by id, or the highest version of project/name (optionally version,
        tags), or of every dataset carrying the tags when only tags are given.

        ``alias``, ``overridable`` and ``silence_alias_warnings`` concern a ClearML Task's
        hyperparameters; there are no tasks here, so there is no alias warning to silence."""
        bad = [k for k in kwargs if not k.startswith("_")]
        if bad:
            raise UnexpectedArgumentError(
                f"Dataset.get() got unexpected keyword argument(s) {', '.join(bad)}"
            )
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
    def url(self) -> str:
        """The version's ``clearml-data://<id>`` URL: it names this version for ever, and
        ``Dataset.get(dataset_id=url)``, ``Dataset.open`` paths, fsspec and pandas take it."""
        from .urls import format_url

        return format_url(dataset_id=self.id)

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
    def tags(self, values: str | Iterable[str]) -> None:
        """Replace the tags (a string is one tag)."""
        self._row = self._service.update(self.id, tags=values or ())

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
            p: LinkEntry(i.link, p, i.dataset_id, i.size, i.hash if i.hashed else None, i.fingerprint)
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
        """A draft with content not yet in its storage (what ``upload`` would send)."""
        return self._service.is_dirty(self._refresh())

    @property
    def changed_files(self) -> dict[str, int]:
        """ClearML's counters of this version's changes against its parents: ``files added``,
        ``files removed`` and ``files modified``, counted from the catalog (always exact)."""
        d = self._service.changes_against(self._refresh())
        return {
            "files added": len(d.added),
            "files removed": len(d.removed),
            "files modified": len(d.modified),
        }

    def update_changed_files(
        self,
        num_files_added: int | None = None,
        num_files_modified: int | None = None,
        num_files_removed: int | None = None,
    ) -> None:
        """Accepted as in ClearML, where each call adds to hand-kept counters. Here every
        change goes through the catalog, which :attr:`changed_files` counts from, so there
        is nothing to add by hand: the numbers are checked, and the counts stay exact."""
        for name, value in (
            ("num_files_added", num_files_added),
            ("num_files_modified", num_files_modified),
            ("num_files_removed", num_files_removed),
        ):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise UsageError(f"{name} must be a non-negative integer or None, not {value!r}")

    # -- changing a draft ---------------------------------------------------------------------
    def add_files(
        self,
        path: str | os.PathLike | Iterable[str | os.PathLike],
        wildcard: str | list[str] | None = None,
        local_base_folder: str | None = None,
        dataset_path: str | None = None,
        recursive: bool = True,
        verbose: bool = False,
        max_workers: int | None = None,
        *,
        follow_symlinks: bool = False,
    ) -> int:
        """Add a file or a folder's contents (at ``dataset_path``), or those of each path of a
        list, all or nothing; returns the number of files new to the version (modified and
        unchanged ones are not counted).

        Wildcards select files as ClearML's do (pathlib's ``rglob``, ``glob`` when not
        ``recursive``) on the path below ``path``: ``sub/*.csv`` is ``*.csv`` in any folder
        named ``sub``. A single file is added only if it matches.

        Symbolic links whose target lies outside the folder are refused unless
        ``follow_symlinks`` (which follows every link, to files and folders alike)."""
        before = dict(self._service.view(self._refresh())) if verbose else {}
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
        self._refresh()
        if verbose:
            _say(
                *_changed_paths(before, self._service.view(self._row)),
                f"{result.added} added, {result.modified} modified, {result.unchanged} unchanged",
            )
        return result.added

    def remove_files(
        self, dataset_path: str | None = None, recursive: bool = True, verbose: bool = False
    ) -> int:
        """Remove files matching ``dataset_path`` (a path, folder, wildcard or external file
        URL; a leading "/" is the dataset root); returns the count.

        With no ``dataset_path`` nothing is removed: pass ``"*"`` to remove every file."""
        if not dataset_path:
            raise UsageError(
                "remove_files needs a dataset_path (a path, folder or wildcard)",
                hint='pass "*" to remove every file',
            )
        removed = self._service.remove(self.id, dataset_path, recursive)
        self._refresh()
        if verbose:
            _say(*(f"Removed {p}" for p in removed), f"{len(removed)} removed")
        return len(removed)

    def add_external_files(
        self,
        source_url: str | Iterable[str],
        wildcard: str | list[str] | None = None,
        dataset_path: str | list[str] | None = None,
        recursive: bool = True,
        verbose: bool = False,
        max_workers: int | None = None,
        read_hash: bool = False,
    ) -> int:
        """Register files that already sit in a storage (a file, folder or prefix URL) in place;
        ``upload`` never copies them. Returns the number of new files.

        By default (as ClearML) nothing is downloaded: the size and what the storage says of
        each object (ETag, version id, checksum or mtime) are recorded, and ``get`` and
        ``verify`` check the bytes against those. With ``read_hash=True`` each is read once to
        record its SHA-256, which ``get`` then checks as for any file.
        """
        before = dict(self._service.view(self._refresh())) if verbose else {}
        result = self._service.add_external_files(
            self.id, source_url, wildcard, dataset_path, recursive, max_workers, read_hash=read_hash
        )
        self._refresh()
        if verbose:
            _say(
                *_changed_paths(before, self._service.view(self._row)),
                f"{result.added} added, {result.modified} modified, {result.unchanged} unchanged",
            )
        return result.added

    def sync_folder(
        self,
        local_path: str | os.PathLike,
        dataset_path: str | None = None,
        verbose: bool = False,
        *,
        follow_symlinks: bool = False,
    ) -> tuple[int, int, int]:
        """Mirror a local folder into ``dataset_path``; returns (removed, added, modified): the
        files this call removed, made new and changed (unchanged ones are not counted).

        The same sync as ``clearml-data sync --id ... --skip-close``: the draft stays open.
        Symbolic links as :meth:`add_files` takes them."""
        before = dict(self._service.view(self._refresh())) if verbose else {}
        r = self._service.sync(
            local_path,
            dataset_id=self.id,
            dataset_path=dataset_path,
            skip_close=True,
            follow_symlinks=follow_symlinks,
        )
        self._refresh()
        if verbose:
            _say(
                *_changed_paths(before, self._service.view(self._row)),
                f"{r.removed} removed, {r.added} added, {r.modified} modified",
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
        if Dataset.is_offline():  # storage is not written in offline mode: the draft keeps its files
            log.warning(
                "offline mode: dataset %s keeps its files pending; upload() again after "
                "Dataset.set_offline(False), or run clearml-data close --id %s",
                self.id,
                self.id,
            )
            return None
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
            from .storage import redact_url

            _say(
                f"uploaded {result.files} files in {result.objects} objects "
                f"({result.uploaded_bytes} bytes) to {redact_url(result.storage)}"
            )
        self._refresh()
        return True if result.files == 0 else None

    def finalize(self, verbose: bool = False, raise_on_error: bool = True, auto_upload: bool = False) -> bool:
        """Close the version: after this its content never changes. With ``auto_upload``,
        pending content is uploaded first (``clearml-data close``); without it, pending
        content is an error. In offline mode nothing is written: a warning, and False."""
        if Dataset.is_offline():
            log.warning(
                "offline mode: dataset %s cannot be finalized until Dataset.set_offline(False)", self.id
            )
            return False
        try:
            closed = self._service.close_dataset(self.id, upload=auto_upload)
        except ClearMLDataError:
            if raise_on_error:
                raise
            return False
        self._row = closed.row
        self._warn_shadowed(closed.shadowed)
        if verbose:
            _say(f"dataset {self.id} finalized: version {self.version} of {self.project}/{self.name}")
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
        return {
            k: self._service.get_metadata(self._row, k)
            for k in self._refresh().metadata
            if not k.startswith(RESERVED_PREFIX)
        }

    def set_metadata(self, metadata, metadata_name: str = "metadata", ui_visible: bool = True) -> None:
        """Store a dict, any JSON-able value, or a pandas DataFrame (never pickled)."""
        self._service.set_metadata(self.id, metadata, metadata_name)
        self._refresh()

    def get_metadata(self, metadata_name: str = "metadata"):
        """The value stored by :meth:`set_metadata`, or None."""
        return self._service.get_metadata(self._refresh(), metadata_name)

    # -- reports and ClearML's task -----------------------------------------------------------
    def get_logger(self):
        """A logger whose ``report_table``, ``report_image``, ``report_media``,
        ``report_histogram``, ``report_scalar`` and ``report_text`` keep what they are given
        with this version (read it back with :meth:`get_reports`)."""
        from .logger import Logger

        return Logger(self.id, self._service)

    def get_reports(self, kind: str | None = None, title: str | None = None) -> list[dict]:
        """What was reported on this version through :meth:`get_logger`, in order, as JSON
        records (their shapes: docs/python-api.md); ``kind`` ("table", "scalar", "histogram",
        "text", "image", "media") and ``title`` filter them."""
        return [
            r
            for r in self._service.reports(self._refresh())
            if (kind is None or r.get("kind") == kind) and (title is None or r.get("title") == title)
        ]

    def get_report_file(self, report: dict) -> bytes:
        """The bytes of a reported image (PNG or JPEG) or media file, checked against their hash."""
        return self._service.report_media_bytes(self._refresh(), report)

    @property
    def _task(self):
        """ClearML's task behind a dataset: there is none here; any use of it raises one line."""
        from .task import DatasetTask

        return DatasetTask()

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
            _say(*(f"{p.path}: {p.problem} {p.detail}".rstrip() for p in problems))
            _say(f"{len({p.path for p in problems})} files with errors" if problems else "no errors found")
        return sorted({p.path for p in problems})

    def verify_storage(
        self,
        skip_hash: bool = False,
        repair: bool = False,
        repair_folder: str | os.PathLike | None = None,
        max_workers: int | None = None,
    ) -> list[str]:
        """``clearml-data verify [--repair] [--folder]``: check the version's objects in its
        storage (re-hashed unless ``skip_hash``) and its content in the local cache; damaged or
        missing stored objects are marked so. With ``repair``, those are stored again from the
        local cache or the files of ``repair_folder`` (matched by SHA-256). Returns the sorted
        paths that are (still) damaged."""
        row = self._refresh()
        report = self._service.verify_storage(row, full=not skip_hash, max_workers=max_workers)
        fixed = None
        if repair:
            fixed = self._service.repair(row, repair_folder, max_workers=max_workers)
            for path in fixed.repaired:
                log.info("%s: stored again from %s", path, fixed.sources[path])
        return self._service.still_damaged(report, fixed)

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
        if Dataset.is_offline():  # squashing stores the new version: nothing is stored offline
            raise UsageError(
                "cannot squash datasets in offline mode", hint="call Dataset.set_offline(False) first"
            )
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

    # -- offline mode, and sessions ClearML wrote in it ---------------------------------------------
    @classmethod
    def is_offline(cls) -> bool:
        """True in offline mode: :meth:`set_offline`, else ``$CLEARML_OFFLINE_MODE`` as ClearML reads it."""
        if Dataset._offline_mode is not None:
            return Dataset._offline_mode
        return os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "yes", "on")

    @classmethod
    def set_offline(cls, offline_mode: bool = False) -> None:
        """Turn offline mode on or off for this process. Offline, no content goes to storage:
        ``upload()`` keeps the draft's files pending and ``finalize()`` returns False (both with
        a warning), ``squash()`` and importing with upload raise; the catalog, the cache and the
        local files work as always."""
        Dataset._offline_mode = bool(offline_mode)

    def get_offline_mode_folder(self) -> Path | None:
        """In offline mode, the folder that holds the catalog, where this draft and its list of
        pending files are kept until it is uploaded (the files stay where they were added);
        None when not offline, like ClearML."""
        if not Dataset.is_offline():
            return None
        return Path(self._service.settings.catalog).parent

    @classmethod
    def import_offline_session(
        cls, session_folder_zip: str | os.PathLike, upload: bool = True, finalize: bool = False
    ) -> str:
        """Import a dataset that ClearML wrote in offline mode (its session folder, or the zip of
        it) as a new version with the same project, name, version, tags and files; with
        ``upload`` its content is stored, with ``finalize`` it is closed. Returns the new id."""
        if (upload or finalize) and Dataset.is_offline():
            raise UsageError(
                "import_offline_session cannot upload or finalize in offline mode",
                hint="call Dataset.set_offline(False) first, or pass upload=False, finalize=False",
            )
        row, _session = default_service().import_offline_session(
            session_folder_zip, upload=upload, finalize=finalize, progress=bar_progress
        )
        return row.id

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
        tags: str | Iterable[str] | None = None,
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
        self,
        dataset_path: str | Iterable[str] | None = None,
        recursive: bool = True,
        dataset_id: str | None = None,
    ) -> list[str]:
        """Sorted paths of the version's files (matching ``dataset_path``: a path, folder or
        wildcard, or a list of them; a leading "/" is the dataset root)."""
        only = self._service.resolve_id(dataset_id).id if dataset_id else None
        return [f.path for f in self._service.list_files(self._refresh(), dataset_path, recursive, only)]

    def iter_files(
        self,
        part: int | None = None,
        num_parts: int | None = None,
        files: str | Iterable[str] | None = None,
    ) -> Iterator[DatasetFile]:
        """The version's files, sorted by path, as :class:`DatasetFile` (path, size, hash,
        ``open()``); nothing is read until a file is opened.

        ``part`` of ``num_parts`` and ``files`` (wildcards, as :meth:`get_local_copy` takes
        them) choose the same files as :meth:`get_local_copy` with the same arguments: the
        parts 0 .. num_parts - 1 together hold every file once, so workers that each take
        one part read the version between them. Bad arguments raise here, at the call."""
        listed = self._service.version_files(self._refresh(), part, num_parts, files)
        return iter([DatasetFile(self, f.path, f.size, f.hash, f.dataset_id) for f in listed])

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

    def open(
        self,
        path: str,
        mode: str = "rb",
        *,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
        block_size: int | None = None,
        read_ahead: int | None = None,
        fill_cache: bool = True,
    ):
        """One file of this final version, open for reading in place: ``mode="rb"`` gives a
        seekable binary :class:`~clearml_data.service.VersionFile` whose reads are ranged
        reads of the stored pack or object (or of the local cache, if it holds the file);
        ``"r"`` the same as text. A file read to its end is checked against its SHA-256 before
        its last byte is returned. ``block_size`` and ``read_ahead`` (bytes) default to the
        settings of the same names; with ``fill_cache`` a file read whole enters the local cache
        (as ``get_local_copy`` would fetch it). See docs/streaming.md."""
        import io

        from .errors import ReadOnlyError

        text = mode in ("r", "rt")
        if mode not in ("rb", "br") and not text:
            if any(c in mode for c in "wax+"):
                raise ReadOnlyError(
                    f"a file of a dataset version cannot be opened for writing (mode {mode!r})",
                    hint="versions are changed by creating a new one: Dataset.create(parent_datasets=[...])",
                )
            raise UsageError(f"mode must be 'rb' or 'r', not {mode!r}", params=("mode",))
        f = self._service.open_file(
            self.id, path, block_size=block_size, read_ahead=read_ahead, fill_cache=fill_cache
        )
        if not text:
            return f
        return io.TextIOWrapper(io.BufferedReader(f), encoding=encoding, errors=errors, newline=newline)

    def filesystem(self):
        """An fsspec filesystem of this version's files, rooted at the version: paths are
        relative to its root (``fs.ls("")``, ``fs.open("train/a.csv")``). It reads the
        catalog, storage and cache this Dataset does, and pickles (Dask ships it to workers)."""
        from fsspec.implementations.dirfs import DirFileSystem

        from .fs import ClearMLDataFileSystem

        settings = self._service.settings
        return DirFileSystem(
            path=self.id,
            fs=ClearMLDataFileSystem(
                catalog=str(settings.catalog), storage=settings.storage, cache_dir=str(settings.cache_dir)
            ),
        )

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
