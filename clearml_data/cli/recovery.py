"""Rendering of ``clearml-data catalog rebuild`` and ``clearml-data gc``."""

from __future__ import annotations

from datetime import datetime, timezone

from ..service import GcReport, RebuildReport
from ..storage import redact_url
from .main import Context, Result, _plural, _size


def rebuild_result(ctx: Context, r: RebuildReport) -> Result:
    ctx.note(f"Rebuilding the catalog from the manifests in {redact_url(r.storage)}")
    text = [f"{problem}" for problem in r.conflicts + r.damaged]
    text.append(f"Catalog rebuilt: {_plural(len(r.restored), 'version')} restored, "
                f"{len(r.present)} already in the catalog, {_plural(r.deleted, 'deleted version')} skipped"
                + (f", {len(r.flattened)} restored without a missing parent" if r.flattened else "")
                + (f", {_plural(len(r.conflicts) + len(r.damaged), 'problem')}"
                   if r.conflicts or r.damaged else ""))
    if r.refused:
        ctx.note(f"{_plural(r.refused, 'location')} outside {redact_url(r.storage)} not recorded"
                 + (f" (other storages: {', '.join(r.elsewhere)}; rebuild from them too to read those files)"
                    if r.elsewhere else ""))
    data = {"storage": redact_url(r.storage), "manifests": r.manifests, "restored": r.restored,
            "present": r.present, "flattened": r.flattened, "deleted": r.deleted,
            "conflicts": r.conflicts, "damaged": r.damaged, "objects": r.objects,
            "refused": r.refused, "elsewhere": r.elsewhere}
    return Result(data, text, code=1 if r.conflicts or r.damaged else 0)


def gc_result(ctx: Context, r: GcReport) -> Result:
    ctx.note(f"Collecting garbage in {redact_url(r.storage)}" + (" (dry run)" if r.dry_run else ""))
    text: list[str] = []
    if getattr(ctx.args, "verbose", False):
        keys = [k for k, _s in r.unreferenced] if r.dry_run else r.deleted
        text += [("would delete " if r.dry_run else "deleted ") + k for k in keys]
        aborted = [(k, st) for k, st, _u in r.unfinished] if r.dry_run else [(k, None) for k in r.aborted]
        text += [("would abort the unfinished upload of " if r.dry_run else "aborted the unfinished upload of ")
                 + k + (f" (started {_when(st)})" if st else "") for k, st in aborted]
    found = sum(s for _k, s in r.unreferenced)
    summary = (f"{_plural(r.listed, 'object')} in storage, {r.referenced} needed, "
               f"{r.too_young} younger than the minimum age")
    if r.dry_run:
        text.append(f"{summary}; {_plural(len(r.unreferenced), 'object')} ({_size(found)}) would be deleted "
                    "(dry run: pass --delete to delete them)")
    else:
        text.append(f"{summary}; {_plural(len(r.deleted), 'object')} deleted ({_size(r.deleted_bytes)})")
    if r.unfinished or r.unfinished_too_young:
        pending = f"{_plural(len(r.unfinished) + r.unfinished_too_young, 'unfinished upload')} " \
                  f"({r.unfinished_too_young} younger than the minimum age)"
        if r.dry_run:
            text.append(f"{pending}; {len(r.unfinished)} would be aborted (dry run: pass --delete to abort them)")
        else:
            text.append(f"{pending}; {len(r.aborted)} aborted"
                        + (f", {r.abort_failed} could not be aborted" if r.abort_failed else ""))
    data = {"storage": redact_url(r.storage), "dry_run": r.dry_run, "min_age": r.min_age,
            "manifests": r.manifests, "listed": r.listed, "referenced": r.referenced,
            "too_young": r.too_young, "unreferenced": [{"key": k, "size": s} for k, s in r.unreferenced],
            "deleted": r.deleted, "deleted_bytes": r.deleted_bytes, "kept_by_recheck": r.kept_by_recheck,
            "unfinished": [{"key": k, "started": st, "upload_id": u} for k, st, u in r.unfinished],
            "unfinished_too_young": r.unfinished_too_young, "aborted": r.aborted,
            "abort_failed": r.abort_failed}
    return Result(data, text, code=1 if r.abort_failed else 0)


def _when(started: float) -> str:
    return datetime.fromtimestamp(started, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
