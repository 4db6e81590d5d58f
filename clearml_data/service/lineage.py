"""Operations across versions: lineage, comparisons, squash, sync, rename and move, and delete.

A forced delete of a version that has children folds it into them: each child gets the
deleted version's parents in its place and change rows that keep its view exactly as it
was. The manifest is tombstoned before the catalog rows go, so a rebuild from storage
never brings a deleted version back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from .. import _crashpoints as crashpoints
from ..catalog import ChangeRow, DatasetRow, preferred_location
from ..errors import DatasetNotFoundError, DatasetStateError, UsageError
from ..paths import normalize_relpath
from ..progress import ProgressFactory, null_progress
from . import manifests
from .checkout import fetch_objects
from .drafts import create, sync_folder, sync_source
from .lookup import check_label, get, now, parent_row, resolve_id, resolve_ref, storage_url
from .reports import remove_media
from .results import Diff, SyncOutcome, WorkflowEvents
from .upload import close, finalize, pending_uploads, upload
from .views import diff, parent_view, shadowed, shadowed_paths, view
from .workspace import View, Workspace

log = logging.getLogger(__name__)


# -- lineage -------------------------------------------------------------------------------------
def dependency_graph(ws: Workspace, row: DatasetRow) -> dict[str, list[str]]:
    """{id: [direct parent ids]} for the version and every ancestor."""
    graph: dict[str, list[str]] = {}
    todo = [row]
    while todo:
        current = todo.pop()
        if current.id in graph:
            continue
        graph[current.id] = list(current.parents)
        todo.extend(parent_row(ws, current, pid) for pid in current.parents if pid not in graph)
    return graph


def changes_against(ws: Workspace, row: DatasetRow, baseline_id: str | None = None) -> Diff:
    """The Diff from the baseline (default: the merged parents) to this version."""
    base = parent_view(ws, row) if baseline_id is None else view(ws, resolve_id(ws, baseline_id))
    return diff(base, view(ws, row))


def num_chunks(ws: Workspace, row: DatasetRow, include_parents: bool = True) -> int:
    """How many stored objects (packs and whole-file objects) hold the version's files."""
    current = view(ws, row)
    hashes = {h for h, _s, origin in current.values() if include_parents or origin == row.id}
    locations = ws.catalog.locate_objects(hashes)
    keys = set()
    for h in hashes:
        locs = locations.get(h)
        if locs:
            loc = preferred_location(locs, row.storage)
            keys.add((loc.storage, loc.key))
    return len(keys)


# -- squash --------------------------------------------------------------------------------------
def squash(
    ws: Workspace,
    name: str,
    ids: Iterable[str] | None = None,
    project_name_pairs: Iterable[tuple[str, str]] | None = None,
    storage: str | None = None,
    project: str | None = None,
    close: bool = True,
    progress: ProgressFactory = null_progress,
) -> DatasetRow:
    """A new root version holding the merged view of the given versions, in order."""
    if ids and project_name_pairs:
        raise UsageError("give either dataset ids or (project, name) pairs to squash, not both")
    if ids:
        rows = [resolve_id(ws, i) for i in ids]
    elif project_name_pairs:
        rows = [get(ws, project=p, name=n, only_completed=True) for p, n in project_name_pairs]
    else:
        raise UsageError("nothing to squash", hint="pass the ids of the versions to merge")
    for r in rows:
        if not r.is_final:
            raise DatasetStateError(
                f"cannot squash dataset {r.id}: it is a draft",
                hint=f"close it first: clearml-data close --id {r.id}",
            )
    merged: View = {}
    contributor: dict[str, str] = {}  # path -> id of the listed version it came from
    links: dict[tuple[str, str], str] = {}
    prints: dict[tuple[str, str], str] = {}
    for r in rows:
        current = view(ws, r)
        ancestors = set(dependency_graph(ws, r))
        # a listed ancestor's file that this version removed stays removed
        for p in [p for p, who in contributor.items() if who in ancestors and p not in current]:
            del merged[p], contributor[p]
        for p in shadowed_paths(merged, current):  # a later version wins a file/folder clash too
            del merged[p], contributor[p]
        merged.update(current)
        contributor.update(dict.fromkeys(current, r.id))
        origins = {origin for _h, _s, origin in current.values()}
        links.update(ws.catalog.links(origins))
        prints.update(ws.catalog.link_fingerprints(origins))
    description = f"squashed from {', '.join(r.id for r in rows)}"
    new = _interrupted_squash(ws, name, project or rows[0].project, storage, description) or create(
        ws, name=name, project=project or rows[0].project, storage=storage, description=description
    )
    crashpoints.reach("squash.created")
    try:
        entries = [
            ChangeRow(p, "added", h, size, None, links.get((origin, p)), prints.get((origin, p)))
            for p, (h, size, origin) in sorted(merged.items())
        ]
        ws.catalog.replace_changes(new.id, entries)
        crashpoints.reach("squash.recorded")
        # content the new storage lacks is copied through the local cache
        pending = pending_uploads(ws, new)
        with ws.cache.in_use():
            ws.cache.ensure()
            fetch_objects(
                ws,
                new,
                {c.path: (c.hash, c.size) for c in pending if c.hash is not None and c.size is not None},
                progress=progress,
            )
            crashpoints.reach("squash.fetched")
            if close:
                upload(ws, new.id, progress=progress)
        ws.fit_cache()  # the copied content went through the cache
        if close:
            return finalize(ws, new.id)
    except BaseException:
        ws.catalog.delete_dataset(new.id)
        raise
    return resolve_id(ws, new.id)


def _interrupted_squash(
    ws: Workspace, name: str, project: str, storage: str | None, description: str
) -> DatasetRow | None:
    """The draft an interrupted run of the same squash left behind, to be resumed."""
    target = storage_url(ws, storage)
    drafts = [
        r
        for r in ws.catalog.find_datasets(project=project, name=name, statuses=["draft"])
        if r.description == description and r.storage == target and not r.parents
    ]
    return drafts[-1] if drafts else None


# -- names ---------------------------------------------------------------------------------------
# -- sync -----------------------------------------------------------------------------------------
def sync(
    ws: Workspace,
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
    """Make a version mirror a local folder (ClearML's ``clearml-data sync``).

    With ``parents``, or ``project`` and ``name``, a new draft is made first (named after the
    last parent when no name is given); otherwise the folder is synced into the draft
    ``dataset_id``. Then, unless ``skip_close``, the version is closed. The folder and the
    dataset path are checked before a draft is made. A draft this call made never outlives
    a failure: it is deleted again (and ``events.dropped`` told) when hashing, the upload or
    the finalize fails or is interrupted, when ``events.created`` raises, and when the sync
    changed nothing (there is no new version to close).
    """
    events = events or WorkflowEvents()
    parents = list(parents or ())
    if bool(project) != bool(name) and not parents:
        raise UsageError(
            "sync creates a new version only with both --project and --name (or --parents)",
            hint="pass both, or --id to sync into an existing draft",
        )
    created = bool(parents or (project and name))
    if not created and dataset_id is None:
        raise UsageError("sync needs the draft to sync into, or a project and name (or parents) to make one")
    # what can be checked without a draft is checked before one is made
    source = sync_source(folder)
    normalize_relpath(dataset_path or "")
    if created:
        name = name or resolve_ref(ws, parents[-1]).name
        # a storage named for the new version must take a write before anything is hashed
        row = create(ws, name, project, parents, version, storage, tags, check_storage=storage is not None)
        _announce(ws, row, events)
    else:
        assert dataset_id is not None
        row = resolve_id(ws, dataset_id)
    try:
        events.syncing(row, os.fspath(folder))
        r = sync_folder(ws, row.id, source, dataset_path, max_workers, progress, follow_symlinks)
        out = SyncOutcome(row, created, r.removed, r.added, r.modified)
        if skip_close:
            out.shadowed = shadowed(ws, row)
            return out
        if created and not (r.removed or r.added or r.modified):
            _drop(ws, row.id, events)
            out.reverted = True
            return out
        events.closing(row)
        out.closed = close(
            ws, row.id, chunk_size=chunk_size, max_workers=max_workers, progress=progress, events=events
        )
    except BaseException:
        if created:  # a failed sync leaves no new version behind, not even a draft (Ctrl-C too)
            _drop(ws, row.id, events, quiet=True)
        raise
    out.row = out.closed.row
    return out


def _drop(ws: Workspace, dataset_id: str, events: WorkflowEvents, quiet: bool = False) -> None:
    """Delete the draft a sync made (content already stored stays recorded, so running the
    same sync again uploads only the rest); a version that got final is kept."""
    try:
        current = ws.catalog.get_dataset(dataset_id)
        if current is not None and not current.is_final:
            delete(ws, dataset_id)
        if current is None or not current.is_final:
            events.dropped(dataset_id)
    except Exception as exc:
        if not quiet:
            raise
        # the failure that made the sync stop is the one reported
        log.warning("the new draft %s could not be removed: %s", dataset_id, exc)


def _announce(ws: Workspace, row: DatasetRow, events: WorkflowEvents) -> None:
    """Tell the caller about a new draft. If that fails (the command line could not remember
    it, Ctrl-C), the draft goes again: running the same call again makes exactly one."""
    try:
        events.created(row)
    except BaseException:
        try:
            delete(ws, row.id)
        except Exception as exc:  # noqa: BLE001 - the first failure is the one reported
            log.warning("the new draft %s could not be removed: %s", row.id, exc)
        raise


def rename(ws: Workspace, project: str, name: str, new_name: str) -> list[str]:
    """Give every version of project/name a new name; returns their ids."""
    check_label("name", new_name)
    return _relabel(ws, project, name, new_name=new_name)


def move(ws: Workspace, project: str, name: str, new_project: str) -> list[str]:
    """Move every version of project/name to another project; returns their ids."""
    check_label("project", new_project)
    return _relabel(ws, project, name, new_project=new_project)


def _relabel(ws: Workspace, project: str, name: str, **change: str) -> list[str]:
    if change.get("new_name", name) == name and change.get("new_project", project) == project:
        raise UsageError(f"{project}/{name} already has that {'name' if 'new_name' in change else 'project'}")
    ids = ws.catalog.relabel(project, name, **change)
    if not ids:
        raise DatasetNotFoundError(
            f"no dataset with project={project!r}, name={name!r}",
            hint="`clearml-data search` lists the datasets",
        )
    return ids


# -- deleting ------------------------------------------------------------------------------------
def delete(
    ws: Workspace,
    dataset_id: str | None = None,
    force: bool = False,
    project: str | None = None,
    name: str | None = None,
    version: str | None = None,
    entire: bool = False,
) -> list[str]:
    """Delete the version ``dataset_id``, else the highest (or ``version``) of project/name;
    with ``entire``, every version of project/name, newest first, which needs ``force``.
    Returns the deleted ids."""
    if entire:
        if not (project and name):
            raise UsageError("deleting every version of a dataset needs its project and name")
        return delete_versions(ws, project, name, force)
    if not dataset_id and not (project and name):
        raise UsageError("deleting a version needs its id, or its project and name")
    return _delete_version(ws, get(ws, dataset_id, project, name, version).id, force)


def _delete_version(ws: Workspace, dataset_id: str, force: bool = False) -> list[str]:
    """Delete one version; with ``force``, its children keep their views (rows are folded in)."""
    row = resolve_id(ws, dataset_id)
    children = ws.catalog.children(row.id)
    if children and not force:
        raise DatasetStateError(
            f"dataset {row.id} has {len(children)} child version(s) ({', '.join(c[:8] for c in children)})",
            hint="delete the children first, or force the delete (--force, force=True) to fold this "
            "version into them",
        )
    crashpoints.reach("delete.checked")
    ws.cache.remove_views(row.id)  # first: a crash after the commit must not leave them behind
    manifest_key = manifests.retire_manifest(ws, row, now())  # tombstone first: rebuild never revives it
    with ws.catalog.write():
        for child_id in children:
            _fold_into_child(ws, row, child_id)
        ws.catalog.delete_dataset(row.id)
    crashpoints.reach("delete.committed")
    manifests.remove_manifest(ws, row, manifest_key)
    remove_media(ws, row)
    ws.forget_views()
    return [row.id]


def _fold_into_child(ws: Workspace, row: DatasetRow, child_id: str) -> None:
    child = ws.catalog.get_dataset(child_id)
    if child is None:  # deleted by another process since the children were listed
        return
    before = view(ws, child)
    old_rows = {c.path: c for c in ws.catalog.changes(child.id)}
    new_parents: list[str] = []
    for pid in child.parents:
        for replacement in row.parents if pid == row.id else [pid]:
            if replacement not in new_parents:
                new_parents.append(replacement)
    child.parents = new_parents
    parent = parent_view(ws, child)
    d = diff(parent, before)
    origins = {origin for _h, _s, origin in before.values()}
    links = ws.catalog.links(origins)
    prints = ws.catalog.link_fingerprints(origins)
    rows = []
    for p in d.added + d.modified:
        h, size, origin = before[p]
        src = old_rows[p].source if p in old_rows else None
        kind = "added" if p in d.added else "modified"
        # external files stay external, with what their storage said of them
        rows.append(ChangeRow(p, kind, h, size, src, links.get((origin, p)), prints.get((origin, p))))
    rows += [ChangeRow(p, "removed", None, None) for p in d.removed]
    ws.catalog.set_parents(child.id, new_parents)
    ws.catalog.replace_changes(child.id, rows, deletes=list(old_rows))
    if child.is_final:  # a draft's counts are set when it is finalized
        counts = ws.catalog.count_changes(child.id)
        ws.catalog.update_dataset(
            child.id, added=counts["added"], modified=counts["modified"], removed=counts["removed"]
        )
    ws.forget_views(child.id)


def delete_versions(ws: Workspace, project: str, name: str, force: bool = False) -> list[str]:
    """Delete every version of project/name (newest first)."""
    rows = ws.catalog.find_datasets(project=project, name=name)
    if not rows:
        raise DatasetNotFoundError(f"no dataset with project={project!r}, name={name!r}")
    if not force:
        raise UsageError("deleting every version of a dataset needs force", params=("force",))
    deleted = []
    for r in sorted(rows, key=lambda r: r.created_at, reverse=True):
        deleted += _delete_version(ws, r.id, force=True)
    return deleted
