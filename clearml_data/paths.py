"""Dataset-relative paths: normalising them and joining them safely onto a folder.

A dataset path is a POSIX-style relative path ("train/cat/001.jpg"): no leading slash,
no empty, "." or ".." component, no NUL or other control character. Every path that
comes from a user, the catalog or storage goes through :func:`check_relpath` before it
is stored and through :func:`safe_join` before anything is written with it.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re

from .errors import UnsafePathError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")
MAX_COMPONENT = 255


def check_relpath(path: str) -> str:
    """Return ``path`` if it is a clean dataset-relative path, else raise UnsafePathError."""
    if not isinstance(path, str) or not path:
        raise UnsafePathError(f"empty path {path!r}")
    if _CONTROL.search(path):
        raise UnsafePathError(f"path {path!r} contains a control character")
    if "\\" in path:
        raise UnsafePathError(f"path {path!r} contains a backslash")
    if path.startswith("/") or _DRIVE.match(path):
        raise UnsafePathError(f"path {path!r} is absolute")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise UnsafePathError(f"path {path!r} has an empty, '.' or '..' component")
        if len(part.encode("utf-8", "surrogateescape")) > MAX_COMPONENT:
            raise UnsafePathError(f"path {path!r} has a component longer than {MAX_COMPONENT} bytes")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafePathError(f"path {path!r} is not valid UTF-8") from None
    return path


def normalize_relpath(path: str) -> str:
    """Turn a user-typed dataset path ("./a//b/", "a\\b" is refused) into canonical form.

    An empty result (the dataset root) is returned as "".
    """
    if path is None:
        return ""
    text = str(path).strip()
    if text in ("", ".", "/"):
        return ""
    if "\\" in text or _CONTROL.search(text):
        raise UnsafePathError(f"dataset path {text!r} contains a backslash or control character")
    if text.startswith("/") or _DRIVE.match(text):
        raise UnsafePathError(f"dataset path {text!r} must be relative to the dataset root")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePathError(f"dataset path {text!r} must not contain '..'")
    if not parts:
        return ""
    return check_relpath("/".join(parts))


def join_relpath(prefix: str, rel: str) -> str:
    """Join a normalised dataset folder and a relative path."""
    return f"{prefix}/{rel}" if prefix else rel


def safe_join(root: str | os.PathLike, relpath: str) -> str:
    """Join a dataset path onto ``root``, refusing anything that would land outside it."""
    check_relpath(relpath)
    base = os.path.abspath(os.fspath(root))
    # check_relpath leaves no empty, "." or ".." component and no leading separator, so the
    # joined path is below base by construction; the prefix test below is a second guard
    full = os.path.join(base, relpath) if os.sep == "/" else os.path.join(base, *relpath.split("/"))
    if not full.startswith(base.rstrip(os.sep) + os.sep):
        raise UnsafePathError(f"path {relpath!r} leaves the folder {base}")
    return full


def local_relpath(path: str, base: str) -> str:
    """The dataset-style relative path of local ``path`` below local folder ``base``."""
    rel = os.path.relpath(path, base)
    return rel.replace(os.sep, "/") if os.sep != "/" else rel


def under(path: str, folder: str) -> bool:
    """True when dataset path ``path`` lies in dataset folder ``folder`` ("" is the root)."""
    return not folder or path == folder or path.startswith(folder + "/")


def matches(path: str, pattern: str, recursive: bool = True) -> bool:
    """ClearML-style wildcard match of a dataset path, without ClearML's trailing-slash trap.

    * ``a/b.txt`` or ``*.jpg`` match like :func:`fnmatch.fnmatchcase` on the whole path;
    * with ``recursive``, a pattern without "/" also matches the file name at any depth;
    * a folder (``data/jsons`` or ``data/jsons/``) matches everything below it.
    """
    pattern = pattern.strip()
    if pattern in ("", "*", "/"):
        return True
    folder = pattern.rstrip("/")
    if folder and not any(c in folder for c in "*?[") and under(path, folder):
        return recursive or posixpath.dirname(path) == folder or path == folder
    if pattern.endswith("/"):
        pattern += "*"
    if fnmatch.fnmatchcase(path, pattern):
        return recursive or path.count("/") == pattern.count("/")
    if recursive and "/" not in pattern:
        return fnmatch.fnmatchcase(posixpath.basename(path), pattern)
    return False
