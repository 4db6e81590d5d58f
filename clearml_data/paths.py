"""Dataset-relative paths: normalising them and joining them safely onto a folder.

A dataset path is a POSIX-style relative path ("train/cat/001.jpg"): no leading slash,
no empty, "." or ".." component, no NUL or other control character. Every path that
comes from a user, the catalog or storage goes through :func:`check_relpath` before it
is stored and through :func:`safe_join` before anything is written with it.

What a user types may start with "/": as in ClearML, that is the dataset root
("/train/x.jpg" is "train/x.jpg"). :func:`normalize_relpath` and :func:`check_pattern`
drop it; the path that is stored and joined never has it.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import posixpath
import re

from .errors import UnsafePathError

#: C0 and C1 control characters and DEL (terminal escapes, line breaks, NUL), and the
#: invisible bidirectional and line-separator characters that make a name display as
#: another ("\u202etxt.exe" shows as "exe.txt")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
#: what (os.fsdecode) makes of bytes that are not UTF-8: lone surrogates
_NOT_UTF8 = re.compile("[\ud800-\udfff]")
_DRIVE = re.compile(r"^[A-Za-z]:")
#: Windows device names: a file named so is the device, on a Windows machine or SMB share
_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))]
)
_ID = re.compile(r"[0-9a-f]{32}")
_HASH = re.compile(r"[0-9a-f]{64}")
MAX_COMPONENT = 255
#: the longest dataset path, in bytes (UTF-8), and the most components it may have. Linux
#: refuses paths of PATH_MAX (4096) bytes or more, and a local copy puts its folder (the cache's
#: or the target's) in front: 3072 bytes leave over 1000 for it. 256 levels keep every tool
#: that walks a tree one call per level (os.makedirs, shutil.rmtree) far from Python's
#: recursion limit and the open-file limit.
MAX_PATH_BYTES = 3072
MAX_DEPTH = 256
_SHORT = MAX_PATH_BYTES // 4  # a path of at most this many characters is within MAX_PATH_BYTES
#: a path that is certainly clean (every component: word characters and common punctuation,
#: not starting or ending with a dot or space, at most 63 characters, not a device name);
#: anything else gets the full, slower check
_F = r"[\w\-+=,@%~()#&!'\[\]{}]"
_M = r"[\w\-+=,@%~()#&!'\[\]{}. ]"
_COMPONENT = (
    r"(?!(?i:con|prn|aux|nul|com[0-9]|lpt[0-9])(?:/|\Z))"
    rf"(?:{_F}{_M}{{0,61}}{_F}|{_F})"
)
_CLEAN = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")


def describe(path: str) -> str:
    """A path quoted for a one-line message: control characters escaped, and a name that
    is not UTF-8 shown as the bytes it is (b'caf\\xe9.txt')."""
    if isinstance(path, str) and _NOT_UTF8.search(path):
        try:
            return repr(os.fsencode(path))
        except UnicodeError:
            pass
    return repr(path)


def check_relpath(path: str) -> str:
    """Return ``path`` if it is a clean dataset-relative path, else raise UnsafePathError.

    Refused: empty, absolute ("/x", "C:x"), backslashes, empty / "." / ".." components,
    control characters, bidirectional overrides, names that are not UTF-8, components of
    more than 255 bytes, components ending in "." or " " (Windows and exFAT drop them, so
    "a." and "a" would be one file), bare Windows device names (CON, NUL, COM1, ...), and
    paths longer than MAX_PATH_BYTES bytes or with more than MAX_DEPTH components.
    """
    if (
        isinstance(path, str)
        and len(path) <= _SHORT
        and path.count("/") < MAX_DEPTH
        and _CLEAN.fullmatch(path)
    ):
        return path
    if not isinstance(path, str) or not path:
        raise UnsafePathError(f"empty path {path!r}")
    if _NOT_UTF8.search(path):
        raise UnsafePathError(f"path {describe(path)} is not valid UTF-8")
    if _CONTROL.search(path):
        raise UnsafePathError(f"path {path!r} contains a control or bidirectional-override character")
    if "\\" in path:
        raise UnsafePathError(f"path {path!r} contains a backslash")
    if path.startswith("/") or _DRIVE.match(path):
        raise UnsafePathError(f"path {path!r} is absolute")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise UnsafePathError(f"path {path!r} has an empty, '.' or '..' component")
        if part[-1] in ". ":
            raise UnsafePathError(f"path {path!r} has a component ending in a dot or space")
        if len(part) > MAX_COMPONENT // 4 and len(part.encode("utf-8")) > MAX_COMPONENT:
            raise UnsafePathError(f"path {path!r} has a component longer than {MAX_COMPONENT} bytes")
        if len(part) <= 4 and part.upper() in _DEVICES:
            raise UnsafePathError(f"path {path!r} has a component that is a Windows device name")
    check_depth(path)
    return path


def check_depth(path: str) -> None:
    """Refuse a path longer than MAX_PATH_BYTES bytes or deeper than MAX_DEPTH components."""
    depth = path.count("/") + 1
    if depth > MAX_DEPTH:
        raise UnsafePathError(
            f"path {shorten(path)} has {depth} components; a dataset path has at most {MAX_DEPTH} components",
            hint="add the files from a shallower folder",
        )
    if len(path) > _SHORT:
        size = len(path.encode("utf-8"))
        if size > MAX_PATH_BYTES:
            raise UnsafePathError(
                f"path {shorten(path)} is {size} bytes long; a dataset path has at most "
                f"{MAX_PATH_BYTES} bytes",
                hint="add the files from a shallower folder",
            )


def shorten(path: str, keep: int = 80) -> str:
    """A long path quoted for a one-line message: its start and end around an ellipsis."""
    if len(path) <= 2 * keep:
        return describe(path)
    return f"{describe(path[:keep])}…{describe(path[-keep:])}"


def check_id(dataset_id: str) -> str:
    """A full dataset id (32 lowercase hex characters) read from the catalog, else CatalogError."""
    if not isinstance(dataset_id, str) or not _ID.fullmatch(dataset_id):
        from .errors import CatalogError

        raise CatalogError(
            f"the catalog holds a malformed dataset id {dataset_id!r}",
            hint="the catalog was changed outside clearml-data",
        )
    return dataset_id


def is_hash(digest) -> bool:
    """Is ``digest`` a SHA-256 hex digest (64 lowercase hex characters)?"""
    return isinstance(digest, str) and _HASH.fullmatch(digest) is not None


def check_pattern(pattern: str) -> str:
    """A dataset path pattern (remove, list --filter): refused when no dataset path can match it.

    "", "*" and "/" mean everything; a leading "/" is the dataset root and is dropped
    (returned without it). Otherwise the pattern must be without "..", backslashes or
    control characters, like the paths it matches; a pattern without wildcards must be a
    valid dataset path (a trailing "/" names a folder).
    """
    text = str(pattern).strip()
    if text in ("", "*", "/"):
        return text
    text = text.lstrip("/") or "/"
    if text == "/":  # "//" is the root too
        return text
    if _NOT_UTF8.search(text) or _CONTROL.search(text) or "\\" in text:
        raise UnsafePathError(
            f"pattern {describe(text)} contains a control character, backslash "
            "or bytes that are not UTF-8, which no dataset path holds"
        )
    if _DRIVE.match(text):
        raise UnsafePathError(f"pattern {text!r} must be relative to the dataset root")
    if ".." in text.split("/"):
        raise UnsafePathError(f"pattern {text!r} must not contain '..'")
    if not any(c in text for c in "*?["):  # a plain path: the rules of the paths it names
        check_relpath(text.rstrip("/"))
    return text


def check_link(link: str, root_real: str) -> None:
    """Refuse a symbolic link met inside an added folder whose target lies outside it."""
    target = os.path.realpath(link)
    if target != root_real and not target.startswith(root_real.rstrip(os.sep) + os.sep):
        raise UnsafePathError(
            f"{describe(link)} is a symbolic link to {describe(target)}, outside the folder being added",
            hint="pass --follow-symlinks (follow_symlinks=True) to add what it points to, "
            "or add the target itself",
        )


def normalize_relpath(path: str) -> str:
    """Turn a user-typed dataset path ("./a//b/", "/a/b", "a\\b" is refused) into canonical
    form. A leading "/" is the dataset root; ".." is refused wherever it is.

    An empty result (the dataset root) is returned as "".
    """
    if path is None:
        return ""
    text = str(path).strip()
    if text in ("", ".", "/"):
        return ""
    if "\\" in text or _CONTROL.search(text) or _NOT_UTF8.search(text):
        raise UnsafePathError(f"dataset path {describe(text)} contains a backslash or control character")
    if _DRIVE.match(text):
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


@functools.lru_cache(maxsize=64)
def _normalized(absolute: str) -> str:
    return os.path.normpath(absolute)  # the same folder is joined onto once per file


def safe_join(root: str | os.PathLike, relpath: str) -> str:
    """Join a dataset path onto ``root``, refusing anything that would land outside it."""
    check_relpath(relpath)
    base = os.fspath(root)
    base = _normalized(base) if os.path.isabs(base) else os.path.abspath(base)
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
    * a folder (``data/jsons`` or ``data/jsons/``) matches everything below it;
    * a leading "/" is the dataset root, and dropped: ``/sub/*`` is ``sub/*``, and ``/a.txt``
      is ``a.txt`` (which, recursive, also matches ``x/a.txt``, as in ClearML).
    """
    pattern = pattern.strip()
    if pattern.startswith("/"):
        pattern = pattern.lstrip("/")
    if pattern in ("", "*"):
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


def glob_matches(path: str, pattern: str, recursive: bool = True) -> bool:
    """Does ``path``, relative to a folder being added, match the wildcard ``pattern`` the way
    ClearML's ``add_files`` finds files (pathlib's ``rglob``, or ``glob`` when not recursive)?

    * the match is component by component: ``*`` never crosses a "/", ``**`` stands for any
      number of folders;
    * recursive, the pattern may start in any folder: ``sub/*.csv`` matches ``sub/a.csv``
      and ``x/sub/a.csv``, not ``sub/deeper/a.csv``; ``*.csv`` matches at any depth;
    * not recursive, it matches from the folder itself (``sub/*.csv`` still reaches into
      ``sub``, ``*.csv`` only the folder's own files);
    * a leading "/" is dropped, as everywhere in dataset paths; a trailing "/" names
      folders, which hold no file content, so it matches nothing.
    """
    text = pattern.strip()
    if not text or text.endswith("/"):
        return False
    pats = [c for c in text.split("/") if c not in ("", ".")]
    if not pats:
        return False
    if recursive:
        pats = ["**", *pats]
    return _glob_parts(path.split("/"), pats)


def _glob_parts(parts: list[str], pats: list[str]) -> bool:
    if not pats:
        return not parts
    head = pats[0]
    if head == "**":
        if len(pats) == 1:  # a trailing "**": everything below
            return bool(parts)
        rest = pats[1:]
        return any(_glob_parts(parts[i:], rest) for i in range(len(parts)))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and _glob_parts(parts[1:], pats[1:])
