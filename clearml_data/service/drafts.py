"""Drafts: creating a version, and changing it until it is finalized.

``add_files`` and ``sync_folder`` hash local files (in batches, through the per-machine
hash memory) and record change rows against the draft's parents; ``remove_files`` records
removals. Nothing is uploaded here: a draft's rows name their local source until upload
(upload.py). The rows are written in one catalog transaction that first reads the draft
again, so two writers never get one path in both as a file and as a folder.
"""

from __future__ import annotations

import glob
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from .. import _crashpoints as crashpoints
from .. import versions
from ..catalog import ChangeRow, DatasetRow
from ..errors import DatasetNotFoundError, DatasetStateError, UnsafePathError, UsageError
from ..hashing import hash_files
from ..paths import (
    MAX_DEPTH,
    MAX_PATH_BYTES,
    check_link,
    check_pattern,
    check_relpath,
    describe,
    glob_matches,
    join_relpath,
    local_relpath,
    matches,
    normalize_relpath,
    shorten,
    under,
)
from ..progress import ProgressFactory, null_progress
from .locations import check_writable
from .lookup import check_label, clean_tags, draft, now, resolve_id, resolve_ref, storage_url
from .lookup import get as find_version
from .results import AddResult, SyncResult
from .views import check_tree_conflicts, draft_view, parent_view
from .workspace import View, Workspace

log = logging.getLogger(__name__)

_ADD_BATCH = 50_000  # files stat'ed and hashed together by add


def create(
    ws: Workspace,
    name: str | None,
    project: str | None = None,
    parents: Iterable[str] = (),
    version: str | None = None,
    storage: str | None = None,
    tags: str | Iterable[str] | None = None,
    description: str = "",
    check_storage: bool = False,
) -> DatasetRow:
    """A new draft on ``parents`` (final versions, merged in order: ids or
    ``project/name[@version]`` references); the project defaults to the last parent's, the
    version to the next free one, the storage to the configured one. With ``check_storage``
    the storage must take a test write first (:func:`.locations.check_writable`)."""
    parent_rows: list[DatasetRow] = []
    for p in parents or ():
        row = resolve_ref(ws, p)
        if not row.is_final:
            raise DatasetStateError(
                f"parent dataset {row.id} is not final",
                hint=f"close it first: clearml-data close --id {row.id}",
            )
        if row.id not in (r.id for r in parent_rows):
            parent_rows.append(row)
    if not name:
        raise UsageError("missing dataset name", hint="pass dataset_name", params=("dataset_name",))
    if not project:
        if not parent_rows:
            raise UsageError(
                "missing dataset project name; it could not be taken from a parent dataset",
                hint="pass dataset_project",
                params=("dataset_project",),
            )
        project = parent_rows[-1].project
    check_label("project", project)
    check_label("name", name)
    if version is not None:
        version = str(version).strip()
        check_label("version", version)
    url = storage_url(ws, storage)
    ws.driver(url)  # unknown scheme or malformed URL: fail now, not at upload
    if check_storage:  # unreachable, missing bucket, no write permission: fail now too
        check_writable(ws, url)
    tag_list = clean_tags(tags)
    stamp = now()
    row = DatasetRow(
        id=uuid.uuid4().hex,
        project=project,
        name=name,
        version=version or "",
        status="draft",
        storage=url,
        created_at=stamp,
        updated_at=stamp,
        description=description or "",
        tags=tag_list,
        parents=[r.id for r in parent_rows],
    )
    ws.catalog.insert_dataset(row, None if version else versions.next_version)
    return row


def get(
    ws: Workspace,
    dataset_id: str | None = None,
    project: str | None = None,
    name: str | None = None,
    version: str | None = None,
    tags: str | Iterable[str] | None = None,
    only_completed: bool = False,
    only_published: bool = False,
    writable_copy: bool = False,
) -> DatasetRow:
    """One version, found as :func:`.lookup.get` finds it; with ``writable_copy``, a new child
    draft of it with its name, project and tags instead (ClearML's writable copy)."""
    row = find_version(ws, dataset_id, project, name, version, tags, only_completed, only_published)
    if writable_copy:
        return create(ws, row.name, project=row.project, parents=[row.id], tags=row.tags)
    return row


def update(ws: Workspace, dataset_id: str, **fields: Any) -> DatasetRow:
    """Change descriptive fields (description, tags, metadata, version of a draft)."""
    row = resolve_id(ws, dataset_id)
    if "tags" in fields:
        fields["tags"] = clean_tags(fields["tags"])
    if "version" in fields:
        if row.is_final:
            raise DatasetStateError(f"dataset {row.id} is final; its version cannot change")
        check_label("version", fields["version"])
        if versions.taken_by(fields["version"], ws.catalog.versions_of(row.project, row.name)):
            raise UsageError(f"dataset {row.project}/{row.name} already has a version {fields['version']}")
    ws.catalog.update_dataset(row.id, updated_at=now(), **fields)
    return resolve_id(ws, row.id)


def publish(ws: Workspace, dataset_id: str) -> DatasetRow:
    """Mark a final version published (once; publishing it again changes nothing)."""
    row = resolve_id(ws, dataset_id)
    if not row.is_final:
        raise DatasetStateError(f"dataset {row.id} is not final", hint="close it before publishing")
    if row.status != "published":
        ws.catalog.update_dataset(row.id, status="published", updated_at=now())
    return resolve_id(ws, row.id)


# -- adding local files ------------------------------------------------------------------------
def add_files(
    ws: Workspace,
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
    """Hash the local files under ``path`` (a file, a folder or a glob, or a list of them) and
    record them in the draft, under ``dataset_path``; returns what was added, modified and
    already there (per item too, for a list).

    All or nothing: every item is found and read before a row is written, and the rows of
    all of them are written in one transaction, so one missing or unreadable item leaves the
    draft as it was, whatever its place in the list.
    Symbolic links follow :func:`_walk_files`'s rule (``follow_symlinks`` for links that
    leave the folder)."""
    row = draft(ws, dataset_id)
    found, item_of = collect_items(
        path, wildcard, local_base_folder, dataset_path, recursive, follow_symlinks
    )
    prepared = hash_local(ws, row, found, max_workers, progress)
    if prepared is None:
        return padded(AddResult(), item_of, len(paths_of(path)))
    return padded(record(ws, row, *prepared, item_of=item_of), item_of, len(paths_of(path)))


def padded(result: AddResult, item_of: dict[str, int] | None, n: int) -> AddResult:
    """``result`` with a count for each of the ``n`` items of a several-item add (those that
    matched no file count zero)."""
    if item_of is not None:
        result.per_item += [AddResult() for _ in range(n - len(result.per_item))]
    return result


def paths_of(path: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str | os.PathLike]:
    """One path, or each path of a list, as a list."""
    return [path] if isinstance(path, (str, os.PathLike)) else list(path)


def collect_items(
    path: str | os.PathLike | Iterable[str | os.PathLike],
    wildcard: str | list[str] | None,
    local_base_folder: str | None,
    dataset_path: str | None,
    recursive: bool,
    follow_symlinks: bool = False,
) -> tuple[list[tuple[str, str]], dict[str, int] | None]:
    """Every (dataset path, source) under the items of ``path``, and for a list of several
    items the index of the item each dataset path came from (None for one item)."""
    items = paths_of(path)
    if not items:
        raise UsageError("no file or folder to add", hint="pass at least one path")
    prefix = normalize_relpath(dataset_path or "")
    found: list[tuple[str, str]] = []
    item_of: dict[str, int] = {}
    for i, item in enumerate(items):
        for rel, src in _collect(item, wildcard, local_base_folder, recursive, prefix, follow_symlinks):
            found.append((rel, src))
            item_of.setdefault(rel, i)
    return found, (item_of if len(items) > 1 else None)


def sync_folder(
    ws: Workspace,
    dataset_id: str,
    local_path: str | os.PathLike,
    dataset_path: str | None = None,
    max_workers: int | None = None,
    progress: ProgressFactory = null_progress,
    follow_symlinks: bool = False,
) -> SyncResult:
    """Make the dataset folder ``dataset_path`` mirror ``local_path`` (symbolic links as
    :func:`add_files` takes them)."""
    row = draft(ws, dataset_id)
    folder = sync_source(local_path)
    prefix = normalize_relpath(dataset_path or "")
    # the whole folder is read before anything is written: a part that cannot be read is an
    # error, never taken for files that were deleted; removals and additions are one write
    found = list(_collect(folder, None, None, True, prefix, follow_symlinks))
    done = _add_collected(ws, row, found, max_workers, progress, mirror=prefix)
    return SyncResult(removed=done.removed, added=done.added, modified=done.modified)


def sync_source(local_path: str | os.PathLike) -> str:
    """The absolute path of the folder a sync mirrors; an error if it is not a folder."""
    folder = os.path.abspath(os.path.expanduser(os.fspath(local_path)))
    if not os.path.isdir(folder):
        what = "not a folder" if os.path.exists(folder) else "no such folder"
        raise UsageError(f"{what}: {folder}", hint="sync mirrors a local folder: pass --folder FOLDER")
    return folder


def _collect(
    path: str | os.PathLike,
    wildcard: str | list[str] | None,
    local_base_folder: str | None,
    recursive: bool,
    prefix: str = "",
    follow_symlinks: bool = False,
) -> Iterator[tuple[str, str]]:
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
    # wildcards select files as ClearML's rglob/glob does, on the path below the folder given
    wildcards = [w for w in ([wildcard] if isinstance(wildcard, str) else list(wildcard or [])) if w]
    # not recursive, a wildcard with a "/" still reaches into the folders it names
    walk_deep = recursive or any("/" in w.strip().strip("/") or "**" in w for w in wildcards)
    base = os.path.abspath(os.path.expanduser(local_base_folder)) if local_base_folder else None
    for root in roots:
        root = os.path.abspath(root)
        if os.path.isfile(root):
            rel = local_relpath(root, base) if base else os.path.basename(root)
            if not wildcards or any(glob_matches(rel, w) for w in wildcards):
                yield _checked_rel(join_relpath(prefix, rel), root), root
            continue
        folder_base = base or root
        for dirpath, names in _walk_files(root, walk_deep, follow_symlinks):
            rel_dir = local_relpath(dirpath, folder_base)  # once per folder, not per file
            if rel_dir == ".." or rel_dir.startswith("../"):
                raise UsageError(f"{dirpath} is not inside the local base folder {folder_base}")
            rel_prefix = "" if rel_dir == "." else rel_dir + "/"
            in_root = rel_dir if base is None else local_relpath(dirpath, root)
            match_prefix = "" if in_root == "." else in_root + "/"
            for name in names:
                rel = rel_prefix + name
                if wildcards and not any(glob_matches(match_prefix + name, w, recursive) for w in wildcards):
                    continue
                full = os.path.join(dirpath, name)
                yield _checked_rel(join_relpath(prefix, rel), full), full


def _checked_rel(rel: str, source: str) -> str:
    try:
        return check_relpath(rel)
    except UnsafePathError as exc:
        raise UnsafePathError(f"cannot add {shorten(source)}: {exc}") from None


def _walk_files(root: str, recursive: bool, follow_symlinks: bool = False) -> Iterator[tuple[str, list[str]]]:
    """(folder, sorted names of its regular files) for root and, if recursive, every subfolder.

    Symbolic links met in the walk (``root`` itself is taken as named, link or not):

    - by default, a link inside ``root`` to a file inside it counts as that file (its content,
      at the link's path); a link to a folder inside it is skipped with a warning (its files
      are added through the folder itself, and a link cannot make a loop); a link whose
      target lies outside ``root`` stops the walk (UnsafePathError naming ``--follow-symlinks``);
    - with ``follow_symlinks``, every link is followed, to a file or a folder, inside or
      outside: what it points to is added at the link's path. A folder link back into a
      folder the walk is inside (a loop) stops the walk.

    A broken link stops the walk either way. Directory entry types avoid a stat per file
    where the filesystem gives them.

    Nothing is passed over in silence: a folder or entry that cannot be read, a broken link
    and a folder nested deeper than a dataset path may go stop the walk with an error naming
    them; sockets, pipes and devices, which hold no file content, are skipped with a warning.
    """
    root_real = os.path.realpath(root)
    #: (folder, depth, real paths of the folders the walk is inside: a loop check when following)
    stack: list[tuple[str, int, frozenset[str]]] = [(root, 0, frozenset({root_real}))]
    root_bytes = len(os.fsencode(root.rstrip(os.sep)))
    while stack:
        folder, depth, inside = stack.pop()
        files, dirs = [], []
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    try:
                        if entry.is_symlink() and not follow_symlinks:
                            check_link(entry.path, root_real)
                        if entry.is_dir(follow_symlinks=False):
                            dirs.append(entry.path)
                        elif follow_symlinks and entry.is_symlink() and entry.is_dir():
                            target = os.path.realpath(entry.path)
                            if target in inside:
                                raise UsageError(
                                    f"cannot add {describe(entry.path)}: it is a symbolic link to "
                                    f"{describe(target)}, a folder it is inside (a loop)",
                                    hint="remove the link, or add without --follow-symlinks",
                                )
                            dirs.append(entry.path)
                        elif entry.is_file():  # follows symlinks
                            files.append(entry.name)
                        elif entry.is_symlink() and not os.path.exists(entry.path):
                            raise UsageError(
                                f"cannot add {describe(entry.path)}: it is a broken "
                                f"symbolic link (to {describe(os.readlink(entry.path))})",
                                hint="remove the link, or make its target exist",
                            )
                        elif entry.is_symlink():
                            log.warning(
                                "skipped %s: a symbolic link to a folder (add does not follow them)",
                                describe(entry.path),
                            )
                        else:
                            log.warning(
                                "skipped %s: not a regular file (a socket, pipe or device)",
                                describe(entry.path),
                            )
                    except OSError as exc:
                        raise UsageError(
                            f"cannot read {describe(entry.path)}: {exc.strerror or exc}",
                            hint="make it readable, or move it out of the folder",
                        ) from None
        except OSError as exc:
            raise UsageError(
                f"cannot read {describe(folder)}: {exc.strerror or exc}",
                hint="make it readable (and searchable), or move it out of the folder",
            ) from None
        files.sort()
        yield folder, files
        if recursive:
            for sub in sorted(dirs, reverse=True):
                # a file in a folder at depth MAX_DEPTH or at MAX_PATH_BYTES would be over the limit
                if depth + 1 >= MAX_DEPTH or len(os.fsencode(sub)) - root_bytes - 1 + 2 > MAX_PATH_BYTES:
                    raise UnsafePathError(
                        f"cannot add {shorten(sub)}: it is nested {depth + 1} folders deep; a dataset path "
                        f"has at most {MAX_DEPTH} components and {MAX_PATH_BYTES} bytes",
                        hint="add the files from a shallower folder",
                    )
                # only a walk that follows links can come back into a folder it is inside
                below = inside | {os.path.realpath(sub)} if follow_symlinks else inside
                stack.append((sub, depth + 1, below))


def _stat(src: str) -> os.stat_result:
    try:
        return os.stat(src)
    except OSError as exc:
        raise UsageError(f"cannot read {src}: {exc.strerror}") from None


def _stat_files(sources: list[str]) -> dict[str, os.stat_result]:
    return {src: _stat(src) for src in sources}


def _add_collected(
    ws: Workspace,
    row: DatasetRow,
    items: Iterable[tuple[str, str]],
    max_workers: int | None,
    progress: ProgressFactory,
    mirror: str | None = None,
) -> AddResult:
    """Hash and record local files; with ``mirror`` (a dataset folder, "" for the root), also
    remove every file under it that is not among them, in the same catalog transaction."""
    prepared = hash_local(ws, row, items, max_workers, progress, mirror)
    if prepared is None:
        return AddResult()
    return record(ws, row, *prepared, mirror=mirror)


#: what :func:`hash_local` read and hashed: (parent view, change rows, current view,
#: hashed entries, catalog data version when the rows were read), the arguments of :func:`record`
Prepared = tuple[View, dict[str, ChangeRow], View, list[ChangeRow], int]


def hash_local(
    ws: Workspace,
    row: DatasetRow,
    items: Iterable[tuple[str, str]],
    max_workers: int | None,
    progress: ProgressFactory,
    mirror: str | None = None,
    also: Iterable[str] = (),
) -> Prepared | None:
    """Check and hash local files for :func:`record`, writing nothing; None when there is
    nothing to record. ``also`` names the other dataset paths the same write adds (the
    external files of one add), checked for clashes with these."""
    seen: dict[str, str] = {}
    for rel, src in items:
        if seen.setdefault(rel, src) != src:
            raise UsageError(f"two files map to the dataset path {rel!r}: {seen[rel]} and {src}")
    others = list(also)
    for rel in others:
        if rel in seen:
            raise UsageError(
                f"a local file and an external file map to the dataset path {rel!r}: {seen[rel]}"
            )
    if not seen and mirror is None and not others:
        return None
    stamp = ws.catalog.data_version()  # before the rows are read: a later change shows
    parent, rows, current = draft_view(ws, row)
    if mirror is not None:
        kept = {p: v for p, v in current.items() if p in seen or not under(p, mirror)}
        check_tree_conflicts(kept, seen)
    else:
        check_tree_conflicts(current, [*seen, *others])  # fail before hashing; checked again when written
    # files are stat'ed and hashed a batch at a time, so per-file stat results and digests of a
    # large tree are never all held at once; a second stat pass gives the progress bar its total
    sources = list(seen.values())
    batches = [sources[i : i + _ADD_BATCH] for i in range(0, len(sources), _ADD_BATCH)]
    stats = _stat_files(batches[0]) if batches else {}
    total = sum(st.st_size for st in stats.values())
    for batch in batches[1:]:
        total += sum(_stat(src).st_size for src in batch)
    hashed: list[tuple[str, int]] = []
    if sources:
        bar = progress(total, "B", "Hashing", files=len(sources))
        try:
            for i in range(len(batches)):
                if i:
                    stats = _stat_files(batches[i])
                hashed += (
                    (digest, size)
                    for _, digest, size in hash_files(
                        stats, ws.hash_memory, max_workers, on_done=lambda n: bar.update(n, files=1)
                    )
                )
                stats = {}
        except OSError as exc:
            raise UsageError(f"cannot read {exc.filename}: {exc.strerror}") from None
        finally:
            bar.close()
    entries = [
        ChangeRow(rel, "added", digest, size, src)
        for (rel, src), (digest, size) in zip(seen.items(), hashed, strict=True)
    ]
    crashpoints.reach("add.hashed")
    return parent, rows, current, entries, stamp


def record(
    ws: Workspace,
    row: DatasetRow,
    parent: View,
    rows: dict[str, ChangeRow],
    current: View,
    entries: Iterable[ChangeRow],
    stamp: int | None = None,
    mirror: str | None = None,
    item_of: dict[str, int] | None = None,
) -> AddResult:
    """Write hashed entries (kind ignored) as the draft's change rows against its parents.

    ``parent``, ``rows`` and ``current`` were read before the files were hashed, when the
    catalog's data version was ``stamp``. Inside the write transaction they are read again
    if another process wrote since, so the tree check and the rows written always start
    from what the draft holds at that moment: two writers cannot both get a path in as a
    file and as a folder. With ``mirror``, the files under that folder that are not among
    ``entries`` are removed in the same transaction (sync). ``item_of`` (dataset path ->
    index of the item of an add it came from) has the counts kept per item too.
    """
    entries = list(entries)
    with ws.catalog.write():
        fresh = ws.catalog.get_dataset(row.id)
        if fresh is None:
            raise DatasetNotFoundError(f"dataset {row.id} was deleted by another process")
        if fresh.is_final:
            raise DatasetStateError(
                f"dataset {row.id} was finalized by another process",
                hint=f"create a child version: clearml-data create --parents {row.id}",
            )
        changed = stamp is None or ws.catalog.data_version() != stamp or fresh.parents != row.parents
        if changed:
            parent, rows, current = draft_view(
                ws, row, parent_view(ws, fresh) if fresh.parents != row.parents else parent
            )
        # unchanged since the caller checked these paths against ``current``: no second check
        result = _rows_for(ws, row, parent, rows, current, entries, mirror, check=changed, item_of=item_of)
    crashpoints.reach("add.recorded")
    return result


def _rows_for(
    ws: Workspace,
    row: DatasetRow,
    parent: View,
    rows: dict[str, ChangeRow],
    current: View,
    entries: list[ChangeRow],
    mirror: str | None,
    check: bool = True,
    item_of: dict[str, int] | None = None,
) -> AddResult:
    result = AddResult()
    if item_of:
        result.per_item = [AddResult() for _ in range(max(item_of.values()) + 1)]
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
        check_tree_conflicts(current, [e.path for e in entries])
    restore = _damaged_contents(ws, current, entries)
    for e in entries:
        before = current.get(e.path)
        kind = "added" if before is None else "modified" if before[0] != e.hash else "unchanged"
        for counts in (result, result.per_item[item_of[e.path]]) if item_of else (result,):
            counts.bytes += e.size or 0
            setattr(counts, kind, getattr(counts, kind) + 1)
        base_entry = parent.get(e.path)
        if base_entry is None:
            upserts.append(ChangeRow(e.path, "added", e.hash, e.size, e.source, e.link, e.fingerprint))
        # a content whose stored copy is damaged gets a row too, so that the upload stores it again
        elif base_entry[0] != e.hash or e.hash in restore:
            upserts.append(ChangeRow(e.path, "modified", e.hash, e.size, e.source, e.link, e.fingerprint))
        elif e.path in rows:
            deletes.append(e.path)  # back to the parent's content
    ws.catalog.replace_changes(row.id, upserts, deletes)
    return result


def _damaged_contents(ws: Workspace, current: View, entries: list[ChangeRow]) -> set[str]:
    """The hashes of local files added again unchanged whose every stored location verify
    found damaged: they get a change row with their source, so the upload stores them again."""
    same = {e.hash for e in entries if e.source and e.hash and current.get(e.path, ("",))[0] == e.hash}
    if not same:
        return set()
    damaged = {loc.hash for loc in ws.catalog.damaged_objects(same)}
    if not damaged:
        return set()
    return {h for h, locs in ws.catalog.locate_objects(damaged).items() if all(x.damaged for x in locs)}


# -- removing ------------------------------------------------------------------------------------
def remove_files(ws: Workspace, dataset_id: str, pattern: str, recursive: bool = True) -> list[str]:
    """Remove the files matching ``pattern`` from a draft; returns the removed paths."""
    row = draft(ws, dataset_id)
    pattern = check_pattern(pattern)  # a leading "/" (the dataset root) dropped
    parent, _rows, current = draft_view(ws, row)
    gone = sorted(p for p in current if matches(p, pattern, recursive))
    remove_paths(ws, row, parent, gone)
    return gone


def remove_paths(ws: Workspace, row: DatasetRow, parent: View, paths: list[str]) -> None:
    """Record the removal of ``paths`` from a draft whose parents' view is ``parent``."""
    upserts = [ChangeRow(p, "removed", None, None) for p in paths if p in parent]
    deletes = [p for p in paths if p not in parent]
    ws.catalog.replace_changes(row.id, upserts, deletes)
