"""Materialising cached objects as files: links, reflinks or copies, and removing such trees.

A read-only copy is made of hard links to the cache's objects where the filesystem allows it,
else reflinks, else plain copies (each read-only). A writable copy's files are written under
a temporary name beside their place and renamed there, so each appears complete or not at all.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import sys
from collections.abc import Callable

from .. import _crashpoints as crashpoints
from .. import tempfiles
from ..paths import safe_join

#: how ``get_local_copy(use_soft_links=...)`` materialises files
LINK_MODES = {None: "link", True: "symlink", False: "copy"}
_LINK_FALLBACK = {
    errno.EXDEV,
    errno.EPERM,
    errno.ENOTSUP,
    errno.EOPNOTSUPP,
    errno.EMLINK,
    errno.EACCES,
    errno.EINVAL,
}
_FICLONE = 0x40049409  # Linux ioctl: share extents (reflink)
_LINK_TRIES = 5  # hard links of an object that a concurrent fetch replaces meanwhile


#: temporary names of the files of a writable copy being written (renamed when complete)
COPY_TEMP_PREFIX = ".clearml-data-copy-"


def populate(
    dest: str | os.PathLike[str],
    files: dict[str, tuple[str, int]],
    source_of,
    mode: str,
    writable: bool = False,
    on_file: Callable[[int], None] | None = None,
) -> bool:
    """Create each file of ``files`` under ``dest`` from the object at ``source_of(hash)``;
    returns whether any file is a new inode (a copy or reflink, not a link to the object).
    ``on_file`` is told the size of each file once it is in place (progress).

    ``writable`` copies go to a folder of the user's: each is written under a temporary name
    beside its place and renamed there, so a file appears complete or not at all."""
    made: set[str] = set()
    new_inodes = False
    dest = os.path.abspath(dest)
    for rel, (digest, size) in files.items():
        target = safe_join(dest, rel)
        parent = os.path.dirname(target)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        src = str(source_of(digest))
        if mode == "symlink":
            os.symlink(src, target)
        elif mode == "link":
            new_inodes = link_or_copy(src, target) != "hardlink" or new_inodes
        elif writable:
            new_inodes = True
            tmp = tempfiles.temp_path(parent, COPY_TEMP_PREFIX)
            try:
                shutil.copyfile(src, tmp)
                crashpoints.reach("copy.file_written")
                os.replace(tmp, target)
            except BaseException:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
                raise
        else:
            new_inodes = True
            shutil.copyfile(src, target)
            os.chmod(target, 0o444)
        if on_file is not None:
            on_file(size)
    return new_inodes


def link_or_copy(src: str, dst: str) -> str:
    """Hard link, else reflink, else copy; returns the method that worked."""
    for attempt in range(_LINK_TRIES):
        try:
            os.link(src, dst)
            return "hardlink"
        except FileNotFoundError:
            # another process fetching the same content renamed a fresh copy over ``src`` while
            # it was being linked: the inode being linked lost its last name (Linux then refuses
            # the link), and the name already holds the new copy
            if attempt == _LINK_TRIES - 1 or not os.path.exists(src):
                raise
        except OSError as exc:
            if exc.errno not in _LINK_FALLBACK:
                raise
            break
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
