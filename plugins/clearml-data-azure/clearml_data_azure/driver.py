"""The ``azure://`` storage driver: Azure Blob Storage (and Azurite) through azure-storage-blob.

Writes
    The SDK's ``upload_blob`` does the transfer: up to ``single_put_size`` (8 MiB) a file
    goes up in one Put Blob; larger files are staged as blocks of ``block_size`` (8 MiB),
    ``max_concurrency`` at a time, and made visible by one Put Block List. The SDK's block
    ids are random per upload, so concurrent writers of one key never mix their blocks
    (since azure-storage-blob 12.31, which the plugin requires: earlier versions numbered
    the blocks of every upload alike).
    Until the block list is committed nothing is visible; an upload that fails is never
    committed, and Azure discards uncommitted blocks by itself (there is no "abort"). A
    create-only put (``overwrite=False``) sends ``If-None-Match: *`` with the Put Blob or
    the Put Block List, so of many racing writers exactly one wins. The driver adds what
    the SDK does not: a file that changes size during its upload is never committed, and a
    commit refused because another writer committed meanwhile is sorted out by ETags.

Integrity
    With ``validate_content`` (the default) every request body carries a Content-MD5 that
    the service checks, and every download chunk is checked against the MD5 the service
    sends for it. A blob written with one Put Blob also keeps its whole-object Content-MD5;
    a block-uploaded one has none (as with every SDK upload: its bytes were checked block by
    block, and the core checks the SHA-256 of everything it downloads).

Errors
    ``FileNotFoundError`` for a missing blob or container, ``FileExistsError`` for a lost
    create-only put, ``PermissionError`` for authentication and authorisation failures,
    ``ConnectionError``/``TimeoutError``/``OSError`` otherwise. Messages go through
    :func:`clearml_data.storage.redact_url` and never carry keys or SAS tokens.
"""

from __future__ import annotations

import base64
import errno
import logging
import math
import os
import random
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient, ContentSettings, ExponentialRetry
from requests import exceptions as requests_exceptions

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
    redact_url,
)
from clearml_data.storage.toolkit import (
    MiB,
    backoff,
    parse_bool,
    positive_float,
    renamed_options,
    transfer_options,
    unlink_quietly,
)

from .urls import MAX_BLOB_NAME, AzureLocation, parse_url, resolve_connection

log = logging.getLogger(__name__)

#: Azure's limit of committed blocks per blob
MAX_BLOCKS = 50_000
#: the service only returns a transactional MD5 for ranges up to 4 MiB
MD5_RANGE_LIMIT = 4 * MiB

OLD_ENV_PREFIX = "CLEARML_DATA_AZURE_"

OPTIONS = (
    *transfer_options(
        max_concurrency=8,
        part_size=8 * MiB,
        multipart_threshold=8 * MiB + 1,
        max_attempts=6,
        connect_timeout=20.0,
        read_timeout=120.0,
    ),
    Option("validate_content", parse_bool, True, "a Content-MD5 on every request, checked on every answer"),
    Option("retry_backoff", positive_float, 1.0, "first back-off in seconds, doubled on each retry"),
    Option("use_identity", parse_bool, True, "azure-identity's DefaultAzureCredential when installed"),
    Option("api_version", help="the storage service version to speak, e.g. for an older Azurite"),
    Option("account_url", help="the blob endpoint for every account ({account} is replaced)"),
)


def _mib(value: Any) -> int:
    return max(1, int(positive_float(value) * MiB))


#: options of earlier releases (also read from CLEARML_DATA_AZURE_<OLD NAME>) -> (today's name,
#: old value -> today's)
RENAMED: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "single_put_size_mb": ("multipart_threshold", lambda v: _mib(v) + 1),  # "up to" became "from"
    "block_size_mb": ("part_size", _mib),
    "retries": ("max_attempts", lambda v: int(v) + 1),
    "connection_timeout": ("connect_timeout", float),
}
#: options that carry credentials (never kept in ``driver.options``)
SECRET_OPTIONS = ("connection_string", "account_key", "sas_token", "credential")

# anything that looks like a signed query parameter or key=value secret, anywhere in a text
_SECRET_PARAM = re.compile(
    r"(?i)\b(sig|signature|se|st|sv|sp|spr|srt|ss|sr|skoid|sktid|skt|ske|sks|skv|"
    r"token|key|accountkey|sharedaccesssignature|password|secret)=[^&;\s'\"]*"
)


class AzureBlobDriver(StorageDriver):
    """``azure://<account>.blob.core.windows.net/<container>/<prefix>`` on Azure Blob Storage."""

    schemes = ("azure",)
    capabilities = frozenset({RANGED_READS, MULTIPART, CONDITIONAL_PUT})
    #: transfers in flight that saturate a normal link (each large one also stages blocks in parallel)
    default_max_workers = 16

    declared_options = OPTIONS
    max_key_chars = MAX_BLOB_NAME

    def __init__(self, url: str, **options: Any):
        self.location: AzureLocation = parse_url(url)
        options = renamed_options(dict(options), RENAMED, "azure", OLD_ENV_PREFIX)
        # secrets given as options stay out of the public ``options``
        secret = {k: options.pop(k) for k in SECRET_OPTIONS if k in options}
        super().__init__(self.location.url, **options)
        opts = self.options
        self.account = self.location.account
        self.container = self.location.container
        self.prefix = self.location.prefix.rstrip("/")
        self._name_prefix = self.location.prefix  # "" or "some/prefix/"
        #: files of at least ``multipart_threshold`` bytes go up in blocks
        self.single_put_size = max(0, opts["multipart_threshold"] - 1)
        self.block_size = max(64 * 1024, opts["part_size"])
        self.max_concurrency: int = opts["max_concurrency"]
        self.validate_content: bool = opts["validate_content"]
        self.retries: int = opts["max_attempts"] - 1  # the SDK counts retries, not attempts
        self.retry_backoff: float = opts["retry_backoff"]
        self.connection_timeout: float = opts["connect_timeout"]
        self.read_timeout: float = opts["read_timeout"]
        self.use_identity: bool = opts["use_identity"]
        self.api_version: str | None = opts["api_version"]
        self._lock = threading.Lock()
        self._service: BlobServiceClient | None = None
        self._container_client: Any = None
        self._closed = False
        found = resolve_connection(self.location, {**opts, **secret}, self.use_identity)
        self.endpoint, self.credential_source = found.endpoint, found.source
        self._credential = found.credential
        self._secrets = found.secrets
        self._credential_to_close = found.credential if found.source == "DefaultAzureCredential" else None

    # -- connection ---------------------------------------------------------------------------
    def _service_client(self):
        with self._lock:
            if self._closed:
                raise OSError(errno.EBADF, f"the driver for {redact_url(self.url)} is closed")
            if self._service is None:
                # room for every transfer the core runs at once, each with its own parallel chunks
                self._service = self._new_service(self.block_size, self.default_max_workers)
                self._container_client = self._service.get_container_client(self.container)
            return self._container_client

    def _new_service(self, block_size: int, transfers: int) -> BlobServiceClient:
        extra: dict[str, Any] = {"api_version": self.api_version} if self.api_version else {}
        return BlobServiceClient(
            account_url=self.endpoint,
            credential=self._credential,
            transport=_make_transport(
                transfers * (self.max_concurrency + 1), self.connection_timeout, self.read_timeout
            ),
            retry_policy=_Backoff(self.retry_backoff, retry_total=self.retries),
            max_single_put_size=self.single_put_size,
            max_block_size=block_size,
            max_single_get_size=32 * MiB,
            max_chunk_get_size=MD5_RANGE_LIMIT,
            connection_timeout=self.connection_timeout,
            read_timeout=self.read_timeout,
            **extra,
        )

    def _blob(self, key: str):
        return self._service_client().get_blob_client(self.full_key(key))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            service, self._service, self._container_client = self._service, None, None
            cred, self._credential_to_close = self._credential_to_close, None
        if service is not None:
            service.close()
        if cred is not None and hasattr(cred, "close"):
            cred.close()

    # -- errors -------------------------------------------------------------------------------
    def scrub(self, text: str) -> str:
        """``text`` without any secret this driver knows of, or anything shaped like one."""
        text = str(text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        text = _SECRET_PARAM.sub(lambda m: m.group(1) + "=***", text)
        return redact_text(redact_url(text))

    def _error(self, exc: BaseException, key: str | None, action: str) -> OSError:
        """The builtin OSError for an SDK exception, with a short message free of secrets."""
        where = f"{self.container}/{self._name_prefix}{key if key is not None else ''}"
        code = _code(exc)
        status = getattr(exc, "status_code", None)
        if status is None:
            status = getattr(getattr(exc, "response", None), "status_code", None)
        raw = str(getattr(exc, "message", None) or exc).strip()
        first = self.scrub(raw.splitlines()[0] if raw else type(exc).__name__)
        detail = f"{code or type(exc).__name__}" + (f", HTTP {status}" if status else "")
        if code == "ContainerNotFound":
            err: OSError = FileNotFoundError(
                errno.ENOENT,
                f"container {self.container!r} does not exist in storage account {self.account!r} ({detail})",
                key,
            )
        elif isinstance(exc, ResourceNotFoundError) or status == 404:
            err = FileNotFoundError(errno.ENOENT, f"no such object ({detail})", key)
        elif isinstance(exc, ClientAuthenticationError) or status in (401, 403):
            err = PermissionError(
                errno.EACCES,
                f"{action} {where} was refused ({detail}): {first} "
                f"[credentials from: {self.credential_source}]",
                key,
            )
        elif isinstance(exc, (ServiceRequestTimeoutError, ServiceResponseTimeoutError)):
            err = TimeoutError(
                errno.ETIMEDOUT,
                f"{action} {where} timed out talking to {self.scrub(self.endpoint)}: {first}",
                key,
            )
        elif isinstance(exc, (ServiceRequestError, ServiceResponseError)):
            refused = isinstance(exc, ServiceRequestError)  # before the request was sent
            err = ConnectionError(
                errno.ECONNREFUSED if refused else errno.ECONNRESET,
                f"{action} {where} failed: cannot talk to {self.scrub(self.endpoint)}: {first}",
                key,
            )
        else:
            err = OSError(errno.EIO, f"{action} {where} failed ({detail}): {first}", key)
        return err

    # -- primitives ---------------------------------------------------------------------------
    def put_file(
        self, local_path: str, key: str, *, overwrite: bool = True, callback: Progress | None = None
    ) -> None:
        blob = self._blob(key)
        hook = _Increments(callback)
        size = self._source_size(local_path)  # a missing source is FileNotFoundError: nothing is sent
        try:
            with open(local_path, "rb") as fh:
                if size <= self.block_size * MAX_BLOCKS:
                    self._put(blob, fh, local_path, size, overwrite, key, hook)
                else:  # more blocks than a blob may have: a client of its own with larger ones
                    with self._new_service(math.ceil(size / MAX_BLOCKS), 1) as service:
                        self._put(
                            service.get_blob_client(self.container, blob.blob_name),
                            fh,
                            local_path,
                            size,
                            overwrite,
                            key,
                            hook,
                        )
        except (ResourceExistsError, ResourceModifiedError) as exc:
            if not overwrite:
                raise FileExistsError(errno.EEXIST, "object exists", key) from None
            raise self._error(exc, key, "writing") from None
        except AzureError as exc:
            raise self._error(exc, key, "writing") from None

    @staticmethod
    def _source_size(local_path: str) -> int:
        return os.stat(local_path).st_size

    def _put(
        self, blob: Any, fh: Any, local_path: str, size: int, overwrite: bool, key: str, hook: _Increments
    ) -> None:
        """One ``upload_blob``: a Put Blob up to ``single_put_size``, else blocks staged in
        parallel under random ids and one Put Block List (with ``If-None-Match: *`` when
        create-only).

        Committing a blob discards every uncommitted block of it, so a concurrent writer of
        the same key that commits while we stage makes our commit fail with InvalidBlockList.
        Create-only: the key exists now, so we lost. Overwrite: if the blob changed while we
        were uploading, our write is ordered just before that writer's and is done (as with a
        last-writer-wins PUT); otherwise the upload is tried again.
        """
        blocks = size > self.single_put_size
        for attempt in range(3):
            before = self._etag(blob) if blocks else None
            if before is not None and not overwrite:
                raise ResourceExistsError("the blob exists")  # early out; the commit's condition decides
            fh.seek(0)
            try:
                blob.upload_blob(
                    _SizedSource(fh, size, local_path),
                    length=size,
                    overwrite=overwrite,
                    max_concurrency=self.max_concurrency,
                    validate_content=self.validate_content,
                    content_settings=ContentSettings(content_type="application/octet-stream"),
                    progress_hook=hook,
                )
                return
            except HttpResponseError as exc:
                if not blocks or _code(exc) != "InvalidBlockList":
                    raise
                after = self._etag(blob)
                if after is not None and not overwrite:
                    raise ResourceExistsError("the blob exists") from None
                if after is not None and after != before:
                    log.debug("%s was committed by a concurrent writer during our upload", key)
                    return
                if attempt == 2:
                    raise
                log.debug("the block list of %s was refused; uploading it again", key)

    @staticmethod
    def _etag(blob) -> str | None:
        """The blob's ETag, or None when it does not exist."""
        try:
            return blob.get_blob_properties().etag
        except ResourceNotFoundError:
            return None

    def _reading(self, fn):
        """Run a download, again from the start when its body is cut off or stalls.

        The SDK's retry policy covers a request until its answer starts; a body that breaks
        off afterwards (requests' ChunkedEncodingError, a read timeout) escapes it, so such
        failures get the same bound (``retries``) and back-off here.
        """
        for count in range(self.retries + 1):
            try:
                return fn()
            except _BODY_ERRORS as exc:
                if count == self.retries:
                    raise
                log.debug("download cut off (%s); reading it again", type(exc).__name__)
                backoff(count + 1, base=self.retry_backoff / 2, cap=60.0)
        raise AssertionError("unreachable")

    def get_file(self, key: str, local_path: str, *, callback: Progress | None = None) -> None:
        blob = self._blob(key)
        hook = _Increments(callback)

        def attempt() -> None:
            stream = blob.download_blob(
                max_concurrency=self.max_concurrency,
                validate_content=self.validate_content,
                progress_hook=hook,
            )
            with open(local_path, "wb") as fh:
                stream.readinto(fh)

        try:
            self._reading(attempt)
        except AzureError as exc:
            unlink_quietly(local_path)
            raise self._error(exc, key, "reading") from None
        except BaseException:
            unlink_quietly(local_path)
            raise

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError("offset and length must not be negative")
        blob = self._blob(key)
        if length == 0:
            self.stat(key)
            return b""
        try:
            return self._reading(
                lambda: blob.download_blob(
                    offset=offset,
                    length=length,
                    max_concurrency=self.max_concurrency,
                    validate_content=self.validate_content,
                ).readall()
            )
        except HttpResponseError as exc:
            if exc.status_code == 416:  # at or past the end (or an empty blob)
                self.stat(key)
                return b""
            raise self._error(exc, key, "reading") from None
        except AzureError as exc:
            raise self._error(exc, key, "reading") from None

    def stat(self, key: str) -> ObjectInfo:
        blob = self._blob(key)
        try:
            props = blob.get_blob_properties()
        except AzureError as exc:
            raise self._error(exc, key, "reading") from None
        mtime = props.last_modified.timestamp() if props.last_modified else None
        return ObjectInfo(key, props.size, mtime, _fingerprint(props))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        container = self._service_client()
        start = self._name_prefix + (prefix or "")
        cut = len(self._name_prefix)
        try:
            for item in container.list_blobs(name_starts_with=start or None, results_per_page=5000):
                mtime = item.last_modified.timestamp() if item.last_modified else None
                yield ObjectInfo(item.name[cut:], item.size, mtime, _fingerprint(item))
        except AzureError as exc:
            raise self._error(exc, prefix, "listing") from None

    def delete(self, key: str) -> None:
        blob = self._blob(key)
        try:
            blob.delete_blob(delete_snapshots="include")
        except AzureError as exc:
            raise self._error(exc, key, "deleting") from None

    # -- unfinished uploads -------------------------------------------------------------------
    def list_unfinished(self, prefix: str = "") -> Iterator[Unfinished]:
        """Blobs under this storage's prefix that hold only uncommitted blocks: a block upload
        whose writer was killed before its Put Block List (Azure drops them after a week).
        Found as the names a listing with uncommitted blobs has and a plain listing lacks."""
        container = self._service_client()
        start = self._name_prefix + (prefix or "")
        cut = len(self._name_prefix)
        try:
            committed = {
                item.name
                for item in container.list_blobs(name_starts_with=start or None, results_per_page=5000)
            }
            for item in container.list_blobs(
                name_starts_with=start or None, include=["uncommittedblobs"], results_per_page=5000
            ):
                if item.name in committed:
                    continue
                started = item.creation_time or item.last_modified
                yield Unfinished(
                    item.name[cut:], started.timestamp() if started else None, str(item.etag or "").strip('"')
                )
        except AzureError as exc:
            raise self._error(exc, prefix, "listing") from None

    def abort_unfinished(self, upload: Unfinished) -> None:
        """Drop the uncommitted blocks of a blob that has no committed version. Azure has no
        abort: an empty block list is committed only if the blob still does not exist (which
        discards every uncommitted block), and that empty blob is then deleted."""
        blob = self._blob(upload.key)
        try:
            blob.commit_block_list([], match_condition=MatchConditions.IfMissing)
        except (ResourceExistsError, ResourceModifiedError):
            return  # a writer committed it meanwhile: not unfinished any more
        except AzureError as exc:
            raise self._error(exc, upload.key, "aborting the upload of") from None
        try:
            etag = blob.get_blob_properties().etag
            blob.delete_blob(etag=etag, match_condition=MatchConditions.IfNotModified)
        except (ResourceNotFoundError, ResourceModifiedError):
            pass  # deleted, or written by a writer since: theirs stays
        except AzureError as exc:
            raise self._error(exc, upload.key, "aborting the upload of") from None

    # -- extras -------------------------------------------------------------------------------
    def committed_blocks(self, key: str) -> int:
        """How many committed blocks the blob has (0 for a blob written with one Put Blob)."""
        try:
            committed, _uncommitted = self._blob(key).get_block_list("committed")
        except AzureError as exc:
            raise self._error(exc, key, "reading") from None
        return len(committed)

    def content_md5(self, key: str) -> bytes | None:
        """The whole-object Content-MD5 the service holds for the blob, if any."""
        try:
            props = self._blob(key).get_blob_properties()
        except AzureError as exc:
            raise self._error(exc, key, "reading") from None
        md5 = props.content_settings.content_md5
        return bytes(md5) if md5 else None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {redact_url(self.url)} via {self.scrub(self.endpoint)}>"


class _Increments:
    """The SDK's progress hook (bytes so far, total) as the increments a core callback wants;
    a transfer tried again from the start reports nothing until it passes what was told."""

    def __init__(self, callback: Progress | None):
        self.callback, self.done, self.lock = callback, 0, threading.Lock()

    def __call__(self, current: int, total: int | None) -> None:
        if self.callback is None:
            return
        with self.lock:  # the SDK calls it from its transfer threads
            step, self.done = current - self.done, max(self.done, current)
        if step > 0:
            self.callback(step)


class _SizedSource:
    """A local file as the SDK reads it for an upload: exactly ``size`` bytes, in order, and
    an OSError (so nothing is committed) when the file turns out shorter or longer. No
    ``seek``: the SDK then reads it in one thread, block after block."""

    def __init__(self, fh, size: int, path: str):
        self.fh, self.size, self.path, self.pos = fh, size, path, 0

    def read(self, n: int = -1) -> bytes:
        want = self.size - self.pos if n is None or n < 0 else min(n, self.size - self.pos)
        data = self.fh.read(want)
        self.pos += len(data)
        if len(data) < want or (self.pos == self.size and os.fstat(self.fh.fileno()).st_size != self.size):
            raise OSError(errno.EIO, f"{self.path} changed size while it was being uploaded")
        return data


class _Backoff(ExponentialRetry):
    """The SDK's storage retry policy (5xx, 408, timeouts, connection errors, MD5 mismatches)
    with a back-off of ``first * 2**n`` seconds, capped at 60 s, +-25 % jitter, and at most
    ``retry_total`` retries of any kind."""

    def __init__(self, first: float, retry_total: int):
        # the SDK also caps connect, read and status retries at 3 each by default: one bound
        super().__init__(
            retry_total=retry_total,
            random_jitter_range=0,
            retry_connect=retry_total,
            retry_read=retry_total,
            retry_status=retry_total,
        )
        self.first = first

    def get_backoff_time(self, settings) -> float:
        backoff = min(60.0, self.first * (2 ** settings["count"]))
        return backoff * random.uniform(0.75, 1.25)


#: a download's body broke off or stalled after its answer began
_BODY_ERRORS = (
    ServiceResponseError,
    IncompleteReadError,
    requests_exceptions.ChunkedEncodingError,
    requests_exceptions.ConnectionError,
    requests_exceptions.Timeout,
)


def _make_transport(pool_size: int, connection_timeout: float, read_timeout: float):
    """A requests transport whose connection pool fits the driver's parallelism."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    adapter_class: type[HTTPAdapter] = HTTPAdapter
    try:  # azure-core's adapter reads responses in larger blocks
        from azure.core.pipeline.transport._bigger_block_size_http_adapters import BiggerBlockSizeHTTPAdapter

        adapter_class = BiggerBlockSizeHTTPAdapter
    except ImportError:  # pragma: no cover - older or newer azure-core
        pass
    session = requests.Session()
    adapter = adapter_class(
        pool_connections=4,
        pool_maxsize=pool_size,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return RequestsTransport(
        session=session, session_owner=True, connection_timeout=connection_timeout, read_timeout=read_timeout
    )


def _code(exc: BaseException) -> str:
    """The service's error code ("BlobNotFound", ...) of an SDK exception, or ""."""
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")


def _fingerprint(props: Any) -> str | None:
    """What Azure says of a blob's bytes without reading them: its ETag, which every write
    changes, and its Content-MD5 when the writer set one (base64)."""
    settings = getattr(props, "content_settings", None)
    md5 = getattr(settings, "content_md5", None) if settings is not None else None
    return fingerprint(
        etag=str(props.etag).strip('"') if props.etag else None,
        md5=base64.b64encode(bytes(md5)).decode("ascii") if md5 else None,
    )
