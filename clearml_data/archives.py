"""Safe extraction of zip and tar archives (downloads that ``get_local_copy`` unpacks).

Every member is checked before anything is written: a name that is absolute, holds ``..``
or would land outside the target (through :func:`~clearml_data.paths.safe_join`), a
symbolic link whose target leaves the folder, a hard link to something outside the
archive, a device or a FIFO: each makes the whole archive refused (``UnsafePathError``).
The archive is unpacked into a temporary folder beside the target and renamed into place,
so the target is either complete or absent.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import uuid
import zipfile

from .errors import UnsafePathError, UsageError
from .paths import safe_join

#: suffixes (lower case) of the archives that are unpacked
SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def archive_suffix(name: str) -> str | None:
    """The archive suffix ``name`` ends with, or None."""
    lower = name.lower()
    return next((s for s in sorted(SUFFIXES, key=len, reverse=True) if lower.endswith(s)), None)


def extract(archive: str, target: str) -> str:
    """Unpack ``archive`` into the folder ``target`` (created; must not exist yet); returns it."""
    suffix = archive_suffix(archive)
    if suffix is None:
        raise UsageError(f"{os.path.basename(archive)} is not a zip or tar archive")
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".extracting-{uuid.uuid4().hex}")
    os.mkdir(tmp)
    try:
        try:
            if suffix == ".zip":
                _unzip(archive, tmp)
            else:
                _untar(archive, tmp)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
            if isinstance(exc, UnsafePathError):
                raise
            raise UsageError(
                f"cannot unpack {os.path.basename(archive)}: {exc}",
                hint="the download may be damaged: get it again with force_download=True",
            ) from None
        try:
            os.rename(tmp, target)
        except OSError:
            if not os.path.isdir(target):  # else another process unpacked it first: use theirs
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _member_path(root: str, name: str, archive: str) -> str:
    """Where member ``name`` goes; ``root`` itself for "." (``tar -C folder .`` writes it)."""
    clean = name.rstrip("/")
    while clean.startswith("./"):
        clean = clean[2:]
    if clean in ("", "."):
        return os.path.normpath(os.path.abspath(root))
    try:
        return safe_join(root, clean)
    except ValueError as exc:
        raise UnsafePathError(
            f"{os.path.basename(archive)} holds a member that would leave its folder: {name!r} ({exc})",
            hint="the archive was not unpacked; unpack it yourself if you trust it",
        ) from None


def _unzip(archive: str, root: str) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        paths = []
        for info in members:
            path = _member_path(root, info.filename, archive)
            kind = stat.S_IFMT(info.external_attr >> 16)  # 0: a zip that records no file type
            if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                raise UnsafePathError(
                    f"{os.path.basename(archive)} holds {info.filename!r}, which is not a file or folder",
                    hint="links and devices are not unpacked",
                )
            paths.append(path)
        for info, path in zip(members, paths, strict=True):
            if info.is_dir():
                os.makedirs(path, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with zf.open(info) as src, open(path, "wb") as out:
                shutil.copyfileobj(src, out, 1024 * 1024)


def _untar(archive: str, root: str) -> None:
    root_abs = os.path.normpath(os.path.abspath(root))
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for m in members:
            path = _member_path(root, m.name, archive)
            if m.issym():
                target = os.path.normpath(os.path.join(os.path.dirname(path), m.linkname))
                if not os.path.isabs(m.linkname) and (target + os.sep).startswith(root_abs + os.sep):
                    continue
                raise UnsafePathError(
                    f"{os.path.basename(archive)} holds a link {m.name!r} to {m.linkname!r}, "
                    "outside the archive",
                    hint="the archive was not unpacked",
                )
            if m.islnk():
                _member_path(root, m.linkname, archive)
            elif not (m.isfile() or m.isdir()):
                raise UnsafePathError(
                    f"{os.path.basename(archive)} holds {m.name!r}, which is not a file, folder or link",
                    hint="devices and FIFOs are not unpacked",
                )
        for m in members:
            path = _member_path(root, m.name, archive)
            if m.isdir():
                os.makedirs(path, exist_ok=True)
            elif m.issym():
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.symlink(m.linkname, path)
            elif m.islnk():
                os.makedirs(os.path.dirname(path), exist_ok=True)
                shutil.copyfile(_member_path(root, m.linkname, archive), path)
            else:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                src = tf.extractfile(m)
                if src is None:
                    continue
                with src, open(path, "wb") as out:
                    shutil.copyfileobj(src, out, 1024 * 1024)
            if m.isfile() or m.isdir():
                os.chmod(path, (m.mode & 0o755) | (0o700 if m.isdir() else 0o600))
