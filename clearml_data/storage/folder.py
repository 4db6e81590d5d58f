"""The built-in folder driver: plain paths and ``file://`` URLs.

A network mount (NFS, SMB) is just a folder. Writes go to a temporary name in the
storage's ``.incoming/`` folder and are renamed into place, so a reader never sees a partial
object; a create-only put links the temporary file to its final name, which fails with
``FileExistsError`` if another writer got there first. Temporary names carry their
writer's host and pid, so :meth:`FolderDriver.clean_temporaries` removes those of dead
writers and never one still being written.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

from .. import _crashpoints as crashpoints
from .. import tempfiles
from ..errors import UsageError
from ..paths import safe_join
from .base import CONDITIONAL_PUT, RANGED_READS, DriverInfo, ObjectInfo, Progress, StorageDriver, fingerprint
from .hookspecs import hookimpl

TMP_PREFIX = ".tmp-"
#: where puts write their temporary files (one folder, so a sweep reads one listing)
TMP_FOLDER = ".incoming"
#: bytes copied at a time by get_file
COPY_BLOCK = 1024 * 1024


@hookimpl
def clearml_data_storage_drivers():
    return [
        DriverInfo("file", "clearml_data.storage.folder:FolderDriver", description="local or network folder")
    ]


def folder_path(url: str) -> str:
    """The local folder a plain path or ``file://`` URL names."""
    if url.lower().startswith("file://"):
        parts = urlsplit(url)
        if "@" in parts.netloc or parts.query or parts.fragment:
            raise UsageError("a file:// URL takes no user, password, query string or fragment")
        if parts.netloc not in ("", "localhost"):
            path = "//" + parts.netloc + parts.path  # file://server/share
        else:
            path = parts.path
        path = unquote(path)
    else:
        path = url
    if not path:
        raise UsageError("no folder given")
    return os.path.abspath(os.path.expanduser(path))


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _regular(st: os.stat_result, key: str) -> os.stat_result:
    """``st`` if it is a regular file's; else FileNotFoundError saying what is there instead."""
    if stat.S_ISREG(st.st_mode):
        return st
    what = next((name for test, name in _KINDS if test(st.st_mode)), "not a file")
    raise FileNotFoundError(errno.ENOENT, f"not a regular file but {what}", key)


def _fingerprint(st: os.stat_result) -> str | None:
    """A file's fingerprint: its mtime in nanoseconds (a write moves it; a rename keeps it)."""
    return fingerprint(mtime_ns=st.st_mtime_ns)


def _copy_at_most(src, out, size: int, callback: Progress | None = None) -> None:
    """Copy up to ``size`` bytes from the start of ``src`` to ``out`` (kernel copy where it can),
    telling ``callback`` each block's bytes."""
    done = 0
    fast = hasattr(os, "copy_file_range")
    while done < size:
        n = min(COPY_BLOCK * 64 if fast else COPY_BLOCK, size - done)
        if fast:
            try:
                got = os.copy_file_range(src.fileno(), out.fileno(), n, done, done)
            except OSError:
                fast = False  # another filesystem or an old kernel: plain reads and writes
                continue
        else:
            src.seek(done)
            block = src.read(n)
            out.seek(done)
            out.write(block)
            got = len(block)
        if not got:
            break
        done += got
        if callback is not None:
            callback(got)


class FolderDriver(StorageDriver):
    schemes = ("file",)
    capabilities = frozenset({RANGED_READS, CONDITIONAL_PUT})

    def __init__(self, url: str, **options):
        super().__init__(url, **options)
        self.root = folder_path(url)
        self._swept = False

    def local_path(self, key: str) -> str:
        """The local file that holds ``key`` (checked to stay inside the folder)."""
        return safe_join(self.root, key)

    _path = local_path

    def put_file(
        self, local_path: str, key: str, *, overwrite: bool = True, callback: Progress | None = None
    ) -> None:
        final = self._path(key)
        folder = os.path.dirname(final)
        os.makedirs(folder, exist_ok=True)
        tmp_folder = os.path.join(self.root, TMP_FOLDER)
        os.makedirs(tmp_folder, exist_ok=True)
        # once a process, before anything can refuse the put: what killed writers left behind
        # (a writer killed between linking its object and removing its temporary file left both)
        if not self._swept:
            self._swept = True
            self.clean_temporaries()
        if not overwrite and os.path.lexists(final):
            raise FileExistsError(errno.EEXIST, "object exists", key)
        tmp = tempfiles.temp_path(tmp_folder, TMP_PREFIX)
        try:
            with open(local_path, "rb") as src, open(tmp, "wb") as out:
                _copy_at_most(src, out, os.fstat(src.fileno()).st_size, callback)
                out.flush()
                os.fsync(out.fileno())
            crashpoints.reach("storage.temp_written")
            if overwrite:
                os.replace(tmp, final)
            else:
                self._link_exclusive(tmp, final, key)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)

    @staticmethod
    def _link_exclusive(tmp: str, final: str, key: str) -> None:
        try:
            os.link(tmp, final)
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, "object exists", key) from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            # a filesystem without hard links: best effort
            if os.path.lexists(final):
                raise FileExistsError(errno.EEXIST, "object exists", key) from None
            os.replace(tmp, final)

    def clean_temporaries(self) -> int:
        return tempfiles.sweep(os.path.join(self.root, TMP_FOLDER), (TMP_PREFIX,))

    def _open(self, key: str) -> tuple[int, os.stat_result]:
        """An open descriptor of the object and its stat. Only a regular file is an object:
        a FIFO, device, socket or folder at the key (or a symlink to one) is refused before it
        is opened, and again from the opened descriptor (O_NONBLOCK: opening a FIFO never waits)."""
        path = self._path(key)
        _regular(os.stat(path), key)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            st = _regular(os.fstat(fd), key)
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    def get_file(self, key: str, local_path: str, *, callback: Progress | None = None) -> None:
        fd, st = self._open(key)
        with os.fdopen(fd, "rb") as src, open(local_path, "wb") as out:
            # what it held when opened: a file that grows is not followed
            _copy_at_most(src, out, st.st_size, callback)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError(f"a negative offset or length ({offset}, {length}) for {key}")
        fd, st = self._open(key)
        with os.fdopen(fd, "rb") as fh:
            if offset >= st.st_size or not length:
                return b""
            fh.seek(offset)
            return fh.read(min(length, st.st_size - offset))  # never more than the file holds

    def stat(self, key: str) -> ObjectInfo:
        st = _regular(os.stat(self._path(key)), key)
        return ObjectInfo(key, st.st_size, st.st_mtime, _fingerprint(st))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = safe_join(self.root, base) if base else self.root
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = sorted(d for d in dirnames if not (dirpath == self.root and d == TMP_FOLDER))
            rel_dir = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            for name in sorted(filenames):
                if name.startswith(TMP_PREFIX):
                    continue
                key = rel_dir + name
                if key.startswith(prefix):
                    try:
                        st = os.stat(os.path.join(dirpath, name))
                    except FileNotFoundError:
                        continue
                    if stat.S_ISREG(st.st_mode):  # a FIFO, device or socket is no object
                        yield ObjectInfo(key, st.st_size, st.st_mtime, _fingerprint(st))

    def delete(self, key: str) -> None:
        path = self._path(key)
        if os.path.isdir(path):
            raise FileNotFoundError(errno.ENOENT, "no such object", key)
        os.unlink(path)
