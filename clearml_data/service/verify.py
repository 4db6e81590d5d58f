"""Verification: is every file of a version intact, in storage, in the local cache, or in a
local copy?

In storage, every object the version needs is stat'ed and every entry checked against its
real size (fast mode: present and of the right size), then read and re-hashed (full mode).
An external file is also checked against the fingerprint its storage gave when it was added
(ETag, version, checksum or mtime): a change of size or fingerprint is reported as
``changed``, without a download; only one added with ``read_hash`` is re-hashed. A stored
object found missing or damaged is marked so in the catalog (:data:`DAMAGE`), so that dedup
stops trusting it (see :mod:`.repair`).
In the local cache, every cached object of the version and every file of its cached local
copies (``datasets/<id>*``) is checked too: fast mode compares sizes and the stat recorded
when the file's bytes were last checked (re-hashing only files whose stat changed), full mode
re-hashes each distinct file once. A damaged cache file is named by the dataset paths it
serves and removed from the cache (with the local copies that hold it), so the next ``get``
fetches it again.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from ..cache import Cache
from ..cache.links import remove_tree
from ..catalog import DatasetRow, ObjectRow
from ..catalog.validate import extent_problem
from ..errors import ClearMLDataError, UsageError
from ..hashing import EMPTY_SHA256, sha256_file
from ..parallel import batched, ordered_map
from ..paths import safe_join
from ..progress import ProgressFactory, null_progress
from ..storage import fingerprint_changed, redact_url
from .checkout import get_local_copy
from .external import link_entries, unhashed_links
from .locations import ByKey, by_stored_key, hash_range, stored_by_upload
from .results import Problem, VerifyReport
from .views import view
from .workspace import View, Workspace

#: the problems found in storage that mark the location damaged ("unreadable" may pass)
DAMAGE = ("missing", "size", "hash")  # ("changed": an external file, which is only reported)

#: {(dev, ino): (stat, hash, [(cache path, dataset path or "", copy folder or None)])}
CachedFiles = dict[tuple[int, int], tuple[os.stat_result, str, list[tuple[str, str, Path | None]]]]


def verify_storage(
    ws: Workspace,
    row: DatasetRow,
    full: bool = True,
    max_workers: int | None = None,
    progress: ProgressFactory = null_progress,
    cache: bool = True,
) -> VerifyReport:
    """Check every object the version needs: present and large enough, and (``full``) re-hashed;
    with ``cache``, also the version's content in the local cache (:meth:`verify_cache`)."""
    current = view(ws, row)
    paths_of: dict[str, list[str]] = {}
    for p, (h, _size, _origin) in current.items():
        paths_of.setdefault(h, []).append(p)
    sizes = {h: current[ps[0]][1] for h, ps in paths_of.items()}
    external = {i.hash: i for i in link_entries(ws, row, current).values()}
    unhashed = {h for h, i in external.items() if not i.hashed}
    locations = ws.catalog.locate_objects(paths_of)
    report = VerifyReport(checked=len(current), bytes=sum(v[1] for v in current.values()))
    by_key: ByKey = {}
    damaged: list[ObjectRow] = []
    for h in sorted(paths_of):
        if sizes[h] == 0:
            if h != EMPTY_SHA256:
                report.problems += [
                    Problem(p, "size", "the catalog gives it 0 bytes and the hash of other bytes")
                    for p in paths_of[h]
                ]
            continue
        locs = locations.get(h)
        if not locs:
            report.problems += [Problem(p, "missing", "no storage holds this content") for p in paths_of[h]]
            continue
        by_stored_key(by_key, h, locs, row.storage)
    bar = progress(
        sum(sizes[m[0]] for ms in by_key.values() for m in ms),
        "B",
        "Verifying" if full else "Checking",
        files=len(paths_of),
    )

    def check(item: tuple[tuple[str, str], list[tuple[str, int, int]]]) -> list[tuple[str, str, str]]:
        (storage, key), members = item
        driver = ws.driver(storage)
        where = f"{key} in {redact_url(storage)}"
        try:
            info = driver.stat(key)
        except FileNotFoundError as exc:
            why = exc.strerror if exc.strerror and not exc.strerror.startswith("no such object") else ""
            return [
                (h, "missing", f"{where} is missing{f' ({why})' if why else ''}") for h, _o, _n in members
            ]
        except OSError as exc:
            return [(h, "unreadable", f"{where}: {exc}") for h, _o, _n in members]
        size = info.size
        bad = []
        for h, off, n in members:  # each entry against the object's real size, before a byte is read
            link = external.get(h)
            if link is not None and not stored_by_upload(key, h):  # an external file, where it lives
                changed = fingerprint_changed(link.fingerprint, info.fingerprint)
                if changed or size != link.size:
                    what = "; ".join(changed) or f"size {link.size:,} -> {size:,} bytes"
                    bad.append((h, "changed", f"the external file {redact_url(link.link)} changed ({what})"))
                    continue
            if n != sizes[h]:
                bad.append(
                    (
                        h,
                        "size",
                        f"the catalog records {n:,} bytes for it in {where}, its file rows {sizes[h]:,}",
                    )
                )
                continue
            problem = extent_problem(key, [(h, off, n)], size)
            if problem:
                bad.append((h, "size", f"{where} {problem}"))
        if not full:
            return bad
        short = {b[0] for b in bad}
        for h, off, n in members:
            if h in short or h in unhashed:  # no hash to compare: its size and fingerprint were
                continue
            try:
                digest = hash_range(driver, key, off, n)
            except OSError as exc:
                bad.append((h, "unreadable", f"{where}: {exc}"))
                continue
            if digest != h:
                bad.append((h, "hash", f"{where} holds different bytes"))
        return bad

    try:
        workers = max_workers or ws.driver(row.storage).default_max_workers
        ws.plugins.budget.ensure(workers)  # --max-workers may ask for more than the drivers' default
        for (where, members), bad in ordered_map(check, list(by_key.items()), workers, window=64):
            bar.update(sum(n for _h, _o, n in members), files=len(members))
            extent = {h: (off, n) for h, off, n in members}
            for h, kind, detail in bad:
                report.problems += [Problem(p, kind, detail) for p in paths_of[h]]
                if kind in DAMAGE and stored_by_upload(where[1], h):
                    damaged.append(ObjectRow(where[0], h, where[1], *extent[h]))
    finally:
        bar.close()
    # marked, so that dedup stops trusting them: the next upload of that content (or a
    # repair) stores it again and replaces the row; an external file is only reported
    report.damaged = sorted({r.hash for r in damaged})
    if damaged:
        ws.catalog.mark_damaged(damaged)
    if cache:
        cached = verify_cache(ws, row, full=full, max_workers=max_workers, progress=progress)
        report.cached = cached.cached
        report.problems += cached.problems
    report.problems.sort(key=lambda pr: pr.path)
    return report


def verify_cache(
    ws: Workspace,
    row: DatasetRow,
    full: bool = True,
    max_workers: int | None = None,
    progress: ProgressFactory = null_progress,
) -> VerifyReport:
    """Check the version's content in the local cache; remove what is damaged.

    Cached objects and the files of cached local copies of this version are checked,
    each distinct file (inode) once. Content that is not cached is not a problem.
    """
    cache = ws.cache
    current = view(ws, row)
    report = VerifyReport(checked=len(current), bytes=sum(v[1] for v in current.values()))
    if not cache.objects.is_dir() and not cache.datasets.is_dir():
        return report
    paths_of: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    for p, (h, size, _origin) in current.items():
        paths_of.setdefault(h, []).append(p)
        sizes[h] = size
    with cache.in_use():
        folders = (
            sorted(
                f
                for f in cache.datasets.glob(f"{row.id}*")
                if f.is_dir() and not f.name.startswith(".build-")
            )
            if cache.datasets.is_dir()
            else []
        )
        files = _cached_files(cache, current, paths_of, folders)
        report.cached = len(files)
        unhashed = set(unhashed_links(ws, row, current))
        damaged = _damaged_cache_files(ws, files, sizes, full, max_workers, progress, unhashed)
        broken_folders: set[Path] = set()
        for key, (kind, detail) in damaged.items():
            _st, digest, locations = files[key]
            names: list[str] = []
            for location, dataset_path, folder in locations:
                if folder is None:  # the object itself: every path with this content
                    names += paths_of[digest]
                    _unlink(location)
                else:
                    names.append(dataset_path)
                    broken_folders.add(folder)
            where = os.path.relpath(locations[0][0], cache.root)
            for name in dict.fromkeys(names):
                report.problems.append(
                    Problem(name, kind, f"the cached copy {where} {detail}; removed from the cache", True)
                )
        cache.guard.forget(files[key][0] for key in damaged)
        for folder in sorted(broken_folders):  # the next get builds it again
            with cache.lock(folder.name):
                remove_tree(folder)
    report.problems.sort(key=lambda pr: (pr.path, pr.detail))
    return report


def _damaged_cache_files(
    ws: Workspace,
    files: CachedFiles,
    sizes: dict[str, int],
    full: bool,
    max_workers: int | None,
    progress: ProgressFactory,
    unhashed: Collection[str] = (),
) -> dict[tuple[int, int], tuple[str, str]]:
    """{(dev, ino): (problem, detail)} of the damaged files among ``files``. A file of an
    external file registered without its hash (``unhashed``) cannot be re-hashed: it is
    intact while its stat is the one recorded when it was fetched, else damaged."""
    guard = ws.cache.guard
    damaged: dict[tuple[int, int], tuple[str, str]] = {}
    to_hash = []
    for key, (st, digest, locations) in files.items():
        if st.st_size != sizes[digest]:
            damaged[key] = ("size", f"has {st.st_size} bytes, expected {sizes[digest]}")
        else:
            to_hash.append((locations[0][0], st, digest))
    unchanged, changed = guard.unchanged(to_hash)
    for _path, st, digest in changed:
        if digest in unhashed:
            damaged[(st.st_dev, st.st_ino)] = ("changed", "changed since it was fetched")
    changed = [c for c in changed if c[2] not in unhashed]
    unchanged = [u for u in unchanged if u[2] not in unhashed]
    if full:
        to_hash = unchanged + changed
    else:  # sizes, plus the bytes of files whose stat changed since they were checked
        to_hash = changed
    bar = progress(
        sum(st.st_size for _p, st, _d in to_hash),
        "B",
        "Verifying cache" if full else "Checking cache",
        files=len(to_hash),
    )
    changed_keys = {(st.st_dev, st.st_ino) for _p, st, _d in changed}
    intact = []
    try:
        for batch, results in ordered_map(_digests, batched(to_hash), max_workers, window=16):
            bar.update(sum(st.st_size for _p, st, _d in batch), files=len(batch))
            for (_path, st, digest), got in zip(batch, results, strict=True):
                key = (st.st_dev, st.st_ino)
                if got == digest:
                    if key in changed_keys:
                        intact.append((st, digest))
                elif got.startswith("unreadable"):
                    damaged[key] = ("unreadable", got[len("unreadable: ") :])
                else:
                    damaged[key] = ("hash", "holds different bytes")
    finally:
        bar.close()
    if guard.memory is not None:  # re-hashed and right: served after one stat next time
        guard.memory.cached_store(intact)
    return damaged


def verify_local(
    ws: Workspace,
    row: DatasetRow,
    folder: str | os.PathLike | None = None,
    skip_hash: bool = False,
    max_workers: int | None = None,
    progress: ProgressFactory = null_progress,
) -> VerifyReport:
    """``Dataset.verify_dataset_hash``: check a local copy of a final version. Without
    ``folder``, the version's content in the local cache is checked first (damaged cached
    files are removed), then the cached local copy, which is rebuilt as needed."""
    report = VerifyReport()
    parts = []
    if folder is None:
        parts.append(verify_cache(ws, row, full=not skip_hash, max_workers=max_workers, progress=progress))
    folder = folder or get_local_copy(ws, row.id, max_workers=max_workers)
    parts.append(verify_folder(ws, row, folder, skip_hash, max_workers, progress))
    for part in parts:
        report.checked += part.checked
        report.bytes += part.bytes
        report.cached += part.cached
        report.problems += part.problems
    return report


def verify_folder(
    ws: Workspace,
    row: DatasetRow,
    folder: str | os.PathLike,
    skip_hash: bool = False,
    max_workers: int | None = None,
    progress: ProgressFactory = null_progress,
) -> VerifyReport:
    """Check a local copy against the version's sizes and (unless ``skip_hash``) hashes."""
    root = os.path.abspath(os.path.expanduser(os.fspath(folder)))
    if not os.path.isdir(root):
        raise UsageError(f"no such folder: {root}")
    current = view(ws, row)
    report = VerifyReport(checked=len(current), bytes=sum(v[1] for v in current.values()))
    unhashed = set(unhashed_links(ws, row, current))  # no hash to compare: their size is checked
    to_hash = []
    for p in sorted(current):
        h, size, _origin = current[p]
        local = safe_join(root, p)  # an unsafe catalog path is an error, not a missing file
        try:
            st = os.stat(local)
        except OSError:
            report.problems.append(Problem(p, "missing"))
            continue
        if st.st_size != size:
            report.problems.append(Problem(p, "size", f"{st.st_size} bytes, expected {size}"))
        elif not skip_hash and h not in unhashed:
            to_hash.append((p, local, h, size))
    bar = progress(sum(t[3] for t in to_hash), "B", "Verifying", files=len(to_hash))

    def digest(item: tuple[str, str, str, int]) -> str:
        try:
            return sha256_file(item[1])[0]
        except OSError as exc:
            return f"unreadable: {exc.strerror}"

    try:
        for (p, _local, h, size), got in ordered_map(digest, to_hash, max_workers):
            bar.update(size, files=1)
            if got.startswith("unreadable"):
                report.problems.append(Problem(p, "unreadable", got))
            elif got != h:
                report.problems.append(Problem(p, "hash", "content differs"))
    finally:
        bar.close()
    report.problems.sort(key=lambda pr: pr.path)
    return report


def _cached_files(
    cache: Cache, current: View, paths_of: dict[str, list[str]], folders: list[Path]
) -> CachedFiles:
    """Every cached file that serves the version, by inode (see :data:`CachedFiles`)."""
    files: CachedFiles = {}

    def add(path: str, digest: str, dataset_path: str, folder: Path | None) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return  # not cached (or a dangling link in a copy): get fetches it
        entry = files.setdefault((st.st_dev, st.st_ino), (st, digest, []))
        entry[2].append((path, dataset_path, folder))

    for digest in sorted(paths_of):
        add(cache.object_file(digest), digest, "", None)
    for folder in folders:
        for p in sorted(current):
            try:
                local = safe_join(folder, p)
            except ClearMLDataError:
                continue
            add(local, current[p][0], p, folder)
    return files


def _digests(batch: list[tuple[str, os.stat_result, str]]) -> list[str]:
    out = []
    for path, _st, _digest in batch:
        try:
            out.append(sha256_file(path)[0])
        except OSError as exc:
            out.append(f"unreadable: {exc.strerror or exc}")
    return out


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
