"""The ``s3://`` storage driver: Amazon S3 and S3-compatible stores through boto3.

URLs::

    s3://bucket                      the whole bucket
    s3://bucket/some/prefix          keys live under "some/prefix/"
    s3://host:port/bucket/prefix     an S3-compatible server (MinIO, Ceph...), ClearML's form

Transfers go through boto3's transfer manager (s3transfer), one per driver: objects of at
least ``multipart_threshold`` go up as multipart uploads of ``part_size`` parts sent in
parallel (aborted when anything fails, so a failed upload never leaves a visible object)
and come down in parallel ranged GETs pinned to the ETag first seen; a body cut off while
it is read is fetched again (``max_attempts`` tries). Every PUT and part carries a
SHA-256 checksum that S3 verifies, and downloads ask botocore to check the object's
checksum where S3 keeps a whole-object one; the core hashes every object it downloads
anyway. Create-only puts (``overwrite=False``) are one PUT with ``If-None-Match: *``, the
one thing the transfer manager cannot send. botocore retries throttling and 5xx answers.

Options (keyword arguments, ``CLEARML_DATA_S3_<NAME>`` environment variables, or the
``[storage.s3]`` section of the config file) are declared in :data:`OPTIONS`; credentials
come only from boto3's own chain.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore import UNSIGNED
from botocore import exceptions as bx
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.exceptions import RetriesExceededError, S3DownloadFailedError
from s3transfer.subscribers import BaseSubscriber

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
from clearml_data.storage.calls import mark_retried, retrying
from clearml_data.storage.toolkit import (
    GiB,
    Lazy,
    MiB,
    backoff,
    choice,
    optional,
    parse_bool,
    positive_int,
    transfer_options,
)

from . import __version__

log = logging.getLogger(__name__)

#: S3 limits
MIN_PART = 5 * MiB
MAX_PART = 5 * GiB
MAX_SINGLE_PUT = 5 * GiB
#: bytes read from a download's body at a time (s3transfer's default is 256 KiB)
IO_CHUNK = 1 * MiB
#: S3 answers 409 ConditionalRequestConflict while another conditional write is in flight
CONFLICT_ATTEMPTS = 6

NOT_FOUND = {"NoSuchKey", "404", "NotFound", "NoSuchVersion"}
DENIED = {
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidSecurity",
    "InvalidObjectState",
    "401",
    "Unauthorized",
    "RequestTimeTooSkewed",
    "MissingSecurityHeader",
}
BUSY = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "503",
    "ServiceUnavailable",
    "TooManyRequests",
    "RequestThrottled",
}
#: errors of a body read after the response started: read_range tries the GET again
STREAM_ERRORS = (
    bx.ResponseStreamingError,
    bx.IncompleteReadError,
    bx.ReadTimeoutError,
    bx.ConnectionClosedError,
)


# -- options -------------------------------------------------------------------------------
def _checksum(value: Any) -> str | None:
    """ "SHA256" or "CRC32"; None when checksums are off."""
    text = str(value or "off").strip().upper()
    if text in ("OFF", "NONE", "FALSE", "0", ""):
        return None
    if text not in ("SHA256", "CRC32"):
        raise ValueError(f"checksum_algorithm must be SHA256, CRC32 or off, not {value!r}")
    return text


_TRANSFER = {
    o.name: o
    for o in transfer_options(
        max_concurrency=16,
        part_size=8 * MiB,
        multipart_threshold=16 * MiB,
        max_attempts=8,
        connect_timeout=10.0,
        read_timeout=60.0,
    )
}

#: what the driver accepts; the names of the shared vocabulary first
OPTIONS: tuple[Option, ...] = (
    _TRANSFER["max_concurrency"],
    dataclasses.replace(_TRANSFER["part_size"], old_names=("multipart_chunksize",)),
    _TRANSFER["multipart_threshold"],
    dataclasses.replace(
        _TRANSFER["max_attempts"],
        parse=optional(positive_int),
        default=None,
        help="tries of a request (botocore's) and of a cut-off body, including the "
        "first; else AWS_MAX_ATTEMPTS, else 8",
    ),
    _TRANSFER["connect_timeout"],
    _TRANSFER["read_timeout"],
    Option("endpoint_url", help="endpoint of an S3-compatible server; else boto3's (AWS_ENDPOINT_URL_S3)"),
    Option("region", help="region; else boto3's (AWS_REGION, AWS_DEFAULT_REGION, the profile's)"),
    Option("profile", help="named profile of ~/.aws/config; else boto3's (AWS_PROFILE)"),
    Option("secure", parse_bool, True, "https (true) or http (false) for s3://host:port/bucket URLs"),
    Option(
        "addressing_style",
        choice("auto", "path", "virtual"),
        None,
        "path, virtual or auto; default: path when an endpoint is overridden",
    ),
    Option("anonymous", parse_bool, False, "unsigned requests, for public buckets"),
    Option(
        "retry_mode",
        choice("standard", "adaptive", "legacy"),
        None,
        "botocore retry mode; else AWS_RETRY_MODE, else standard",
    ),
    Option("checksum_algorithm", _checksum, "SHA256", "SHA256, CRC32, or off (for stores that reject them)"),
    Option("sse", choice("AES256", "aws:kms", "aws:kms:dsse"), None, "server-side encryption"),
    Option("sse_kms_key_id", help="KMS key for sse=aws:kms"),
    Option("max_pool_connections", positive_int, 64, "HTTP connections kept to the endpoint"),
)


def _check_options(o: dict[str, Any]) -> None:
    if not MIN_PART <= o["part_size"] <= MAX_PART:
        raise ValueError(
            f"part_size must be at least 5 MiB and at most 5 GiB (S3's part sizes), not {o['part_size']}"
        )
    if o["multipart_threshold"] < 1:
        raise ValueError("multipart_threshold must be positive")
    if o["endpoint_url"] is not None:
        _check_endpoint(o["endpoint_url"])


def _check_endpoint(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"endpoint URL must look like https://host[:port], not {redact_url(url)!r}")
    if "@" in parts.netloc:
        raise ValueError(
            "endpoint URL must not hold credentials: use the AWS credential chain "
            "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, an instance role)"
        )


# -- URLs ----------------------------------------------------------------------------------
class S3Location(NamedTuple):
    bucket: str
    prefix: str  #: "" or "a/b" (no leading or trailing slash)
    host: str | None = None  #: "host:port" of an s3://host:port/bucket URL


_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_s3_url(url: str) -> S3Location:
    """Split ``s3://bucket/prefix`` (or ``s3://host:port/bucket/prefix``); ValueError if invalid."""
    text = str(url).strip()
    shown = redact_url(text)
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", text, re.S)
    if not m or m.group(1).lower() != "s3":
        raise ValueError(f"not an s3:// URL: {shown!r} (expected s3://bucket/prefix)")
    rest = m.group(2)
    netloc, _, path = rest.partition("/")
    if "@" in netloc:
        raise ValueError(
            "an s3:// URL must not hold credentials; use the AWS credential chain "
            "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role)"
        )
    if "?" in rest or "#" in rest:
        raise ValueError(f"an s3:// URL takes no query or fragment: {shown!r}")
    if _CONTROL.search(rest) or "\\" in rest:
        raise ValueError(f"an s3:// URL must not contain control characters or backslashes: {shown!r}")
    host = None
    if ":" in netloc:  # s3://host:port/bucket/prefix, ClearML's form for MinIO and friends
        name, _, port = netloc.rpartition(":")
        if not name or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"invalid host:port {netloc!r} in {shown!r} "
                "(expected s3://bucket/prefix or s3://host:port/bucket/prefix)"
            )
        host = netloc
        bucket, _, path = path.partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {shown!r} (expected s3://{netloc}/bucket/prefix)")
    else:
        bucket = netloc
    if not bucket:
        raise ValueError(f"no bucket in {shown!r} (expected s3://bucket/prefix)")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(
            f"invalid S3 bucket name {bucket!r}: 3-63 characters, lower-case letters, "
            "digits, '.' and '-', starting and ending with a letter or digit"
        )
    try:
        ipaddress.ip_address(bucket)
    except ValueError:
        pass
    else:
        raise ValueError(
            f"{bucket!r} is an IP address, not a bucket; for an S3-compatible server "
            f"use s3://{bucket}:PORT/bucket/prefix or set CLEARML_DATA_S3_ENDPOINT_URL"
        )
    parts = [p for p in path.strip("/").split("/")] if path.strip("/") else []
    for part in parts:
        if part in ("", ".", ".."):
            raise ValueError(f"the prefix of {shown!r} has an empty, '.' or '..' component")
    return S3Location(bucket, "/".join(parts), host)


# -- errors --------------------------------------------------------------------------------
class _RangeNotSatisfiable(OSError):
    """A ranged read starting at or past the end of the object (HTTP 416)."""


class _ObjectChanged(OSError):
    """If-Match failed: the object was replaced while it was read."""


class _ChecksumMismatch(OSError):
    """The bytes read do not match the checksum S3 holds for them."""


def _code(exc: ClientError) -> tuple[str, int | None]:
    err = exc.response.get("Error") or {}
    status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return str(err.get("Code") or status or ""), status


class _Progress(BaseSubscriber):
    """Hands the transfer manager's progress (bytes since the last call) to a callback."""

    def __init__(self, callback: Progress):
        self.callback = callback

    def on_progress(self, future, bytes_transferred: int, **kwargs) -> None:
        self.callback(bytes_transferred)


# -- the driver ----------------------------------------------------------------------------
class S3Driver(StorageDriver):
    """One ``s3://bucket/prefix``; safe to call from many threads at once."""

    schemes = ("s3",)
    capabilities = frozenset({RANGED_READS, MULTIPART, CONDITIONAL_PUT})
    #: transfers at once that saturate a normal link (the core's pool size)
    default_max_workers = 16
    declared_options = OPTIONS
    max_key_bytes = 1024

    def __init__(self, url: str, **options):
        location = parse_s3_url(url)  # before the options: a URL with credentials says so first
        super().__init__(url, **options)
        self.bucket, self.prefix, self.host = location
        o = self.options
        _check_options(o)
        self.algorithm: str | None = o["checksum_algorithm"]
        self.max_attempts: int = o["max_attempts"] or int(os.environ.get("AWS_MAX_ATTEMPTS") or 8)
        self.endpoint_url = self._endpoint()
        self._base = f"s3://{self.host + '/' if self.host else ''}{self.bucket}"
        if self.prefix:
            self._base += "/" + self.prefix
        self._lock = threading.Lock()
        self._client = Lazy(self._make_client)
        self._transfers = Lazy(self._make_transfers)
        self._key_locks: dict[str, list] = {}

    def __repr__(self) -> str:
        endpoint = f" at {redact_url(self.endpoint_url)}" if self.endpoint_url else ""
        return f"<{type(self).__name__} {self._base}{endpoint}>"

    # -- plumbing --------------------------------------------------------------------------
    def _endpoint(self) -> str | None:
        """The endpoint URL passed to boto3; None lets boto3 find its own."""
        if self.host is None:
            return self.options["endpoint_url"]
        for candidate in (
            self.options["endpoint_url"],
            os.environ.get("AWS_ENDPOINT_URL_S3"),
            os.environ.get("AWS_ENDPOINT_URL"),
        ):
            if candidate and urlsplit(candidate).netloc.lower() == self.host.lower():
                return candidate.rstrip("/")
        return f"{'https' if self.options['secure'] else 'http'}://{self.host}"

    def _addressing_style(self) -> str | None:
        if self.options["addressing_style"]:
            return self.options["addressing_style"]
        overridden = (
            self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        )
        # S3-compatible servers rarely have wildcard DNS for virtual-hosted buckets
        return "path" if overridden else None

    def _make_client(self):
        o = self.options
        style = self._addressing_style()
        config = Config(
            retries={
                "mode": o["retry_mode"] or os.environ.get("AWS_RETRY_MODE") or "standard",
                "total_max_attempts": self.max_attempts,
            },
            max_pool_connections=o["max_pool_connections"],
            connect_timeout=o["connect_timeout"],
            read_timeout=o["read_timeout"],
            tcp_keepalive=True,
            user_agent_extra=f"clearml-data-s3/{__version__}",
            s3={"addressing_style": style} if style else None,
            signature_version=UNSIGNED if o["anonymous"] else None,
            # "off": send no checksum a store might reject (botocore >= 1.36 adds CRC32 by default)
            request_checksum_calculation=None if self.algorithm else "when_required",
        )
        try:
            session = boto3.session.Session(profile_name=o["profile"], region_name=o["region"])
            return session.client("s3", endpoint_url=self.endpoint_url, config=config)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, "") from exc

    def _make_transfers(self):
        o = self.options
        config = TransferConfig(
            multipart_threshold=o["multipart_threshold"],
            multipart_chunksize=o["part_size"],
            max_concurrency=o["max_concurrency"],
            num_download_attempts=self.max_attempts,
            io_chunksize=IO_CHUNK,
            preferred_transfer_client="classic",
        )
        # the core calls from default_max_workers threads: each call is one submission
        config.max_submission_concurrency = max(o["max_concurrency"], self.default_max_workers)
        return create_transfer_manager(self.client, config)

    @property
    def client(self):
        """The boto3 S3 client (created on first use; boto3 clients are thread safe)."""
        return self._client.get()

    @property
    def transfers(self):
        """The driver's transfer manager: its threads move the parts of every transfer."""
        return self._transfers.get()

    def close(self) -> None:
        transfers, client = self._transfers.take(), self._client.take()
        if transfers is not None:
            transfers.shutdown()
        if client is not None:
            client.close()

    def _where(self, key: str) -> str:
        return f"{self._base}/{key}" if key else self._base

    def _error(self, exc: BaseException, key: str, create_only: bool = False) -> OSError:
        """A builtin OSError for a botocore error; its text never holds credentials."""
        where = self._where(key)
        if isinstance(exc, ClientError):
            code, status = _code(exc)
            message = " ".join(redact_text((exc.response.get("Error") or {}).get("Message") or "").split())
            detail = f"{code}: {message}" if message and message != code else code
            attempts = (exc.response.get("ResponseMetadata") or {}).get("RetryAttempts")
            if code == "NoSuchBucket":
                return FileNotFoundError(errno.ENOENT, f"bucket {self.bucket!r} does not exist", where)
            if code in NOT_FOUND or status == 404:
                return FileNotFoundError(errno.ENOENT, "no such object", where)
            if code == "NoSuchUpload":
                return FileNotFoundError(errno.ENOENT, "the multipart upload was aborted", where)
            if code == "InvalidRange" or status == 416:
                return _RangeNotSatisfiable(errno.EINVAL, "range not satisfiable", where)
            if code == "PreconditionFailed" or status == 412:
                if create_only:
                    return FileExistsError(errno.EEXIST, "object exists", where)
                return _ObjectChanged(errno.ESTALE, "the object changed while it was read", where)
            if code in DENIED or status in (401, 403):
                return PermissionError(errno.EACCES, f"access denied ({detail})", where)
            if code in BUSY or status in (429, 503):
                return OSError(
                    errno.EAGAIN,
                    f"the server is busy ({detail}; gave up after {(attempts or 0) + 1} attempts)",
                    where,
                )
            return OSError(errno.EIO, f"S3 error ({detail})", where)
        text = " ".join(redact_text(str(exc)).split())
        if isinstance(
            exc,
            (
                bx.NoCredentialsError,
                bx.PartialCredentialsError,
                bx.CredentialRetrievalError,
                bx.ProfileNotFound,
            ),
        ):
            return PermissionError(
                errno.EACCES,
                f"no usable AWS credentials ({type(exc).__name__}: {text}); "
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
                "or use an instance role",
                where,
            )
        if isinstance(exc, (bx.ConnectTimeoutError, bx.ReadTimeoutError)):
            return TimeoutError(errno.ETIMEDOUT, f"timed out: {text}", where)
        if isinstance(exc, bx.SSLError):  # a setting, not a passing fault: not retried
            return OSError(errno.EPROTO, f"TLS failed: {text}; {self._tls_hint(text)}", where)
        if isinstance(exc, bx.EndpointConnectionError):
            return ConnectionRefusedError(errno.ECONNREFUSED, f"cannot connect: {text}", where)
        if isinstance(exc, (bx.ConnectionError, bx.HTTPClientError, bx.ConnectionClosedError)):
            return ConnectionError(errno.ECONNRESET, f"connection failed: {text}", where)
        if isinstance(exc, (bx.FlexibleChecksumError, bx.ChecksumError)):
            return _ChecksumMismatch(errno.EIO, f"checksum mismatch: {text}", where)
        if isinstance(exc, OSError):
            return exc
        return OSError(errno.EIO, f"{type(exc).__name__}: {text}", where)

    def _tls_hint(self, text: str) -> str:
        """What to set when https to the endpoint fails: plain http for a server that speaks
        no TLS (an s3://host:port URL means https unless told), else the CA bundle."""
        endpoint = self.endpoint_url or "the endpoint"
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            return f"if {endpoint} has a certificate of a private CA, point AWS_CA_BUNDLE at that CA's file"
        plain = f"http://{self.host}" if self.host else "http://host:port"
        return (
            f"if the server at {endpoint} speaks plain http, set CLEARML_DATA_S3_SECURE=false "
            f"(secure = false in [storage.s3]) or CLEARML_DATA_S3_ENDPOINT_URL={plain}"
        )

    def _call(self, method: str, key: str, *, create_only: bool = False, **params):
        """Call a client method; errors become builtin OSErrors (botocore has retried them)."""
        fn = getattr(self.client, method)
        params.setdefault("Bucket", self.bucket)
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return fn(**params)
            except ClientError as exc:
                code, status = _code(exc)
                if (
                    create_only
                    and (code == "ConditionalRequestConflict" or status == 409)
                    and attempt < CONFLICT_ATTEMPTS
                ):
                    backoff(attempt)  # another conditional write is in flight: ask again
                    continue
                raise self._error(exc, key, create_only) from exc
            except BotoCoreError as exc:
                raise mark_retried(self._error(exc, key)) from exc
        raise AssertionError("unreachable")

    def _transfer(self, key: str, submit) -> None:
        """Wait for a transfer manager's transfer; its errors become builtin OSErrors."""
        try:
            submit().result()
        except RetriesExceededError as exc:  # a body cut off on every try
            raise mark_retried(self._error(exc.last_exception or exc, key)) from exc
        except S3DownloadFailedError as exc:  # If-Match failed between two ranges
            raise _ObjectChanged(
                errno.ESTALE, "the object changed while it was read", self._where(key)
            ) from exc
        except (ClientError, BotoCoreError) as exc:
            raise mark_retried(self._error(exc, key)) from exc

    def _write_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if self.algorithm:
            args["ChecksumAlgorithm"] = self.algorithm
        if self.options["sse"]:
            args["ServerSideEncryption"] = self.options["sse"]
            if self.options["sse_kms_key_id"]:
                args["SSEKMSKeyId"] = self.options["sse_kms_key_id"]
        return args

    # -- writing ---------------------------------------------------------------------------
    def put_file(
        self, local_path: str, key: str, *, overwrite: bool = True, callback: Progress | None = None
    ) -> None:
        full = self.full_key(key)
        if overwrite:
            subscribers = [_Progress(callback)] if callback else None
            self._transfer(
                key,
                lambda: self.transfers.upload(
                    local_path, self.bucket, full, extra_args=self._write_args(), subscribers=subscribers
                ),
            )
            return
        # Threads of this process race for one key here, not on the server: some stores
        # (moto among them) check If-None-Match and write in two steps. Across processes
        # the server's If-None-Match decides.
        with self._key_lock(full), open(local_path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_SINGLE_PUT:
                raise OSError(
                    errno.EFBIG, "a create-only put is one PUT, at most 5 GiB on S3", self._where(key)
                )
            if self._exists(full, key):  # before sending any byte
                raise FileExistsError(errno.EEXIST, "object exists", self._where(key))
            self._call(
                "put_object", key, create_only=True, Key=full, Body=fh, IfNoneMatch="*", **self._write_args()
            )
        if callback:
            callback(size)

    @contextmanager
    def _key_lock(self, full: str) -> Iterator[None]:
        with self._lock:
            entry = self._key_locks.setdefault(full, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._lock:
                entry[1] -= 1
                if not entry[1]:
                    del self._key_locks[full]

    def _exists(self, full: str, key: str) -> bool:
        try:
            self._call("head_object", key, Key=full)
        except FileNotFoundError:
            return False
        return True

    # -- reading ---------------------------------------------------------------------------
    def get_file(self, key: str, local_path: str, *, callback: Progress | None = None) -> None:
        full = self.full_key(key)
        extra = {"ChecksumMode": "ENABLED"} if self.algorithm else {}
        subscribers = [_Progress(callback)] if callback else None
        # s3transfer writes a temporary file next to local_path and renames it when complete
        self._transfer(
            key,
            lambda: self.transfers.download(
                self.bucket, full, local_path, extra_args=extra, subscribers=subscribers
            ),
        )

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError(f"invalid range: offset {offset}, length {length}")
        full = self.full_key(key)
        if length == 0:
            self._call("head_object", key, Key=full)
            return b""
        try:
            return retrying(
                self._read_range_once,
                key,
                full,
                offset,
                length,
                attempts=self.max_attempts,
                what=f"a ranged read of {self._where(key)}",
            )
        except (ConnectionError, TimeoutError) as exc:
            mark_retried(exc)  # tried often enough: the core does not try again
            raise

    def _read_range_once(self, key: str, full: str, offset: int, length: int) -> bytes:
        try:
            resp = self._call("get_object", key, Key=full, Range=f"bytes={offset}-{offset + length - 1}")
        except _RangeNotSatisfiable:
            return b""  # the object exists and ends before offset
        try:
            data = resp["Body"].read()
        except STREAM_ERRORS as exc:  # a body cut off: a transient error, tried again
            resp["Body"].close()
            raise self._error(exc, key) from exc
        except (bx.FlexibleChecksumError, bx.ChecksumError) as exc:
            # a range that covers the whole object is checked by botocore against the object's
            # checksum: a mismatch is an OSError as the contract says, never botocore's own
            resp["Body"].close()
            raise self._error(exc, key) from exc
        if not resp.get("ContentRange") and len(data) > length:  # a server that ignored Range
            data = data[offset : offset + length]
        return data

    def stat(self, key: str) -> ObjectInfo:
        resp = self._call("head_object", key, Key=self.full_key(key))
        modified = resp.get("LastModified")
        return ObjectInfo(
            key,
            int(resp["ContentLength"]),
            modified.timestamp() if modified else None,
            _fingerprint(resp.get("ETag"), resp.get("VersionId")),
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        root = f"{self.prefix}/" if self.prefix else ""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=root + prefix):
                for obj in page.get("Contents") or ():
                    rel = obj["Key"][len(root) :]
                    if not rel or rel.endswith("/"):  # folder markers made by consoles
                        continue
                    modified = obj.get("LastModified")
                    yield ObjectInfo(
                        rel,
                        int(obj["Size"]),
                        modified.timestamp() if modified else None,
                        _fingerprint(obj.get("ETag"), None),  # a listing gives no version id
                    )
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, prefix) from exc

    def delete(self, key: str) -> None:
        full = self.full_key(key)
        self._call("head_object", key, Key=full)  # S3 deletes missing keys silently
        self._call("delete_object", key, Key=full)

    # -- unfinished uploads ----------------------------------------------------------------
    def list_unfinished(self, prefix: str = "") -> Iterator[Unfinished]:
        """The multipart uploads under this storage's prefix that were never completed or
        aborted (a writer killed mid-upload leaves its parts stored, and billed)."""
        root = f"{self.prefix}/" if self.prefix else ""
        paginator = self.client.get_paginator("list_multipart_uploads")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=root + prefix):
                for upload in page.get("Uploads") or ():
                    name = upload.get("Key") or ""
                    if not name.startswith(root + prefix) or len(name) == len(root):
                        continue
                    started = upload.get("Initiated")
                    yield Unfinished(
                        name[len(root) :],
                        started.timestamp() if started else None,
                        str(upload.get("UploadId") or ""),
                    )
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, prefix) from exc

    def abort_unfinished(self, upload: Unfinished) -> None:
        full = self.full_key(upload.key)
        try:
            self._call("abort_multipart_upload", upload.key, Key=full, UploadId=upload.upload_id)
        except FileNotFoundError:
            pass  # completed or aborted meanwhile


def _fingerprint(etag: str | None, version: str | None) -> str | None:
    """What S3 says of an object's bytes without reading them: its ETag (an MD5 of them, or of
    their parts) and, in a bucket with versioning, its version id ("null" is no version)."""
    return fingerprint(etag=etag.strip('"') if etag else None, version=version if version != "null" else None)
