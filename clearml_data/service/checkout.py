"""Local copies: the objects a version needs brought into the cache, and folders built from it.

``get_local_copy`` builds a read-only copy in the cache (hard links, reflinks or copies of
the cached objects, or symbolic links to them), once per version and selection, under a
lock, so concurrent readers never see a half-built copy. ``get_mutable_local_copy`` copies
into a folder of the user's, finishing what an interrupted copy of the same files left.
Every byte read from storage is checked (size, then hash when it enters the cache; an
external file registered without reading it, by size and by its storage's fingerprint).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .. import packs, tempfiles
from ..cache import CacheUsage, PruneResult
from ..cache.links import COPY_TEMP_PREFIX, LINK_MODES, populate, remove_tree
from ..catalog import DatasetRow
from ..catalog.validate import check_empty, check_length, extent_problem
from ..config import parse_size
from ..diskspace import disk_full, is_no_space, space_for
from ..errors import (
    ClearMLDataError,
    DatasetStateError,
    IntegrityError,
    UsageError,
)
from ..hashing import sha256_file
from ..parallel import ordered_map
from ..paths import MAX_PATH_BYTES, shorten
from ..progress import ProgressFactory, Streamed, null_progress
from ..storage import StorageDriver, redact_url
from ..storage.calls import storage_error
from .external import check_link_unchanged, unhashed_links
from .locations import ByKey, by_stored_key, readable_locations, unstored
from .lookup import final
from .results import LocalCopy
from .views import selected_files, tree_clash
from .workspace import Workspace

Files = dict[str, tuple[str, int]]


def get_local_copy(
    ws: Workspace,
    dataset_id: str,
    use_soft_links: bool | None = None,
    max_workers: int | None = None,
    part: int | None = None,
    num_parts: int | None = None,
    files: Iterable[str] | None = None,
    progress: ProgressFactory = null_progress,
) -> str:
    """A read-only folder holding the version's merged view, built from the object cache."""
    return _cached_copy(ws, dataset_id, use_soft_links, max_workers, part, num_parts, files, progress)[0]


def local_copy(
    ws: Workspace,
    dataset_id: str,
    copy_to: str | os.PathLike | None = None,
    link: str | os.PathLike | None = None,
    overwrite: bool = False,
    max_workers: int | None = None,
    part: int | None = None,
    num_parts: int | None = None,
    progress: ProgressFactory = null_progress,
    files: Iterable[str] | None = None,
) -> LocalCopy:
    """``clearml-data get``: the read-only copy in the cache, reached through a symbolic link
    at ``link`` when given (``overwrite`` replaces a link already there, never anything else),
    or with ``copy_to`` a writable copy in that folder; with the files and bytes it holds.
    ``files`` (wildcards) keeps only the matching files, before ``part`` splits them."""
    if copy_to and link:
        raise UsageError("--copy and --link cannot be used together")
    if copy_to:
        path, chosen = _writable_copy(
            ws, dataset_id, copy_to, overwrite, max_workers, part, num_parts, progress, files
        )
    else:
        path, chosen = _cached_copy(ws, dataset_id, None, max_workers, part, num_parts, files, progress)
        if link:
            path = _link_to(path, link, overwrite)
    return LocalCopy(path, len(chosen), sum(size for _h, size in chosen.values()))


def _link_to(target: str, link: str | os.PathLike, overwrite: bool) -> str:
    path = os.path.abspath(os.path.expanduser(os.fspath(link)))
    if os.path.lexists(path):
        if not (overwrite and os.path.islink(path)):
            raise UsageError(f"{path} already exists", hint="pass --overwrite to replace an existing link")
        os.unlink(path)
    os.symlink(target, path)
    return path


def _cached_copy(
    ws: Workspace,
    dataset_id: str,
    use_soft_links: bool | None,
    max_workers: int | None,
    part: int | None,
    num_parts: int | None,
    files: Iterable[str] | None,
    progress: ProgressFactory,
) -> tuple[str, Files]:
    row = final(ws, dataset_id)
    if use_soft_links not in LINK_MODES:
        raise UsageError("use_soft_links must be None, True or False")
    chosen, label = selected_files(ws, row, part, num_parts, files)
    folder = ws.cache.view_path(row.id, use_soft_links)
    folder = folder.with_name(folder.name + label)
    ws.cache.ensure()
    try:
        with ws.cache.in_use(), ws.cache.lock(folder.name):
            if not ws.cache.view_is_complete(folder, chosen):
                # the copy is built in a sibling folder named .build-<name>-<8 hex digits>
                _check_materialisable(
                    row, chosen, str(folder) + "-" * 16, "cache folder (the cache_dir setting)"
                )
                fetch_objects(ws, row, chosen, max_workers, progress)
                with _files_bar(progress, chosen, "Linking") as on_file:
                    ws.cache.build_view(folder, chosen, use_soft_links, on_file=on_file)
            ws.cache.touch(folder)
    finally:  # the limit holds after a get that failed too; the copy asked for is kept
        ws.fit_cache(keep=[folder.name])
    return str(folder), chosen


@contextmanager
def _files_bar(progress: ProgressFactory, files: Files, desc: str) -> Iterator[Callable[[int], None]]:
    """A bar of the files (and their bytes) put in place one by one; yields the per-file callback."""
    bar = progress(sum(size for _h, size in files.values()), "B", desc, files=len(files))
    try:
        yield lambda size: bar.update(size, files=1)
    finally:
        bar.close()


def prune_cache(ws: Workspace, max_size: str | int | None = None) -> PruneResult:
    """Prune the cache to ``max_size`` (bytes, or a size such as ``20G``), else to the
    cache_max_size setting; waits for other processes using the cache."""
    budget = parse_size(str(max_size)) if max_size else ws.settings.cache_max_size
    if budget is None:
        raise UsageError("prune needs a size", hint="pass --max-size SIZE or set cache_max_size")
    result = ws.cache.prune(budget)
    assert result is not None  # a blocking prune waits for the cache instead of giving up
    return result


def clear_cache(ws: Workspace) -> PruneResult:
    """Empty the cache: every cached content and local copy."""
    return ws.cache.clear()


def cache_usage(ws: Workspace) -> CacheUsage:
    return ws.cache.usage()


def enforce_cache_limit(ws: Workspace, keep: Iterable[str] = ()) -> PruneResult | None:
    """Prune the cache to the cache_max_size setting, if one is set and the cache is idle."""
    return ws.fit_cache(keep)


def get_mutable_local_copy(
    ws: Workspace,
    dataset_id: str,
    target_folder: str | os.PathLike,
    overwrite: bool = False,
    max_workers: int | None = None,
    part: int | None = None,
    num_parts: int | None = None,
    progress: ProgressFactory = null_progress,
) -> str:
    """A writable copy of the version (or one part of it) in ``target_folder``, copied from the
    object cache; an interrupted copy of the same files is finished, anything else there is
    refused unless ``overwrite``."""
    return _writable_copy(ws, dataset_id, target_folder, overwrite, max_workers, part, num_parts, progress)[0]


def _writable_copy(
    ws: Workspace,
    dataset_id: str,
    target_folder: str | os.PathLike,
    overwrite: bool,
    max_workers: int | None,
    part: int | None,
    num_parts: int | None,
    progress: ProgressFactory,
    files: Iterable[str] | None = None,
) -> tuple[str, Files]:
    row = final(ws, dataset_id)
    chosen, _label = selected_files(ws, row, part, num_parts, files)
    target = Path(os.path.expanduser(os.fspath(target_folder))).absolute()
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} exists and is not a folder")
    _check_materialisable(row, chosen, str(target), "target folder")
    todo = chosen
    if target.is_dir() and any(target.iterdir()):
        if overwrite:
            _empty(target)
        else:  # what an interrupted copy of the same files left: finish it
            done = _copied_already(target, chosen, max_workers, set(unhashed_links(ws, row)))
            todo = {rel: v for rel, v in chosen.items() if rel not in done}
    ws.cache.ensure()
    try:
        with ws.cache.in_use():
            fetch_objects(ws, row, todo, max_workers, progress)
            try:
                with space_for(target, "the folder"), _files_bar(progress, todo, "Copying") as on_file:
                    target.mkdir(parents=True, exist_ok=True)
                    populate(target, todo, ws.cache.object_file, "copy", writable=True, on_file=on_file)
            except BaseException:  # never leave a half-written copy: the same call can run again
                if target.is_dir():
                    _empty(target)
                raise
    finally:
        ws.fit_cache()
    return str(target), chosen


def _empty(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            remove_tree(child)
        else:
            child.unlink()


def _check_materialisable(row: DatasetRow, files: Files, base: str, what: str) -> None:
    """Refuse, before anything is written, a copy that no folder can hold: a path that is
    both a file and a folder, or paths too long for the filesystem under ``base``."""
    clash = tree_clash(files)
    if clash is not None:
        raise DatasetStateError(
            f"dataset {row.id} holds {shorten(clash)} both as a file and as a folder; "
            "no local copy can hold it",
            hint="create a child version that removes one of them",
        )
    if not files:
        return
    longest = max(map(len, files))
    if longest > MAX_PATH_BYTES // 4:
        longest = max(len(p.encode("utf-8")) for p in files)
    anchor = base
    while not os.path.isdir(anchor) and os.path.dirname(anchor) != anchor:
        anchor = os.path.dirname(anchor)
    try:
        limit = os.pathconf(anchor, "PC_PATH_MAX")
    except (OSError, ValueError):
        limit = 4096
    need = len(os.fsencode(base)) + 1 + longest
    if need >= limit:
        raise UsageError(
            f"the local copy of dataset {row.id} needs paths of {need} bytes under the {what} "
            f"{base}, and this system allows fewer than {limit}",
            hint=f"use a shorter {what}",
        )


def _copied_already(
    target: Path, files: Files, max_workers: int | None, unhashed: Collection[str] = ()
) -> set[str]:
    """The files of ``files`` that ``target`` holds complete, when it holds nothing else.

    Every file of a mutable copy appears in its folder complete, under its name, or not at
    all, so a folder that an interrupted copy of the same files left holds some of them, the
    folders on their way, and perhaps the temporary file being written (removed here when its
    writer is gone). Anything else (another file, other bytes at one of the names, a symlink)
    is the user's, and the folder is refused as before.
    """
    folders = {""}
    for rel in files:
        parts = rel.split("/")
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
    present: dict[str, str] = {}
    foreign: list[str] = []
    stack = [("", str(target))]
    while stack and not foreign:
        rel_dir, folder = stack.pop()
        tempfiles.sweep(folder, (COPY_TEMP_PREFIX,))
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_dir(follow_symlinks=False) and rel in folders:
                stack.append((rel, entry.path))
            elif (
                entry.is_file(follow_symlinks=False)
                and rel in files
                and entry.stat(follow_symlinks=False).st_size == files[rel][1]
            ):
                present[rel] = entry.path
            elif not (entry.name.startswith(COPY_TEMP_PREFIX) and entry.is_file(follow_symlinks=False)):
                foreign.append(rel)
                break
    if not foreign:  # an unhashed external file has no hash to check: its size was checked
        hashed = sorted(r for r in present if files[r][0] not in unhashed)
        for rel, (digest, _size) in ordered_map(lambda r: sha256_file(present[r]), hashed, max_workers):
            if digest != files[rel][0]:
                foreign.append(rel)
                break
    if foreign:
        raise UsageError(
            f"the folder {target} is not empty ({foreign[0]!r} is not a file of this copy)",
            hint="pass overwrite=True / --overwrite to replace what it holds",
        )
    return set(present)


def fetch_objects(
    ws: Workspace,
    row: DatasetRow,
    files: Files,
    max_workers: int | None = None,
    progress: ProgressFactory = null_progress,
) -> int:
    """Bring every object the files need into the cache; returns the bytes fetched."""
    needed = {h: size for h, size in files.values()}
    cached = ws.cache.usable(needed)  # intact copies only; changed ones are fetched again
    wanted = {h: size for h, size in needed.items() if h not in cached}
    if not wanted:
        return 0
    empty = [h for h, s in wanted.items() if s == 0]
    for h in empty:
        check_empty(h, row.id)
        ws.cache.add_bytes(h, b"")
        wanted.pop(h)
    locations = readable_locations(ws, row, ws.catalog.locate_objects(wanted))
    by_key: ByKey = {}
    for h in wanted:
        locs = locations.get(h)
        if not locs:
            raise unstored(row, h)
        check_length(by_stored_key(by_key, h, locs, row.storage), wanted[h], row.id)
    if not by_key:  # only empty files: nothing to read
        return 0
    workers = max_workers or max(ws.driver(s).default_max_workers for s, _key in by_key)
    ws.plugins.budget.ensure(workers)  # --max-workers may ask for more than the drivers' default
    # external files registered without reading them: checked by size and fingerprint
    unhashed = {h: link for h, link in unhashed_links(ws, row).items() if h in wanted}

    def check_size(item: tuple[str, str]) -> None:
        """Stat the object once; every entry the catalog places in it must lie within it."""
        storage, key = item
        try:
            info = ws.driver(storage).stat(key)
        except OSError as exc:
            raise _read_failure(ws, storage, key, exc) from exc
        size = info.size
        for h, _off, _n in by_key[item]:
            link = unhashed.get(h)
            if link is not None:
                check_link_unchanged(link, info)
        problem = extent_problem(key, by_key[item], size)
        if problem:
            raise IntegrityError(
                f"object {key} in {redact_url(storage)} {problem}",
                hint="the stored object is damaged or the catalog was changed outside "
                "clearml-data; run clearml-data verify",
            )

    # a catalog that lies, or an object cut short or grown, ends in one error before a byte of
    # the object is read: packs (few) are checked here, whole objects just before their download
    whole = {
        item
        for item, entries in by_key.items()
        if not packs.is_pack_key(item[1]) and len(entries) == 1 and entries[0][1] == 0
    }
    for _checked in ordered_map(
        check_size, [item for item in by_key if item not in whole], workers, window=64
    ):
        pass
    tasks: list[tuple[str, packs.Span]] = []
    for (storage, key), entries in by_key.items():
        for span in packs.coalesce(key, entries):
            tasks.append((storage, span))
    total = sum(wanted.values())
    bar = Streamed(progress(total, "B", "Downloading", files=len(wanted)))

    def run(task: tuple[str, packs.Span]) -> tuple[int, int]:
        storage, span = task
        driver = ws.driver(storage)
        tag = (storage, span.key, span.offset)  # one read of a pack is one task of the bar
        try:
            if (storage, span.key) in whole:
                check_size((storage, span.key))
                fd, tmp = ws.cache.tempfile()
                os.close(fd)
                try:
                    driver.get_file(span.key, tmp, callback=bar.callback(tag))
                    if os.stat(tmp).st_size != span.length:
                        raise IntegrityError(
                            f"object {span.key} in {redact_url(storage)} changed while it was read",
                            hint="run clearml-data verify",
                        )
                except BaseException:
                    if os.path.lexists(tmp):
                        os.unlink(tmp)
                    raise
                digest = span.members[0][0]
                ws.cache.add_file(digest, tmp, check_hash=digest not in unhashed)
                return span.length, 1
            if len(span.members) == 1 and span.length > packs.MAX_SPAN:
                # in bounded reads, never whole in memory
                _fetch_range(ws, driver, storage, span, bar.callback(tag))
                return span.length, 1
            data = memoryview(driver.read_range(span.key, span.offset, span.length))
        except OSError as exc:
            raise _read_failure(ws, storage, span.key, exc) from exc
        for digest, off, length in span.members:
            start = off - span.offset
            chunk = data[start : start + length]
            if len(chunk) != length:
                raise IntegrityError(
                    f"object {span.key} in {redact_url(storage)} is truncated", hint="run clearml-data verify"
                )
            ws.cache.add_bytes(digest, chunk)
            bar.moved(tag, length, files=1)  # many small files: the bar moves with each one cached
        return sum(m[2] for m in span.members), len(span.members)

    fetched = 0
    try:
        for (storage, span), (n, nfiles) in ordered_map(run, tasks, workers, window=64):
            fetched += n
            bar.done((storage, span.key, span.offset), n, files=nfiles)
    finally:
        bar.close()
    return fetched


def _fetch_range(
    ws: Workspace, driver: StorageDriver, storage: str, span: packs.Span, moved: Callable[[int], None]
) -> None:
    """Bring one large range of an object into the cache through a temporary file, telling
    ``moved`` the bytes of each read."""
    fd, tmp = ws.cache.tempfile()
    try:
        with space_for(ws.cache.root, "the cache"), os.fdopen(fd, "wb") as out:
            done = 0
            while done < span.length:
                n = min(packs.MAX_SPAN, span.length - done)
                block = driver.read_range(span.key, span.offset + done, n)
                if len(block) != n:
                    raise IntegrityError(
                        f"object {span.key} in {redact_url(storage)} is truncated",
                        hint="run clearml-data verify",
                    )
                out.write(block)
                done += n
                moved(n)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    ws.cache.add_file(span.members[0][0], tmp)


def _read_failure(ws: Workspace, storage: str, key: str, exc: OSError) -> ClearMLDataError:
    """The error to show for a failed read of ``key``: missing, the cache's disk full, or unreadable."""
    if is_no_space(exc):
        return disk_full(ws.cache.root, "the cache", exc)
    return storage_error(exc, storage, key, doing="read")
