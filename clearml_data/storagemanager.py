"""``StorageManager``: ClearML's helper for single files and folders at storage URLs.

ClearML's dataset examples fetch their sample data with it::

    from clearml_data import StorageManager

    csv = StorageManager.get_local_copy(remote_url="https://example.com/data/iris.csv")

Every storage driver serves it (folders and ``file://``, ``s3://``, ``gs://``, ``azure://``
through their plugins, and the built-in read-only ``http://`` and ``https://``). Its methods
are ClearML's classmethods with ClearML's parameters and defaults, callable on the class or
on an instance (``StorageManager().get_local_copy(...)``); each calls one method of the
service (:mod:`clearml_data.service.remote`).

Unlike ClearML, a failure raises a one-line :class:`~clearml_data.errors.ClearMLDataError`
(a missing file: ``StorageError``) instead of returning None, unless the method's
``silence_errors`` asks for None.
"""

from __future__ import annotations

import logging
import os

from .api import default_service
from .errors import ClearMLDataError

log = logging.getLogger(__name__)


class StorageManager:
    """Download, upload, list and check files at storage URLs, with a local download cache."""

    @classmethod
    def get_local_copy(
        cls,
        remote_url: str,
        cache_context: str | None = None,
        extract_archive: bool = True,
        name: str | None = None,
        force_download: bool = False,
    ) -> str:
        """A local path with the file's bytes: a local file is used where it is; a remote file
        is downloaded once into the cache (``force_download`` fetches it again). A zip or tar
        archive is unpacked, safely, into a folder beside it, and that folder is returned
        (``extract_archive=False`` returns the archive; ``name`` names the folder apart)."""
        return default_service().remote_local_copy(
            os.fspath(remote_url), cache_context, extract_archive, name, force_download
        )

    @classmethod
    def download_file(
        cls,
        remote_url: str,
        local_folder: str | None = None,
        overwrite: bool = False,
        skip_zero_size_check: bool = False,
        silence_errors: bool = False,
    ) -> str | None:
        """Download to ``local_folder``, keeping the URL's path after its bucket or host
        (``s3://bucket/sub/f.ext`` -> ``local_folder/sub/f.ext``); returns the local path."""
        try:
            return default_service().remote_download_file(
                os.fspath(remote_url), local_folder, overwrite, skip_zero_size_check
            )
        except ClearMLDataError as exc:
            if not silence_errors:
                raise
            log.debug("download of %s failed: %s", remote_url, exc)
            return None

    @classmethod
    def download_folder(
        cls,
        remote_url: str,
        local_folder: str | None = None,
        match_wildcard: str | None = None,
        overwrite: bool = False,
        skip_zero_size_check: bool = False,
        silence_errors: bool = False,
        max_workers: int | None = None,
    ) -> str | None:
        """Download every file under a folder URL (``match_wildcard`` against each file's URL)
        into ``local_folder`` (default: the download cache); returns the local folder."""
        try:
            return default_service().remote_download_folder(
                os.fspath(remote_url), local_folder, match_wildcard, overwrite, skip_zero_size_check
            )
        except ClearMLDataError as exc:
            if not silence_errors:
                raise
            log.debug("download of %s failed: %s", remote_url, exc)
            return None

    @classmethod
    def upload_file(
        cls, local_file: str, remote_url: str, wait_for_upload: bool = True, retries: int | None = None
    ) -> str:
        """Store a local file at ``remote_url`` (the full destination, file name included);
        returns the URL. Uploads always complete before the call returns."""
        return default_service().remote_upload_file(local_file, os.fspath(remote_url), retries)

    @classmethod
    def upload_folder(
        cls, local_folder: str, remote_url: str, match_wildcard: str | None = None, retries: int | None = None
    ) -> str:
        """Store a local folder's files below ``remote_url``, keeping its tree; returns the URL."""
        return default_service().remote_upload_folder(
            local_folder, os.fspath(remote_url), match_wildcard, retries
        )

    @classmethod
    def list(
        cls, remote_url: str, return_full_path: bool = False, with_metadata: bool = False
    ) -> list | None:
        """The files under a folder URL (or whose names start with the URL's last part), as
        paths relative to that folder, full URLs with ``return_full_path``, or
        ``{"name", "size"}`` dicts with ``with_metadata``. None for http(s), which cannot list."""
        listed = default_service().remote_list(os.fspath(remote_url))
        if listed is None:
            return None
        storage, objects = listed
        out: list = []
        for key, size in objects:
            name = f"{storage.rstrip('/')}/{key}" if return_full_path else key
            out.append({"name": name, "size": size} if with_metadata else name)
        return out

    @classmethod
    def exists_file(cls, remote_url: str) -> bool:
        """Is there a file (a folder is not one) at ``remote_url``?"""
        return default_service().remote_exists(os.fspath(remote_url))

    @classmethod
    def get_file_size_bytes(cls, remote_url: str, silence_errors: bool = False) -> int | None:
        """The file's size in bytes (None with ``silence_errors`` when it cannot be read)."""
        try:
            return default_service().remote_size(os.fspath(remote_url))
        except ClearMLDataError:
            if not silence_errors:
                raise
            return None
