"""Records of the resumable upload sessions a GCS driver runs, so that gc can cancel them.

GCS cannot list resumable sessions: a session left by a killed writer holds bytes (for a
week) without being an object, and only its URI can cancel it. So each session a driver
starts is written to a small owner-only file in ``sessions_dir`` while it runs and removed
when the upload ends; what a killed writer leaves behind is what ``list_unfinished`` finds.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator

from google.cloud import storage

log = logging.getLogger(__name__)


def default_sessions_dir() -> str:
    """``gcs-sessions`` in the core's state folder (CLEARML_DATA_STATE_DIR, else the user's)."""
    import platformdirs

    from clearml_data.config import APP, ENV_STATE

    state = os.environ.get(ENV_STATE) or platformdirs.user_state_dir(APP, appauthor=False)
    return os.path.join(os.path.expanduser(state), "gcs-sessions")


class SessionRecord:
    """One resumable session while it runs: a small file (readable by the owner only: the
    session URI lets anyone who has it write the upload) removed when the upload ends."""

    def __init__(
        self, folder: str, bucket: str, name: str, record_id: str | None = None, uri: str | None = None
    ):
        self.folder = folder
        self.bucket = bucket
        self.name = name
        self.id = record_id or uuid.uuid4().hex
        self.uri = uri

    @property
    def path(self) -> str:
        return os.path.join(self.folder, f"{self.id}.json")

    def started(self, uri: str) -> None:
        self.uri = uri
        try:
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
            tmp = f"{self.path}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"bucket": self.bucket, "name": self.name, "started": time.time(), "uri": uri}, fh)
            os.replace(tmp, self.path)
        except OSError as exc:  # the upload still works; only gc cannot find it if it is cut off
            log.debug("could not record the resumable session of %s: %s", self.name, exc)

    def cancel(self, http, strict: bool = False) -> None:
        """DELETE the session URI; GCS answers 499 once it is cancelled, 404 when it is gone."""
        if not self.uri:
            return
        try:
            response = http.request("DELETE", self.uri, timeout=30)
        except Exception as exc:  # noqa: BLE001 - any transport error: the session stays recorded
            if strict:
                raise OSError(
                    errno.EIO,
                    f"cannot cancel the upload session of gs://{self.bucket}/"
                    f"{self.name}: {type(exc).__name__}",
                ) from None
            return
        if strict and response.status_code not in (200, 204, 404, 410, 499):
            raise OSError(
                errno.EIO,
                f"cannot cancel the upload session of gs://{self.bucket}/{self.name}: "
                f"HTTP {response.status_code}",
            )

    def forget(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.debug("could not remove the session record %s: %s", self.path, exc)

    @classmethod
    def load(cls, folder: str, record_id: str) -> SessionRecord | None:
        if not re.fullmatch(r"[0-9a-f]{32}", record_id or ""):
            return None
        found = cls._read(os.path.join(folder, f"{record_id}.json"))
        if found is None:
            return None
        return cls(folder, found["bucket"], found["name"], record_id, found.get("uri"))

    @classmethod
    def all(cls, folder: str) -> Iterator[tuple[str, dict]]:
        try:
            names = sorted(os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in names:
            record_id, ext = os.path.splitext(entry)
            if ext == ".json" and re.fullmatch(r"[0-9a-f]{32}", record_id):
                found = cls._read(os.path.join(folder, entry))
                if found is not None:
                    yield record_id, found

    @staticmethod
    def _read(path: str) -> dict | None:
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return None
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("bucket"), str)
            or not isinstance(data.get("name"), str)
        ):
            return None
        return data


class SessionBlob(storage.Blob):
    """A Blob that records the resumable session of its upload while the upload runs."""

    recorder: SessionRecord | None = None

    def _initiate_resumable_upload(self, *args, **kwargs):
        upload, transport = super()._initiate_resumable_upload(*args, **kwargs)
        if self.recorder is not None and getattr(upload, "resumable_url", None):
            self.recorder.started(upload.resumable_url)
        return upload, transport
