"""Operations across versions: lineage, comparisons, squash, rename and move, metadata."""

from __future__ import annotations

import json
from collections.abc import Iterable

from . import _crashpoints as crashpoints
from .catalog import ChangeRow, DatasetRow
from .errors import DatasetNotFoundError, DatasetStateError, UsageError
from .progress import ProgressFactory, null_progress

#: metadata values are stored as JSON in the catalog; this marks a pandas DataFrame
_FRAME = "pandas.DataFrame"
METADATA_MAX_BYTES = 10 * 1024 * 1024


class HistoryMixin:
    """Service operations that look at several versions (mixed into ``Service``)."""

    # -- lineage -------------------------------------------------------------------------------
    def dependency_graph(self, row: DatasetRow) -> dict[str, list[str]]:
        """{id: [direct parent ids]} for the version and every ancestor."""
        graph: dict[str, list[str]] = {}
        todo = [row]
        while todo:
            current = todo.pop()
            if current.id in graph:
                continue
            graph[current.id] = list(current.parents)
            todo.extend(self._parent_row(current, pid) for pid in current.parents if pid not in graph)
        return graph

    def changes_against(self, row: DatasetRow, baseline_id: str | None = None):
        """The Diff from the baseline (default: the merged parents) to this version."""
        base = self.parent_view(row) if baseline_id is None else self.view(self.resolve_id(baseline_id))
        return self.diff(base, self.view(row))

    def num_chunks(self, row: DatasetRow, include_parents: bool = True) -> int:
        """How many stored objects (packs and whole-file objects) hold the version's files."""
        view = self.view(row)
        hashes = {h for h, _s, origin in view.values() if include_parents or origin == row.id}
        locations = self.catalog.locate_objects(hashes)
        keys = set()
        for h in hashes:
            locs = locations.get(h) or []
            loc = next((x for x in locs if x.storage == row.storage), locs[0] if locs else None)
            if loc is not None:
                keys.add((loc.storage, loc.key))
        return len(keys)

    # -- squash --------------------------------------------------------------------------------
    def squash(self, name: str, ids: Iterable[str] | None = None,
               project_name_pairs: Iterable[tuple[str, str]] | None = None,
               storage: str | None = None, project: str | None = None, close: bool = True,
               progress: ProgressFactory = null_progress) -> DatasetRow:
        """A new root version holding the merged view of the given versions, in order."""
        if ids and project_name_pairs:
            raise UsageError("give either dataset ids or (project, name) pairs to squash, not both")
        if ids:
            rows = [self.resolve_id(i) for i in ids]
        elif project_name_pairs:
            rows = [self.get(project=p, name=n, only_completed=True) for p, n in project_name_pairs]
        else:
            raise UsageError("nothing to squash", hint="pass the ids of the versions to merge")
        for r in rows:
            if not r.is_final:
                raise DatasetStateError(f"cannot squash dataset {r.id}: it is a draft",
                                        hint=f"close it first: clearml-data close --id {r.id}")
        from .service import _shadowed

        merged: dict = {}
        contributor: dict[str, str] = {}   # path -> id of the listed version it came from
        links: dict[tuple[str, str], str] = {}
        for r in rows:
            view = self.view(r)
            ancestors = set(self.dependency_graph(r))
            # a listed ancestor's file that this version removed stays removed
            for p in [p for p, who in contributor.items() if who in ancestors and p not in view]:
                del merged[p], contributor[p]
            for p in _shadowed(merged, view):  # a later version wins a file/folder clash too
                del merged[p], contributor[p]
            merged.update(view)
            contributor.update(dict.fromkeys(view, r.id))
            links.update(self.catalog.links({origin for _h, _s, origin in view.values()}))
        description = f"squashed from {', '.join(r.id for r in rows)}"
        new = (self._interrupted_squash(name, project or rows[0].project, storage, description)
               or self.create(name=name, project=project or rows[0].project, storage=storage,
                              description=description))
        crashpoints.reach("squash.created")
        try:
            entries = [ChangeRow(p, "added", h, size, None, links.get((origin, p)))
                       for p, (h, size, origin) in sorted(merged.items())]
            self.catalog.replace_changes(new.id, entries)
            crashpoints.reach("squash.recorded")
            # content the new storage lacks is copied through the local cache
            pending = self.pending_uploads(new)
            with self.cache.in_use():
                self.cache.ensure()
                self.fetch_objects(new, {c.path: (c.hash, c.size) for c in pending}, progress=progress)
                crashpoints.reach("squash.fetched")
                if close:
                    self.upload(new.id, progress=progress)
            if close:
                return self.finalize(new.id)
        except BaseException:
            self.catalog.delete_dataset(new.id)
            raise
        return self.resolve_id(new.id)

    def _interrupted_squash(self, name: str, project: str, storage: str | None,
                            description: str) -> DatasetRow | None:
        """The draft an interrupted run of the same squash left behind, to be resumed."""
        from .service import normalize_storage

        target = normalize_storage(storage or self.settings.storage)
        drafts = [r for r in self.catalog.find_datasets(project=project, name=name, statuses=["draft"])
                  if r.description == description and r.storage == target and not r.parents]
        return drafts[-1] if drafts else None

    # -- names ---------------------------------------------------------------------------------
    def rename(self, project: str, name: str, new_name: str) -> list[str]:
        from .service import _check_label

        _check_label("name", new_name)
        return self._relabel(project, name, new_name=new_name)

    def move(self, project: str, name: str, new_project: str) -> list[str]:
        from .service import _check_label

        _check_label("project", new_project)
        return self._relabel(project, name, new_project=new_project)

    def _relabel(self, project: str, name: str, **change) -> list[str]:
        if change.get("new_name", name) == name and change.get("new_project", project) == project:
            raise UsageError(f"{project}/{name} already has that "
                             f"{'name' if 'new_name' in change else 'project'}")
        ids = self.catalog.relabel(project, name, **change)
        if not ids:
            raise DatasetNotFoundError(f"no dataset with project={project!r}, name={name!r}",
                                       hint="`clearml-data search` lists the datasets")
        return ids

    # -- metadata ------------------------------------------------------------------------------
    def set_metadata(self, dataset_id: str, value, metadata_name: str = "metadata") -> None:
        """Store a JSON-able value or a pandas DataFrame under a name (never pickled)."""
        if not isinstance(metadata_name, str) or not metadata_name.strip():
            raise UsageError("metadata_name must be a non-empty string")
        record = _encode(value)
        if len(json.dumps(record)) > METADATA_MAX_BYTES:
            raise UsageError(f"metadata {metadata_name!r} is larger than {METADATA_MAX_BYTES // 2**20} MiB",
                             hint="store big tables as files in the dataset instead")
        row = self.resolve_id(dataset_id)
        metadata = dict(row.metadata)
        metadata[metadata_name] = record
        self.update(row.id, metadata=metadata)

    def get_metadata(self, row: DatasetRow, metadata_name: str = "metadata"):
        record = row.metadata.get(metadata_name)
        return None if record is None else _decode(record)


def _encode(value) -> dict:
    if type(value).__module__.startswith("pandas") and type(value).__name__ == "DataFrame":
        return {"type": _FRAME, "value": json.loads(value.to_json(orient="table"))}
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"metadata must be JSON-serialisable or a pandas DataFrame: {exc}",
                         hint="convert it to dicts, lists, strings and numbers first") from None
    return {"type": "json", "value": json.loads(text)}


def _decode(record: dict):
    if record.get("type") == _FRAME:
        try:
            import io

            import pandas
        except ImportError:
            raise UsageError("this metadata is a pandas DataFrame and pandas is not installed",
                             hint="pip install pandas") from None
        return pandas.read_json(io.StringIO(json.dumps(record["value"])), orient="table")
    return record.get("value")
