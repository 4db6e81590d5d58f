"""The ``clearml-data`` commands: each ``cmd_*`` takes the parsed arguments, calls the
service and returns a :class:`~.render.Result`; :mod:`.main` prints it or the error.

This module and the service under it are imported only once a command is about to run:
``--help``, ``--version`` and usage errors never load them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from ..config import CurrentDataset, Settings
from ..errors import DatasetNotFoundError, NotAFileError, PathNotFoundError, UsageError
from ..progress import ProgressFactory, Tally, bar_progress, null_progress
from ..service import Closed, Service, UploadResult, VersionFile, WorkflowEvents
from ..storage import fingerprint_parts, redact_url
from .render import (
    Result,
    dataset_data,
    doctor_lines,
    fingerprint_text,
    gc_result,
    plugins_table,
    plural,
    printable,
    rebuild_result,
    shadowed,
    size,
    summary_data,
    summary_line,
    summary_lines,
    table,
)

if TYPE_CHECKING:
    import argparse

    from ..service import DatasetRow


#: a command whose progress bars ran at least this long (seconds) prints a summary line
SUMMARY_AFTER = 2.0

#: after Ctrl-C: the state a command that changes nothing, or one change, leaves
_ABORT_DEFAULT = "nothing is half-done (a change is written at once or not at all); run the command again"
_ABORT_NOTES = {
    name: "nothing was changed"
    for name in ("list", "search", "compare", "verify", "doctor", "plugins", "cache", "create", "cat")
}
_ABORT_NOTES.update(
    get="no local copy was made; what was downloaded stays in the cache, so running the command "
    "again goes on from there",
    gc="nothing is half-done (an object goes only after it is checked); run gc again to finish",
    catalog="nothing is half-done (each version is restored at once or not at all); run it again to finish",
    squash="no squashed version was made; run the command again",
)


class Context:
    """What a command works with: its arguments, its output streams, and the service and
    settings, made on first use."""

    def __init__(self, args: argparse.Namespace, stdout: TextIO, stderr: TextIO):
        self.args = args
        self.stdout = stdout
        self.stderr = stderr
        self.quiet = bool(getattr(args, "quiet", False))
        self.json = bool(getattr(args, "json", False))
        self._service: Service | None = None
        self._settings: Settings | None = None
        self.started = time.monotonic()
        #: what a Ctrl-C leaves and what to run next, in one clause; a command replaces it as
        #: its work goes on (it is called only after an interruption)
        self.on_abort: Callable[[], str] = lambda: _ABORT_NOTES.get(args.command, _ABORT_DEFAULT)
        #: every bar of the command goes through it (drawn or not), for the summary line
        self.tally = Tally(null_progress if self.quiet else bar_progress)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.load(catalog=getattr(self.args, "catalog", None))
        return self._settings

    @property
    def service(self) -> Service:
        if self._service is None:
            self._service = Service(self.settings)
        return self._service

    @property
    def current(self) -> CurrentDataset:
        return CurrentDataset(self.settings)

    @property
    def progress(self) -> ProgressFactory:
        return self.tally

    def summary(self) -> None:
        """A command whose bars ran for at least :data:`SUMMARY_AFTER` seconds ends with one
        line on stderr of what it did (files, bytes, and the command's time), whether or not
        the bars were drawn."""
        seconds = time.monotonic() - self.started
        phases = self.tally.counted()
        if phases and self.tally.busy() >= SUMMARY_AFTER:
            self.note(summary_line([(p.desc, p.files, p.bytes) for p in phases], seconds))

    def note(self, message: str) -> None:
        """Informational text: stderr, so stdout stays the result."""
        if not self.quiet:
            print(printable(message), file=self.stderr, flush=True)

    def close(self) -> None:
        if self._service is not None:
            self._service.close()


def _target(
    ctx: Context, lookup: bool = False, completed: bool = False, closed_ok: bool = False
) -> DatasetRow:
    """The dataset a command acts on: --id, else --project/--name (with ``completed``, the
    latest final version unless --version), else the current dataset (with ``closed_ok``,
    else the version the last close finalized)."""
    args = ctx.args
    if args.id:
        return ctx.service.resolve_id(args.id)
    if lookup:
        project, name = getattr(args, "project", None), getattr(args, "name", None)
        version = getattr(args, "version", None)
        if project or name or version:
            if not (project and name):
                raise UsageError(
                    "--project and --name go together (and --version needs both)",
                    hint="pass --id, or both --project and --name",
                )
            return ctx.service.get(
                project=project, name=name, version=version, only_completed=completed and version is None
            )
    remembered = ctx.current.get()
    if remembered:
        try:
            return ctx.service.resolve_id(remembered)
        except DatasetNotFoundError:
            ctx.current.clear(remembered)
            raise DatasetNotFoundError(
                f"the current dataset {remembered} no longer exists", hint="pass --id"
            ) from None
    closed = ctx.current.last_closed()
    if closed:
        try:
            row = ctx.service.resolve_id(closed)
        except DatasetNotFoundError:
            row = None
        if row is not None and row.is_final:
            if closed_ok:
                return row
            if ctx.args.command in _DRAFT_COMMANDS:
                hint = (
                    "pass --id, or make a child version of it: "
                    f"clearml-data create --parents {row.id} --name NAME"
                )
            else:
                hint = f"pass --id {row.id} to use it"
            raise UsageError(
                f"no current dataset: the last one, {row.id} ({_label(row)}), was closed and is final",
                hint=hint,
            )
    raise UsageError(
        "no dataset given and no current dataset",
        hint="pass --id, or create one first with clearml-data create",
    )


#: the commands that change a draft (a final version is no target for them)
_DRAFT_COMMANDS = {"add", "remove", "upload", "sync"}


def _label(row: DatasetRow) -> str:
    return f"{row.project}/{row.name} version {row.version}"


# -- commands ------------------------------------------------------------------------------
def cmd_create(ctx: Context) -> Result:
    a = ctx.args
    ctx.note("Creating a new dataset:")
    row = ctx.service.create(
        name=a.name,
        project=a.project,
        parents=a.parents,
        version=a.version,
        storage=a.storage,
        tags=a.tags,
        description=a.description or "",
        check_storage=a.storage is not None,
    )
    _remember_new(ctx, row.id)
    ctx.on_abort = lambda: f"dataset {row.id} was created and is the current dataset"
    data, lines = shadowed(ctx.service.shadowed(row))
    return Result({**dataset_data(row), "shadowed": data}, [f"New dataset created id={row.id}", *lines])


def _remember_new(ctx: Context, dataset_id: str) -> None:
    """Make a draft just created the current dataset. If that fails (a full or read-only state
    folder, Ctrl-C), the draft goes too: a failed command leaves no draft behind, and running
    it again makes exactly one."""
    try:
        ctx.current.set(dataset_id)
    except BaseException:
        try:
            ctx.service.delete(dataset_id)
        except Exception as exc:  # noqa: BLE001 - the first failure is the one reported
            logging.getLogger(__name__).warning("the new draft %s could not be removed: %s", dataset_id, exc)
        raise


def cmd_add(ctx: Context) -> Result:
    a = ctx.args
    if not a.files and not a.links:
        raise UsageError("nothing to add", hint="pass --files PATH [PATH ...] or --links URL [URL ...]")
    row = _target(ctx)
    ctx.note(f"Adding files/folder/links to dataset id {row.id}")
    ctx.on_abort = lambda: (
        f"nothing was added to dataset {row.id} (an add is all or nothing); run the command again"
    )
    # one write for every item: a missing path or URL anywhere in the list adds nothing
    r = ctx.service.add(
        row.id,
        a.files,
        a.links,
        wildcard=a.wildcard,
        dataset_path=a.dataset_folder,
        recursive=not a.non_recursive,
        max_workers=a.max_workers,
        progress=ctx.progress,
        read_hash=a.read_hash,
        follow_symlinks=a.follow_symlinks,
    )
    ctx.on_abort = lambda: f"every file was added to dataset {row.id}"
    totals = {k: getattr(r, k) for k in ("added", "modified", "unchanged", "bytes")}
    if a.verbose:
        items = [str(p) for p in a.files] + [redact_url(u) for u in a.links]
        for item, counts in zip(items, r.per_item or [r], strict=True):
            ctx.note(
                f"{item}: {counts.added} added, {counts.modified} modified, {counts.unchanged} unchanged"
            )
    ctx.current.set(row.id)
    text = [f"{plural(totals['added'])} added"]
    if totals["modified"]:
        text.append(f"{plural(totals['modified'])} modified")
    return Result({"id": row.id, **totals}, text)


def cmd_remove(ctx: Context) -> Result:
    a = ctx.args
    row = _target(ctx)
    ctx.note(f"Removing files/folder from dataset id {row.id}")
    removed: list[str] = []
    for pattern, gone in ctx.service.remove_all(row.id, a.files, recursive=not a.non_recursive):
        if not gone:
            ctx.note(f"nothing matches {redact_url(pattern)!r}")
        removed += gone
    if a.verbose:
        for p in removed:
            ctx.note(f"removed {p}")
    ctx.current.set(row.id)
    return Result({"id": row.id, "removed": removed}, [f"{plural(len(removed))} removed"])


class _Events(WorkflowEvents):
    """The command line's side of a close or a sync: notes on stderr, the current dataset."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.before: str | None = None  # the current dataset before a draft was made
        self.made: str | None = None  # the draft the command made

    def created(self, row: DatasetRow) -> None:
        self.made = row.id
        self.before = self.ctx.current.get()
        self.ctx.current.set(row.id)

    def dropped(self, dataset_id: str) -> None:
        # the draft went again: the current dataset is what it was before the command
        if self.ctx.current.get() == dataset_id:
            self.ctx.current.set(self.before)

    def syncing(self, row: DatasetRow, folder: str) -> None:
        self.ctx.note(f"Syncing dataset id {row.id} to local folder {folder}")

    def closing(self, row: DatasetRow) -> None:
        self.ctx.note("Finalizing dataset")

    def uploading(self, row: DatasetRow, storage: str) -> None:
        self.ctx.note(f"Pending uploads, starting dataset upload to {redact_url(storage)}")


def _close_abort(ctx: Context, dataset_id: str, command: str) -> str:
    """What an interrupted close (or upload) left: a final version, or a draft that keeps what
    was stored, to resume."""
    try:
        row = ctx.service.resolve_id(dataset_id)
    except DatasetNotFoundError:
        return f"dataset {dataset_id} is gone (deleted by another process)"
    if row.is_final:
        return f"dataset {row.id} was closed before the interruption; nothing is left to do"
    return (
        f"dataset {row.id} is still a draft and keeps what was uploaded; run "
        f"`clearml-data {command} --id {row.id}` to resume"
    )


def _sync_abort(ctx: Context, events: _Events, dataset_id: str | None) -> str:
    """What an interrupted sync left: the draft it made is gone again (the current dataset as
    before), or the draft it synced into is as before or holds the whole folder."""
    made = events.made
    if made is not None:
        try:
            row = ctx.service.resolve_id(made)
        except DatasetNotFoundError:
            return (
                "no new version was made and the current dataset is as before; run the command "
                "again (content already uploaded is not uploaded again)"
            )
        if row.is_final:
            return f"dataset {row.id} was closed before the interruption; nothing is left to do"
        dataset_id = row.id
    if dataset_id is None:
        return "nothing was changed"
    try:
        row = ctx.service.resolve_id(dataset_id)
    except DatasetNotFoundError:
        return f"dataset {dataset_id} is gone (deleted by another process)"
    if row.is_final:
        return f"dataset {row.id} was closed before the interruption; nothing is left to do"
    return (
        f"dataset {row.id} is still a draft, with the folder synced into it whole or not at all; "
        "run the command again to finish"
    )


def _upload_data(ctx: Context, r: UploadResult) -> dict:
    if getattr(ctx.args, "verbose", False):
        ctx.note(
            f"{plural(r.objects, 'object')} written, {r.uploaded_bytes} bytes, "
            f"{r.skipped} contents already stored"
        )
    return {
        "storage": redact_url(r.storage),
        "files": r.files,
        "objects": r.objects,
        "uploaded_bytes": r.uploaded_bytes,
    }


def cmd_upload(ctx: Context) -> Result:
    a = ctx.args
    row = _target(ctx)
    ctx.note(f"uploading local files to dataset id {row.id}")
    ctx.on_abort = lambda: _close_abort(ctx, row.id, "upload")
    _Events(ctx).uploading(row, a.storage or row.storage)
    r = ctx.service.upload(
        row.id, storage=a.storage, chunk_size=a.chunk_size, max_workers=a.max_workers, progress=ctx.progress
    )
    data = _upload_data(ctx, r)
    ctx.current.set(row.id)
    return Result({"id": row.id, **data}, ["Dataset upload completed"])


def _closed_data(ctx: Context, closed: Closed) -> tuple[dict, list[str]]:
    """JSON data of a version just closed, and the text lines on what it shadows."""
    data: dict = {"id": closed.row.id}
    if closed.upload is not None:
        data["upload"] = _upload_data(ctx, closed.upload)
    ctx.current.closed(closed.row.id)
    data.update(dataset_data(closed.row))
    data["shadowed"], lines = shadowed(closed.shadowed)
    return data, lines


def cmd_close(ctx: Context) -> Result:
    a = ctx.args
    row = _target(ctx, closed_ok=True)  # a final one: the service says it is final already
    ctx.on_abort = lambda: _close_abort(ctx, row.id, "close")
    ctx.note(f"Finalizing dataset id {row.id}")
    closed = ctx.service.close_dataset(
        row.id,
        storage=a.storage,
        upload=not a.disable_upload,
        chunk_size=a.chunk_size,
        max_workers=a.max_workers,
        progress=ctx.progress,
        events=_Events(ctx),
    )
    data, lines = _closed_data(ctx, closed)
    return Result(data, ["Dataset closed and finalized", *lines])


def cmd_sync(ctx: Context) -> Result:
    a = ctx.args
    creates = bool(a.parents or a.project or a.name)  # else: into the draft named by --id or current
    into = None if creates else _target(ctx).id
    events = _Events(ctx)
    ctx.on_abort = lambda: _sync_abort(ctx, events, into)
    r = ctx.service.sync(
        a.folder,
        dataset_id=into,
        dataset_path=a.dataset_folder,
        project=a.project,
        name=a.name,
        parents=a.parents,
        version=a.version,
        storage=a.storage,
        tags=a.tags,
        skip_close=a.skip_close,
        chunk_size=a.chunk_size,
        max_workers=a.max_workers,
        progress=ctx.progress,
        events=events,
        follow_symlinks=a.follow_symlinks,
    )
    text = [f"New dataset created id={r.row.id}"] if r.created else []
    text.append(f"Sync completed: {r.removed} files removed, {r.added} added, {r.modified} modified")
    data: dict = {
        "id": r.row.id,
        "created": r.created,
        "removed": r.removed,
        "added": r.added,
        "modified": r.modified,
        "closed": False,
    }
    if r.reverted:
        data["reverted"] = True
        text.append("Zero modifications on local copy, reverting dataset creation.")
        return Result(data, text)
    if r.closed is None:  # --skip-close
        ctx.current.set(r.row.id)
        data["shadowed"], lines = shadowed(r.shadowed)
        return Result(data, text + lines)
    closed, lines = _closed_data(ctx, r.closed)
    data.update(closed, closed=True)
    return Result(data, [*text, "Dataset closed and finalized", *lines])


def cmd_list(ctx: Context) -> Result:
    a = ctx.args
    row = _target(ctx, lookup=True)
    ctx.note(f"List dataset content: {row.project}/{row.name} version {row.version} id={row.id}")
    files = ctx.service.list_files(row, a.filter, only_from=row.id if a.modified else None)
    total = sum(f.size for f in files)
    info = ctx.service.link_entries(row)
    links = {p: i.link for p, i in info.items()}

    def shown_hash(f) -> str:  # an external file added without --read-hash has none (ClearML: None)
        return f.hash if f.path not in info or info[f.path].hashed else "None"

    if a.verbose:
        text = table(
            ["file name", "size", "hash", "version", "link", "fingerprint"],
            [
                (
                    f.path,
                    f"{f.size:,}",
                    shown_hash(f),
                    f.dataset_id,
                    redact_url(links.get(f.path, "")),
                    fingerprint_text(info[f.path].fingerprint) if f.path in info else "",
                )
                for f in files
            ],
            right=(1,),
        )
    else:
        text = table(
            ["file name", "size", "hash"],
            [(f.path, f"{f.size:,}", shown_hash(f)) for f in files],
            right=(1,),
        )
    text.append(f"Total {plural(len(files))}, {total:,} bytes")
    data = {
        "id": row.id,
        "files": [
            {
                "path": f.path,
                "size": f.size,
                "hash": f.hash if f.path not in info or info[f.path].hashed else None,
                "dataset_id": f.dataset_id,
                "link": redact_url(links[f.path]) if f.path in links else None,
                **({"fingerprint": fingerprint_parts(info[f.path].fingerprint)} if f.path in info else {}),
            }
            for f in files
        ],
        "total_files": len(files),
        "total_size": total,
    }
    return Result(data, text)


def cmd_show(ctx: Context) -> Result:
    summary = ctx.service.summary(_target(ctx, lookup=True))
    return Result(summary_data(summary), summary_lines(summary))


def cmd_delete(ctx: Context) -> Result:
    a = ctx.args
    if a.entire_dataset:
        if not (a.project and a.name):
            raise UsageError("--entire-dataset needs --project and --name")
        ctx.note(f"Deleting dataset with project={a.project}, name={a.name} (all versions)")
        deleted = ctx.service.delete(project=a.project, name=a.name, entire=True, force=a.force)
    else:
        row = _target(ctx, lookup=True)
        if a.id:
            ctx.note(f"Deleting dataset id {row.id}")
        else:
            ctx.note(f"Deleting dataset with project={row.project}, name={row.name}, version={row.version}")
        ctx.on_abort = lambda: _delete_abort(ctx, row.id)
        deleted = ctx.service.delete(row.id, force=a.force)
    for did in deleted:
        ctx.current.clear(did)
    return Result({"deleted": deleted}, [f"Dataset(s) deleted: {', '.join(deleted)}"])


def _delete_abort(ctx: Context, dataset_id: str) -> str:
    try:
        ctx.service.resolve_id(dataset_id)
    except DatasetNotFoundError:
        return f"dataset {dataset_id} was deleted before the interruption"
    return f"dataset {dataset_id} was not deleted; run the command again"


def cmd_search(ctx: Context) -> Result:
    a = ctx.args
    rows = ctx.service.search(
        project=a.project,
        partial_name=a.name,
        tags=a.tags,
        ids=a.ids,
        only_completed=not a.not_only_completed,
    )
    text = table(
        ["project", "name", "version", "tags", "created", "id", "status"],
        [
            (
                r.project,
                r.name,
                r.version,
                ", ".join(r.tags),
                r.created_at[:19].replace("T", " "),
                r.id,
                r.status,
            )
            for r in rows
        ],
    )
    return Result([dataset_data(r) for r in rows], text)


def cmd_get(ctx: Context) -> Result:
    a = ctx.args
    if a.storage:
        row = ctx.service.resolve_or_restore(a.id, a.storage)
    else:
        row = _target(ctx, lookup=True, completed=True)
    if a.files is not None:
        _check_patterns(ctx, row, a.files)
    ctx.note(f"Download dataset id {row.id}")
    copy = ctx.service.local_copy(
        row.id,
        copy_to=a.copy,
        link=a.link,
        overwrite=a.overwrite,
        max_workers=a.max_workers,
        part=a.part,
        num_parts=a.num_parts,
        progress=ctx.progress,
        files=a.files,
    )
    if a.verbose:
        ctx.note(f"{plural(copy.files)}, {copy.bytes:,} bytes")
    return Result(
        {"id": row.id, "path": copy.path, "files": copy.files, "bytes": copy.bytes},
        [f"Dataset local copy available for files at: {copy.path}"],
    )


def _check_patterns(ctx: Context, row: DatasetRow, patterns: list[str]) -> None:
    """Refuse a ``get --files`` pattern that matches no file of the version: a typo would
    otherwise give an empty (or short) copy that looks like a success."""
    for pattern in patterns:
        if not ctx.service.list_files(row, pattern):
            raise UsageError(
                f"no file of dataset {row.id} matches {pattern!r}",
                hint=f"clearml-data list --id {row.id} lists its files",
            )


#: bytes ``cat`` reads and writes at a time: its memory stays about this, whatever the file's size
CAT_CHUNK = 1024 * 1024


def cmd_cat(ctx: Context) -> Result:
    """One file of a version to stdout, unchanged, a block at a time: the file is never held
    whole, and its last bytes are written only once its SHA-256 has been checked."""
    if ctx.json:
        raise UsageError(
            "cat writes the file's bytes to stdout, which leaves no room for the --json envelope",
            hint="drop --json; clearml-data list --json describes the files",
        )
    row, path = _cat_target(ctx)
    with _open_in_version(ctx, row, path) as fh:
        out = getattr(ctx.stdout, "buffer", None)  # bytes go to the binary stream under the text one
        if out is None:
            raise UsageError("cat needs a standard output that takes bytes")
        ctx.stdout.flush()
        try:
            while chunk := fh.read(CAT_CHUNK):
                out.write(chunk)
            out.flush()
        except BrokenPipeError:  # `clearml-data cat ... | head -c 10`: the reader has what it wanted
            _reader_left(ctx)
    return Result({"id": row.id, "path": path})


def _cat_target(ctx: Context) -> tuple[DatasetRow, str]:
    """The version and the file ``cat`` streams: from a clearml-data:// URL (which may hold
    the path), else from --id, --project/--name or the current dataset and the PATH given."""
    from ..urls import PREFIX, is_url, parse_url

    a = ctx.args
    if not is_url(a.target):
        if a.path is not None:
            raise UsageError(
                f"cat takes one file: {a.target!r} is not a {PREFIX} URL, so {a.path!r} is one too many",
                hint="pass one PATH, or a URL of the version followed by the PATH",
            )
        return _target(ctx, lookup=True, completed=True), a.target
    if a.id or a.project or a.name or a.version:
        raise UsageError(
            f"a {PREFIX} URL names the version itself",
            hint="drop --id, --project, --name and --version, or pass a PATH instead of the URL",
        )
    ref = parse_url(a.target)
    if ref.path and a.path is not None:
        raise UsageError(
            f"the URL already names the file {ref.path!r}; {a.path!r} is one too many",
            hint="pass the URL of the version and then the PATH, or the URL of the file alone",
        )
    path = ref.path or a.path
    if not path:
        raise UsageError(
            f"{a.target} names a version, not a file",
            hint=f"add the file's path to the URL ({ref.reference}/PATH), or pass it after the URL",
        )
    return ctx.service.resolve_url(ref), path


def _open_in_version(ctx: Context, row: DatasetRow, path: str) -> VersionFile:
    """The version's file at ``path``, open for reading; a path that is no file of the
    version is an error that says how to see the files it has."""
    try:
        return ctx.service.open_file(row.id, path)
    except (PathNotFoundError, NotAFileError) as exc:
        message = str(exc).removesuffix(f" ({exc.hint})") if exc.hint else str(exc)
        raise type(exc)(message, hint=f"clearml-data list --id {row.id} lists its files") from None


def _reader_left(ctx: Context) -> None:
    """The reader of stdout closed it: point the process's stdout at /dev/null, so that the
    flush at exit has somewhere to go and the command ends quietly, with exit code 0."""
    import os
    import sys

    if ctx.stdout is sys.__stdout__:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.__stdout__.fileno())


def cmd_verify(ctx: Context) -> Result:
    a = ctx.args
    row = _target(ctx)
    repaired = None
    if a.repair:
        ctx.note(f"Verifying dataset id {row.id} in {redact_url(row.storage)}")
        report = ctx.service.verify_storage(
            row, full=not a.filesize, max_workers=a.max_workers, progress=ctx.progress
        )
        repaired = ctx.service.repair(row, a.folder, max_workers=a.max_workers, progress=ctx.progress)
    elif a.folder:
        ctx.note(f"Verifying local copy {a.folder} of dataset id {row.id}")
        report = ctx.service.verify_folder(
            row, a.folder, skip_hash=a.filesize, max_workers=a.max_workers, progress=ctx.progress
        )
    else:
        ctx.note(f"Verifying dataset id {row.id} in {redact_url(row.storage)}")
        report = ctx.service.verify_storage(
            row, full=not a.filesize, max_workers=a.max_workers, progress=ctx.progress
        )
    text = [f"{p.path}: {p.problem}{' (' + p.detail + ')' if p.detail else ''}" for p in report.problems]
    if a.verbose:
        ctx.note(
            f"checked {plural(report.checked)}, {report.bytes:,} bytes{' (sizes only)' if a.filesize else ''}"
        )
    n = len(report.problems)
    text.append(
        f"Dataset verification completed, {n} errors found!"
        if n
        else "Dataset verification completed successfully, no errors found."
    )
    data = {
        "id": row.id,
        "checked": report.checked,
        "bytes": report.bytes,
        "mode": ("folder" if a.folder and not a.repair else "storage") + ("-size" if a.filesize else ""),
        "problems": [{"path": p.path, "problem": p.problem, "detail": p.detail} for p in report.problems],
    }
    if repaired is None:
        return Result(data, text, code=1 if n else 0)
    left = ctx.service.still_damaged(report, repaired)
    text += [f"repaired {p} (from {repaired.sources[p]})" for p in repaired.repaired]
    external = {p.path for p in report.problems if p.problem == "changed"}
    text += [
        f"not repaired {p}: an external file, changed where it lives (add it again in a new version)"
        if p in external
        else f"not repaired {p}: no intact local copy (the cache, or --folder DIR)"
        for p in left
    ]
    text.append(
        f"Repair completed: {plural(len(repaired.repaired))} stored again, "
        f"{repaired.bytes:,} bytes in {plural(repaired.objects, 'object')}"
        + (f"; {plural(len(left))} still damaged" if left else "")
    )
    data["repaired"] = repaired.repaired
    data["sources"] = repaired.sources
    data["unrepaired"] = left
    return Result(data, text, code=1 if left else 0)


def cmd_publish(ctx: Context) -> Result:
    row = ctx.service.resolve_id(ctx.args.id)
    ctx.note(f"Publishing dataset id {row.id}")
    row = ctx.service.publish(row.id)
    return Result(dataset_data(row), ["Dataset published"])


def cmd_compare(ctx: Context) -> Result:
    a = ctx.args
    source = ctx.service.resolve_id(a.source)
    target = ctx.service.resolve_id(a.target)
    ctx.note(f"Comparing target dataset id {target.id} with source dataset id {source.id}")
    d = ctx.service.changes_against(target, source.id)
    text: list[str] = []
    if a.verbose:
        for title, paths in (
            ("Removed files:", d.removed),
            ("Modified files:", d.modified),
            ("Added files:", d.added),
        ):
            text.append(title)
            text += [f"  {p}" for p in paths]
    text.append(
        f"Comparison summary: {plural(len(d.removed))} removed, "
        f"{plural(len(d.modified))} modified, {plural(len(d.added))} added"
    )
    return Result(
        {
            "source": source.id,
            "target": target.id,
            "added": d.added,
            "modified": d.modified,
            "removed": d.removed,
        },
        text,
    )


def cmd_squash(ctx: Context) -> Result:
    a = ctx.args
    ctx.note(f"Squashing datasets {', '.join(a.ids)} into a new dataset {a.name!r}")
    row = ctx.service.squash(a.name, ids=a.ids, storage=a.storage, project=a.project, progress=ctx.progress)
    if a.verbose:
        ctx.note(f"{plural(row.file_count or 0)}, {row.total_size or 0:,} bytes")
    return Result(dataset_data(row), [f"Squashing completed, new dataset created id={row.id}"])


def cmd_set_description(ctx: Context) -> Result:
    a = ctx.args
    row = _target(ctx)
    ctx.note(f"Setting description {a.description!r} to dataset {row.id}")
    row = ctx.service.update(row.id, description=a.description)
    return Result(dataset_data(row), ["Description set"])


def cmd_rename(ctx: Context) -> Result:
    a = ctx.args
    ids = ctx.service.rename(a.project, a.name, a.new_name)
    return Result(
        {"renamed": ids, "project": a.project, "name": a.new_name},
        [
            f"Dataset(s) renamed: {plural(len(ids), 'version')} of {a.project}/{a.name} "
            f"{'is' if len(ids) == 1 else 'are'} now {a.project}/{a.new_name}"
        ],
    )


def cmd_move(ctx: Context) -> Result:
    a = ctx.args
    ids = ctx.service.move(a.project, a.name, a.new_project)
    return Result(
        {"moved": ids, "project": a.new_project, "name": a.name},
        [
            f"Dataset(s) moved: {plural(len(ids), 'version')} of {a.project}/{a.name} "
            f"{'is' if len(ids) == 1 else 'are'} now in {a.new_project}"
        ],
    )


def cmd_cache(ctx: Context) -> Result:
    a = ctx.args
    if a.action == "prune":
        r = ctx.service.prune_cache(a.max_size)
        return Result(
            {
                "freed_bytes": r.freed_bytes,
                "objects": r.objects,
                "copies": r.copies,
                "remaining_bytes": r.remaining_bytes,
            },
            [
                f"Cache pruned: {size(r.freed_bytes)} freed ({plural(r.objects, 'content')}, "
                f"{plural(len(r.copies), 'local copy')}); {size(r.remaining_bytes)} left"
            ],
        )
    if a.action == "clear":
        r = ctx.service.clear_cache()
        return Result(
            {"freed_bytes": r.freed_bytes, "objects": r.objects, "copies": r.copies},
            [f"Cache cleared: {size(r.freed_bytes)} freed"],
        )
    u = ctx.service.cache_usage()
    limit = ctx.settings.cache_max_size
    text = [
        f"cache:        {u.root}",
        f"size:         {size(u.total_bytes)}"
        f"{f' (limit {size(limit)})' if limit is not None else ' (no limit)'}",
        f"contents:     {plural(u.objects, 'object')}, {size(u.object_bytes)}",
        f"local copies: {len(u.copies)}",
    ]
    text += [f"  {c.name}  {plural(c.files)}" for c in sorted(u.copies, key=lambda c: -c.last_used)]
    return Result(
        {
            "path": u.root,
            "total_bytes": u.total_bytes,
            "limit_bytes": limit,
            "objects": u.objects,
            "object_bytes": u.object_bytes,
            "tmp_bytes": u.tmp_bytes,
            "copies": [
                {"name": c.name, "files": c.files, "own_bytes": c.own_bytes, "last_used": c.last_used}
                for c in u.copies
            ],
        },
        text,
    )


def cmd_catalog(ctx: Context) -> Result:
    return rebuild_result(ctx.service.rebuild_catalog(ctx.args.storage), ctx.note)


def cmd_gc(ctx: Context) -> Result:
    a = ctx.args
    return gc_result(
        ctx.service.collect_garbage(a.storage, delete=a.delete, min_age=a.min_age),
        ctx.note,
        verbose=a.verbose,
    )


def cmd_plugins(ctx: Context) -> Result:
    report = ctx.service.plugins_report()
    if report.error is not None:  # two plugins claim one scheme: no table can be right
        raise report.error
    data = [
        {
            "name": p.name,
            "package": p.package,
            "version": p.version,
            "status": p.status,
            "schemes": p.schemes,
            "error": p.error or None,
        }
        for p in report.plugins
    ]
    return Result(data, plugins_table(data))


def cmd_import_offline(ctx: Context) -> Result:
    a = ctx.args
    if a.finalize and a.skip_upload:
        raise UsageError("--finalize needs the content uploaded", hint="drop --skip-upload")
    ctx.note(f"Importing the ClearML offline session {a.path}")
    row, session = ctx.service.import_offline_session(
        a.path,
        upload=not a.skip_upload,
        finalize=a.finalize,
        storage=a.storage,
        max_workers=a.max_workers,
        progress=ctx.progress,
    )
    if not row.is_final:
        _remember_new(ctx, row.id)
    files = len(session.files) + len(session.links)
    return Result(
        {**dataset_data(row), "clearml_id": session.clearml_id, "files": files},
        [
            f"Imported ClearML dataset {session.clearml_id} as id={row.id} "
            f"({row.project}/{row.name} {row.version}, {plural(files)}, {row.status})"
        ],
    )


def cmd_doctor(ctx: Context) -> Result:
    info = ctx.service.doctor()
    return Result(info, doctor_lines(info))


def plugin_packages(ctx: Context) -> list[str]:
    """The top-level import names of the loaded storage plugins (their loggers' names)."""
    return ctx.service.plugins_report().packages


COMMANDS: dict[str, Callable[[Context], Result]] = {
    "create": cmd_create,
    "add": cmd_add,
    "remove": cmd_remove,
    "upload": cmd_upload,
    "close": cmd_close,
    "sync": cmd_sync,
    "list": cmd_list,
    "show": cmd_show,
    "delete": cmd_delete,
    "search": cmd_search,
    "get": cmd_get,
    "cat": cmd_cat,
    "verify": cmd_verify,
    "publish": cmd_publish,
    "compare": cmd_compare,
    "squash": cmd_squash,
    "set-description": cmd_set_description,
    "rename": cmd_rename,
    "move": cmd_move,
    "cache": cmd_cache,
    "plugins": cmd_plugins,
    "catalog": cmd_catalog,
    "gc": cmd_gc,
    "doctor": cmd_doctor,
    "import-offline": cmd_import_offline,
}
