"""The ``gs://bucket/prefix`` storage driver, on google-cloud-storage.

- Small objects (up to the SDK's 8 MiB) go up in one multipart request; larger ones as a
  resumable upload in ``chunk_size`` pieces. Nothing is visible before the last piece
  lands, and an abandoned resumable session holds no object (GCS drops it after a week).
- Every upload sends its CRC32C (the SDK computes it; GCS rejects a mismatch), and whole
  downloads are checked against the object's CRC32C. Large downloads go through the SDK's
  transfer manager: ranged reads of ``part_size`` in ``max_concurrency`` threads, pinned
  to one object generation, whose CRC32Cs combine into the whole object's.
- Create-only puts use ``ifGenerationMatch=0``. The SDK retries throttling (429), 5xx
  and dropped connections with exponential backoff (``retry_backoff`` doubling up to
  ``retry_max_backoff``), at most ``max_attempts`` tries and ``retry_deadline`` seconds per
  call; a retried create-only put that finds "its own" object (tagged with a per-put
  token) counts as a success. Requests time out after ``connect_timeout`` /
  ``read_timeout``.
- Options (:data:`OPTIONS`) come from keyword arguments, ``CLEARML_DATA_GS_<OPTION>`` and
  the ``[storage.gs]`` config section; the names of earlier releases and their
  ``CLEARML_DATA_GCS_*`` variables still work, with a DeprecationWarning.
- Errors become builtin exceptions: FileNotFoundError (missing object), FileExistsError
  (create-only put of an existing key), PermissionError (401/403, no credentials),
  BucketNotFoundError (an OSError), TimeoutError/ConnectionError, OSError otherwise.
  Messages name ``gs://bucket/key`` and the HTTP status, never a request URL or token.

Credentials come from the SDK's chain (Application Default Credentials:
GOOGLE_APPLICATION_CREDENTIALS, gcloud's ADC file, the metadata server); with
STORAGE_EMULATOR_HOST set the SDK talks to that emulator, anonymously.
"""

from __future__ import annotations

import errno
import functools
import logging
import math
import os
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import requests
import requests.adapters
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exc
from google.cloud import storage
from google.cloud.storage import transfer_manager
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse
from google.cloud.storage.retry import DEFAULT_RETRY

from clearml_data.storage import (
    CONDITIONAL_PUT,
    MULTIPART,
    RANGED_READS,
    ObjectInfo,
    Option,
    Progress,
    StorageDriver,
    Unfinished,
    fingerprint,
    redact_text,
)
from clearml_data.storage.toolkit import (
    Lazy,
    MiB,
    parse_size,
    positive_float,
    renamed_options,
    transfer_options,
    unlink_quietly,
)

from .sessions import SessionBlob, SessionRecord, default_sessions_dir
from .urls import MAX_NAME_BYTES, parse_gs_url

__all__ = ["BucketNotFoundError", "GCSDriver", "parse_gs_url"]

log = logging.getLogger(__name__)

#: resumable chunks must be multiples of this (GCS rule)
CHUNK_MULTIPLE = 256 * 1024
#: objects larger than this go up as resumable uploads (the SDK's own switch-over point)
RESUMABLE_THRESHOLD = 8 * MiB
#: the prefix of the environment variables of earlier releases (today's: CLEARML_DATA_GS_<OPTION>)
OLD_ENV_PREFIX = "CLEARML_DATA_GCS_"
#: metadata key of the per-put token that tells a retried create-only put its own object
TOKEN_KEY = "clearml-data-put"

OPTIONS = (
    *transfer_options(
        max_concurrency=16,
        part_size=16 * MiB,
        multipart_threshold=0,
        max_attempts=8,
        connect_timeout=10.0,
        read_timeout=60.0,
    ),
    Option("chunk_size", parse_size, 100 * MiB, "piece size of resumable uploads (rounded up to 256 KiB)"),
    Option("retry_backoff", positive_float, 1.0, "first back-off in seconds, doubled on each retry"),
    Option("retry_max_backoff", positive_float, 32.0, "longest back-off in seconds"),
    Option("retry_deadline", positive_float, 120.0, "seconds to keep retrying one request"),
    Option("project", help="project for the client"),
    Option("endpoint", help="API endpoint"),
    Option("sessions_dir", help="where the resumable sessions running are recorded"),
)


def _mib(value: Any) -> int:
    return max(1, int(positive_float(value) * MiB))


#: options of earlier releases -> (today's name, old value -> today's); each was also read from
#: CLEARML_DATA_GCS_<OLD NAME>, as are the options whose name did not change
RENAMED: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "max_workers": ("max_concurrency", int),
    "download_slice_mb": ("part_size", _mib),
    "chunk_size_mb": ("chunk_size", _mib),
    "retries": ("max_attempts", int),
    "timeout": ("read_timeout", float),
    **{
        same: (same, str)
        for same in (
            "connect_timeout",
            "retry_backoff",
            "retry_max_backoff",
            "retry_deadline",
            "project",
            "endpoint",
            "sessions_dir",
        )
    },
}

_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>)]+")


class BucketNotFoundError(OSError):
    """The bucket of a ``gs://`` URL does not exist (deliberately not a FileNotFoundError:
    a missing bucket must not look like an empty one)."""


# ------------------------------------------------------------------------------ options
def _scrub(text: str) -> str:
    """The first line of an SDK message, without request URLs' query strings (they name
    upload sessions), passed through the core's credential scrubber."""

    def short(m: re.Match) -> str:
        return m.group(0).split("?", 1)[0].split("#", 1)[0]

    first = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return redact_text(_URL_IN_TEXT.sub(short, redact_text(first)))[:500]


# ------------------------------------------------------------------------------- driver
class GCSDriver(StorageDriver):
    """A ``gs://bucket/prefix`` location; safe to call from many threads at once."""

    schemes = ("gs",)
    capabilities = frozenset({RANGED_READS, MULTIPART, CONDITIONAL_PUT})
    #: parallel transfers that keep a normal link busy (the core sizes its pool with it)
    default_max_workers = 16

    declared_options = OPTIONS
    max_key_bytes = MAX_NAME_BYTES

    def __init__(self, url: str, **options: Any):
        self.bucket_name, self.prefix = parse_gs_url(url)
        options = renamed_options(dict(options), RENAMED, "gs", OLD_ENV_PREFIX)
        retry = options.pop("retry", None)  # a google.api_core Retry
        self._credentials = options.pop("credentials", None)  # a google.auth Credentials object
        super().__init__(url, **options)
        opts = self.options
        self.project: str | None = opts["project"]
        self.endpoint: str | None = opts["endpoint"]
        self.chunk_size = max(CHUNK_MULTIPLE, math.ceil(opts["chunk_size"] / CHUNK_MULTIPLE) * CHUNK_MULTIPLE)
        self.max_workers: int = opts["max_concurrency"]
        self.slice_size = max(CHUNK_MULTIPLE, opts["part_size"])
        #: objects of at least this size are downloaded in ranged parts (default: two parts)
        self.sliced_from: int = opts["multipart_threshold"] or 2 * self.slice_size
        #: (connect, read) seconds; a stalled connection fails after the read timeout
        self.timeout = (opts["connect_timeout"], opts["read_timeout"])
        if retry is None:  # the SDK's retryable errors; its back-off, bounded in attempts too
            initial = opts["retry_backoff"]
            retry = BoundedRetry(
                opts["max_attempts"],
                predicate=DEFAULT_RETRY._predicate,
                initial=initial,
                maximum=max(initial, opts["retry_max_backoff"]),
                multiplier=2.0,
                timeout=opts["retry_deadline"],
            )
        self.retry = retry
        #: where the resumable sessions this driver starts are recorded until they end
        self.sessions_dir: str = opts["sessions_dir"] or default_sessions_dir()
        self._name_prefix = self.prefix + "/" if self.prefix else ""
        self._client = Lazy(self._make_client)
        self._bucket_seen = False  # once an operation succeeded, a 404 means "no such object"

    # -- SDK objects -------------------------------------------------------------------
    @property
    def client(self) -> storage.Client:
        """The driver's one SDK client (created on first use; shared by all threads)."""
        return self._client.get()

    @property
    def bucket(self) -> storage.Bucket:
        return self.client.bucket(self.bucket_name)

    def _make_client(self) -> storage.Client:
        kwargs: dict[str, Any] = {"project": self.project}  # None: object calls need no project
        if self._credentials is not None:
            kwargs["credentials"] = self._credentials
        if self.endpoint:
            kwargs["client_options"] = {"api_endpoint": self.endpoint}
        try:
            client = storage.Client(**kwargs)
        except auth_exc.DefaultCredentialsError:
            raise PermissionError(
                errno.EACCES,
                "no Google Cloud credentials found for gs:// storage: set GOOGLE_APPLICATION_CREDENTIALS "
                "to a service-account key file or run `gcloud auth application-default login` "
                "(STORAGE_EMULATOR_HOST selects an emulator)",
            ) from None
        self._size_connection_pool(client)
        return client

    def _size_connection_pool(self, client: storage.Client) -> None:
        """requests keeps 10 connections per host by default; we run more threads than that: the
        core's transfers, each large download with ``max_workers`` ranged reads of its own."""
        try:
            session = client._http  # the SDK's AuthorizedSession (a requests.Session)
            size = self.default_max_workers * (self.max_workers + 1)
            for prefix in ("https://", "http://"):
                if type(session.adapters.get(prefix)) is requests.adapters.HTTPAdapter:  # not mTLS
                    session.mount(
                        prefix, requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=size)
                    )
        except Exception:  # the defaults still work, only slower
            log.debug("could not resize the HTTP connection pool", exc_info=True)

    def close(self) -> None:
        client = self._client.take()
        if client is not None:
            try:
                client.close()
            except Exception:
                log.debug("closing the GCS client failed", exc_info=True)

    # -- names and errors ----------------------------------------------------------------
    def _where(self, name: str | None = None) -> str:
        return (
            f"gs://{self.bucket_name}/{name}"
            if name is not None
            else f"gs://{self.bucket_name}/{self.prefix}"
        )

    def _bucket_exists(self) -> bool | None:
        """True / False, or None when we may not ask (no storage.buckets.get permission)."""
        try:
            exists = self.bucket.exists(timeout=self.timeout, retry=self.retry)
        except Exception:  # noqa: BLE001 - any SDK error becomes a builtin one
            return None
        if exists:
            self._bucket_seen = True
        return exists

    def _error(self, exc: BaseException, op: str, key: str | None = None) -> OSError:
        """The builtin exception for an SDK error, with a message free of URLs' secrets."""
        where = self._where(self._name_prefix + key if key is not None else None)
        if isinstance(exc, OSError) and not isinstance(exc, (requests.RequestException,)):
            return exc  # already one of ours, or a local file error
        if isinstance(exc, gexc.NotFound):
            if not self._bucket_seen and self._bucket_exists() is False:
                return BucketNotFoundError(
                    errno.ENOENT, f"the bucket gs://{self.bucket_name} does not exist", self._where()
                )
            return FileNotFoundError(errno.ENOENT, "no such object", key if key is not None else where)
        if isinstance(exc, (gexc.Unauthorized, gexc.Forbidden)):
            return PermissionError(
                errno.EACCES,
                f"{op} {where}: permission denied (HTTP {exc.code}): {_scrub(exc.message)}",
                where,
            )
        if isinstance(exc, (auth_exc.RefreshError, auth_exc.DefaultCredentialsError)):
            return PermissionError(
                errno.EACCES,
                f"{op} {where}: the Google Cloud credentials do not work ({type(exc).__name__})",
                where,
            )
        if isinstance(exc, DataCorruption):
            return OSError(
                errno.EIO, f"{op} {where}: checksum mismatch, the bytes were damaged in transit", where
            )
        if isinstance(exc, gexc.RetryError):
            cause = exc.cause
            detail = _scrub(getattr(cause, "message", None) or cause) if cause is not None else ""
            return TimeoutError(
                errno.ETIMEDOUT,
                f"{op} {where}: gave up after retrying for the retry deadline: {detail}",
                where,
            )
        if isinstance(exc, requests.Timeout):
            return TimeoutError(
                errno.ETIMEDOUT, f"{op} {where}: timed out talking to Google Cloud Storage", where
            )
        if isinstance(exc, (requests.ConnectionError, auth_exc.TransportError)):
            return ConnectionError(
                errno.ECONNREFUSED,
                f"{op} {where}: cannot reach Google Cloud Storage ({type(exc).__name__})",
                where,
            )
        if isinstance(exc, gexc.GoogleAPICallError):
            return OSError(errno.EIO, f"{op} {where}: HTTP {exc.code}: {_scrub(exc.message)}", where)
        if isinstance(exc, InvalidResponse):
            status = getattr(getattr(exc, "response", None), "status_code", "?")
            return OSError(errno.EIO, f"{op} {where}: unexpected HTTP {status} response", where)
        if isinstance(exc, requests.RequestException):
            return OSError(errno.EIO, f"{op} {where}: {type(exc).__name__}", where)
        return OSError(errno.EIO, f"{op} {where}: {type(exc).__name__}: {_scrub(str(exc))}", where)

    def _ok(self) -> None:
        self._bucket_seen = True

    # -- primitives ----------------------------------------------------------------------
    def put_file(
        self, local_path: str, key: str, *, overwrite: bool = True, callback: Progress | None = None
    ) -> None:
        name = self.full_key(key)
        blob = SessionBlob(name, self.bucket, chunk_size=self.chunk_size)
        blob.recorder = SessionRecord(self.sessions_dir, self.bucket_name, name)
        token = uuid.uuid4().hex
        if not overwrite:
            blob.metadata = {TOKEN_KEY: token}
        with open(local_path, "rb") as fh:  # a missing local file raises FileNotFoundError here
            size = os.fstat(fh.fileno()).st_size
            resumable = size > RESUMABLE_THRESHOLD
            if not overwrite and resumable and self._find(name, key) is not None:
                # not needed on GCS (it checks ifGenerationMatch), but cheap next to a large
                # upload, and some emulators ignore preconditions on resumable uploads
                raise FileExistsError(errno.EEXIST, "object exists", key)
            try:
                try:
                    blob.upload_from_file(
                        _Counted(fh, callback),
                        size=size,
                        content_type="application/octet-stream",
                        if_generation_match=None if overwrite else 0,
                        checksum="crc32c",
                        retry=self.retry,
                        timeout=self.timeout,
                    )
                except BaseException:
                    blob.recorder.cancel(self._http_session())
                    raise
                finally:
                    blob.recorder.forget()
            except gexc.PreconditionFailed:
                if self._is_own_put(name, key, token):
                    self._ok()
                    return
                raise FileExistsError(errno.EEXIST, "object exists", key) from None
            except Exception as exc:  # noqa: BLE001 - any SDK error becomes a builtin one
                raise self._error(exc, "upload to", key) from None
        self._ok()
        if not overwrite and resumable and not self._is_own_put(name, key, token):
            # another create-only writer finished after us on a server that did not check
            # the precondition when the upload completed: theirs is the object now
            raise FileExistsError(errno.EEXIST, "object exists", key)

    def _is_own_put(self, name: str, key: str, token: str) -> bool:
        """Is the object the one this very put wrote (after a 412 on an SDK retry, or after a
        large create-only upload)?"""
        blob = self._find(name, key)
        return blob is not None and (blob.metadata or {}).get(TOKEN_KEY) == token

    def _find(self, name: str, key: str) -> storage.Blob | None:
        """The object's metadata, or None when it does not exist (a missing bucket raises)."""
        blob = self.bucket.blob(name)
        try:
            blob.reload(timeout=self.timeout, retry=self.retry)
        except Exception as exc:  # noqa: BLE001 - any SDK error becomes a builtin one
            err = self._error(exc, "stat", key)
            if isinstance(err, FileNotFoundError):
                return None
            raise err from None
        self._ok()
        return blob

    def _reload(self, name: str, key: str) -> storage.Blob:
        blob = self._find(name, key)
        if blob is None:
            raise FileNotFoundError(errno.ENOENT, "no such object", key)
        return blob

    def stat(self, key: str) -> ObjectInfo:
        blob = self._reload(self.full_key(key), key)
        return ObjectInfo(
            key, int(blob.size or 0), blob.updated.timestamp() if blob.updated else None, _fingerprint(blob)
        )

    def get_file(self, key: str, local_path: str, *, callback: Progress | None = None) -> None:
        name = self.full_key(key)
        blob = self._reload(name, key)  # size, generation and CRC32C of the object as it is now
        # every request then names that generation (the SDK does when the blob has no mediaLink),
        # so a replaced object fails the download instead of mixing the bytes of two versions
        blob._properties.pop("mediaLink", None)
        kwargs = {
            "raw_download": True,
            "retry": self.retry,
            "timeout": self.timeout,
            "single_shot_download": True,
        }
        try:
            if int(blob.size or 0) >= self.sliced_from and self.max_workers > 1:
                # ranged GETs in threads, and the whole file checked against the object's
                # CRC32C, combined from theirs (the transfer manager reports no progress: the
                # callback hears of the whole object at the end)
                transfer_manager.download_chunks_concurrently(
                    blob,
                    local_path,
                    chunk_size=self.slice_size,
                    worker_type=transfer_manager.THREAD,
                    max_workers=self.max_workers,
                    crc32c_checksum=bool(blob.crc32c),
                    download_kwargs=kwargs,
                )
                if callback is not None:
                    callback(int(blob.size or 0))
            else:
                with open(local_path, "wb") as fh:
                    blob.download_to_file(_Counted(fh, callback), checksum="crc32c", **kwargs)
        except Exception as exc:  # noqa: BLE001 - any SDK error becomes a builtin one
            unlink_quietly(local_path)
            raise self._error(exc, "download of", key) from None
        self._ok()

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        name = self.full_key(key)
        if offset < 0 or length < 0:
            raise ValueError(f"invalid range offset={offset} length={length}")
        if length == 0:
            self.stat(key)  # still: a missing object is an error
            return b""
        blob = self.bucket.blob(name)
        try:
            data = blob.download_as_bytes(
                start=offset,
                end=offset + length - 1,
                raw_download=True,
                checksum=None,
                retry=self.retry,
                timeout=self.timeout,
                single_shot_download=True,
            )
        except gexc.RequestRangeNotSatisfiable:
            self._ok()
            return b""  # offset at or past the end
        except Exception as exc:  # noqa: BLE001 - any SDK error becomes a builtin one
            raise self._error(exc, "ranged read of", key) from None
        self._ok()
        return data

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = self._name_prefix
        cut = len(base)
        try:
            blobs = self.client.list_blobs(
                self.bucket_name,
                prefix=base + prefix,
                fields="items(name,size,updated,md5Hash,crc32c,generation),nextPageToken",
                retry=self.retry,
                timeout=self.timeout,
            )
            for blob in blobs:
                name = blob.name
                if name.endswith("/"):  # a "folder" placeholder made by the console
                    continue
                self._bucket_seen = True
                mtime = blob.updated.timestamp() if blob.updated else None
                yield ObjectInfo(name[cut:], int(blob.size or 0), mtime, _fingerprint(blob))
        except gexc.NotFound:  # listing a missing prefix is empty; only a missing bucket is a 404
            raise BucketNotFoundError(
                errno.ENOENT, f"the bucket gs://{self.bucket_name} does not exist", self._where()
            ) from None
        except Exception as exc:  # noqa: BLE001 - any SDK error becomes a builtin one
            raise self._error(exc, "listing of", prefix) from None
        self._ok()

    def delete(self, key: str) -> None:
        blob = self.bucket.blob(self.full_key(key))
        try:
            blob.delete(timeout=self.timeout, retry=self.retry)
        except Exception as exc:  # noqa: BLE001 - any SDK error becomes a builtin one
            raise self._error(exc, "delete of", key) from None
        self._ok()

    # -- unfinished uploads ----------------------------------------------------------------
    def list_unfinished(self, prefix: str = "") -> Iterator[Unfinished]:
        """The resumable sessions drivers of this machine started under this storage's prefix
        and never ended (GCS cannot list them: each is recorded in ``sessions_dir`` while it
        runs, and a killed writer leaves its record behind)."""
        start = self._name_prefix + prefix
        for record_id, record in SessionRecord.all(self.sessions_dir):
            name = record.get("name")
            if (
                record.get("bucket") != self.bucket_name
                or not isinstance(name, str)
                or not name.startswith(start)
            ):
                continue
            started = record.get("started")
            when = float(started) if isinstance(started, (int, float)) else None
            yield Unfinished(name[len(self._name_prefix) :], when, record_id)

    def abort_unfinished(self, upload: Unfinished) -> None:
        """Cancel the recorded session (GCS then drops what it received) and forget it."""
        record = SessionRecord.load(self.sessions_dir, upload.upload_id)
        if record is None:
            return
        record.cancel(self._http_session(), strict=True)
        record.forget()

    def _http_session(self):
        return self.client._http  # the SDK's authorised requests session


class _Counted:
    """A file as the SDK reads or writes it, telling ``callback`` of each byte it had not
    reached before (a retried piece is not counted twice)."""

    def __init__(self, fh: Any, callback: Progress | None):
        self._fh, self._callback, self._done = fh, callback, 0

    def _moved(self) -> None:
        position = self._fh.tell()
        if self._callback is not None and position > self._done:
            self._callback(position - self._done)
            self._done = position

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._moved()
        return data

    def write(self, data: bytes) -> int:
        written = self._fh.write(data)
        self._moved()
        return written

    def __getattr__(self, name: str) -> Any:  # seek, tell, flush, ... of the file itself
        return getattr(self._fh, name)


class BoundedRetry(Retry):
    """google-api-core's Retry (exponential back-off with jitter, up to a deadline) that also
    gives up after ``attempts`` tries of one call; the SDK only calls ``retry(func)``."""

    def __init__(self, attempts: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.attempts = attempts

    def __call__(self, func, on_error=None):
        attempts, retryable = self.attempts, self._predicate

        @functools.wraps(func)
        def call(*args, **kwargs):
            failures = 0

            def predicate(exc: Exception) -> bool:
                nonlocal failures
                failures += 1
                return failures < attempts and retryable(exc)

            once = Retry(
                predicate=predicate,
                initial=self._initial,
                maximum=self._maximum,
                multiplier=self._multiplier,
                timeout=self._timeout,
                on_error=self._on_error,
            )
            return once(func, on_error)(*args, **kwargs)

        return call


def _fingerprint(blob: storage.Blob) -> str | None:
    """What GCS says of an object's bytes without reading them: its MD5 and CRC32C (base64, as
    the API gives them; a composite object has no MD5) and its generation, which every
    overwrite changes."""
    return fingerprint(md5=blob.md5_hash, crc32c=blob.crc32c, generation=blob.generation)
