"""Finding versions: by id or unique id prefix, by project/name/version/tags, by a
``project/name[@version]`` reference, and the checks on the labels a version is found by
(project, name, version, tags) and on storage URLs.

Every other operation module starts here: ``resolve_id`` is the one way from what a user
typed to a :class:`~clearml_data.catalog.DatasetRow`, and ``draft`` / ``final`` add the state
a change or a local copy needs, with an error that says what to do instead.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable

from .. import versions
from ..catalog import DatasetRow
from ..errors import CatalogError, DatasetNotFoundError, DatasetStateError, UsageError
from ..paths import check_id
from ..storage import url_scheme
from ..urls import DatasetURL, is_url, parse_url
from .workspace import Workspace

ID_RE = re.compile(r"^[0-9a-f]{8,32}$")
MIN_PREFIX = 8
_LABEL_MAX = 255


def now() -> str:
    """The current UTC time as the catalog records it (ISO 8601, microseconds)."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalize_storage(url: str) -> str:
    """Canonical form of a storage URL: local folders become absolute paths."""
    url = str(url).strip()
    if not url:
        raise UsageError("empty storage URL")
    if url_scheme(url) == "file":
        from ..storage.folder import folder_path  # the folder driver loads only when a folder is used

        absolute = folder_path(url)
        return "file://" + absolute if url.lower().startswith("file://") else absolute
    head, sep, rest = url.partition("://")
    return head + sep + rest.rstrip("/") if rest.strip("/") else url


def storage_url(ws: Workspace, storage: str | None) -> str:
    """The canonical URL of ``storage``, or of the configured default storage if none is given."""
    return normalize_storage(storage or ws.settings.storage)


def check_label(what: str, value: str) -> None:
    """Refuse an empty, overlong or control-character project, name, version or tag."""
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"the dataset {what} must not be empty")
    if len(value) > _LABEL_MAX:
        raise UsageError(f"the dataset {what} is longer than {_LABEL_MAX} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise UsageError(f"the dataset {what} {value!r} contains a control character")


def tag_list(tags: str | Iterable[str] | None) -> list[str]:
    """Tags as a list: a string is one tag (never split into its characters)."""
    if tags is None:
        return []
    if isinstance(tags, str):
        return [tags]
    return list(tags)


def clean_tags(tags: str | Iterable[str] | None) -> list[str]:
    """The tags stripped, checked and without repeats, in their first order."""
    out: list[str] = []
    for t in tag_list(tags):
        t = str(t).strip()
        if t and t not in out:
            check_label("tag", t)
            out.append(t)
    return out


def resolve_id(ws: Workspace, dataset_id: str) -> DatasetRow:
    """The dataset with this id, or the only one whose id starts with this prefix."""
    text = str(dataset_id).strip().lower()
    if not ID_RE.match(text):
        raise UsageError(
            f"{dataset_id!r} is not a dataset id",
            hint=f"an id is 32 hex characters; a unique prefix of {MIN_PREFIX}+ works",
        )
    row = ws.catalog.get_dataset(text) if len(text) == 32 else None
    if row is None:
        matches_ = ws.catalog.ids_with_prefix(text)
        if len(matches_) > 1:
            raise UsageError(f"dataset id prefix {text!r} is ambiguous ({', '.join(matches_)}, ...)")
        if not matches_:
            raise DatasetNotFoundError(
                f"no dataset with id {text}", hint="`clearml-data search` lists the datasets"
            )
        row = ws.catalog.get_dataset(check_id(matches_[0]))
        if row is None:  # deleted between the two reads
            raise DatasetNotFoundError(
                f"no dataset with id {text}", hint="`clearml-data search` lists the datasets"
            )
    check_id(row.id)
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
) -> DatasetRow:
    """One dataset by id, or the highest version matching project/name/version/tags.

    Tags alone are enough, as in ClearML: the highest version among the datasets that carry
    every tag given (the newest on a tie), in any project.

    ``dataset_id`` may be a ``clearml-data://`` URL of a version (without a path in it):
    the version it names, as :func:`resolve_url` finds it, checked as an id would be."""
    if dataset_id and is_url(dataset_id):
        if project or name or version:
            raise UsageError("give either a clearml-data URL or project/name/version, not both")
        ref = parse_url(str(dataset_id))
        if ref.path:
            raise UsageError(
                f"{dataset_id!r} names a file or folder in a version ({ref.path!r}), not a version",
                hint=f"pass the version's URL, {ref.reference}",
            )
        dataset_id = resolve_url(ws, ref).id
    if dataset_id:
        if project or name or version:
            raise UsageError("give either a dataset id or project/name/version, not both")
        row = resolve_id(ws, dataset_id)
        if only_published and row.status != "published":
            raise DatasetStateError(f"dataset {row.id} is not published")
        if only_completed and not row.is_final:
            raise DatasetStateError(f"dataset {row.id} is not final")
        return row
    wanted = set(clean_tags(tags))
    if not project and not name and not wanted:
        raise UsageError("no dataset given", hint="pass a dataset id, a project and name, or tags")
    statuses = ["published"] if only_published else (["final", "published"] if only_completed else None)
    rows = ws.catalog.find_datasets(project=project, name=name, statuses=statuses)
    if version is not None:
        exact = [r for r in rows if r.version == version]
        rows = exact or [r for r in rows if versions.same(r.version, str(version))]
    rows = [r for r in rows if wanted.issubset(r.tags)]
    if not rows:
        what = ", ".join(
            f"{k}={v!r}" for k, v in (("project", project), ("name", name), ("version", version)) if v
        )
        if wanted:
            what += f"{', ' if what else ''}tags={sorted(wanted)}"
        extra = " completed" if only_completed else (" published" if only_published else "")
        raise DatasetNotFoundError(
            f"no{extra} dataset with {what}", hint="`clearml-data search` lists the datasets"
        )
    return max(rows, key=lambda r: (versions.sort_key(r.version), r.created_at))


def search(
    ws: Workspace,
    project: str | None = None,
    partial_name: str | None = None,
    tags: str | Iterable[str] | None = None,
    ids: Iterable[str] | None = None,
    only_completed: bool = True,
) -> list[DatasetRow]:
    """The versions matching a project, a regular expression on the name, tags and ids
    (by default only final and published ones)."""
    statuses = ["final", "published"] if only_completed else None
    full_ids = [resolve_id(ws, i).id for i in ids] if ids else None
    rows = ws.catalog.find_datasets(project=project, statuses=statuses, ids=full_ids)
    if partial_name:
        try:
            pattern = re.compile(partial_name)
        except re.error as exc:
            raise UsageError(
                f"partial_name {partial_name!r} is not a valid regular expression: {exc}",
                params=("partial_name",),
            ) from None
        rows = [r for r in rows if pattern.search(r.name)]
    wanted = set(clean_tags(tags))
    if wanted:
        rows = [r for r in rows if wanted.issubset(r.tags)]
    return rows


def split_ref(ref: str) -> tuple[str, str, str | None]:
    """``project/name[@version]`` as (project, name, version or None). The last ``/``
    separates the project (which may itself hold ``/``: nested projects) from the name, and
    the last ``@`` of the name part starts the version."""
    text = str(ref).strip()
    project, _, tail = text.rpartition("/")
    name, at, version = tail.rpartition("@") if "@" in tail else (tail, "", "")
    if not project.strip("/") or not name or (at and not version):
        raise UsageError(
            f"{ref!r} is neither a dataset id nor a project/name[@version] reference",
            hint="pass an id, project/name or project/name@version; the last / ends the project",
        )
    return project.strip("/"), name, version if at else None


def resolve_ref(ws: Workspace, ref: str) -> DatasetRow:
    """The version an id (or unique id prefix) names, or a ``project/name[@version]``
    reference: that version, or without ``@version`` the latest final version of the dataset."""
    if "/" not in str(ref):
        return resolve_id(ws, ref)
    project, name, version = split_ref(ref)
    return get(ws, project=project, name=name, version=version, only_completed=version is None)


def resolve_url(ws: Workspace, url: str | DatasetURL) -> DatasetRow:
    """The version a ``clearml-data://`` URL names (its path, if any, is ignored here): by id,
    or the version of project (any project if none) and name; ``latest`` is the highest final
    version, as a ``project/name`` reference without a version picks it."""
    ref = parse_url(url) if isinstance(url, str) else url
    if ref.dataset_id is not None:
        return resolve_id(ws, ref.dataset_id)
    if ref.is_latest:
        return get(ws, project=ref.project, name=ref.name, only_completed=True)
    return get(ws, project=ref.project, name=ref.name, version=ref.version)


def parent_row(ws: Workspace, row: DatasetRow, parent_id: str) -> DatasetRow:
    """The parent ``parent_id`` of ``row``; a parent the catalog lacks is a CatalogError."""
    parent = ws.catalog.get_dataset(check_id(parent_id))
    if parent is None:
        raise CatalogError(f"dataset {row.id} names a parent {parent_id} that is not in the catalog")
    return parent


def draft(ws: Workspace, dataset_id: str) -> DatasetRow:
    """The draft with this id; a final version is refused (it cannot change)."""
    row = resolve_id(ws, dataset_id)
    if row.is_final:
        raise DatasetStateError(
            f"dataset {row.id} is final and cannot be changed",
            hint=f"create a child version: clearml-data create --parents {row.id} ...",
        )
    return row


def final(ws: Workspace, dataset_id: str) -> DatasetRow:
    """The final version with this id; a draft is refused (only final versions have local copies)."""
    row = resolve_id(ws, dataset_id)
    if not row.is_final:
        raise DatasetStateError(
            f"dataset {row.id} is not final; only final versions have local copies",
            hint=f"close it first: clearml-data close --id {row.id}",
        )
    return row
