"""Repair: store again the contents that verify found damaged, from an intact local source.

A content of a version whose stored location is marked damaged (see
:func:`clearml_data.service.verify.verify_storage`) is looked for in the local cache and, when
given, in a local folder (files matched by size, then by SHA-256). Each source is hashed before
it is used, and again while it is copied into the object or pack that is stored, so only the
right bytes are ever written.

The replacement goes where any upload puts content: a large file back under its own
content-addressed key (an atomic put of exactly the bytes that key names), small files into a
new pack. Objects in storage are still never changed into something else. The content's
location row is replaced only after the new object is seen in the storage, inside a catalog
write transaction (as an upload records it), and every version reads a content through that
one row, so every version that needed the damaged bytes reads the new ones. A crash before the
row is replaced leaves the content marked damaged and the old versions as readable as before;
the new object is then unreferenced, and gc collects it.
"""

from __future__ import annotations

import os

from .. import packs
from ..catalog import DatasetRow, ObjectRow
from ..diskspace import space_for
from ..errors import UsageError
from ..hashing import sha256_file
from ..parallel import ordered_map
from ..progress import ProgressFactory, Streamed, null_progress
from .locations import stored_by_upload
from .results import RepairReport, VerifyReport
from .upload import _put, record_stored
from .views import view
from .workspace import Workspace


def repair(
    ws: Workspace,
    row: DatasetRow,
    folder: str | os.PathLike | None = None,
    max_workers: int | None = None,
    progress: ProgressFactory = null_progress,
) -> RepairReport:
    """Store again every content of the version whose location is marked damaged, from the
    local cache or ``folder``; the others are named in ``unrepaired``."""
    root = None
    if folder is not None:
        root = os.path.abspath(os.path.expanduser(os.fspath(folder)))
        if not os.path.isdir(root):
            raise UsageError(f"no such folder: {root}")
    current = view(ws, row)
    paths_of: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    for p, (h, size, _origin) in current.items():
        paths_of.setdefault(h, []).append(p)
        sizes[h] = size
    report = RepairReport()
    by_storage: dict[str, list[ObjectRow]] = {}
    for loc in ws.catalog.damaged_objects(paths_of):
        if stored_by_upload(loc.key, loc.hash):
            by_storage.setdefault(loc.storage, []).append(loc)
    if not by_storage:
        return report
    wanted = {loc.hash: sizes[loc.hash] for locs in by_storage.values() for loc in locs}
    sources = _cached_sources(ws, wanted, max_workers)
    cached = set(sources)
    if root is not None and len(sources) < len(wanted):
        rest = {h: s for h, s in wanted.items() if h not in sources}
        sources.update(_folder_sources(root, rest, max_workers))
    for storage in sorted(by_storage):
        todo = {loc.hash for loc in by_storage[storage]}
        own = {loc.hash for loc in by_storage[storage] if not packs.is_pack_key(loc.key)}
        files = [packs.PendingFile(h, sizes[h], sources[h]) for h in sorted(todo) if h in sources]
        stored = _store(ws, storage, files, own, max_workers, progress)
        report.objects += stored[0]
        report.bytes += stored[1]
        for h in sorted(todo):
            names = paths_of[h]
            if h in stored[2]:
                report.repaired += names
                report.sources.update(dict.fromkeys(names, "cache" if h in cached else sources[h]))
            else:
                report.unrepaired += names
    report.repaired.sort()
    report.unrepaired = sorted(set(report.unrepaired) - set(report.repaired))
    return report


def still_damaged(found: VerifyReport, fixed: RepairReport | None = None) -> list[str]:
    """The paths a verify (and a repair after it) leaves damaged: the storage's problems that
    were not repaired. A damaged cached copy is removed from the cache by verify, so the next
    ``get`` fetches it again: it stays damaged nowhere."""
    bad = {p.path for p in found.problems if not p.in_cache}
    if fixed is not None:
        bad = (bad - set(fixed.repaired)) | set(fixed.unrepaired)
    return sorted(bad)


def _cached_sources(ws: Workspace, wanted: dict[str, int], max_workers: int | None) -> dict[str, str]:
    """{hash: cache file} of the wanted contents whose cached copy hashes right now."""
    candidates = []
    for h, size in wanted.items():
        path = ws.cache.object_file(h)
        try:
            if os.stat(path).st_size == size:
                candidates.append((h, path))
        except OSError:
            continue
    return {h: path for (h, path), ok in ordered_map(_hashes_to, candidates, max_workers) if ok}


def _folder_sources(root: str, wanted: dict[str, int], max_workers: int | None) -> dict[str, str]:
    """{hash: file under ``root``} for the wanted contents found there: files of a wanted size
    are hashed (each once), the first that matches serves."""
    by_size: dict[int, set[str]] = {}
    for h, size in wanted.items():
        by_size.setdefault(size, set()).add(h)
    candidates = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                if not os.path.isfile(path):
                    continue
                size = os.path.getsize(path)
            except OSError:
                continue
            if size in by_size:
                candidates.append(path)
    found: dict[str, str] = {}
    for path, digest in ordered_map(_digest, candidates, max_workers):
        if digest in wanted and digest not in found:
            found[digest] = path
    return found


def _hashes_to(item: tuple[str, str]) -> bool:
    digest, path = item
    return _digest(path) == digest


def _digest(path: str) -> str | None:
    try:
        return sha256_file(path)[0]
    except OSError:
        return None


def _store(
    ws: Workspace,
    storage: str,
    files: list[packs.PendingFile],
    own: set[str],
    max_workers: int | None,
    progress: ProgressFactory,
) -> tuple[int, int, set[str]]:
    """Store ``files`` in ``storage`` as an upload does, those of ``own`` (hashes) as their own
    objects again; returns (objects, bytes, the hashes whose new location is recorded)."""
    if not files:
        return 0, 0, set()
    driver = ws.driver(storage)
    plan = packs.plan_upload([f for f in files if f.hash not in own], None)
    tasks = [("pack", group) for group in plan.packs] + [
        ("large", [f]) for f in [*plan.large, *(f for f in files if f.hash in own)]
    ]
    bar = Streamed(progress(sum(f.size for f in files), "B", "Repairing", files=len(files)))
    tmp_dir = str(ws.cache.tmp)
    ws.cache.ensure()

    def run(task: tuple[str, list[packs.PendingFile]]) -> list[ObjectRow]:
        kind, group = task
        if kind == "large":
            f = group[0]
            key = packs.object_key(f.hash)
            with ws.cache.in_use():
                local = ws.cache.ingest(f)  # hash-checked as copied: exactly these bytes are sent
                _put(driver, str(local), key, storage, callback=bar.callback(f.hash))
            return [ObjectRow(storage, f.hash, key, 0, f.size)]
        with space_for(ws.cache.root, "the cache"):
            digest, tmp, entries = packs.write_pack(group, tmp_dir)  # hash-checked as copied
        try:
            _put(driver, tmp, packs.pack_key(digest), storage)
        finally:
            os.unlink(tmp)
        return [ObjectRow(storage, h, packs.pack_key(digest), off, n) for h, off, n in entries]

    objects = nbytes = 0
    done: set[str] = set()
    workers = max_workers or driver.default_max_workers
    ws.plugins.budget.ensure(workers)
    try:
        for task, rows in ordered_map(run, tasks, workers, window=16):
            if rows and record_stored(ws, driver, storage, rows):
                objects += 1
                n = sum(f.size for f in task[1])
                nbytes += n
                done.update(r.hash for r in rows)
                bar.done(task[1][0].hash if task[0] == "large" else id(task), n, files=len(task[1]))
    finally:
        bar.close()
    return objects, nbytes, done
