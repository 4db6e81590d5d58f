"""What ``clearml-data`` prints: a command's :class:`Result` as text lines or as the ``--json``
envelope, and the shared pieces of that text (tables, sizes, counts, dataset records).

Nothing here calls the service or touches a file: a renderer turns what a service call
returned into a Result, and the command line prints it. Text bound for a terminal goes
through :func:`printable` so a crafted name cannot send escape sequences.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..storage import fingerprint_parts, redact_url

if TYPE_CHECKING:
    from ..service import DatasetRow, GcReport, RebuildReport, ShadowedFile, VersionSummary

#: the version of the ``--json`` envelope's layout
RESULT_VERSION = "1"

#: how many shadowed files a text report lists before it says "and N more"
SHADOWED_SHOWN = 20


#: the flag of each Python parameter name an error may mention (``ClearMLDataError.params``):
#: the API shows the parameter, the command line the flag that sets it
FLAGS = {
    "part": "--part",
    "num_parts": "--num-parts",
    "partial_name": "--name",
    "dataset_name": "--name",
    "dataset_project": "--project",
    "force": "--force",
}


def with_flags(text: str, params: Sequence[str]) -> str:
    """``text`` with each parameter name of ``params`` (whole words) written as its flag."""
    for name in params:
        flag = FLAGS.get(name)
        if flag:
            text = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", flag, text)
    return text


@dataclass
class Result:
    data: Any = None
    text: list[str] = field(default_factory=list)
    code: int = 0  #: exit code of a command that ran but found problems (verify)


def envelope(command: str, status: str, data: Any, errors: list[dict]) -> str:
    return json.dumps(
        {
            "clearml_data_result_version": RESULT_VERSION,
            "command": command,
            "status": status,
            "data": data,
            "errors": errors,
        },
        indent=2,
        default=str,
    )


def printable(text: str) -> str:
    """Text for a terminal: control and other invisible characters (a name from a crafted
    catalog, a file name with an escape sequence) are shown escaped, never sent raw."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def fingerprint_text(fp: str | None) -> str:
    """An external file's fingerprint for people: "etag=..., version=..." ("" for none)."""
    return ", ".join(f"{k}={v}" for k, v in fingerprint_parts(fp).items())


def plural(n: int, word: str = "file") -> str:
    """``n`` with thousands separators, as the progress bars show counts: "20,000 files"."""
    if n == 1:
        return f"{n} {word}"
    return f"{n:,} {word[:-1]}ies" if word.endswith("y") else f"{n:,} {word}s"


#: the summary line's verb for each kind of progress bar
_DONE = {
    "Hashing": "hashed",
    "Hashing links": "hashed external",
    "Uploading": "uploaded",
    "Downloading": "downloaded",
    "Linking": "linked",
    "Copying": "copied",
    "Verifying": "verified",
}


def summary_line(phases: list[tuple[str, int, int]], seconds: float) -> str:
    """ "Hashed 20,000 files (9.8 MiB), uploaded 20,000 files (9.8 MiB) in 3.1 s" from the
    (bar, files, bytes) a command counted."""
    parts = [
        f"{_DONE.get(desc, desc.lower())} {plural(files)} ({size(nbytes)})" for desc, files, nbytes in phases
    ]
    text = ", ".join(parts) + f" in {seconds:.1f} s"
    return text[:1].upper() + text[1:]


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    widths: Sequence[int] = (),
    right: Sequence[int] = (),
) -> list[str]:
    cols = len(headers)
    w = [
        max([len(headers[i])] + [len(r[i]) for r in rows] + ([widths[i]] if i < len(widths) else []))
        for i in range(cols)
    ]

    def fmt(cells: Sequence[str]) -> str:
        return " | ".join(
            c.rjust(w[i]) if i in right else c.ljust(w[i]) for i, c in enumerate(cells)
        ).rstrip()

    return [fmt(headers), "-" * (sum(w) + 3 * (cols - 1))] + [fmt(r) for r in rows]


def dataset_data(row: DatasetRow) -> dict:
    return {
        "id": row.id,
        "project": row.project,
        "name": row.name,
        "version": row.version,
        "status": row.status,
        "storage": redact_url(row.storage),
        "parents": list(row.parents),
        "tags": list(row.tags),
        "description": row.description,
        "created_at": row.created_at,
        "finalized_at": row.finalized_at,
        "file_count": row.file_count,
        "total_size": row.total_size,
    }


def summary_data(s: VersionSummary) -> dict:
    """``show --json``: the version's record, its parents' labels, its counts, metadata names."""
    return {
        **dataset_data(s.row),
        "file_count": s.files,
        "total_size": s.bytes,
        "parent_versions": [
            {"id": p.id, "project": p.project, "name": p.name, "version": p.version, "status": p.status}
            for p in s.parents
        ],
        "metadata_names": s.metadata_names,
    }


def summary_lines(s: VersionSummary) -> list[str]:
    """``show``: one labelled line per fact, a line per parent."""
    row = s.row
    status = row.status + (f" (finalized {_stamp(row.finalized_at)})" if row.finalized_at else "")
    lines = [
        f"id:          {row.id}",
        f"dataset:     {row.project}/{row.name}",
        f"version:     {row.version}",
        f"status:      {status}",
        f"created:     {_stamp(row.created_at)}",
    ]
    if s.parents:
        lines += [
            f"{'parents:' if i == 0 else '':<12} {p.id} ({p.project}/{p.name} {p.version})"
            for i, p in enumerate(s.parents)
        ]
    else:
        lines.append("parents:     none")
    lines.append(f"files:       {s.files:,} ({size(s.bytes)})")
    if row.is_final and row.added is not None:
        lines.append(
            f"changes:     {row.added:,} added, {row.modified or 0:,} modified, "
            f"{row.removed or 0:,} removed (against the parents)"
        )
    lines += [
        f"storage:     {redact_url(row.storage)}",
        f"description: {' '.join(row.description.split()) or '-'}",
        f"tags:        {', '.join(row.tags) or '-'}",
        f"metadata:    {', '.join(s.metadata_names) or '-'}",
    ]
    return lines


def _stamp(iso: str | None) -> str:
    """A catalog time (ISO 8601, UTC) as a person reads it: to the second."""
    return (iso or "")[:19].replace("T", " ") + (" UTC" if iso else "")


def shadowed(found: Sequence[ShadowedFile]) -> tuple[list[dict], list[str]]:
    """What a version's later parents shadow of its earlier ones: JSON rows and text lines."""
    data = [
        {"path": f.path, "parent": f.parent, "by": f.by, "clash": f.clash, "by_kind": f.by_kind}
        for f in found
    ]
    if not found:
        return data, []
    lines = [f"{plural(len(found))} of earlier parents shadowed by later parents (a later parent wins):"]
    lines += [f"  {f.describe()}" for f in found[:SHADOWED_SHOWN]]
    if len(found) > SHADOWED_SHOWN:
        lines.append(f"  ... and {len(found) - SHADOWED_SHOWN} more (--json lists them all)")
    return data, lines


def plugins_table(report: Sequence[dict]) -> list[str]:
    """``clearml-data plugins``: one row per plugin, from the service's plugin report."""
    rows = [
        (
            ", ".join(f"{s}://" for s in p["schemes"]) or "-",
            p["name"],
            p["package"],
            p["version"],
            p["status"] + (f": {p['error']}" if p["error"] else ""),
        )
        for p in report
    ]
    return table(["schemes", "plugin", "package", "version", "status"], rows)


def doctor_lines(info: dict) -> list[str]:
    cat = info["catalog"]
    lines = [
        f"clearml-data {info['clearml_data']} (Python {info['python']}, SQLite {info['sqlite']})",
        f"config file:     {info['config_file']}",
        f"catalog:         {cat['path']}  [{cat.get('source')}]",
    ]
    if "error" in cat:
        lines.append(f"  error:         {cat['error']}")
    else:
        lines += [
            f"  filesystem:    {cat['filesystem']}, journal {cat['journal_mode']}, "
            f"lock {cat['lock_method']}" + (f" ({cat['lock_file']})" if cat.get("lock_file") else ""),
            f"  integrity:     {cat['integrity']}",
            f"  contents:      {plural(cat['counts']['datasets'], 'dataset')}, "
            f"{plural(cat['counts']['changes'], 'file row')}, "
            f"{plural(cat['counts']['objects'], 'stored content')}",
        ]
    lines += [
        f"default storage: {info['storage']['url']}  [{info['storage']['source']}]",
        f"cache:           {info['cache']['path']}  [{info['cache']['source']}]",
        f"  size limit:    {'none' if info['cache']['max_size'] is None else size(info['cache']['max_size'])}"
        f"  [{info['cache']['max_size_source']}]",
        f"  filesystem:    {info['cache']['filesystem']}, local copies use: {info['cache']['link_type']}",
        f"state:           {info['state_dir']}",
    ]
    cmd = info.get("command")
    if cmd:
        program = {"clearml-data": "this clearml-data", "clearml": "ClearML's (clearml package)"}.get(
            cmd["program"], cmd["program"]
        )
        lines.append(f"command:         {cmd['name']} on PATH: {cmd['path'] or 'none'}  [{program}]")
        if cmd.get("fix"):
            lines.append(f"  fix:           {cmd['fix']}")
    lines.append("plugins:")
    for p in info["plugins"]:
        extra = f" - {p['error']}" if p.get("error") else ""
        lines.append(f"  {p['name']:<10} {p['package']} {p['version']} ({p['status']}){extra}")
    drivers = info["drivers"]
    lines.append(
        "storage drivers: "
        + (
            ", ".join(f"{s}:// ({n})" for s, n in drivers.items())
            if "error" not in drivers
            else drivers["error"]
        )
    )
    return lines


# -- catalog rebuild and gc -------------------------------------------------------------------
def rebuild_result(r: RebuildReport, note: Callable[[str], None]) -> Result:
    note(f"Rebuilding the catalog from the manifests in {redact_url(r.storage)}")
    text = [f"{problem}" for problem in r.conflicts + r.damaged]
    text.append(
        f"Catalog rebuilt: {plural(len(r.restored), 'version')} restored, "
        f"{len(r.present)} already in the catalog, {plural(r.deleted, 'deleted version')} skipped"
        + (f", {len(r.flattened)} restored without a missing parent" if r.flattened else "")
        + (f", {plural(len(r.conflicts) + len(r.damaged), 'problem')}" if r.conflicts or r.damaged else "")
    )
    if r.refused:
        note(
            f"{plural(r.refused, 'location')} outside {redact_url(r.storage)} not recorded"
            + (
                f" (other storages: {', '.join(r.elsewhere)}; rebuild from them too to read those files)"
                if r.elsewhere
                else ""
            )
        )
    data = {
        "storage": redact_url(r.storage),
        "manifests": r.manifests,
        "restored": r.restored,
        "present": r.present,
        "flattened": r.flattened,
        "deleted": r.deleted,
        "conflicts": r.conflicts,
        "damaged": r.damaged,
        "objects": r.objects,
        "refused": r.refused,
        "elsewhere": r.elsewhere,
    }
    return Result(data, text, code=1 if r.conflicts or r.damaged else 0)


def gc_result(r: GcReport, note: Callable[[str], None], verbose: bool = False) -> Result:
    note(f"Collecting garbage in {redact_url(r.storage)}" + (" (dry run)" if r.dry_run else ""))
    text: list[str] = []
    if verbose:
        keys = [k for k, _s in r.unreferenced] if r.dry_run else r.deleted
        text += [("would delete " if r.dry_run else "deleted ") + k for k in keys]
        aborted = [(k, st) for k, st, _u in r.unfinished] if r.dry_run else [(k, None) for k in r.aborted]
        verb = "would abort" if r.dry_run else "aborted"
        text += [
            f"{verb} the unfinished upload of {k}" + (f" (started {_when(st)})" if st else "")
            for k, st in aborted
        ]
    found = sum(s for _k, s in r.unreferenced)
    summary = (
        f"{plural(r.listed, 'object')} in storage, {r.referenced} needed, "
        f"{r.too_young} younger than the minimum age"
    )
    if r.dry_run:
        text.append(
            f"{summary}; {plural(len(r.unreferenced), 'object')} ({size(found)}) would be deleted "
            "(dry run: pass --delete to delete them)"
        )
    else:
        text.append(f"{summary}; {plural(len(r.deleted), 'object')} deleted ({size(r.deleted_bytes)})")
    if r.unfinished or r.unfinished_too_young:
        pending = (
            f"{plural(len(r.unfinished) + r.unfinished_too_young, 'unfinished upload')} "
            f"({r.unfinished_too_young} younger than the minimum age)"
        )
        if r.dry_run:
            text.append(
                f"{pending}; {len(r.unfinished)} would be aborted (dry run: pass --delete to abort them)"
            )
        else:
            text.append(
                f"{pending}; {len(r.aborted)} aborted"
                + (f", {r.abort_failed} could not be aborted" if r.abort_failed else "")
            )
    data = {
        "storage": redact_url(r.storage),
        "dry_run": r.dry_run,
        "min_age": r.min_age,
        "manifests": r.manifests,
        "listed": r.listed,
        "referenced": r.referenced,
        "too_young": r.too_young,
        "unreferenced": [{"key": k, "size": s} for k, s in r.unreferenced],
        "deleted": r.deleted,
        "deleted_bytes": r.deleted_bytes,
        "kept_by_recheck": r.kept_by_recheck,
        "unfinished": [{"key": k, "started": st, "upload_id": u} for k, st, u in r.unfinished],
        "unfinished_too_young": r.unfinished_too_young,
        "aborted": r.aborted,
        "abort_failed": r.abort_failed,
    }
    return Result(data, text, code=1 if r.abort_failed else 0)


def _when(started: float) -> str:
    return datetime.fromtimestamp(started, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
