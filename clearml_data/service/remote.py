"""Single files and folders at storage URLs, outside any dataset: what ``StorageManager`` does.

A URL names a file in a storage (``/mnt/share/a.csv``, ``file://...``, ``s3://bucket/a.csv``,
``gs://``, ``azure://``, ``https://host/a.csv``): the driver is built for the folder part
(everything up to the last ``/``) and the last part is the key, so every driver the plugins
provide serves these calls unchanged. Folders are prefixes of that folder's driver.

Downloads go to ``<cache folder>/downloads/<context>/<digest of the URL>/<file name>``: written
under a temporary name and renamed into place, so a copy there is always complete, and a
second call for the same URL reads nothing from the storage (``force_download`` fetches it
again). An archive is unpacked (safely: :mod:`clearml_data.archives`) into a folder beside
it. These files sit outside the object cache and its size limit: remove the ``downloads``
folder to free their space.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from .. import archives
from ..errors import StorageError, UsageError
from ..paths import check_relpath, safe_join
from ..storage import StorageDriver, redact_url, url_scheme
from ..storage.folder import TMP_FOLDER, folder_path
from .workspace import Workspace, storage_call

log = logging.getLogger(__name__)

T = TypeVar("T")

DOWNLOADS = "downloads"
DEFAULT_CONTEXT = "global"
#: tries of an upload that fails with a connection error or a timeout (ClearML's default)
UPLOAD_RETRIES = 3


# -- URLs ------------------------------------------------------------------------------------
def split_remote(url: str) -> tuple[str, str]:
    """(storage URL of the folder, key of the file) for a file URL or path."""
    url = os.fspath(url)
    if not url:
        raise UsageError("no URL given")
    if url_scheme(url) == "file":
        path = folder_path(url)
        return os.path.dirname(path), os.path.basename(path)
    parts = urlsplit(url)
    folder, _, name = parts.path.rpartition("/")
    if not name:
        raise UsageError(f"{redact_url(url)} names a folder, not a file", hint="end the URL with a file name")
    if parts.scheme.lower() in ("http", "https"):
        name = unquote(name)
    base = urlunsplit((parts.scheme, parts.netloc, folder, parts.query, ""))
    return base, name


def split_folder(url: str) -> tuple[str, str]:
    """(storage URL, key prefix) for a folder URL or path: a folder that exists locally, or a
    URL ending in ``/``, is listed whole; otherwise its last part is a prefix of names."""
    url = os.fspath(url)
    if url_scheme(url) == "file":
        path = folder_path(url)
        if os.path.isdir(path):
            return path, ""
        return os.path.dirname(path), os.path.basename(path)
    if url.endswith("/"):
        return url.rstrip("/"), ""
    return split_remote(url)


def relative_name(url: str) -> str:
    """The path a download keeps under its local folder: the URL's path after the bucket or
    host (``s3://bucket/sub/f.ext`` -> ``sub/f.ext``); a local file's name."""
    if url_scheme(url) == "file":
        return os.path.basename(folder_path(url))
    parts = urlsplit(url)
    rel = parts.path.lstrip("/")
    if parts.scheme.lower() in ("http", "https"):
        rel = unquote(rel)
    check_relpath(rel)
    return rel


def _call(storage: str, key: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A driver call; a missing object is a StorageError naming the URL."""
    try:
        return storage_call(storage, key, fn, *args, **kwargs)
    except FileNotFoundError:
        raise StorageError(
            f"{redact_url(_join(storage, key))} does not exist",
            url=redact_url(storage),
            key=key,
            hint="check the URL",
        ) from None


def _join(storage: str, key: str) -> str:
    if url_scheme(storage) == "file":
        return os.path.join(storage, key) if key else storage
    parts = urlsplit(storage)
    return urlunsplit((parts.scheme, parts.netloc, f"{parts.path}/{key}", parts.query, ""))


def _driver(ws: Workspace, storage: str) -> StorageDriver:
    return ws.driver(storage)


# -- downloads -----------------------------------------------------------------------------
def downloads_folder(ws: Workspace, cache_context: str | None = None) -> str:
    context = cache_context or DEFAULT_CONTEXT
    try:
        check_relpath(context)
    except ValueError:
        raise UsageError(f"cache_context {context!r} is not a plain name") from None
    return os.path.join(ws.settings.cache_dir, DOWNLOADS, context.replace("/", "_"))


def _fetch(ws: Workspace, url: str, target: str) -> str:
    """Download the file at ``url`` to ``target`` (complete, or not there at all)."""
    storage, key = split_remote(url)
    driver = _driver(ws, storage)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = f"{target}.part-{os.getpid()}-{uuid.uuid4().hex[:8]}"  # one per writer, threads too
    try:
        _call(storage, key, driver.get_file, key, tmp)
        os.replace(tmp, target)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return target


def get_local_copy(
    ws: Workspace,
    remote_url: str,
    cache_context: str | None = None,
    extract_archive: bool = True,
    name: str | None = None,
    force_download: bool = False,
) -> str:
    """A local path holding the file at ``remote_url`` (an archive: its unpacked folder)."""
    remote_url = os.fspath(remote_url)
    if url_scheme(remote_url) == "file":  # a local file is used where it is
        local = folder_path(remote_url)
        if not os.path.isfile(local):
            raise StorageError(f"{local} does not exist", url=local, hint="check the path")
        folder = os.path.join(
            downloads_folder(ws, cache_context), hashlib.sha256(local.encode()).hexdigest()[:32]
        )
    else:
        folder = os.path.join(
            downloads_folder(ws, cache_context), hashlib.sha256(remote_url.encode()).hexdigest()[:32]
        )
        local = os.path.join(folder, os.path.basename(split_remote(remote_url)[1]))
        if force_download or not os.path.isfile(local):
            _fetch(ws, remote_url, local)
        else:
            os.utime(local)  # recently used
    suffix = archives.archive_suffix(local) if extract_archive else None
    if suffix is None:
        return local
    stem = os.path.basename(local)[: -len(suffix)]
    target = os.path.join(folder, f"{stem}_extracted" + (f"_{_plain(name)}" if name else ""))
    if os.path.isdir(target):
        if not force_download:
            return target
        shutil.rmtree(target)
    return archives.extract(local, target)


def _plain(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))


def download_file(
    ws: Workspace,
    remote_url: str,
    local_folder: str | os.PathLike | None = None,
    overwrite: bool = False,
    skip_zero_size_check: bool = False,
) -> str:
    """Download to ``local_folder``/<the URL's path after the bucket or host>; returns the path.
    An existing file is kept unless ``overwrite``; an empty download is an error unless
    ``skip_zero_size_check``."""
    remote_url = os.fspath(remote_url)
    root = os.path.abspath(os.path.expanduser(os.fspath(local_folder or downloads_folder(ws))))
    target = safe_join(root, relative_name(remote_url))
    if os.path.isfile(target) and not overwrite:
        return target
    _fetch(ws, remote_url, target)
    if not skip_zero_size_check and os.path.getsize(target) == 0:
        os.unlink(target)
        raise StorageError(
            f"{redact_url(remote_url)} is empty", url=redact_url(remote_url), hint="skip_zero_size_check=True"
        )
    return target


def list_folder(ws: Workspace, remote_url: str) -> tuple[str, list[tuple[str, int]]] | None:
    """(storage URL, [(key, size)]) of the files under a folder URL or name prefix, or None
    for a storage that cannot list (http and https)."""
    storage, prefix = split_folder(os.fspath(remote_url))
    if url_scheme(storage) in ("http", "https"):
        log.warning("%s:// URLs cannot be listed", url_scheme(storage))
        return None
    driver = _driver(ws, storage)
    objects = _call(storage, prefix, lambda: list(driver.list(prefix)))
    return storage, sorted((o.key, o.size) for o in objects)


def download_folder(
    ws: Workspace,
    remote_url: str,
    local_folder: str | os.PathLike | None = None,
    match_wildcard: str | None = None,
    overwrite: bool = False,
    skip_zero_size_check: bool = False,
) -> str:
    """Download every file under the folder URL (matching ``match_wildcard``, against the full
    URL as ClearML does) into ``local_folder``, keeping the paths after the bucket or host."""
    local = os.path.abspath(os.path.expanduser(os.fspath(local_folder or downloads_folder(ws))))
    os.makedirs(local, exist_ok=True)
    listed = list_folder(ws, remote_url)
    if listed is None:
        raise UsageError(
            f"{url_scheme(os.fspath(remote_url))}:// folders cannot be listed",
            hint="download each file with download_file",
        )
    storage, objects = listed
    done = 0
    for key, _size in objects:
        url = _join(storage, key)
        if match_wildcard and not fnmatch.fnmatch(url, match_wildcard):
            continue
        if url_scheme(storage) == "file":  # keep the path below the folder listed
            target = safe_join(local, key)
            if overwrite or not os.path.isfile(target):
                _fetch(ws, url, target)
        else:
            download_file(ws, url, local, overwrite, skip_zero_size_check=True)
        done += 1
    if not done:
        log.warning("no files matched %s", redact_url(os.fspath(remote_url)))
    return local


# -- uploads -------------------------------------------------------------------------------
def upload_file(
    ws: Workspace, local_file: str | os.PathLike, remote_url: str, retries: int | None = None
) -> str:
    """Store a local file at ``remote_url`` (replacing what is there); returns the URL."""
    local_file = os.fspath(local_file)
    if not os.path.isfile(local_file):
        raise UsageError(f"{local_file} is not a file")
    storage, key = split_remote(os.fspath(remote_url))
    driver = _driver(ws, storage)
    tries = max(1, retries or UPLOAD_RETRIES)
    for attempt in range(1, tries + 1):
        try:
            # an overwriting put may be repeated safely, so a connection error is tried again
            storage_call(storage, key, driver.put_file, local_file, key)
            break
        except StorageError as exc:
            if attempt == tries or not isinstance(exc.__cause__, (ConnectionError, TimeoutError)):
                raise
    _tidy(storage)
    return os.fspath(remote_url)


def _tidy(storage: str) -> None:
    """Remove the folder driver's (empty) temporary folder from a plain destination folder."""
    if url_scheme(storage) == "file":
        try:
            os.rmdir(os.path.join(folder_path(storage), TMP_FOLDER))
        except OSError:
            pass  # not empty (another writer), or not there


def upload_folder(
    ws: Workspace,
    local_folder: str | os.PathLike,
    remote_url: str,
    match_wildcard: str | None = None,
    retries: int | None = None,
) -> str:
    """Store every file under ``local_folder`` (matching ``match_wildcard``) below
    ``remote_url``, keeping the folder structure; returns the URL."""
    local = os.path.abspath(os.fspath(local_folder))
    if not os.path.isdir(local):
        raise UsageError(f"{local} is not a folder")
    base = os.fspath(remote_url).rstrip("/")
    for dirpath, dirnames, filenames in os.walk(local):
        dirnames.sort()
        for fname in sorted(filenames):
            path = os.path.join(dirpath, fname)
            if match_wildcard and not fnmatch.fnmatch(fname, match_wildcard):
                continue
            if not os.path.isfile(path):
                continue
            rel = os.path.relpath(path, local).replace(os.sep, "/")
            upload_file(ws, path, f"{base}/{rel}", retries)
    return os.fspath(remote_url)


# -- questions -----------------------------------------------------------------------------
def file_size(ws: Workspace, remote_url: str) -> int:
    storage, key = split_remote(os.fspath(remote_url))
    driver = _driver(ws, storage)
    return _call(storage, key, driver.stat, key).size


def exists_file(ws: Workspace, remote_url: str) -> bool:
    """Is there a file (not a folder) at ``remote_url``?"""
    remote_url = os.fspath(remote_url)
    if remote_url.endswith("/"):
        return False
    storage, key = split_remote(remote_url)
    driver = _driver(ws, storage)
    return storage_call(storage, key, driver.exists, key)
