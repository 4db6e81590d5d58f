"""Views: what a local copy of a version contains.

A version's *view* is its parents' views merged in order (a later parent wins on the same
path, and on a clash between a file and a folder: see :func:`merge_views`), then its own
change rows applied. The change rows of a draft are always the difference between its
parents' merged view and what the user has added and removed, so they never hold
redundant entries. This module also holds the tree rules every writer checks against: a
path is never both a file and a folder in one view.
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import cast

from ..catalog import ChangeRow, DatasetRow
from ..catalog.validate import check_change
from ..errors import CatalogError, UsageError
from ..paths import check_id, matches, shorten
from .lookup import parent_row
from .results import Diff, FileInfo, ShadowedFile, VersionSummary
from .workspace import View, Workspace

#: (index of the later view, path, the earlier entry it shadows)
OnShadow = Callable[[int, str, tuple[str, int, str]], None]


def view(ws: Workspace, row: DatasetRow) -> View:
    """The merged view of a version (cached for final versions, which never change)."""
    return _view(ws, row, {}, ())


def _view(ws: Workspace, row: DatasetRow, memo: dict[str, View], path: tuple[str, ...]) -> View:
    """The view of ``row``: a single-parent chain is walked up to its first merge, root or
    remembered view, and its change sets are applied oldest first to one dict, so a chain of
    k versions costs one pass over the base and the k change sets, not k copies of the view."""
    top = row
    chain: list[DatasetRow] = []
    seen = set(path)
    found: View | None = None
    while found is None:
        known = memo.get(row.id)
        if known is None and row.is_final:
            known = ws.remembered_view(row.id)
        if known is not None:
            if not chain:
                return known
            found = dict(known)
            break
        if row.id in seen:
            raise CatalogError(f"the catalog has a parent cycle through dataset {row.id}")
        seen.add(row.id)
        chain.append(row)
        if len(row.parents) == 1:
            row = parent_row(ws, row, row.parents[0])
            continue
        # a merge (or a root): later parents win (merge_views says how tree clashes end)
        found = merge_views([_view(ws, parent_row(ws, row, pid), memo, tuple(seen)) for pid in row.parents])
    for level in reversed(chain):
        for p, kind, digest, size in ws.catalog.change_tuples(check_id(level.id)):
            check_change(level.id, p, kind, digest, size)
            if kind == "removed":
                found.pop(p, None)
            else:
                found[p] = (digest, size, level.id)
    memo[top.id] = found
    if top.is_final:
        ws.remember_view(top.id, found)
    return found


def parent_view(ws: Workspace, row: DatasetRow) -> View:
    """The merged view of a version's parents (empty for a root)."""
    return _parent_view(ws, row, {}, (row.id,))


def _parent_view(ws: Workspace, row: DatasetRow, memo: dict[str, View], path: tuple[str, ...]) -> View:
    if not row.parents:
        return {}
    if len(row.parents) == 1:
        return _view(ws, parent_row(ws, row, row.parents[0]), memo, path)
    return merge_views([_view(ws, parent_row(ws, row, pid), memo, path) for pid in row.parents])


def apply_changes(parent: View, rows: dict[str, ChangeRow], dataset_id: str) -> View:
    """``parent`` with a draft's change rows applied."""
    out = dict(parent)
    for p, c in rows.items():
        if c.kind == "removed":
            out.pop(p, None)
        else:
            # every row but a removal carries a hash and a size (add writes them so)
            out[p] = (cast(str, c.hash), cast(int, c.size), dataset_id)
    return out


def draft_view(
    ws: Workspace, row: DatasetRow, parent: View | None = None
) -> tuple[View, dict[str, ChangeRow], View]:
    """(parent view, own change rows by path, current view) of a draft, as the catalog holds
    it now; ``parent`` saves reading the parents' view again when the caller has it."""
    if parent is None:
        parent = parent_view(ws, row)
    rows = {c.path: c for c in ws.catalog.changes(row.id)}
    return parent, rows, apply_changes(parent, rows, row.id)


def folders_of(paths: Iterable[str]) -> set[str]:
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


def _ancestors(path: str) -> Iterator[str]:
    d = path.rpartition("/")[0]
    while d:
        yield d
        d = d.rpartition("/")[0]


def check_tree_conflicts(current: View, new_paths: Iterable[str]) -> None:
    """A path cannot be both a file and a folder in one dataset: refuse new files that would
    make it so, against the files already there and among themselves."""
    new = set(new_paths)
    if not new:
        return
    bad = [p for p in folders_of(new) if p in current or p in new]
    if bad:
        p = min(bad)
        under_it = min(q for q in new if q.startswith(p + "/"))
        what = "is a file in the dataset" if p in current else "is added as a file too"
        raise UsageError(
            f"{shorten(p)} would be both a file and a folder in the dataset: cannot add "
            f"{shorten(under_it)}, as {shorten(p)} {what}",
            hint=f"remove {p} first, or add the files under another dataset folder",
        )
    folders = folders_of(current)
    clash = sorted(p for p in new if p in folders)
    if clash:
        raise UsageError(
            f"{shorten(clash[0])} would be both a file and a folder in the dataset: cannot add "
            "the file, as the dataset has a folder of that name",
            hint=f"remove the folder {clash[0]}/ first, or add the file under another name",
        )


def tree_clash(paths: Iterable[str]) -> str | None:
    """A path that is both a file and a folder among ``paths`` (a view's or a selection's
    keys; no folder can hold such a tree), or None."""
    keys = set(paths)
    clash = folders_of(keys).intersection(keys)
    return min(clash) if clash else None


def shadowed_paths(earlier: View, later: View) -> list[str]:
    """The paths of ``earlier`` that cannot sit beside ``later``'s files: a file where ``later``
    has a folder, and every file under a path where ``later`` has a file."""
    gone = [p for p in folders_of(later) if p in earlier]
    files_over = [p for p in folders_of(earlier) if p in later]
    if files_over:
        keys = sorted(earlier)
        for f in files_over:  # the files under f sort between "f/" and "f0" ("0" follows "/")
            gone += keys[bisect.bisect_left(keys, f + "/") : bisect.bisect_left(keys, f + "0")]
    return list(dict.fromkeys(gone))


def merge_views(views: Iterable[View], on_shadow: OnShadow | None = None) -> View:
    """The parents' views merged in order: a later parent wins. On the same path its file
    replaces the earlier one; where it has a file at a path that is a folder in the views
    merged so far, or a folder where they have a file, its entries stay and the earlier
    entries at or under that path are shadowed (left out), so that the result is a tree.
    ``on_shadow(index of the later view, path, earlier entry)`` hears of each one."""
    merged: View = {}
    for i, one in enumerate(views):
        if merged and one:
            for p in shadowed_paths(merged, one):
                entry = merged.pop(p)
                if on_shadow is not None:
                    on_shadow(i, p, entry)
        merged.update(one)
    return merged


def shadowed(ws: Workspace, row: DatasetRow) -> list[ShadowedFile]:
    """The files of earlier parents that later parents shadow in this version's merged
    parents (see :func:`merge_views`); none for a version of one parent or none."""
    if len(row.parents) < 2:
        return []
    parents = [parent_row(ws, row, pid) for pid in row.parents]
    views = [view(ws, p) for p in parents]
    out: list[ShadowedFile] = []
    folders: dict[int, set[str]] = {}

    def note(i: int, path: str, entry: tuple[str, int, str]) -> None:
        owner = next(j for j in range(i - 1, -1, -1) if views[j].get(path) == entry)
        if i not in folders:
            folders[i] = folders_of(views[i])
        if path in folders[i]:
            clash, kind = path, "folder"
        else:
            clash = next(f for f in _ancestors(path) if f in views[i])
            kind = "file"
        out.append(ShadowedFile(path, entry[0], entry[1], parents[owner].id, parents[i].id, clash, kind))

    merge_views(views, note)
    return out


def diff(old: View, new: View) -> Diff:
    """The paths added, modified (other content) and removed from ``old`` to ``new``, sorted."""
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


def list_files(
    ws: Workspace,
    row: DatasetRow,
    pattern: str | Iterable[str] | None = None,
    recursive: bool = True,
    only_from: str | None = None,
) -> list[FileInfo]:
    """The files of the version's view, by path; optionally those matching ``pattern`` (a
    wildcard, or any of several) or those that ``only_from`` (a version id) introduced."""
    patterns = [pattern] if isinstance(pattern, str) else [p for p in pattern or () if p]
    current = view(ws, row)
    out = []
    for p in sorted(current):
        h, size, origin = current[p]
        if only_from is not None and origin != only_from:
            continue
        if patterns and not any(matches(p, pat, recursive) for pat in patterns):
            continue
        out.append(FileInfo(p, h, size, origin))
    return out


def selected_files(
    ws: Workspace,
    row: DatasetRow,
    part: int | None = None,
    num_parts: int | None = None,
    files: Iterable[str] | None = None,
) -> tuple[dict[str, tuple[str, int]], str]:
    """The view's files, optionally one part of ``num_parts`` or a subset; and a label for it.

    Parts: paths sorted, part k of n is the k-th contiguous slice, balanced by file count.
    """
    current = view(ws, row)
    paths = sorted(current)
    label = ""
    if files is not None:
        patterns = [files] if isinstance(files, str) else list(files)
        paths = [p for p in paths if any(matches(p, pat) for pat in patterns)]
        label += ".files-" + uuid.uuid5(uuid.NAMESPACE_URL, "\n".join(sorted(patterns))).hex[:12]
    if part is not None or num_parts is not None:
        if part is None or num_parts is None:
            raise UsageError("part and num_parts go together", params=("part", "num_parts"))
        if not (
            isinstance(num_parts, int) and num_parts >= 1 and isinstance(part, int) and 0 <= part < num_parts
        ):
            raise UsageError(
                f"part must be between 0 and num_parts - 1 (got part={part}, num_parts={num_parts})",
                params=("part", "num_parts"),
            )
        start = len(paths) * part // num_parts
        end = len(paths) * (part + 1) // num_parts
        paths = paths[start:end]
        label += f".part-{part}-of-{num_parts}"
    return {p: current[p][:2] for p in paths}, label


def summary(ws: Workspace, row: DatasetRow) -> VersionSummary:
    """What ``clearml-data show`` prints of a version. A final version's counts are the ones
    recorded when it was closed; a draft's are counted from its view as it is now."""
    if row.is_final and row.file_count is not None and row.total_size is not None:
        files, size = row.file_count, row.total_size
    else:
        current = view(ws, row)
        files, size = len(current), sum(entry[1] for entry in current.values())
    return VersionSummary(
        row=row,
        parents=[parent_row(ws, row, p) for p in row.parents],
        files=files,
        bytes=size,
        metadata_names=sorted(row.metadata),
    )
