"""The local cache: objects by content hash, and read-only dataset copies built from them.

Layout under the cache folder::

    objects/<h[:2]>/<sha256>   one file per content hash, mode 0444
    datasets/<id>[.<mode>]/    a version's merged view, made of links to objects
    locks/                     flock files that serialise concurrent builders
    tmp/                       temporary files (same filesystem, renamed into place)

Content is hash-checked before it enters ``objects/``. A copy folder is built under a
temporary name and renamed into place, so nobody ever sees a half-built copy. A cached
file is served only while its stat is the one recorded when its bytes were checked, else
after hashing it again (:mod:`clearml_data.cache.guard`).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .. import _crashpoints as crashpoints
from .. import packs, tempfiles
from ..diskspace import space_for
from ..errors import IntegrityError
from ..hashing import sha256_file
from ..paths import check_id, safe_join
from .guard import CacheGuard
from .links import LINK_MODES, populate, remove_tree

log = logging.getLogger(__name__)

_USE_LOCK = "cache-use"


@dataclass
class CopyInfo:
    name: str
    files: int
    own_bytes: int  #: bytes not shared with objects/ (plain copies)
    last_used: float


@dataclass
class CacheUsage:
    root: str
    objects: int = 0
    object_bytes: int = 0
    tmp_bytes: int = 0
    copies: list[CopyInfo] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return self.object_bytes + self.tmp_bytes + sum(c.own_bytes for c in self.copies)


@dataclass
class PruneResult:
    objects: int = 0
    copies: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    remaining_bytes: int = 0


def _files(root: Path, follow: bool = False) -> Iterator[tuple[str, os.stat_result]]:
    """(path, lstat) of every regular file (or symlink, with follow=False) under root."""
    if not root.is_dir():
        return
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode) or (not follow and stat.S_ISLNK(st.st_mode)):
                yield path, st


class Cache:
    def __init__(self, root: str | os.PathLike, memory=None):
        self.root = Path(root)
        #: checks cached files before they are served (``memory``: a HashMemory)
        self.guard = CacheGuard(memory)
        self.objects = self.root / "objects"
        self._objects_str = str(self.objects)
        self.datasets = self.root / "datasets"
        self.tmp = self.root / "tmp"
        self.locks = self.root / "locks"

    def ensure(self) -> None:
        for d in (self.objects, self.datasets, self.tmp, self.locks):
            d.mkdir(parents=True, exist_ok=True)
        self.sweep_tmp()

    def sweep_tmp(self) -> int:
        """Remove temporary files that crashed processes left in ``tmp/``, whatever a storage
        driver added around the name the cache gave it (``.obj-<tag>….tmp.s3-….tmp``)."""
        return tempfiles.sweep(
            self.tmp, ("obj-", "pack-", "probe-", "manifest-", "damaged-"), only_temporaries=True
        )

    # -- objects --------------------------------------------------------------------------
    def object_file(self, digest: str) -> str:
        """The object's path as a string (cheaper than :meth:`object_path` in hot loops)."""
        return f"{self._objects_str}/{digest[:2]}/{digest}"

    def object_path(self, digest: str) -> Path:
        return Path(self.object_file(digest))

    def has(self, digest: str, size: int) -> bool:
        """Is the content in the cache, intact (checked as described in cache.guard)?"""
        return digest in self.usable({digest: size})

    def usable(self, wanted: dict[str, int], max_workers: int | None = None) -> set[str]:
        """The hashes of ``wanted`` ({hash: size}) whose cached object may be served.

        One stat each; an object whose stat changed since its bytes were checked is hashed
        again, and deleted if they are wrong (it is then fetched again like a missing one).
        """
        items = []
        for digest, size in wanted.items():
            path = self.object_file(digest)
            try:
                st = os.stat(path)
            except OSError:
                continue
            if st.st_size == size:
                items.append((path, st, digest))
        bad = self.guard.check(items, max_workers)
        for path, st, digest in bad:
            log.warning("the cached copy of %s… was changed or damaged; fetching it again", digest[:12])
            self._drop_damaged(path, st)
        gone = {d for _p, _s, d in bad}
        return {d for _p, _s, d in items if d not in gone}

    def _drop_damaged(self, path: str, damaged: os.stat_result) -> None:
        """Remove the damaged file ``damaged`` from ``path``, but never the good copy of the
        same content that a concurrent fetch may have put there since it was checked: the file
        is moved aside first, and put back if it turns out to be another one."""
        aside = tempfiles.temp_path(self.tmp, "damaged-")
        try:
            os.rename(path, aside)
        except OSError:
            return
        try:
            st = os.lstat(aside)
            if (st.st_dev, st.st_ino) != (damaged.st_dev, damaged.st_ino):
                os.rename(aside, path)
        except OSError as exc:
            log.debug("cannot put %s back: %s", path, exc)
        finally:
            if os.path.lexists(aside):
                os.unlink(aside)

    def tempfile(self) -> tuple[int, str]:
        with space_for(self.root, "the cache"):
            self.tmp.mkdir(parents=True, exist_ok=True)
            return tempfiles.mkstemp(self.tmp, "obj-", ".tmp")

    def add_bytes(self, digest: str, data: bytes | memoryview) -> None:
        """Put bytes into the cache under their hash, after checking the hash."""
        if hashlib.sha256(data).hexdigest() != digest:
            raise IntegrityError(
                f"downloaded bytes do not match their hash {digest[:12]}…",
                hint="the stored object is damaged; run verify",
            )
        fd, tmp = self.tempfile()
        try:
            with space_for(self.root, "the cache"), os.fdopen(fd, "wb") as fh:
                fh.write(data)
            self._install(tmp, digest)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise

    def add_file(self, digest: str, tmp: str, check_hash: bool = True) -> None:
        """Move a temporary file (inside ``tmp/``) into the cache after checking its hash.

        ``check_hash=False`` is for an external file registered without reading it, whose
        ``digest`` is a content identity, not the hash of its bytes: the caller checked its
        size and the storage's fingerprint instead. It is served after one stat, like any
        cached file, and fetched again once that stat changes."""
        try:
            if check_hash and sha256_file(tmp)[0] != digest:
                raise IntegrityError(
                    f"downloaded object does not match its hash {digest[:12]}…",
                    hint="the stored object is damaged; run verify",
                )
            self._install(tmp, digest)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)

    def adopt(self, tmp: str) -> str:
        """Move a temporary file (inside ``tmp/``) into the cache under the hash of its bytes,
        read once; return that hash."""
        try:
            digest = sha256_file(tmp)[0]
            self._install(tmp, digest)
            return digest
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)

    def ingest(self, f: packs.PendingFile) -> Path:
        """Copy a local source file into the cache in one hashing pass and return its path.

        Uploading from this read-only copy, not from the user's file, means the bytes sent
        are exactly the bytes hashed, even if the user's file changes meanwhile; the copy
        raises if the bytes no longer hash to ``f.hash``.
        """
        if self.has(f.hash, f.size):
            return self.object_path(f.hash)
        fd, tmp = self.tempfile()
        try:
            with space_for(self.root, "the cache"), os.fdopen(fd, "wb") as out:
                packs.copy_verified(f.source, out, f)
            self._install(tmp, f.hash)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        return self.object_path(f.hash)

    def _install(self, tmp: str, digest: str) -> None:
        os.chmod(tmp, 0o444)
        final = self.object_path(digest)
        with space_for(self.root, "the cache"):
            final.parent.mkdir(parents=True, exist_ok=True)
        crashpoints.reach("cache.temp_written")
        os.replace(tmp, final)
        self.guard.entered(str(final), digest)

    # -- locks ----------------------------------------------------------------------------
    @contextmanager
    def lock(self, name: str, shared: bool = False, blocking: bool = True) -> Iterator[bool]:
        """flock ``locks/<name>.lock``; yields False (not locked) only when non-blocking and busy."""
        self.locks.mkdir(parents=True, exist_ok=True)
        with open(self.locks / f"{name}.lock", "a+") as fh:
            flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
            try:
                fcntl.flock(fh.fileno(), flags)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def in_use(self):
        """Held (shared) while content is fetched and copies are built; pruning waits for it."""
        return self.lock(_USE_LOCK, shared=True)

    # -- size management ----------------------------------------------------------------------
    def usage(self) -> CacheUsage:
        """What the cache holds (once the temporary files of dead writers are swept); bytes
        shared by hard links are counted once."""
        self.sweep_tmp()
        seen: set[tuple[int, int]] = set()
        result = CacheUsage(str(self.root))
        for _path, st in _files(self.objects):
            seen.add((st.st_dev, st.st_ino))
            result.objects += 1
            result.object_bytes += st.st_size
        if self.datasets.is_dir():
            for entry in sorted(self.datasets.iterdir()):
                if not entry.is_dir() or entry.name.startswith(".build-"):
                    continue
                own = 0
                files = 0
                for _path, st in _files(entry):
                    files += 1
                    if (st.st_dev, st.st_ino) not in seen:
                        seen.add((st.st_dev, st.st_ino))
                        own += st.st_size
                result.copies.append(CopyInfo(entry.name, files, own, entry.stat().st_mtime))
        result.tmp_bytes = sum(st.st_size for _p, st in _files(self.tmp))
        return result

    def touch(self, folder: Path) -> None:
        """Mark a local copy as just used (least recently used copies are pruned first)."""
        try:
            os.utime(folder)
        except OSError:
            pass

    def prune(self, max_bytes: int, keep: Iterable[str] = (), blocking: bool = True) -> PruneResult | None:
        """Remove unreferenced contents, then least recently used copies, until the cache fits.

        Returns None when ``blocking`` is False and another process is using the cache.
        """
        with self.lock(_USE_LOCK, blocking=blocking) as locked:
            if not locked:
                return None
            result = PruneResult()
            keep = set(keep)
            while True:
                usage = self.usage()
                if usage.total_bytes <= max_bytes:
                    break
                if self._drop_unreferenced(usage.total_bytes - max_bytes, result):
                    continue
                victims = sorted((c for c in usage.copies if c.name not in keep), key=lambda c: c.last_used)
                if not victims:
                    break
                remove_tree(self.datasets / victims[0].name)
                result.copies.append(victims[0].name)
            result.remaining_bytes = self.usage().total_bytes
            return result

    def _drop_unreferenced(self, excess: int, result: PruneResult) -> bool:
        """Delete contents no copy links to, oldest first, up to ``excess`` bytes; any deleted?"""
        symlinked: set[str] = set()
        if self.datasets.is_dir():
            for entry in self.datasets.iterdir():
                if ".symlink" in entry.name:
                    for path, _st in _files(entry, follow=False):
                        try:
                            symlinked.add(os.path.basename(os.readlink(path)))
                        except OSError:
                            pass
        orphans = sorted(
            (
                (st.st_mtime, path, st.st_size, st)
                for path, st in _files(self.objects)
                if st.st_nlink == 1 and os.path.basename(path) not in symlinked
            ),
            key=lambda o: o[:2],
        )
        freed = 0
        dropped = []
        for _mtime, path, size, st in orphans:
            if freed >= excess:
                break
            os.unlink(path)
            dropped.append(st)
            freed += size
            result.objects += 1
            result.freed_bytes += size
        self.guard.forget(dropped)
        return freed > 0

    def clear(self) -> PruneResult:
        """Empty the cache (waits until no other process is using it); only the temporary files
        that live processes are writing stay."""
        with self.lock(_USE_LOCK):
            before = self.usage()
            gone = [st for d in (self.objects, self.datasets) for _p, st in _files(d)]
            for d in (self.datasets, self.objects):
                if d.exists():
                    remove_tree(d)
            self.guard.forget(gone)
            left = self.usage().total_bytes  # temporary files that live writers still write
            return PruneResult(
                objects=before.objects,
                copies=[c.name for c in before.copies],
                freed_bytes=before.total_bytes - left,
                remaining_bytes=left,
            )

    # -- dataset copies ---------------------------------------------------------------------
    def view_path(self, dataset_id: str, use_soft_links: bool | None) -> Path:
        mode = LINK_MODES[use_soft_links]
        check_id(dataset_id)
        return self.datasets / (dataset_id if mode == "link" else f"{dataset_id}.{mode}")

    def view_is_complete(
        self, folder: Path, files: dict[str, tuple[str, int]], max_workers: int | None = None
    ) -> bool:
        """Does an existing copy still hold every file of the view, intact?

        One stat per file; files whose stat changed since they were checked are hashed again.
        """
        if not folder.is_dir():
            return False
        items = []
        for rel, (digest, size) in files.items():
            try:
                path = safe_join(folder, rel)
                st = os.stat(path)
            except OSError:
                return False
            if st.st_size != size:
                return False
            items.append((path, st, digest))
        bad = self.guard.check(items, max_workers)
        for path, _st, _digest in bad:
            log.warning("%s was changed in the cache; the local copy is built again", path)
        return not bad

    def _record_view(self, folder: Path, files: dict[str, tuple[str, int]]) -> None:
        """Record the stat of every file of a just built copy of real copies (hard and
        symbolic links share their object's inode, which is recorded already)."""
        if self.guard.memory is None:
            return
        items = []
        for rel, (digest, _size) in files.items():
            path = safe_join(folder, rel)
            items.append((path, os.stat(path), digest))
        self.guard.relinked(items)

    def build_view(
        self,
        folder: Path,
        files: dict[str, tuple[str, int]],
        use_soft_links: bool | None,
        on_file: Callable[[int], None] | None = None,
    ) -> None:
        """Materialise ``{relpath: (hash, size)}`` into ``folder`` atomically (``on_file``:
        the size of each file once it is in place)."""
        mode = LINK_MODES[use_soft_links]
        staging = folder.parent / f".build-{folder.name}-{uuid.uuid4().hex[:8]}"
        with space_for(self.root, "the cache"):
            staging.mkdir(parents=True)
        try:
            with space_for(self.root, "the cache"):
                new_inodes = populate(staging, files, self.object_file, mode, on_file=on_file)
            if folder.exists():
                remove_tree(folder)
            os.rename(staging, folder)
        except BaseException:
            remove_tree(staging)
            raise
        if new_inodes:
            self._record_view(folder, files)

    def remove_views(self, dataset_id: str) -> None:
        """Drop every local copy of a version (all link modes, parts and subsets)."""
        check_id(dataset_id)
        if self.datasets.is_dir():
            for path in self.datasets.glob(f"{dataset_id}*"):
                remove_tree(path)
