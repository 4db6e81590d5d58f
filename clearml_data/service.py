"""The service layer: every operation of clearml-data, under both the CLI and the API.

A version's *view* is what a local copy of it contains: its parents' views merged in
order (a later parent wins on the same path, and on a clash between a file and a folder:
see :func:`merge_views`), then its own change rows applied. The
change rows of a draft are always the difference between its parents' merged view and
what the user has added and removed, so they never hold redundant entries.

Write order, so that a crash at any moment leaves a resumable draft or a complete
version: objects into storage, then their catalog rows, then the final flag.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import glob
import logging
import os
import re
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import _crashpoints as crashpoints
from . import packs, versions
from .cache import Cache, tempfiles
from .cache.diskspace import disk_full, is_no_space, space_for
from .cache.links import COPY_TEMP_PREFIX, LINK_MODES, populate, remove_tree
from .catalog import Catalog, ChangeRow, DatasetRow, ObjectRow
from .config import Settings
from .errors import (CatalogError, ClearMLDataError, DatasetNotFoundError, DatasetStateError,
                     IntegrityError, StorageError, UnsafePathError, UsageError)
from .external import ExternalFilesMixin
from .history import HistoryMixin
from .recovery import FINALIZE_ATTEMPTS, RecoveryMixin
from .verify import VerifyMixin
from .diagnostics import probe_cache
from .hashing import EMPTY_SHA256, hash_files, ordered_map, sha256_file
from .cache.hashmemory import HashMemory as StatCache
from .paths import (MAX_DEPTH, MAX_PATH_BYTES, check_id, check_link, check_pattern, check_relpath, describe,
                    join_relpath, local_relpath, matches, normalize_relpath, shorten, under)
from .rowcheck import check_change, check_length, check_location, extent_problem
from .progress import ProgressFactory, null_progress
from .storage import PluginManager, StorageDriver, redact_url, url_scheme

log = logging.getLogger(__name__)

ID_RE = re.compile(r"^[0-9a-f]{8,32}$")
MIN_PREFIX = 8

#: a view maps a dataset path to (hash, size, id of the version that introduced it)
View = dict[str, tuple[str, int, str]]


@dataclass
class AddResult:
    added: int = 0
    modified: int = 0
    unchanged: int = 0
    bytes: int = 0
    removed: int = 0  # sync: files of the mirrored folder no longer there

    @property
    def files(self) -> int:
        return self.added + self.modified + self.unchanged


@dataclass
class SyncResult:
    removed: int = 0
    added: int = 0
    modified: int = 0


@dataclass
class UploadResult:
    storage: str
    files: int = 0          # change rows whose bytes are now in storage
    objects: int = 0        # objects (packs and large files) written
    uploaded_bytes: int = 0  # file bytes sent
    skipped: int = 0        # unique contents the storage already held


@dataclass
class FileInfo:
    path: str
    hash: str
    size: int
    dataset_id: str
    kind: str | None = None  # for change listings


@dataclass
class ShadowedFile:
    """A file of an earlier parent that a later parent shadows in a merge (merge_views)."""

    path: str
    hash: str
    size: int
    parent: str      #: the earlier parent whose view holds it
    by: str          #: the later parent that wins
    clash: str       #: the path the two disagree on: ``path`` itself, or a folder of it
    by_kind: str     #: what ``by`` has at ``clash``: "folder" or "file"

    def describe(self) -> str:
        what = "a folder" if self.by_kind == "folder" else "a file"
        return (f"{self.path} of parent {self.parent} is shadowed: the later parent {self.by} has "
                f"{what} {self.clash}")


@dataclass
class Diff:
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalize_storage(url: str) -> str:
    """Canonical form of a storage URL: local folders become absolute paths."""
    url = str(url).strip()
    if not url:
        raise UsageError("empty storage URL")
    if url_scheme(url) == "file":
        from .storage.folder import folder_path

        absolute = folder_path(url)
        return "file://" + absolute if url.lower().startswith("file://") else absolute
    head, sep, rest = url.partition("://")
    return head + sep + rest.rstrip("/") if rest.strip("/") else url


class Service(ExternalFilesMixin, HistoryMixin, VerifyMixin, RecoveryMixin):
    """Operations on one catalog, its storages and the local cache."""

    def __init__(self, settings: Settings | None = None, plugins: PluginManager | None = None):
        self.settings = settings or Settings.load()
        self._catalog: Catalog | None = None
        self._plugins = plugins
        self.cache = Cache(self.settings.cache_dir)
        #: per-machine (inode, size, times) -> hash memory, so unchanged files are not re-read
        self.hash_memory = StatCache(self.settings.cache_dir / "hashes.db")
        self.cache.guard.memory = self.hash_memory  # what each cached file was when checked
        self._views: OrderedDict[str, View] = OrderedDict()

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog(self.settings.catalog, lock=self.settings.catalog_lock,
                                    lock_timeout=self.settings.catalog_lock_timeout)
        return self._catalog

    @property
    def plugins(self) -> PluginManager:
        if self._plugins is None:
            self._plugins = PluginManager()
        return self._plugins

    def driver(self, storage: str) -> StorageDriver:
        return self.plugins.driver(storage)

    def close(self) -> None:
        self.cache.guard.flush()
        self.hash_memory.close()
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None
        if self._plugins is not None:
            self._plugins.close()

    # -- finding datasets ----------------------------------------------------------------------
    def resolve_id(self, dataset_id: str) -> DatasetRow:
        """The dataset with this id, or the only one whose id starts with this prefix."""
        text = str(dataset_id).strip().lower()
        if not ID_RE.match(text):
            raise UsageError(f"{dataset_id!r} is not a dataset id",
                             hint=f"an id is 32 hex characters; a unique prefix of {MIN_PREFIX}+ works")
        row = self.catalog.get_dataset(text) if len(text) == 32 else None
        if row is None:
            matches_ = self.catalog.ids_with_prefix(text)
            if len(matches_) > 1:
                raise UsageError(f"dataset id prefix {text!r} is ambiguous ({', '.join(matches_)}, ...)")
            if not matches_:
                raise DatasetNotFoundError(f"no dataset with id {text}",
                                           hint="`clearml-data search` lists the datasets")
            row = self.catalog.get_dataset(check_id(matches_[0]))
        check_id(row.id)
        return row

    def get(self, dataset_id: str | None = None, project: str | None = None, name: str | None = None,
            version: str | None = None, tags: Iterable[str] | None = None,
            only_completed: bool = False, only_published: bool = False) -> DatasetRow:
        """One dataset by id, or the highest version matching project/name/version/tags."""
        if dataset_id:
            if project or name or version:
                raise UsageError("give either a dataset id or project/name/version, not both")
            row = self.resolve_id(dataset_id)
            if only_published and row.status != "published":
                raise DatasetStateError(f"dataset {row.id} is not published")
            if only_completed and not row.is_final:
                raise DatasetStateError(f"dataset {row.id} is not final")
            return row
        if not project and not name:
            raise UsageError("no dataset given", hint="pass a dataset id, or a project and name")
        statuses = ["published"] if only_published else (["final", "published"] if only_completed else None)
        rows = self.catalog.find_datasets(project=project, name=name, statuses=statuses)
        if version is not None:
            exact = [r for r in rows if r.version == version]
            rows = exact or [r for r in rows if versions.same(r.version, str(version))]
        wanted = set(tags or ())
        rows = [r for r in rows if wanted.issubset(r.tags)]
        if not rows:
            what = ", ".join(f"{k}={v!r}" for k, v in (("project", project), ("name", name),
                                                        ("version", version)) if v)
            if tags:
                what += f", tags={sorted(wanted)}"
            extra = " completed" if only_completed else (" published" if only_published else "")
            raise DatasetNotFoundError(f"no{extra} dataset with {what}",
                                       hint="`clearml-data search` lists the datasets")
        return max(rows, key=lambda r: (versions.sort_key(r.version), r.created_at))

    def search(self, project: str | None = None, partial_name: str | None = None,
               tags: Iterable[str] | None = None, ids: Iterable[str] | None = None,
               only_completed: bool = True) -> list[DatasetRow]:
        statuses = ["final", "published"] if only_completed else None
        full_ids = [self.resolve_id(i).id for i in ids] if ids else None
        rows = self.catalog.find_datasets(project=project, statuses=statuses, ids=full_ids)
        if partial_name:
            try:
                pattern = re.compile(partial_name)
            except re.error as exc:
                raise UsageError(f"--name {partial_name!r} is not a valid regular expression: {exc}") from None
            rows = [r for r in rows if pattern.search(r.name)]
        if tags:
            wanted = set(tags)
            rows = [r for r in rows if wanted.issubset(r.tags)]
        return rows

    # -- creating -------------------------------------------------------------------------------
    def create(self, name: str | None, project: str | None = None, parents: Iterable[str] = (),
               version: str | None = None, storage: str | None = None,
               tags: Iterable[str] | None = None, description: str = "") -> DatasetRow:
        parent_rows = []
        for p in parents or ():
            row = self.resolve_id(p)
            if not row.is_final:
                raise DatasetStateError(f"parent dataset {row.id} is not final",
                                        hint=f"close it first: clearml-data close --id {row.id}")
            if row.id not in (r.id for r in parent_rows):
                parent_rows.append(row)
        if not name:
            raise UsageError("missing dataset name", hint="pass --name")
        if not project:
            if not parent_rows:
                raise UsageError("missing dataset project name; it could not be taken from a parent dataset",
                                 hint="pass --project")
            project = parent_rows[-1].project
        _check_label("project", project)
        _check_label("name", name)
        if version is not None:
            version = str(version).strip()
            _check_label("version", version)
        storage_url = normalize_storage(storage or self.settings.storage)
        self.plugins.driver(storage_url)  # unknown scheme or malformed URL: fail now, not at upload
        tag_list = _clean_tags(tags)
        stamp = now()
        row = DatasetRow(id=uuid.uuid4().hex, project=project, name=name, version=version or "",
                         status="draft", storage=storage_url, created_at=stamp, updated_at=stamp,
                         description=description or "", tags=tag_list, parents=[r.id for r in parent_rows])
        self.catalog.insert_dataset(row, None if version else versions.next_version)
        return row

    # -- views -------------------------------------------------------------------------------
    def view(self, row: DatasetRow) -> View:
        """The merged view of a version (cached for final versions, which never change)."""
        return self._view(row, {}, ())

    def _view(self, row: DatasetRow, memo: dict[str, View], path: tuple[str, ...]) -> View:
        """The view of ``row``: a single-parent chain is walked up to its first merge, root or
        remembered view, and its change sets are applied oldest first to one dict, so a chain of
        k versions costs one pass over the base and the k change sets, not k copies of the view."""
        top = row
        chain: list[DatasetRow] = []
        seen = set(path)
        view: View | None = None
        while view is None:
            known = memo.get(row.id)
            if known is None and row.is_final and row.id in self._views:
                self._views.move_to_end(row.id)
                known = self._views[row.id]
            if known is not None:
                if not chain:
                    return known
                view = dict(known)
                break
            if row.id in seen:
                raise CatalogError(f"the catalog has a parent cycle through dataset {row.id}")
            seen.add(row.id)
            chain.append(row)
            if len(row.parents) == 1:
                row = self._parent_row(row, row.parents[0])
                continue
            # a merge (or a root): later parents win (merge_views says how tree clashes end)
            view = merge_views([self._view(self._parent_row(row, pid), memo, tuple(seen))
                                for pid in row.parents])
        for level in reversed(chain):
            for p, kind, digest, size in self.catalog.change_tuples(check_id(level.id)):
                check_change(level.id, p, kind, digest, size)
                if kind == "removed":
                    view.pop(p, None)
                else:
                    view[p] = (digest, size, level.id)
        memo[top.id] = view
        if top.is_final:
            self._views[top.id] = view
            while len(self._views) > 4:
                self._views.popitem(last=False)
        return view

    def parent_view(self, row: DatasetRow) -> View:
        return self._parent_view(row, {}, (row.id,))

    def _parent_view(self, row: DatasetRow, memo: dict[str, View], path: tuple[str, ...]) -> View:
        if not row.parents:
            return {}
        if len(row.parents) == 1:
            return self._view(self._parent_row(row, row.parents[0]), memo, path)
        return merge_views([self._view(self._parent_row(row, pid), memo, path) for pid in row.parents])

    def shadowed(self, row: DatasetRow) -> list[ShadowedFile]:
        """The files of earlier parents that later parents shadow in this version's merged
        parents (see :func:`merge_views`); none for a version of one parent or none."""
        if len(row.parents) < 2:
            return []
        parents = [self._parent_row(row, pid) for pid in row.parents]
        views = [self.view(p) for p in parents]
        out: list[ShadowedFile] = []
        folders: dict[int, set[str]] = {}

        def note(i: int, path: str, entry: tuple[str, int, str]) -> None:
            owner = next(j for j in range(i - 1, -1, -1) if views[j].get(path) == entry)
            if i not in folders:
                folders[i] = _folders_of(views[i])
            if path in folders[i]:
                clash, kind = path, "folder"
            else:
                clash = next(f for f in _ancestors(path) if f in views[i])
                kind = "file"
            out.append(ShadowedFile(path, entry[0], entry[1], parents[owner].id, parents[i].id, clash, kind))

        merge_views(views, note)
        return out

    def _parent_row(self, row: DatasetRow, parent_id: str) -> DatasetRow:
        parent = self.catalog.get_dataset(check_id(parent_id))
        if parent is None:
            raise CatalogError(f"dataset {row.id} names a parent {parent_id} that is not in the catalog")
        return parent

    def list_files(self, row: DatasetRow, pattern: str | None = None, recursive: bool = True,
                   only_from: str | None = None) -> list[FileInfo]:
        view = self.view(row)
        out = []
        for p in sorted(view):
            h, size, origin = view[p]
            if only_from is not None and origin != only_from:
                continue
            if pattern and not matches(p, pattern, recursive):
                continue
            out.append(FileInfo(p, h, size, origin))
        return out

    def diff(self, old: View, new: View) -> Diff:
        d = Diff()
        for p, entry in new.items():
            before = old.get(p)
            if before is None:
                d.added.append(p)
            elif before[0] != entry[0]:
                d.modified.append(p)
        d.removed = [p for p in old if p not in new]
        for lst in (d.added, d.modified, d.removed):
            lst.sort()
        return d

    # -- changing a draft ----------------------------------------------------------------------
    def _draft(self, dataset_id: str) -> DatasetRow:
        row = self.resolve_id(dataset_id)
        if row.is_final:
            raise DatasetStateError(
                f"dataset {row.id} is final and cannot be changed",
                hint=f"create a child version: clearml-data create --parents {row.id} ...")
        return row

    def add_files(self, dataset_id: str, path: str | os.PathLike, wildcard: str | list[str] | None = None,
                  local_base_folder: str | None = None, dataset_path: str | None = None,
                  recursive: bool = True, max_workers: int | None = None,
                  progress: ProgressFactory = null_progress) -> AddResult:
        row = self._draft(dataset_id)
        prefix = normalize_relpath(dataset_path)
        found = self._collect(path, wildcard, local_base_folder, recursive, prefix)
        return self._add_collected(row, found, max_workers, progress)

    def _collect(self, path, wildcard, local_base_folder, recursive, prefix: str = "") -> Iterator[tuple[str, str]]:
        """(dataset path under ``prefix``, absolute source path) of each local file to add."""
        text = os.path.expanduser(os.fspath(path))
        if os.path.isdir(text) or os.path.isfile(text):
            roots = [text]
        elif glob.has_magic(text):
            roots = sorted(glob.glob(text, recursive=True))
            if not roots:
                raise UsageError(f"no local file matches {text}")
        else:
            raise UsageError(f"no such file or folder: {text}")
        wildcards = [wildcard] if isinstance(wildcard, str) else list(wildcard or [])
        base = os.path.abspath(os.path.expanduser(local_base_folder)) if local_base_folder else None
        for root in roots:
            root = os.path.abspath(root)
            if os.path.isfile(root):
                rel = local_relpath(root, base) if base else os.path.basename(root)
                if not wildcards or any(matches(rel, w) for w in wildcards):
                    yield self._checked_rel(join_relpath(prefix, rel), root), root
                continue
            folder_base = base or root
            for dirpath, names in _walk_files(root, recursive):
                rel_dir = local_relpath(dirpath, folder_base)  # once per folder, not per file
                if rel_dir == ".." or rel_dir.startswith("../"):
                    raise UsageError(f"{dirpath} is not inside the local base folder {folder_base}")
                rel_prefix = "" if rel_dir == "." else rel_dir + "/"
                for name in names:
                    rel = rel_prefix + name
                    if wildcards and not any(matches(rel, w) for w in wildcards):
                        continue
                    full = os.path.join(dirpath, name)
                    yield self._checked_rel(join_relpath(prefix, rel), full), full

    @staticmethod
    def _checked_rel(rel: str, source: str) -> str:
        try:
            return check_relpath(rel)
        except UnsafePathError as exc:
            raise UnsafePathError(f"cannot add {shorten(source)}: {exc}") from None

    def _add_collected(self, row: DatasetRow, items: Iterable[tuple[str, str]], max_workers: int | None,
                       progress: ProgressFactory, mirror: str | None = None) -> AddResult:
        """Hash and record local files; with ``mirror`` (a dataset folder, "" for the root), also
        remove every file under it that is not among them, in the same catalog transaction."""
        seen: dict[str, str] = {}
        for rel, src in items:
            if seen.setdefault(rel, src) != src:
                raise UsageError(f"two files map to the dataset path {rel!r}: {seen[rel]} and {src}")
        if not seen and mirror is None:
            return AddResult()
        stamp = self.catalog.data_version()  # before the rows are read: a later change shows
        parent = self.parent_view(row)
        rows = {c.path: c for c in self.catalog.changes(row.id)}
        current = _apply(parent, rows, row.id)
        if mirror is not None:
            kept = {p: v for p, v in current.items() if p in seen or not under(p, mirror)}
            _check_tree_conflicts(kept, seen)
        else:
            _check_tree_conflicts(current, seen)  # fail before hashing; checked again when written
        # files are stat'ed and hashed a batch at a time, so per-file stat results and digests of a
        # large tree are never all held at once; a second stat pass gives the progress bar its total
        sources = list(seen.values())
        batches = [sources[i:i + _ADD_BATCH] for i in range(0, len(sources), _ADD_BATCH)]
        stats = _stat_files(batches[0]) if batches else {}
        total = sum(st.st_size for st in stats.values())
        for batch in batches[1:]:
            total += sum(_stat(src).st_size for src in batch)
        bar = progress(total, "B", "Hashing", files=len(sources))
        hashed: list[tuple[str, int]] = []
        try:
            for i in range(len(batches)):
                if i:
                    stats = _stat_files(batches[i])
                hashed += ((digest, size) for _, digest, size in
                           hash_files(stats, self.hash_memory, max_workers,
                                      on_done=lambda n: bar.update(n, files=1)))
                stats = {}
        except OSError as exc:
            raise UsageError(f"cannot read {exc.filename}: {exc.strerror}") from None
        finally:
            bar.close()
        entries = (ChangeRow(rel, "added", digest, size, src)
                   for (rel, src), (digest, size) in zip(seen.items(), hashed, strict=True))
        crashpoints.reach("add.hashed")
        return self._record(row, parent, rows, current, entries, stamp, mirror)

    def _record(self, row: DatasetRow, parent: View, rows: dict[str, ChangeRow], current: View,
                entries: Iterable[ChangeRow], stamp: int | None = None, mirror: str | None = None) -> AddResult:
        """Write hashed entries (kind ignored) as the draft's change rows against its parents.

        ``parent``, ``rows`` and ``current`` were read before the files were hashed, when the
        catalog's data version was ``stamp``. Inside the write transaction they are read again
        if another process wrote since, so the tree check and the rows written always start
        from what the draft holds at that moment: two writers cannot both get a path in as a
        file and as a folder. With ``mirror``, the files under that folder that are not among
        ``entries`` are removed in the same transaction (sync).
        """
        entries = list(entries)
        with self.catalog.write():
            fresh = self.catalog.get_dataset(row.id)
            if fresh is None:
                raise DatasetNotFoundError(f"dataset {row.id} was deleted by another process")
            if fresh.is_final:
                raise DatasetStateError(f"dataset {row.id} was finalized by another process",
                                        hint=f"create a child version: clearml-data create --parents {row.id}")
            changed = stamp is None or self.catalog.data_version() != stamp or fresh.parents != row.parents
            if changed:
                if fresh.parents != row.parents:
                    parent = self.parent_view(fresh)
                rows = {c.path: c for c in self.catalog.changes(row.id)}
                current = _apply(parent, rows, row.id)
            # unchanged since the caller checked these paths against ``current``: no second check
            result = self._rows_for(row, parent, rows, current, entries, mirror, check=changed)
        crashpoints.reach("add.recorded")
        return result

    def _rows_for(self, row: DatasetRow, parent: View, rows: dict[str, ChangeRow], current: View,
                  entries: list[ChangeRow], mirror: str | None, check: bool = True) -> AddResult:
        result = AddResult()
        upserts: list[ChangeRow] = []
        deletes: list[str] = []
        if mirror is not None:
            present = {e.path for e in entries}
            gone = sorted(p for p in current if under(p, mirror) and p not in present)
            current = {p: v for p, v in current.items() if p in present or not under(p, mirror)}
            upserts += [ChangeRow(p, "removed", None, None) for p in gone if p in parent]
            deletes += [p for p in gone if p not in parent]
            result.removed = len(gone)
        if check:
            _check_tree_conflicts(current, [e.path for e in entries])
        for e in entries:
            result.bytes += e.size
            before = current.get(e.path)
            if before is None:
                result.added += 1
            elif before[0] != e.hash:
                result.modified += 1
            else:
                result.unchanged += 1
            base_entry = parent.get(e.path)
            if base_entry is None:
                upserts.append(ChangeRow(e.path, "added", e.hash, e.size, e.source, e.link))
            elif base_entry[0] != e.hash:
                upserts.append(ChangeRow(e.path, "modified", e.hash, e.size, e.source, e.link))
            elif e.path in rows:
                deletes.append(e.path)  # back to the parent's content
        self.catalog.replace_changes(row.id, upserts, deletes)
        return result

    def remove_files(self, dataset_id: str, pattern: str, recursive: bool = True) -> list[str]:
        """Remove the files matching ``pattern`` from a draft; returns the removed paths."""
        row = self._draft(dataset_id)
        check_pattern(pattern)
        parent = self.parent_view(row)
        rows = {c.path: c for c in self.catalog.changes(row.id)}
        current = _apply(parent, rows, row.id)
        gone = sorted(p for p in current if matches(p, pattern, recursive))
        self._remove(row, parent, gone)
        return gone

    def _remove(self, row: DatasetRow, parent: View, paths: list[str]) -> None:
        upserts = [ChangeRow(p, "removed", None, None) for p in paths if p in parent]
        deletes = [p for p in paths if p not in parent]
        self.catalog.replace_changes(row.id, upserts, deletes)

    def sync_folder(self, dataset_id: str, local_path: str | os.PathLike, dataset_path: str | None = None,
                    max_workers: int | None = None,
                    progress: ProgressFactory = null_progress) -> SyncResult:
        """Make the dataset folder ``dataset_path`` mirror ``local_path``."""
        row = self._draft(dataset_id)
        folder = os.path.abspath(os.path.expanduser(os.fspath(local_path)))
        if not os.path.isdir(folder):
            raise UsageError(f"no such folder: {folder}")
        prefix = normalize_relpath(dataset_path)
        # the whole folder is read before anything is written: a part that cannot be read is an
        # error, never taken for files that were deleted; removals and additions are one write
        found = list(self._collect(folder, None, None, True, prefix))
        done = self._add_collected(row, found, max_workers, progress, mirror=prefix)
        return SyncResult(removed=done.removed, added=done.added, modified=done.modified)

    # -- upload and finalize ------------------------------------------------------------------
    def pending_uploads(self, row: DatasetRow, storage: str | None = None) -> list[ChangeRow]:
        """Change rows whose content the storage does not hold yet."""
        return self._split_uploads(row, storage)[1]

    def has_pending_uploads(self, row: DatasetRow, storage: str | None = None) -> bool:
        return self.catalog.has_missing_objects(row.id, storage or row.storage)

    def _split_uploads(self, row: DatasetRow, storage: str | None) -> tuple[list[ChangeRow], list[ChangeRow]]:
        """(rows that carry content, those of them whose content the storage lacks)."""
        rows = [c for c in self.catalog.changes(row.id) if c.kind != "removed" and c.link is None]
        storage = storage or row.storage  # dedup trusts checked rows only: see the others first
        self.confirm_stored(storage, self.catalog.unchecked_objects(storage, {c.hash for c in rows}))
        missing = self.catalog.missing_objects(storage, (c.hash for c in rows))
        return rows, [c for c in rows if c.hash in missing]

    def is_dirty(self, row: DatasetRow) -> bool:
        return not row.is_final and self.has_pending_uploads(row)

    def upload(self, dataset_id: str, storage: str | None = None, chunk_size: float | None = None,
               max_workers: int | None = None, progress: ProgressFactory = null_progress,
               _attempt: int = 1) -> UploadResult:
        row = self._draft(dataset_id)
        if storage:
            storage = normalize_storage(storage)
            self.driver(storage)  # a URL the driver refuses (credentials in it) is never recorded
            if storage != row.storage:
                self.catalog.update_dataset(row.id, storage=storage, updated_at=now())
                row.storage = storage
        storage = row.storage
        driver = self.driver(storage)
        tempfiles.clean(self.cache, lambda: driver)  # what an interrupted upload left behind
        result = UploadResult(storage=storage)
        content_rows, pending = self._split_uploads(row, storage)
        result.skipped = len({c.hash for c in content_rows} - {c.hash for c in pending})
        unique: dict[str, packs.PendingFile] = {}
        for c in pending:
            if c.hash in unique:
                continue
            source = c.source if c.source and os.path.isfile(c.source) else None
            if source is None and self.cache.has(c.hash, c.size):
                source = str(self.cache.object_path(c.hash))
            if source is None:
                raise UsageError(f"the local file for {c.path!r} is gone ({c.source}) and its content "
                                 f"is in no storage", hint="add the file again, then upload")
            unique[c.hash] = packs.PendingFile(c.hash, c.size, source)
        result.files = len(pending)
        plan = packs.plan_upload(unique.values(), chunk_size)
        crashpoints.reach("upload.planned")
        tasks = [("pack", group) for group in plan.packs] + [("large", [f]) for f in plan.large]
        bar = progress(plan.total_bytes, "B", "Uploading", files=len(unique))
        tmp_dir = str(self.cache.tmp)

        def run(task) -> list[ObjectRow]:
            kind, files = task
            if kind == "large":
                f = files[0]
                with self.cache.in_use():
                    local = self.cache.ingest(f)  # upload exactly what was hashed
                    crashpoints.reach("upload.cached")
                    key = packs.object_key(f.hash)
                    self._put(driver, str(local), key, storage)
                return [ObjectRow(storage, f.hash, key, 0, f.size)]
            with space_for(self.cache.root, "the cache"):
                digest, tmp, entries = packs.write_pack(files, tmp_dir)
            crashpoints.reach("upload.pack_written")
            try:
                key = packs.pack_key(digest)
                self._put(driver, tmp, key, storage)
            finally:
                os.unlink(tmp)
            return [ObjectRow(storage, h, key, off, length) for h, off, length in entries]

        lost = 0
        try:
            workers = max_workers or driver.default_max_workers
            for task, objects in ordered_map(run, tasks, workers, window=64):
                if not self.record_stored(driver, storage, objects):  # recorded as soon as stored: resumable
                    lost += 1
                    continue
                crashpoints.reach("upload.object_recorded")
                nbytes = sum(f.size for f in task[1])
                result.objects += 1
                result.uploaded_bytes += nbytes
                bar.update(nbytes, files=len(task[1]))
        finally:
            bar.close()
        if lost and _attempt < FINALIZE_ATTEMPTS:  # a concurrent gc deleted what was just stored
            again = self.upload(row.id, None, chunk_size, max_workers, progress, _attempt + 1)
            result.objects += again.objects
            result.uploaded_bytes += again.uploaded_bytes
        crashpoints.reach("upload.done")
        return result

    @staticmethod
    def _put(driver: StorageDriver, local: str, key: str, storage: str) -> None:
        try:
            driver.put_file(local, key)
            crashpoints.reach("upload.object_put")
        except ClearMLDataError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot write {key} to {redact_url(storage)}: {exc.strerror or exc}",
                               url=redact_url(storage), key=key) from None

    def finalize(self, dataset_id: str, auto_upload: bool = False, chunk_size: float | None = None,
                 max_workers: int | None = None, progress: ProgressFactory = null_progress) -> DatasetRow:
        row = self._draft(dataset_id)
        for pid in row.parents:
            parent = self._parent_row(row, pid)
            if not parent.is_final:
                raise DatasetStateError(f"parent dataset {pid} is not final")
        self.confirm_stored(row.storage, self.catalog.unchecked_objects_of(row.id, row.storage))
        if self.has_pending_uploads(row):
            if not auto_upload:
                raise DatasetStateError(
                    f"cannot finalize dataset {row.id}: pending uploads",
                    hint="call Dataset.upload() first, or use finalize(auto_upload=True) / clearml-data close")
            self.upload(row.id, chunk_size=chunk_size, max_workers=max_workers, progress=progress)
            if self.has_pending_uploads(row):
                raise StorageError(f"dataset {row.id} still has pending uploads after upload")
        tempfiles.clean(self.cache, lambda: self.driver(row.storage))
        crashpoints.reach("finalize.checked")
        for _attempt in range(FINALIZE_ATTEMPTS):
            view = self.view(row)
            clash = tree_clash(view)
            if clash is not None:  # the add checks keep this out; a catalog from elsewhere may not
                raise DatasetStateError(f"cannot finalize dataset {row.id}: {shorten(clash)} is both a file "
                                        "and a folder in it, which no local copy can hold",
                                        hint=f"remove one of them: clearml-data remove --id {row.id} --files ...")
            counts = self.catalog.count_changes(row.id)
            stamp = self.write_manifest(row, view, counts, now())  # after the objects, before the flag
            crashpoints.reach("finalize.manifest_written")
            with self.catalog.write():
                current = self.catalog.get_dataset(row.id)
                if current is None or current.is_final:
                    if current is None:
                        self.drop_manifest(row)
                    raise DatasetStateError(f"dataset {row.id} was finalized or deleted by another process")
                lost = self.has_pending_uploads(row)  # a concurrent gc removed content since the upload
                if not lost:
                    self.catalog.clear_sources(row.id)
                    self.catalog.update_dataset(
                        row.id, status="final", finalized_at=stamp, updated_at=stamp,
                        file_count=len(view), total_size=sum(v[1] for v in view.values()),
                        added=counts["added"], modified=counts["modified"], removed=counts["removed"])
            if not lost:
                crashpoints.reach("finalize.committed")
                return self.resolve_id(row.id)
            self.upload(row.id, chunk_size=chunk_size, max_workers=max_workers, progress=progress)
        raise StorageError(f"dataset {row.id} lost stored content to a concurrent gc {FINALIZE_ATTEMPTS} times",
                           hint="close it again")

    def publish(self, dataset_id: str) -> DatasetRow:
        row = self.resolve_id(dataset_id)
        if not row.is_final:
            raise DatasetStateError(f"dataset {row.id} is not final", hint="close it before publishing")
        if row.status != "published":
            self.catalog.update_dataset(row.id, status="published", updated_at=now())
        return self.resolve_id(row.id)

    def update(self, dataset_id: str, **fields) -> DatasetRow:
        """Change descriptive fields (description, tags, metadata, version of a draft)."""
        row = self.resolve_id(dataset_id)
        if "tags" in fields:
            fields["tags"] = _clean_tags(fields["tags"])
        if "version" in fields:
            if row.is_final:
                raise DatasetStateError(f"dataset {row.id} is final; its version cannot change")
            _check_label("version", fields["version"])
            if versions.taken_by(fields["version"], self.catalog.versions_of(row.project, row.name)):
                raise UsageError(f"dataset {row.project}/{row.name} already has a version {fields['version']}")
        self.catalog.update_dataset(row.id, updated_at=now(), **fields)
        return self.resolve_id(row.id)

    # -- local copies ---------------------------------------------------------------------------
    def _final(self, dataset_id: str) -> DatasetRow:
        row = self.resolve_id(dataset_id)
        if not row.is_final:
            raise DatasetStateError(f"dataset {row.id} is not final; only final versions have local copies",
                                    hint=f"close it first: clearml-data close --id {row.id}")
        return row

    def selected_files(self, row: DatasetRow, part: int | None = None, num_parts: int | None = None,
                       files: Iterable[str] | None = None) -> tuple[dict[str, tuple[str, int]], str]:
        """The view's files, optionally one part of ``num_parts`` or a subset; and a label for it.

        Parts: paths sorted, part k of n is the k-th contiguous slice, balanced by file count.
        """
        view = self.view(row)
        paths = sorted(view)
        label = ""
        if files is not None:
            patterns = [files] if isinstance(files, str) else list(files)
            paths = [p for p in paths if any(matches(p, pat) for pat in patterns)]
            label += ".files-" + uuid.uuid5(uuid.NAMESPACE_URL, "\n".join(sorted(patterns))).hex[:12]
        if part is not None or num_parts is not None:
            if part is None or num_parts is None:
                raise UsageError("part and num_parts go together")
            if not (isinstance(num_parts, int) and num_parts >= 1 and isinstance(part, int)
                    and 0 <= part < num_parts):
                raise UsageError(f"part must be in 0..num_parts-1 (got part={part}, num_parts={num_parts})")
            start = len(paths) * part // num_parts
            end = len(paths) * (part + 1) // num_parts
            paths = paths[start:end]
            label += f".part-{part}-of-{num_parts}"
        return {p: view[p][:2] for p in paths}, label

    def get_local_copy(self, dataset_id: str, use_soft_links: bool | None = None,
                       max_workers: int | None = None, part: int | None = None,
                       num_parts: int | None = None, files: Iterable[str] | None = None,
                       progress: ProgressFactory = null_progress) -> str:
        """A read-only folder holding the version's merged view, built from the object cache."""
        row = self._final(dataset_id)
        if use_soft_links not in LINK_MODES:
            raise UsageError("use_soft_links must be None, True or False")
        files, label = self.selected_files(row, part, num_parts, files)
        folder = self.cache.view_path(row.id, use_soft_links)
        folder = folder.with_name(folder.name + label)
        self.cache.ensure()
        with self.cache.in_use(), self.cache.lock(folder.name):
            if not self.cache.view_is_complete(folder, files):
                # the copy is built in a sibling folder named .build-<name>-<8 hex digits>
                _check_materialisable(row, files, str(folder) + "-" * 16, "cache folder (the cache_dir setting)")
                self.fetch_objects(row, files, max_workers, progress)
                self.cache.build_view(folder, files, use_soft_links)
            self.cache.touch(folder)
        self.enforce_cache_limit(keep=[folder.name])
        return str(folder)

    def enforce_cache_limit(self, keep: Iterable[str] = ()):
        """Prune the cache to the cache_max_size setting, if one is set and the cache is idle."""
        limit = self.settings.cache_max_size
        if limit is None:
            return None
        return self.cache.prune(limit, keep=keep, blocking=False)

    def get_mutable_local_copy(self, dataset_id: str, target_folder: str | os.PathLike,
                               overwrite: bool = False, max_workers: int | None = None,
                               part: int | None = None, num_parts: int | None = None,
                               progress: ProgressFactory = null_progress) -> str:
        row = self._final(dataset_id)
        files, _label = self.selected_files(row, part, num_parts)
        target = Path(os.path.expanduser(os.fspath(target_folder))).absolute()
        if target.exists() and not target.is_dir():
            raise UsageError(f"{target} exists and is not a folder")
        _check_materialisable(row, files, str(target), "target folder")
        todo = files
        if target.is_dir() and any(target.iterdir()):
            if overwrite:
                for child in target.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        remove_tree(child)
                    else:
                        child.unlink()
            else:  # what an interrupted copy of the same files left: finish it
                done = _copied_already(target, files, max_workers)
                todo = {rel: v for rel, v in files.items() if rel not in done}
        self.cache.ensure()
        with self.cache.in_use():
            self.fetch_objects(row, todo, max_workers, progress)
            try:
                with space_for(target, "the folder"):
                    target.mkdir(parents=True, exist_ok=True)
                    populate(target, todo, self.cache.object_file, "copy", writable=True)
            except BaseException:  # never leave a half-written copy: the same call can run again
                if target.is_dir():
                    for child in target.iterdir():
                        if child.is_dir() and not child.is_symlink():
                            remove_tree(child)
                        else:
                            child.unlink()
                raise
        self.enforce_cache_limit()
        return str(target)

    def fetch_objects(self, row: DatasetRow, files: dict[str, tuple[str, int]],
                      max_workers: int | None = None, progress: ProgressFactory = null_progress) -> int:
        """Bring every object the files need into the cache; returns the bytes fetched."""
        needed = {h: size for h, size in files.values()}
        cached = self.cache.usable(needed)  # intact copies only; changed ones are fetched again
        wanted = {h: size for h, size in needed.items() if h not in cached}
        if not wanted:
            return 0
        empty = [h for h, s in wanted.items() if s == 0]
        for h in empty:
            if h != EMPTY_SHA256:
                raise CatalogError(f"dataset {row.id} gives the content {h[:12]}… a size of 0, but that is not "
                                   "the hash of empty content", hint="the catalog was changed outside clearml-data; "
                                                                     "restore it from a backup")
            self.cache.add_bytes(h, b"")
            wanted.pop(h)
        locations = self.readable_locations(row, self.catalog.locate_objects(wanted))
        by_key: dict[tuple[str, str], list[tuple[str, int, int]]] = {}
        for h in wanted:
            locs = locations.get(h)
            if not locs:
                raise StorageError(f"no storage holds the content {h[:12]}… of dataset {row.id}",
                                   hint="the version was not uploaded completely; run verify")
            loc = check_location(next((x for x in locs if x.storage == row.storage), locs[0]))
            check_length(loc, wanted[h], row.id)
            by_key.setdefault((loc.storage, loc.key), []).append((h, loc.offset, loc.length))
        if not by_key:  # only empty files: nothing to read
            return 0
        workers = max_workers or max(self.driver(s).default_max_workers for s, _key in by_key)

        def check_size(item: tuple[str, str]) -> None:
            """Stat the object once; every entry the catalog places in it must lie within it."""
            storage, key = item
            try:
                size = self.driver(storage).stat(key).size
            except OSError as exc:
                raise self._read_failure(storage, key, exc) from None
            problem = extent_problem(key, by_key[item], size)
            if problem:
                raise IntegrityError(f"object {key} in {redact_url(storage)} {problem}",
                                     hint="the stored object is damaged or the catalog was changed outside "
                                          "clearml-data; run clearml-data verify")

        # a catalog that lies, or an object cut short or grown, ends in one error before a byte of
        # the object is read: packs (few) are checked here, whole objects just before their download
        whole = {item for item, entries in by_key.items()
                 if not packs.is_pack_key(item[1]) and len(entries) == 1 and entries[0][1] == 0}
        for _checked in ordered_map(check_size, [item for item in by_key if item not in whole], workers, window=64):
            pass
        tasks: list[tuple[str, packs.Span]] = []
        for (storage, key), entries in by_key.items():
            for span in packs.coalesce(key, entries):
                tasks.append((storage, span))
        total = sum(wanted.values())
        bar = progress(total, "B", "Downloading", files=len(wanted))

        def run(task: tuple[str, packs.Span]) -> tuple[int, int]:
            storage, span = task
            driver = self.driver(storage)
            try:
                if (storage, span.key) in whole:
                    check_size((storage, span.key))
                    fd, tmp = self.cache.tempfile()
                    os.close(fd)
                    try:
                        driver.get_file(span.key, tmp)
                        if os.stat(tmp).st_size != span.length:
                            raise IntegrityError(f"object {span.key} in {redact_url(storage)} changed while it "
                                                 "was read", hint="run clearml-data verify")
                    except BaseException:
                        if os.path.lexists(tmp):
                            os.unlink(tmp)
                        raise
                    self.cache.add_file(span.members[0][0], tmp)
                    return span.length, 1
                if len(span.members) == 1 and span.length > packs.MAX_SPAN:
                    self._fetch_range(driver, storage, span)  # in bounded reads, never whole in memory
                    return span.length, 1
                data = memoryview(driver.read_range(span.key, span.offset, span.length))
            except OSError as exc:
                raise self._read_failure(storage, span.key, exc) from None
            for digest, off, length in span.members:
                start = off - span.offset
                chunk = data[start:start + length]
                if len(chunk) != length:
                    raise IntegrityError(f"object {span.key} in {redact_url(storage)} is truncated",
                                         hint="run clearml-data verify")
                self.cache.add_bytes(digest, chunk)
            return sum(m[2] for m in span.members), len(span.members)

        fetched = 0
        try:
            for _task, (n, nfiles) in ordered_map(run, tasks, workers, window=64):
                fetched += n
                bar.update(n, files=nfiles)
        finally:
            bar.close()
        return fetched

    def _fetch_range(self, driver: StorageDriver, storage: str, span: packs.Span) -> None:
        """Bring one large range of an object into the cache through a temporary file."""
        fd, tmp = self.cache.tempfile()
        try:
            with space_for(self.cache.root, "the cache"), os.fdopen(fd, "wb") as out:
                done = 0
                while done < span.length:
                    n = min(packs.MAX_SPAN, span.length - done)
                    block = driver.read_range(span.key, span.offset + done, n)
                    if len(block) != n:
                        raise IntegrityError(f"object {span.key} in {redact_url(storage)} is truncated",
                                             hint="run clearml-data verify")
                    out.write(block)
                    done += n
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise
        self.cache.add_file(span.members[0][0], tmp)

    def _read_failure(self, storage: str, key: str, exc: OSError) -> ClearMLDataError:
        """The error to show for a failed read of ``key``: missing, the cache's disk full, or unreadable."""
        if isinstance(exc, FileNotFoundError):
            why = exc.strerror if exc.strerror and not exc.strerror.startswith("no such object") else ""
            return StorageError(f"object {key} is missing from {redact_url(storage)}{f' ({why})' if why else ''}",
                                url=redact_url(storage), key=key,
                                hint="the storage lost data; run clearml-data verify")
        if is_no_space(exc):
            return disk_full(self.cache.root, "the cache", exc)
        return StorageError(f"cannot read {key} from {redact_url(storage)}: {exc.strerror or exc}",
                            url=redact_url(storage), key=key)

    # -- deleting -----------------------------------------------------------------------------
    def delete(self, dataset_id: str, force: bool = False) -> list[str]:
        """Delete one version; with ``force``, its children keep their views (rows are folded in)."""
        row = self.resolve_id(dataset_id)
        children = self.catalog.children(row.id)
        if children and not force:
            raise DatasetStateError(
                f"dataset {row.id} has {len(children)} child version(s) ({', '.join(c[:8] for c in children)})",
                hint="delete the children first, or force the delete (--force, force=True) to fold this "
                     "version into them")
        crashpoints.reach("delete.checked")
        self.cache.remove_views(row.id)  # first: a crash after the commit must not leave them behind
        manifest_key = self.retire_manifest(row, now())  # tombstone first: rebuild never revives it
        with self.catalog.write():
            for child_id in children:
                self._fold_into_child(row, child_id)
            self.catalog.delete_dataset(row.id)
        crashpoints.reach("delete.committed")
        self.remove_manifest(row, manifest_key)
        self._views.clear()
        return [row.id]

    def _fold_into_child(self, row: DatasetRow, child_id: str) -> None:
        child = self.catalog.get_dataset(child_id)
        before = self._view(child, {}, ())
        old_rows = {c.path: c for c in self.catalog.changes(child.id)}
        new_parents: list[str] = []
        for pid in child.parents:
            for replacement in (row.parents if pid == row.id else [pid]):
                if replacement not in new_parents:
                    new_parents.append(replacement)
        child.parents = new_parents
        parent = self._parent_view(child, {}, (child.id,))
        d = self.diff(parent, before)
        links = self.catalog.links({origin for _h, _s, origin in before.values()})
        rows = []
        for p in d.added + d.modified:
            h, size, origin = before[p]
            src = old_rows[p].source if p in old_rows else None
            rows.append(ChangeRow(p, "added" if p in d.added else "modified", h, size, src,
                                  links.get((origin, p))))  # external files stay external
        rows += [ChangeRow(p, "removed", None, None) for p in d.removed]
        self.catalog.set_parents(child.id, new_parents)
        self.catalog.replace_changes(child.id, rows, deletes=list(old_rows))
        if child.is_final:  # a draft's counts are set when it is finalized
            counts = self.catalog.count_changes(child.id)
            self.catalog.update_dataset(child.id, added=counts["added"], modified=counts["modified"],
                                        removed=counts["removed"])
        self._views.pop(child.id, None)

    def delete_versions(self, project: str, name: str, force: bool = False) -> list[str]:
        """Delete every version of project/name (newest first)."""
        rows = self.catalog.find_datasets(project=project, name=name)
        if not rows:
            raise DatasetNotFoundError(f"no dataset with project={project!r}, name={name!r}")
        if not force:
            raise UsageError("deleting every version of a dataset needs --force")
        deleted = []
        for r in sorted(rows, key=lambda r: r.created_at, reverse=True):
            deleted += self.delete(r.id, force=True)
        return deleted

    # -- diagnostics ----------------------------------------------------------------------------
    def doctor(self) -> dict:
        import platform
        import sqlite3

        from . import __version__

        s = self.settings
        info: dict = {
            "clearml_data": __version__,
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "config_file": str(s.config_file),
            "catalog": {"path": str(s.catalog), "source": s.sources.get("catalog")},
            "storage": {"url": redact_url(s.storage), "source": s.sources.get("storage")},
            "cache": {"path": str(s.cache_dir), "source": s.sources.get("cache_dir"),
                      "max_size": s.cache_max_size, "max_size_source": s.sources.get("cache_max_size")},
            "state_dir": str(s.state_dir),
        }
        try:
            info["catalog"].update(self.catalog.info())
            info["catalog"]["integrity"] = self.catalog.integrity_check()
        except ClearMLDataError as exc:
            info["catalog"]["error"] = str(exc)
        info["cache"].update(probe_cache(self.cache))
        info["plugins"] = [
            {"name": r.name, "package": r.package, "version": r.version, "status": r.status,
             **({"error": r.error} if r.error else {})}
            for r in self.plugins.records
        ]
        try:
            info["drivers"] = {scheme: rec.plugin for scheme, rec in sorted(self.plugins.drivers.items())}
        except ClearMLDataError as exc:
            info["drivers"] = {"error": str(exc)}
        return info


def _check_materialisable(row: DatasetRow, files: dict[str, tuple[str, int]], base: str, what: str) -> None:
    """Refuse, before anything is written, a copy that no folder can hold: a path that is
    both a file and a folder, or paths too long for the filesystem under ``base``."""
    clash = tree_clash(files)
    if clash is not None:
        raise DatasetStateError(f"dataset {row.id} holds {shorten(clash)} both as a file and as a folder; "
                                "no local copy can hold it",
                                hint="create a child version that removes one of them")
    if not files:
        return
    longest = max(map(len, files))
    if longest > MAX_PATH_BYTES // 4:
        longest = max(len(p.encode("utf-8")) for p in files)
    anchor = base
    while not os.path.isdir(anchor) and os.path.dirname(anchor) != anchor:
        anchor = os.path.dirname(anchor)
    try:
        limit = os.pathconf(anchor, "PC_PATH_MAX")
    except (OSError, ValueError):
        limit = 4096
    need = len(os.fsencode(base)) + 1 + longest
    if need >= limit:
        raise UsageError(f"the local copy of dataset {row.id} needs paths of {need} bytes under the {what} "
                         f"{base}, and this system allows fewer than {limit}",
                         hint=f"use a shorter {what}")


def _copied_already(target: Path, files: dict[str, tuple[str, int]], max_workers: int | None) -> set[str]:
    """The files of ``files`` that ``target`` holds complete, when it holds nothing else.

    Every file of a mutable copy appears in its folder complete, under its name, or not at
    all, so a folder that an interrupted copy of the same files left holds some of them, the
    folders on their way, and perhaps the temporary file being written (removed here when its
    writer is gone). Anything else (another file, other bytes at one of the names, a symlink)
    is the user's, and the folder is refused as before.
    """
    folders = {""}
    for rel in files:
        parts = rel.split("/")
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
    present: dict[str, str] = {}
    foreign: list[str] = []
    stack = [("", str(target))]
    while stack and not foreign:
        rel_dir, folder = stack.pop()
        tempfiles.sweep(folder, (COPY_TEMP_PREFIX,))
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_dir(follow_symlinks=False) and rel in folders:
                stack.append((rel, entry.path))
            elif entry.is_file(follow_symlinks=False) and rel in files \
                    and entry.stat(follow_symlinks=False).st_size == files[rel][1]:
                present[rel] = entry.path
            elif not (entry.name.startswith(COPY_TEMP_PREFIX) and entry.is_file(follow_symlinks=False)):
                foreign.append(rel)
                break
    if not foreign:
        for rel, (digest, _size) in ordered_map(lambda r: sha256_file(present[r]), sorted(present),
                                                max_workers):
            if digest != files[rel][0]:
                foreign.append(rel)
                break
    if foreign:
        raise UsageError(f"the folder {target} is not empty ({foreign[0]!r} is not a file of this copy)",
                         hint="pass overwrite=True / --overwrite to replace what it holds")
    return set(present)


def _walk_files(root: str, recursive: bool) -> Iterator[tuple[str, list[str]]]:
    """(folder, sorted names of its regular files) for root and, if recursive, every subfolder.

    Like os.walk without following folder symlinks; file symlinks count when they point to a
    regular file. A symlink whose target lies outside root stops the walk (UnsafePathError).
    Directory entry types avoid a stat per file where the filesystem gives them.

    Nothing is passed over in silence: a folder or entry that cannot be read, a broken link
    and a folder nested deeper than a dataset path may go stop the walk with an error naming
    them; sockets, pipes and devices, which hold no file content, are skipped with a warning.
    """
    stack = [(root, 0)]
    root_real = os.path.realpath(root)
    root_bytes = len(os.fsencode(root.rstrip(os.sep)))
    while stack:
        folder, depth = stack.pop()
        files, dirs = [], []
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    try:
                        if entry.is_symlink():
                            check_link(entry.path, root_real)
                        if entry.is_dir(follow_symlinks=False):
                            dirs.append(entry.path)
                        elif entry.is_file():  # follows symlinks
                            files.append(entry.name)
                        elif entry.is_symlink() and not os.path.exists(entry.path):
                            raise UsageError(f"cannot add {describe(entry.path)}: it is a broken symbolic link "
                                             f"(to {describe(os.readlink(entry.path))})",
                                             hint="remove the link, or make its target exist")
                        elif entry.is_symlink():
                            log.warning("skipped %s: a symbolic link to a folder (add does not follow them)",
                                        describe(entry.path))
                        else:
                            log.warning("skipped %s: not a regular file (a socket, pipe or device)",
                                        describe(entry.path))
                    except OSError as exc:
                        raise UsageError(f"cannot read {describe(entry.path)}: {exc.strerror or exc}",
                                         hint="make it readable, or move it out of the folder") from None
        except OSError as exc:
            raise UsageError(f"cannot read {describe(folder)}: {exc.strerror or exc}",
                             hint="make it readable (and searchable), or move it out of the folder") from None
        files.sort()
        yield folder, files
        if recursive:
            for sub in sorted(dirs, reverse=True):
                # a file in a folder at depth MAX_DEPTH or at MAX_PATH_BYTES would be over the limit
                if depth + 1 >= MAX_DEPTH or len(os.fsencode(sub)) - root_bytes - 1 + 2 > MAX_PATH_BYTES:
                    raise UnsafePathError(
                        f"cannot add {shorten(sub)}: it is nested {depth + 1} folders deep; a dataset path "
                        f"has at most {MAX_DEPTH} components and {MAX_PATH_BYTES} bytes",
                        hint="add the files from a shallower folder")
                stack.append((sub, depth + 1))


def _apply(parent: View, rows: dict[str, ChangeRow], dataset_id: str) -> View:
    view = dict(parent)
    for p, c in rows.items():
        if c.kind == "removed":
            view.pop(p, None)
        else:
            view[p] = (c.hash, c.size, dataset_id)
    return view


_ADD_BATCH = 50_000  # files stat'ed and hashed together by add


def _stat(src: str) -> os.stat_result:
    try:
        return os.stat(src)
    except OSError as exc:
        raise UsageError(f"cannot read {src}: {exc.strerror}") from None


def _stat_files(sources: list[str]) -> dict[str, os.stat_result]:
    return {src: _stat(src) for src in sources}


def _folders_of(paths: Iterable[str]) -> set[str]:
    """Every folder that holds one of ``paths`` ("a/b/c" gives "a" and "a/b"): one step up per
    path, and each folder's own ancestors are walked once."""
    folders: set[str] = set()
    add = folders.add
    for p in paths:
        d = p.rpartition("/")[0]
        while d and d not in folders:
            add(d)
            d = d.rpartition("/")[0]
    return folders


def _check_tree_conflicts(current: View, new_paths: Iterable[str]) -> None:
    """A path cannot be both a file and a folder in one dataset: refuse new files that would
    make it so, against the files already there and among themselves."""
    new = set(new_paths)
    if not new:
        return
    bad = [p for p in _folders_of(new) if p in current or p in new]
    if bad:
        p = min(bad)
        under_it = min(q for q in new if q.startswith(p + "/"))
        what = "is a file in the dataset" if p in current else "is added as a file too"
        raise UsageError(f"{shorten(p)} would be both a file and a folder in the dataset: cannot add "
                         f"{shorten(under_it)}, as {shorten(p)} {what}",
                         hint=f"remove {p} first, or add the files under another dataset folder")
    folders = _folders_of(current)
    clash = sorted(p for p in new if p in folders)
    if clash:
        raise UsageError(f"{shorten(clash[0])} would be both a file and a folder in the dataset: cannot add "
                         "the file, as the dataset has a folder of that name",
                         hint=f"remove the folder {clash[0]}/ first, or add the file under another name")


def _ancestors(path: str) -> Iterator[str]:
    d = path.rpartition("/")[0]
    while d:
        yield d
        d = d.rpartition("/")[0]


def tree_clash(view: View) -> str | None:
    """A path that is both a file and a folder in ``view`` (which no folder can hold), or None."""
    clash = _folders_of(view).intersection(view)
    return min(clash) if clash else None


def _shadowed(earlier: View, later: View) -> list[str]:
    """The paths of ``earlier`` that cannot sit beside ``later``'s files: a file where ``later``
    has a folder, and every file under a path where ``later`` has a file."""
    gone = [p for p in _folders_of(later) if p in earlier]
    files_over = [p for p in _folders_of(earlier) if p in later]
    if files_over:
        keys = sorted(earlier)
        for f in files_over:  # the files under f sort between "f/" and "f0" ("0" follows "/")
            gone += keys[bisect.bisect_left(keys, f + "/"):bisect.bisect_left(keys, f + "0")]
    return list(dict.fromkeys(gone))


def merge_views(views: Iterable[View], on_shadow=None) -> View:
    """The parents' views merged in order: a later parent wins. On the same path its file
    replaces the earlier one; where it has a file at a path that is a folder in the views
    merged so far, or a folder where they have a file, its entries stay and the earlier
    entries at or under that path are shadowed (left out), so that the result is a tree.
    ``on_shadow(index of the later view, path, earlier entry)`` hears of each one."""
    merged: View = {}
    for i, view in enumerate(views):
        if merged and view:
            for p in _shadowed(merged, view):
                entry = merged.pop(p)
                if on_shadow is not None:
                    on_shadow(i, p, entry)
        merged.update(view)
    return merged


_LABEL_MAX = 255


def _check_label(what: str, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"the dataset {what} must not be empty")
    if len(value) > _LABEL_MAX:
        raise UsageError(f"the dataset {what} is longer than {_LABEL_MAX} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise UsageError(f"the dataset {what} {value!r} contains a control character")


def _clean_tags(tags: Iterable[str] | None) -> list[str]:
    out: list[str] = []
    for t in tags or ():
        t = str(t).strip()
        if t and t not in out:
            _check_label("tag", t)
            out.append(t)
    return out
