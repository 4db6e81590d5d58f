"""Rebuilding the catalog from the manifests in a storage.

``rebuild_catalog`` restores every final version found in a storage (or some of them and
their ancestors, for ``get --storage``: :func:`resolve_or_restore`) into this catalog.
Versions already there are left as they are, so running it again changes nothing. A
version whose parent was deleted (a tombstone) is restored onto that parent's own parents,
as a forced delete folds a version into its children; one whose parent is nowhere is
restored without it (``flattened``).

A manifest describes only the storage it is in: the locations it gives are recorded
*unchecked* (see locations.py), and nothing is trusted before a stat confirms it.
"""

from __future__ import annotations

from collections.abc import Iterable

from .. import manifest as mf
from ..catalog import ChangeRow, DatasetRow, ObjectRow, refs
from ..errors import ClearMLDataError, DatasetNotFoundError, ManifestError, UsageError, VersionExistsError
from ..packs import is_pack_key, object_key
from ..paths import check_relpath
from ..storage import redact_url
from .external import split_url
from .lookup import ID_RE, normalize_storage, resolve_id, storage_url
from .manifests import list_manifests, read_manifest, read_small
from .results import RebuildReport
from .views import merge_views, view
from .workspace import Workspace


def rebuild_catalog(
    ws: Workspace, storage: str | None = None, ids: Iterable[str] | None = None
) -> RebuildReport:
    """Restore the final versions whose manifests are in ``storage`` into this catalog.

    With ``ids``: only those versions and their ancestors found there. Versions already
    in the catalog are left as they are; running it again changes nothing.
    """
    storage = storage_url(ws, storage)
    driver = ws.driver(storage)
    report = RebuildReport(storage=storage)
    live, tombs = list_manifests(driver, storage)
    report.deleted = len(tombs)
    live = {i: k for i, k in live.items() if i not in tombs}
    docs: dict[str, mf.Manifest] = {}
    tomb_parents: dict[str, list[str] | None] = {}

    def load(dataset_id: str) -> mf.Manifest | None:
        if dataset_id not in docs and dataset_id in live:
            key = live[dataset_id]
            try:
                m = read_manifest(driver, storage, key)
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
                tomb_parents[dataset_id] = mf.decode_tombstone(read_small(driver, storage, key), key)
            except (ManifestError, FileNotFoundError) as exc:
                report.damaged.append(str(exc))
                tomb_parents[dataset_id] = None
        return tomb_parents[dataset_id]

    if ids is None:
        wanted = sorted(live)
    else:
        wanted = list(ids)
        for i in wanted:
            if i not in live and ws.catalog.get_dataset(i) is None:
                raise DatasetNotFoundError(
                    f"no dataset with id {i} in the catalog or in {redact_url(storage)}"
                    + (" (it was deleted)" if i in tombs else "")
                )
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

    present = refs.all_ids(ws.catalog)
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
            elif pid in tombs and (grandparents := tomb(pid)) is not None:
                stack.extend(reversed(grandparents))
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
            with ws.catalog.write():
                report.objects += _restore_objects(ws, m, storage, report)
            return
        candidates, complete = effective_parents(m)
        for pid in candidates:  # parents first
            if pid in docs:
                restore(pid, (*path, i))
        done.add(i)
        parents = [p for p in candidates if p in present]
        complete = complete and len(parents) == len(candidates)
        try:
            objects = _restore_version(ws, m, parents, storage, report)
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
    ws.forget_views()
    return report


def _restore_objects(ws: Workspace, m: mf.Manifest, storage: str, report: RebuildReport) -> int:
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
    ws.catalog.add_objects(rows.values())
    return len(rows)


def _restore_version(
    ws: Workspace, m: mf.Manifest, parents: list[str], storage: str, report: RebuildReport
) -> int:
    rec = m.record
    parent_view = merge_views([view(ws, resolve_id(ws, pid)) for pid in parents])
    target = {p: (h, s) for p, (h, s, _o, _l) in m.files.items()}
    rows: list[ChangeRow] = []
    for p, (h, s, _origin, link) in m.files.items():
        before = parent_view.get(p)
        fp = m.fingerprints.get(p)
        if before is None:
            rows.append(ChangeRow(p, "added", h, s, None, link, fp))
        elif before[0] != h:
            rows.append(ChangeRow(p, "modified", h, s, None, link, fp))
    rows += [ChangeRow(p, "removed", None, None) for p in parent_view if p not in target]
    counts = {k: sum(1 for r in rows if r.kind == k) for k in ("added", "modified", "removed")}
    row = DatasetRow(
        id=rec["id"],
        project=rec["project"],
        name=rec["name"],
        version=rec["version"],
        status="final",
        storage=storage,
        created_at=rec["created_at"],
        updated_at=rec["finalized_at"],
        description=rec["description"],
        tags=list(rec["tags"]),
        metadata=dict(rec["metadata"]),
        finalized_at=rec["finalized_at"],
        file_count=len(m.files),
        total_size=sum(s for _h, s, _o, _l in m.files.values()),
        parents=parents,
        **counts,
    )
    with ws.catalog.write():
        objects = _restore_objects(ws, m, storage, report)
        ws.catalog.insert_dataset(row)
        ws.catalog.replace_changes(row.id, rows)
        ws.catalog.update_dataset(row.id, updated_at=rec["finalized_at"])
    return objects


def resolve_or_restore(ws: Workspace, dataset_id: str | None, storage: str) -> DatasetRow:
    """The version with this id (or unique prefix) from the catalog, else restored from the
    manifests in ``storage`` (with its ancestors found there)."""
    if not dataset_id:
        raise UsageError("a storage was given without a dataset id", hint="pass --id with --storage")
    try:
        return resolve_id(ws, dataset_id)
    except DatasetNotFoundError:
        pass
    text = str(dataset_id).strip().lower()
    if not ID_RE.match(text):
        raise UsageError(f"{dataset_id!r} is not a dataset id")
    storage = normalize_storage(storage)
    driver = ws.driver(storage)
    live, tombs = list_manifests(driver, storage)
    found = sorted(i for i in live.keys() | tombs.keys() if i.startswith(text))
    if len(found) > 1:
        raise UsageError(f"dataset id prefix {text!r} is ambiguous in {redact_url(storage)}")
    if not found:
        raise DatasetNotFoundError(f"no dataset with id {text} in the catalog or in {redact_url(storage)}")
    report = rebuild_catalog(ws, storage, ids=found)
    if found[0] not in report.restored and found[0] not in report.present:
        problems = report.conflicts + report.damaged
        raise DatasetNotFoundError(
            problems[0]
            if problems
            else f"dataset {found[0]} could not be restored from {redact_url(storage)}"
        )
    return resolve_id(ws, found[0])


def _stored_location(h: str, key: str, offset: int, length: int, size: int | None) -> bool:
    """Whether a manifest's location in its own storage is one an upload writes: the content's
    own object, or an entry of a pack, of the file's size."""
    if size is None or length != size:
        return False
    return (key == object_key(h) and offset == 0) or is_pack_key(key)


def _link_location(link: str, h: str, size: int) -> ObjectRow | None:
    """The location an external file's URL names (None if it names no object)."""
    parent, name = split_url(link)
    try:
        check_relpath(name)
    except ClearMLDataError:
        return None
    return ObjectRow(parent, h, name, 0, size)
