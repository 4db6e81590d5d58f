"""Importing a dataset that ClearML wrote in offline mode: its session folder, or the zip of it.

A ClearML offline session (``~/.clearml/cache/offline/offline-<id>/`` and the ``.zip``
ClearML makes of it when the task closes) holds:

- ``task.json``: the task; a dataset's carries the system tag ``dataset``, the name, the
  project as ``<project>/.datasets/<name>``, the version (``hyperparams.properties.version``),
  the tags, the description (``comment``), and the artifacts, each with the ``file://`` URI it
  was written to under the session folder (``offline_folder``) and the SHA-256 of its file;
- the artifact ``state`` (``data/<project>/.datasets/<name>/<name>.<id>/artifacts/state/state.json``):
  the file entries (dataset path, SHA-256, size, and ``local_path``, where the file was on
  disk), the external links, and the dependency graph; other JSON artifacts are metadata
  (``set_metadata``).

ClearML's ``upload()`` in offline mode writes no data: the session names each file by its
``local_path`` on the machine that wrote it. The import therefore reads every file from
there, and checks its SHA-256 and size against what ClearML recorded, and the state and
metadata files against the hashes in ``task.json``. Everything is read and checked before
anything is written; after that a draft is created, and if any later step fails (an
external link that cannot be read, the upload, finalize, Ctrl-C), the draft is deleted
again, so a failed import leaves no version behind.

Not imported: ClearML offline sessions cannot have parents (offline, ClearML can neither
get nor finalize a dataset), so a session whose dependency graph names parents is refused;
logs, reported metrics and non-JSON artifacts are not dataset content and are left out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import zipfile
from dataclasses import dataclass, field
from typing import Any

from ..catalog import ChangeRow, DatasetRow
from ..errors import ClearMLDataError, IntegrityError, UnsafePathError, UsageError, VersionExistsError
from ..hashing import sha256_file
from ..parallel import ordered_map
from ..paths import check_relpath, shorten
from ..progress import ProgressFactory, null_progress
from .drafts import create, record
from .external import add_external_files
from .lineage import delete
from .metadata import set_metadata
from .upload import finalize as finalize_draft
from .upload import upload as upload_draft
from .views import check_tree_conflicts, draft_view
from .workspace import Workspace

log = logging.getLogger(__name__)

TASK_FILE = "task.json"
#: the hidden sub-project ClearML keeps a dataset's versions in: <project>/.datasets/<name>
_DATASETS = "/.datasets/"
#: artifacts of a dataset task that are not metadata: the state, and uploaded data chunks
_STATE = "state"
#: tags ClearML adds itself; they describe ClearML's storage, not the user's dataset
_CLEARML_TAGS = {"external files"}
_MAX_JSON = 256 * 1024 * 1024  # a state file is ~150 bytes per file: a million files fit


@dataclass(frozen=True)
class SessionFile:
    """One file entry of the session: where it goes, where it is, what ClearML hashed."""

    path: str  # dataset path
    source: str  # local_path, as ClearML recorded it
    sha256: str
    size: int


@dataclass(frozen=True)
class SessionLink:
    """One external link of the session (ClearML's ``add_external_files``)."""

    path: str
    url: str
    size: int | None


@dataclass
class OfflineSession:
    """What a ClearML offline session says about its dataset, read and checked."""

    location: str
    clearml_id: str
    project: str
    name: str
    version: str | None
    tags: list[str]
    description: str
    files: list[SessionFile] = field(default_factory=list)
    links: list[SessionLink] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


class _Reader:
    """Files of a session by their path inside it, from a folder or a zip file."""

    def __init__(self, path: str):
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._prefix = ""
        if os.path.isdir(path):
            return
        if not os.path.isfile(path):
            raise UsageError(
                f"no such ClearML offline session: {shorten(path)}",
                hint="give the session folder (~/.clearml/cache/offline/offline-<id>) or its .zip file",
            )
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise UsageError(
                f"{shorten(path)} is not a ClearML offline session: not a folder, and not a zip file ({exc})",
                hint="give the session folder or the .zip file ClearML wrote next to it",
            ) from None
        names = set(self._zip.namelist())
        if TASK_FILE not in names:
            # a zip made of the folder itself rather than of its contents: one folder level down
            tops = {n.split("/", 1)[0] for n in names if n.count("/") == 1 and n.endswith("/" + TASK_FILE)}
            if len(tops) == 1:
                self._prefix = tops.pop() + "/"

    def read(self, rel: str, what: str) -> bytes:
        rel = check_relpath(rel)
        try:
            if self._zip is not None:
                info = self._zip.getinfo(self._prefix + rel)
                if info.file_size > _MAX_JSON:
                    raise UsageError(f"{what} in {shorten(self.path)} is too large to be a ClearML file")
                return self._zip.read(info)
            full = os.path.join(self.path, *rel.split("/"))
            if os.path.getsize(full) > _MAX_JSON:
                raise UsageError(f"{what} in {shorten(self.path)} is too large to be a ClearML file")
            with open(full, "rb") as fh:
                return fh.read()
        except KeyError:
            raise FileNotFoundError(rel) from None
        except ClearMLDataError:
            raise
        except (zipfile.BadZipFile, EOFError, ValueError) as exc:  # a truncated or corrupt member
            raise IntegrityError(
                f"the ClearML offline session {shorten(self.path)} is damaged: cannot read {what} ({exc})",
                hint="import the session folder, or zip it again",
            ) from None

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def read_session(path: str | os.PathLike) -> OfflineSession:
    """Read and check a ClearML offline session (a folder, or its zip file): the task, the
    dataset state and the metadata. The files it names are not read here (see :func:`check_files`)."""
    location = os.path.abspath(os.path.expanduser(os.fspath(path)))
    reader = _Reader(location)
    try:
        return _parse(reader, location)
    finally:
        reader.close()


def _parse(reader: _Reader, location: str) -> OfflineSession:
    where = shorten(location)
    try:
        task = _json(reader.read(TASK_FILE, TASK_FILE), f"{TASK_FILE} of {where}")
    except FileNotFoundError:
        raise UsageError(
            f"{where} is not a ClearML offline session: it has no {TASK_FILE}",
            hint="give the folder ClearML printed as 'session stored in', or its .zip file",
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot read {TASK_FILE} in {where}: {exc.strerror or exc}") from None
    task_id = task.get("id") if isinstance(task, dict) else None
    if not isinstance(task_id, str) or not task_id:
        raise UsageError(f"{where} is not a ClearML offline session: its {TASK_FILE} has no task id")
    if "dataset" not in _strings(task.get("system_tags")):
        raise UsageError(
            f"the ClearML offline session {where} is of a task, not of a dataset",
            hint="only sessions written by ClearML's Dataset can be imported",
        )
    name = task.get("name")
    project_path = task.get("project_name")
    if not isinstance(name, str) or not name or not isinstance(project_path, str) or not project_path:
        raise UsageError(f"the ClearML offline session {where} names no dataset project and name")
    suffix = _DATASETS + name
    project = project_path[: -len(suffix)] if project_path.endswith(suffix) else project_path
    version = _version(task)
    artifacts = {
        a["key"]: a
        for a in _list(_dict(task.get("execution")).get("artifacts"))
        if isinstance(a, dict) and isinstance(a.get("key"), str)
    }
    if _STATE not in artifacts:
        raise UsageError(
            f"the ClearML offline session {where} holds no dataset state",
            hint="ClearML writes it on Dataset.upload(); run the offline script up to upload() first",
        )
    offline_folder = _text(task.get("offline_folder"))
    state = _json(
        _artifact(reader, artifacts[_STATE], offline_folder, where), f"the dataset state of {where}"
    )
    session = OfflineSession(
        location=location,
        clearml_id=task_id,
        project=project,
        name=name,
        version=version,
        tags=[t for t in _strings(task.get("tags")) if t not in _CLEARML_TAGS],
        description=_text(task.get("comment")),
    )
    _read_state(session, state, where)
    for key, artifact in sorted(artifacts.items()):
        if key == _STATE or key == "data" or key.startswith("data_") or artifact.get("type") != "dict":
            continue  # data chunks (never written offline) and non-JSON artifacts are not metadata
        try:
            session.metadata[key] = _json(
                _artifact(reader, artifact, offline_folder, where), f"metadata {key!r} of {where}"
            )
        except UsageError as exc:
            log.warning("metadata %r of the ClearML session is not imported: %s", key, exc)
    return session


def _version(task: dict) -> str | None:
    props = _dict(_dict(task.get("hyperparams")).get("properties"))
    value = _dict(props.get("version")).get("value")
    return value if isinstance(value, str) and value.strip() else None


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise IntegrityError(f"{what} is not valid JSON ({exc})", hint="the session is damaged") from None


def _artifact(reader: _Reader, artifact: dict, offline_folder: str, where: str) -> bytes:
    """The bytes of an artifact the session holds, checked against its recorded SHA-256."""
    key = artifact["key"]
    uri = _text(artifact.get("uri"))
    local = uri[len("file://") :] if uri.startswith("file://") else uri
    base = offline_folder.rstrip("/") + "/"
    if not offline_folder or not local.startswith(base):
        raise UsageError(f"the artifact {key!r} of the ClearML session {where} is not stored in the session")
    rel = local[len(base) :]
    try:
        data = reader.read(rel, f"the artifact {key!r}")
    except UnsafePathError:
        raise UsageError(f"the artifact {key!r} of {where} has an unsafe path: {rel!r}") from None
    except FileNotFoundError:
        raise IntegrityError(
            f"the ClearML offline session {where} is incomplete: the artifact {key!r} ({rel}) is missing",
            hint="import the folder ClearML wrote, or the .zip ClearML made of it",
        ) from None
    expected = artifact.get("hash")
    if isinstance(expected, str) and expected and hashlib.sha256(data).hexdigest() != expected.lower():
        raise IntegrityError(
            f"the ClearML offline session {where} is damaged: the artifact {key!r} does not match "
            "the SHA-256 in task.json",
            hint="import an intact copy of the session",
        )
    return data


def _read_state(session: OfflineSession, state: Any, where: str) -> None:
    if not isinstance(state, dict):
        raise IntegrityError(
            f"the dataset state of {where} is not a JSON object", hint="the session is damaged"
        )
    parents = _list(_dict(state.get("dependency_graph")).get(session.clearml_id))
    if parents:
        raise UsageError(
            f"the ClearML dataset in {where} has parent versions ({', '.join(map(str, parents))}) that "
            "live on a ClearML server, not in this catalog",
            hint="import a session without parents, or re-create the parents here first",
        )
    seen: set[str] = set()
    for entry in _list(state.get("dataset_file_entries")):
        rel = _entry_path(entry, where)
        digest, size, source = entry.get("hash"), entry.get("size"), entry.get("local_path")
        if not isinstance(source, str) or not source:
            raise UsageError(
                f"the file {rel} of the ClearML session {where} has no local source: its content "
                "was uploaded to a ClearML server",
                hint="only sessions written in offline mode can be imported",
            )
        if rel in seen:
            raise IntegrityError(f"{rel} is listed twice in {where}", hint="the session is damaged")
        if not (isinstance(digest, str) and len(digest) == 64 and isinstance(size, int) and size >= 0):
            raise IntegrityError(
                f"the file entry {rel} in {where} has no valid SHA-256 and size",
                hint="the session is damaged",
            )
        seen.add(rel)
        session.files.append(SessionFile(rel, source, digest.lower(), size))
    for entry in _list(state.get("dataset_link_entries")):
        rel = _entry_path(entry, where)
        url, size = entry.get("link"), entry.get("size")
        if not isinstance(url, str) or not url:
            raise IntegrityError(
                f"the external link {rel} in {where} has no URL", hint="the session is damaged"
            )
        if rel in seen:
            raise IntegrityError(f"{rel} is both a file and a link in {where}", hint="the session is damaged")
        seen.add(rel)
        session.links.append(SessionLink(rel, url, size if isinstance(size, int) else None))
    count = state.get("file_count")
    if isinstance(count, int) and count != len(seen):
        raise IntegrityError(
            f"the dataset state of {where} lists {len(seen)} entries but records file_count={count}",
            hint="the session is damaged",
        )


def _entry_path(entry: Any, where: str) -> str:
    rel = entry.get("relative_path") if isinstance(entry, dict) else None
    if not isinstance(rel, str):
        raise IntegrityError(f"a file entry in {where} has no relative_path", hint="the session is damaged")
    try:
        # a leading "/" means the dataset root to ClearML; anything else must be a clean path
        return check_relpath(rel.lstrip("/"))
    except UnsafePathError as exc:
        raise UnsafePathError(f"the ClearML session {where} names an unsafe dataset path: {exc}") from None


def check_files(
    session: OfflineSession, max_workers: int | None = None, progress: ProgressFactory = null_progress
) -> list[ChangeRow]:
    """Hash every file the session names at its ``local_path``; each must have the SHA-256 and
    size ClearML recorded. Returns the change rows to record."""
    bar = progress(sum(f.size for f in session.files), "B", "Checking", files=len(session.files))

    def digest(f: SessionFile) -> tuple[str, int]:
        try:
            return sha256_file(f.source)
        except FileNotFoundError:
            raise UsageError(
                f"the file {f.path} of the ClearML session is not at {shorten(f.source)} any more",
                hint="ClearML's offline sessions name the files where they were added: import on the "
                "machine that wrote the session, with the files in place",
            ) from None
        except OSError as exc:
            raise UsageError(f"cannot read {shorten(f.source)}: {exc.strerror or exc}") from None

    rows = []
    try:
        for f, (sha, size) in ordered_map(digest, session.files, max_workers):
            if (sha, size) != (f.sha256, f.size):
                raise IntegrityError(
                    f"{shorten(f.source)} (the file {f.path} of the ClearML session) does not match the "
                    f"SHA-256 and size ClearML recorded ({f.size} bytes): it changed after it was added",
                    path=f.path,
                    hint="restore the original file, or add the files to a new dataset instead",
                )
            bar.update(size, files=1)
            rows.append(ChangeRow(f.path, "added", sha, size, os.path.abspath(f.source)))
    finally:
        bar.close()
    return rows


def import_session(
    ws: Workspace,
    path: str | os.PathLike,
    upload: bool = True,
    finalize: bool = False,
    storage: str | None = None,
    max_workers: int | None = None,
    progress: ProgressFactory = null_progress,
) -> tuple[DatasetRow, OfflineSession]:
    """Import a ClearML offline session as a new version (a draft; uploaded with ``upload``,
    final with ``finalize``) with the session's project, name, version, tags, description,
    files, external links and metadata. Returns the new version and the session read."""
    session = read_session(path)
    rows = check_files(session, max_workers, progress)
    check_tree_conflicts({}, [r.path for r in rows] + [link.path for link in session.links])
    try:
        row = create(
            ws,
            session.name,
            project=session.project,
            version=session.version,
            storage=storage,
            tags=session.tags,
            description=session.description,
        )
    except VersionExistsError as exc:
        raise VersionExistsError(
            f"{exc.args[0]}: the session was imported already, or the version exists",
            hint="delete that version first (clearml-data delete --id ...), or import into another catalog",
        ) from None
    try:
        parent, own, current = draft_view(ws, row)
        record(ws, row, parent, own, current, rows)
        for link in session.links:
            _add_link(ws, row, link)
        for key, value in session.metadata.items():
            set_metadata(ws, row.id, value, key)
        if upload:
            upload_draft(ws, row.id, storage, None, max_workers, progress)
        if finalize:
            row = finalize_draft(ws, row.id, upload, None, max_workers, progress)
    except BaseException:
        _discard(ws, row)
        raise
    return ws.catalog.get_dataset(row.id) or row, session


def _add_link(ws: Workspace, row: DatasetRow, link: SessionLink) -> None:
    folder, _, base = link.path.rpartition("/")
    if posixpath.basename(link.url.rstrip("/")) != base:
        raise UsageError(
            f"the external link {link.path} ({link.url}) has a name other than its URL's; it cannot be "
            "registered here",
            hint="import the session without it: remove the link in ClearML first",
        )
    add_external_files(ws, row.id, link.url, dataset_path=folder or None)
    if link.size is not None:
        got = {c.path: c.size for c in ws.catalog.changes(row.id)}.get(link.path)
        if got != link.size:
            raise IntegrityError(
                f"the external file {link.url} has {got} bytes; ClearML recorded {link.size}",
                path=link.path,
                hint="the file changed after the session was written",
            )


def _discard(ws: Workspace, row: DatasetRow) -> None:
    """Delete the draft of a failed import (best effort: the first error is the one reported)."""
    try:
        delete(ws, row.id)
    except (ClearMLDataError, OSError) as exc:
        log.warning("could not delete the draft %s of the failed import: %s", row.id, exc)
