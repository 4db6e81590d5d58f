"""The local cache: objects by content hash, and read-only dataset copies built from them.

Layout under the cache folder::

    objects/<h[:2]>/<sha256>   one file per content hash, mode 0444
    datasets/<id>[.<mode>]/    a version's merged view, made of links to objects
    locks/                     flock files that serialise concurrent builders
    tmp/                       temporary files (same filesystem, renamed into place)

Content is hash-checked before it enters ``objects/``. A copy folder is built under a
temporary name and renamed into place, so nobody ever sees a half-built copy.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import shutil
import stat
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import IntegrityError
from .paths import safe_join

log = logging.getLogger(__name__)

#: how ``get_local_copy(use_soft_links=...)`` materialises files
LINK_MODES = {None: "link", True: "symlink", False: "copy"}
_LINK_FALLBACK = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK,
                  errno.EACCES, errno.EINVAL}
_FICLONE = 0x40049409  # Linux ioctl: share extents (reflink)


class Cache:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.datasets = self.root / "datasets"
        self.tmp = self.root / "tmp"
        self.locks = self.root / "locks"

    def ensure(self) -> None:
        for d in (self.objects, self.datasets, self.tmp, self.locks):
            d.mkdir(parents=True, exist_ok=True)

    # -- objects --------------------------------------------------------------------------
    def object_path(self, digest: str) -> Path:
        return self.objects / digest[:2] / digest

    def has(self, digest: str, size: int) -> bool:
        try:
            st = os.stat(self.object_path(digest))
        except FileNotFoundError:
            return False
        return st.st_size == size

    def tempfile(self) -> tuple[int, str]:
        self.tmp.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(dir=self.tmp, prefix="obj-", suffix=".tmp")

    def add_bytes(self, digest: str, data: bytes | memoryview) -> None:
        """Put bytes into the cache under their hash, after checking the hash."""
        if hashlib.sha256(data).hexdigest() != digest:
            raise IntegrityError(f"downloaded bytes do not match their hash {digest[:12]}…",
                                 hint="the stored object is damaged; run verify")
        fd, tmp = self.tempfile()
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            self._install(tmp, digest)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise

    def add_file(self, digest: str, tmp: str) -> None:
        """Move a temporary file (inside ``tmp/``) into the cache after checking its hash."""
        try:
            h = hashlib.sha256()
            with open(tmp, "rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
            if h.hexdigest() != digest:
                raise IntegrityError(f"downloaded object does not match its hash {digest[:12]}…",
                                     hint="the stored object is damaged; run verify")
            self._install(tmp, digest)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)

    def ingest(self, f, copy_verified) -> Path:
        """Copy a local source file into the cache in one hashing pass and return its path.

        Uploading from this read-only copy, not from the user's file, means the bytes sent
        are exactly the bytes hashed, even if the user's file changes meanwhile.
        ``copy_verified(source, out, f)`` copies and raises if the hash is not ``f.hash``.
        """
        if self.has(f.hash, f.size):
            return self.object_path(f.hash)
        fd, tmp = self.tempfile()
        try:
            with os.fdopen(fd, "wb") as out:
                copy_verified(f.source, out, f)
            self._install(tmp, f.hash)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        return self.object_path(f.hash)

    def _install(self, tmp: str, digest: str) -> None:
        os.chmod(tmp, 0o444)
        final = self.object_path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)

    # -- locks ----------------------------------------------------------------------------
    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        self.locks.mkdir(parents=True, exist_ok=True)
        with open(self.locks / f"{name}.lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # -- dataset copies ---------------------------------------------------------------------
    def view_path(self, dataset_id: str, use_soft_links: bool | None) -> Path:
        mode = LINK_MODES[use_soft_links]
        return self.datasets / (dataset_id if mode == "link" else f"{dataset_id}.{mode}")

    def view_is_complete(self, folder: Path, files: dict[str, tuple[str, int]]) -> bool:
        """Does an existing copy still hold every file of the view, unmodified in size?"""
        if not folder.is_dir():
            return False
        for rel, (_digest, size) in files.items():
            try:
                st = os.stat(safe_join(folder, rel))
            except OSError:
                return False
            if st.st_size != size:
                return False
        return True

    def build_view(self, folder: Path, files: dict[str, tuple[str, int]],
                   use_soft_links: bool | None) -> None:
        """Materialise ``{relpath: (hash, size)}`` into ``folder`` atomically."""
        mode = LINK_MODES[use_soft_links]
        staging = folder.parent / f".build-{folder.name}-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        try:
            populate(staging, files, self.object_path, mode)
            if folder.exists():
                remove_tree(folder)
            os.rename(staging, folder)
        except BaseException:
            remove_tree(staging)
            raise

    def remove_views(self, dataset_id: str) -> None:
        """Drop every local copy of a version (all link modes, parts and subsets)."""
        if self.datasets.is_dir():
            for path in self.datasets.glob(f"{dataset_id}*"):
                remove_tree(path)


def populate(dest: Path, files: dict[str, tuple[str, int]], source_of, mode: str,
             writable: bool = False) -> None:
    """Create each file of ``files`` under ``dest`` from the object at ``source_of(hash)``."""
    made: set[str] = set()
    for rel, (digest, _size) in files.items():
        target = safe_join(dest, rel)
        parent = os.path.dirname(target)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        src = str(source_of(digest))
        if mode == "symlink":
            os.symlink(src, target)
        elif mode == "link":
            link_or_copy(src, target)
        else:
            shutil.copyfile(src, target)
            if not writable:
                os.chmod(target, 0o444)


def link_or_copy(src: str, dst: str) -> str:
    """Hard link, else reflink, else copy; returns the method that worked."""
    try:
        os.link(src, dst)
        return "hardlink"
    except OSError as exc:
        if exc.errno not in _LINK_FALLBACK:
            raise
    try:
        with open(src, "rb") as s, open(dst, "wb") as d:
            fcntl.ioctl(d.fileno(), _FICLONE, s.fileno())
        os.chmod(dst, 0o444)
        return "reflink"
    except OSError:
        if os.path.lexists(dst):
            os.unlink(dst)
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o444)
    return "copy"


def remove_tree(path: str | os.PathLike) -> None:
    """Remove a folder tree even where files or folders were made read-only."""
    def onerror(func, p, _exc):
        parent = os.path.dirname(p)
        try:
            os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR | stat.S_IXUSR)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode | stat.S_IWUSR | stat.S_IXUSR)
            func(p)
        except FileNotFoundError:
            pass

    if not os.path.lexists(path):
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=onerror)
    else:
        shutil.rmtree(path, onerror=onerror)
