"""The ``s3://`` storage driver: Amazon S3 and S3-compatible stores through boto3.

URLs::

    s3://bucket                      the whole bucket
    s3://bucket/some/prefix          keys live under "some/prefix/"
    s3://host:port/bucket/prefix     an S3-compatible server (MinIO, Ceph...), ClearML's form

Transfers: objects below ``multipart_threshold`` (16 MiB) go up in one PUT; larger ones
as a multipart upload whose parts are sent in parallel and which is aborted when
anything fails, so a failed upload never leaves a visible object. Every PUT and part
carries an SHA-256 checksum that S3 verifies; downloads check the object's checksum
(whole objects through botocore, multipart objects part by part against the composite
checksum). Create-only writes use ``If-None-Match: *``. botocore retries throttling and
5xx answers; a body cut off while it is read is fetched again here.

Options (keyword arguments, or ``CLEARML_DATA_S3_<NAME>`` environment variables) are
described in :class:`S3Options`; credentials come only from boto3's own chain.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import ipaddress
import logging
import math
import os
import random
import re
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import (BotoCoreError, ChecksumError, ClientError, ConnectionClosedError,
                                 ConnectTimeoutError, CredentialRetrievalError,
                                 EndpointConnectionError, FlexibleChecksumError,
                                 IncompleteReadError, NoCredentialsError, PartialCredentialsError,
                                 ProfileNotFound, ReadTimeoutError, ResponseStreamingError)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError

from clearml_data.paths import check_relpath
from clearml_data.storage.base import (CONDITIONAL_PUT, MULTIPART, RANGED_READS, ObjectInfo,
                                       StorageDriver, Unfinished, redact_url)
from clearml_data.storage.scrub import scrub

from . import __version__

log = logging.getLogger(__name__)

MiB = 1024 * 1024
#: S3 limits
MIN_PART = 5 * MiB
MAX_PART = 5 * 1024 * MiB
MAX_PARTS = 10_000
MAX_KEY_BYTES = 1024
#: user metadata recording the part size of our multipart uploads (for checksum checks)
PART_SIZE_META = "clearml-data-part-size"
ENV_PREFIX = "CLEARML_DATA_S3_"
#: checksum algorithms whose composite (multipart) form can be checked here
CHECKSUMS = ("SHA256", "CRC32")
STREAM_CHUNK = 1 * MiB
#: largest ranged GET of a download (a cut-off body is fetched again whole)
MAX_RANGE = 64 * MiB
#: an object that changed, or whose checksum did not match, is read again this often
GET_ATTEMPTS = 3
#: S3 answers 409 ConditionalRequestConflict while another conditional write is in flight
CONFLICT_ATTEMPTS = 6

NOT_FOUND = {"NoSuchKey", "404", "NotFound", "NoSuchVersion"}
DENIED = {"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch",
          "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled",
          "AccountProblem", "InvalidSecurity", "InvalidObjectState", "401", "Unauthorized",
          "RequestTimeTooSkewed", "MissingSecurityHeader"}
BUSY = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "503",
        "ServiceUnavailable", "TooManyRequests", "RequestThrottled"}
#: errors of a body read after the response started: the read is retried here
STREAM_ERRORS = (ResponseStreamingError, IncompleteReadError, ReadTimeoutError,
                 ConnectionClosedError)


# -- options -------------------------------------------------------------------------------
def _size(value: Any) -> int:
    """Bytes from an int or a string like "16MiB", "8M", "1G", "1048576"."""
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*", str(value), re.I)
    if not m:
        raise ValueError(f"not a size: {value!r} (use bytes, or a number with K, M, G, e.g. 16MiB)")
    scale = 1024 ** " kmgt".index(m.group(2).lower() or " ")
    return int(float(m.group(1)) * scale)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r} (use true or false)")


@dataclass(frozen=True)
class S3Options:
    """Driver options: keyword arguments of :class:`S3Driver`, or ``CLEARML_DATA_S3_<NAME>``."""

    #: endpoint of an S3-compatible server; else boto3's own (AWS_ENDPOINT_URL_S3, ...)
    endpoint_url: str | None = None
    #: region; else boto3's (AWS_REGION, AWS_DEFAULT_REGION, the profile's)
    region: str | None = None
    #: named profile of ~/.aws/config; else boto3's (AWS_PROFILE)
    profile: str | None = None
    #: https (true) or http (false) for s3://host:port/bucket URLs
    secure: bool = True
    #: "path", "virtual" or "auto"; default: "path" when an endpoint is overridden
    addressing_style: str | None = None
    #: unsigned requests, for public buckets
    anonymous: bool = False
    #: objects of at least this size go up as multipart uploads and come down in ranges
    multipart_threshold: int = 16 * MiB
    #: part size (grown when an object would need more than 10,000 parts)
    multipart_chunksize: int = 8 * MiB
    #: parts (or ranges) of one driver transferred at once
    max_concurrency: int = 16
    #: botocore retry attempts (including the first); else AWS_MAX_ATTEMPTS, else 8
    max_attempts: int | None = None
    #: botocore retry mode: "standard" or "adaptive"; else AWS_RETRY_MODE, else standard
    retry_mode: str | None = None
    #: "SHA256", "CRC32", or "off" (for stores that reject checksum headers)
    checksum_algorithm: str = "SHA256"
    #: server-side encryption: "AES256" or "aws:kms"
    sse: str | None = None
    #: KMS key for sse="aws:kms"
    sse_kms_key_id: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    #: HTTP connections kept to the endpoint (callers' threads plus part transfers)
    max_pool_connections: int = 64

    @classmethod
    def resolve(cls, options: dict[str, Any], environ: dict[str, str] | None = None) -> S3Options:
        environ = os.environ if environ is None else environ
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"unknown s3 driver option(s): {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(known))})")
        values: dict[str, Any] = {}
        for name in known:
            value = options.get(name)
            if value is None:
                value = environ.get(ENV_PREFIX + name.upper()) or None
            if value is None and name == "max_attempts":
                value = environ.get("AWS_MAX_ATTEMPTS") or None
            if value is None and name == "retry_mode":
                value = environ.get("AWS_RETRY_MODE") or None
            if value is not None:
                values[name] = value
        return cls._convert(values)

    @classmethod
    def _convert(cls, values: dict[str, Any]) -> S3Options:
        conv: dict[str, Callable[[Any], Any]] = {
            "secure": _bool, "anonymous": _bool, "multipart_threshold": _size,
            "multipart_chunksize": _size, "max_concurrency": int, "max_attempts": int,
            "connect_timeout": float, "read_timeout": float, "max_pool_connections": int,
        }
        out: dict[str, Any] = {}
        for name, value in values.items():
            try:
                out[name] = conv.get(name, str)(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"s3 driver option {name}: {exc}") from None
        opts = cls(**out)
        opts._check()
        return opts

    def _check(self) -> None:
        if self.multipart_chunksize < MIN_PART:
            raise ValueError(f"multipart_chunksize must be at least 5 MiB (S3's smallest part), "
                             f"not {self.multipart_chunksize}")
        if self.multipart_chunksize > MAX_PART:
            raise ValueError("multipart_chunksize must be at most 5 GiB (S3's largest part)")
        if self.multipart_threshold < 1:
            raise ValueError("multipart_threshold must be positive")
        if self.max_concurrency < 1 or self.max_pool_connections < 1:
            raise ValueError("max_concurrency and max_pool_connections must be at least 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.retry_mode not in (None, "standard", "adaptive", "legacy"):
            raise ValueError(f"retry_mode must be standard, adaptive or legacy, not {self.retry_mode!r}")
        if self.addressing_style not in (None, "auto", "path", "virtual"):
            raise ValueError(f"addressing_style must be auto, path or virtual, not {self.addressing_style!r}")
        if self.algorithm not in (*CHECKSUMS, None):
            raise ValueError(f"checksum_algorithm must be SHA256, CRC32 or off, not {self.checksum_algorithm!r}")
        if self.sse not in (None, "AES256", "aws:kms", "aws:kms:dsse"):
            raise ValueError(f"sse must be AES256 or aws:kms, not {self.sse!r}")
        if self.endpoint_url is not None:
            _check_endpoint(self.endpoint_url)

    @property
    def algorithm(self) -> str | None:
        """The checksum algorithm, upper case, or None when checksums are off."""
        text = (self.checksum_algorithm or "off").strip().upper()
        return None if text in ("OFF", "NONE", "FALSE", "0", "") else text


def _check_endpoint(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"endpoint URL must look like https://host[:port], not {redact_url(url)!r}")
    if "@" in parts.netloc:
        raise ValueError("endpoint URL must not hold credentials: use the AWS credential chain "
                         "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, an instance role)")


# -- URLs ----------------------------------------------------------------------------------
class S3Location(NamedTuple):
    bucket: str
    prefix: str              #: "" or "a/b" (no leading or trailing slash)
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
        raise ValueError("an s3:// URL must not hold credentials; use the AWS credential chain "
                         "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role)")
    if "?" in rest or "#" in rest:
        raise ValueError(f"an s3:// URL takes no query or fragment: {shown!r}")
    if _CONTROL.search(rest) or "\\" in rest:
        raise ValueError(f"an s3:// URL must not contain control characters or backslashes: {shown!r}")
    host = None
    if ":" in netloc:  # s3://host:port/bucket/prefix, ClearML's form for MinIO and friends
        name, _, port = netloc.rpartition(":")
        if not name or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"invalid host:port {netloc!r} in {shown!r} "
                             "(expected s3://bucket/prefix or s3://host:port/bucket/prefix)")
        host = netloc
        bucket, _, path = path.partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {shown!r} (expected s3://{netloc}/bucket/prefix)")
    else:
        bucket = netloc
    if not bucket:
        raise ValueError(f"no bucket in {shown!r} (expected s3://bucket/prefix)")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"invalid S3 bucket name {bucket!r}: 3-63 characters, lower-case letters, "
                         "digits, '.' and '-', starting and ending with a letter or digit")
    try:
        ipaddress.ip_address(bucket)
    except ValueError:
        pass
    else:
        raise ValueError(f"{bucket!r} is an IP address, not a bucket; for an S3-compatible server "
                         f"use s3://{bucket}:PORT/bucket/prefix or set CLEARML_DATA_S3_ENDPOINT_URL")
    parts = [p for p in path.strip("/").split("/")] if path.strip("/") else []
    for part in parts:
        if part in ("", ".", ".."):
            raise ValueError(f"the prefix of {shown!r} has an empty, '.' or '..' component")
    return S3Location(bucket, "/".join(parts), host)


# -- checksums -----------------------------------------------------------------------------
class _Crc32:
    def __init__(self, data: bytes = b""):
        self.value = zlib.crc32(data)

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


def _hasher(algorithm: str, data: bytes = b""):
    return _Crc32(data) if algorithm == "CRC32" else hashlib.new(algorithm.lower(), data)


def composite_checksum(algorithm: str, part_digests: list[bytes]) -> str:
    """S3's checksum of a multipart object: the checksum of its parts' checksums, base64."""
    return base64.b64encode(_hasher(algorithm, b"".join(part_digests)).digest()).decode()


def multipart_etag(part_etags: list[str]) -> str | None:
    """The ETag S3 gives an object made of these parts (unencrypted or SSE-S3), or None."""
    try:
        digests = [bytes.fromhex(e.strip('"')) for e in part_etags]
    except ValueError:
        return None
    if any(len(d) != 16 for d in digests):
        return None
    return f'"{hashlib.md5(b"".join(digests)).hexdigest()}-{len(digests)}"'


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


# -- the driver ----------------------------------------------------------------------------
class S3Driver(StorageDriver):
    """One ``s3://bucket/prefix``; safe to call from many threads at once."""

    schemes = ("s3",)
    capabilities = frozenset({RANGED_READS, MULTIPART, CONDITIONAL_PUT})
    #: transfers at once that saturate a normal link (the core's pool size)
    default_max_workers = 16

    def __init__(self, url: str, **options):
        super().__init__(url, **options)
        location = parse_s3_url(url)
        self.bucket, self.prefix, self.host = location
        self.opts = S3Options.resolve(options)
        self.endpoint_url = self._endpoint()
        self._base = f"s3://{self.host + '/' if self.host else ''}{self.bucket}"
        if self.prefix:
            self._base += "/" + self.prefix
        self._lock = threading.Lock()
        self._client = None
        self._pool: ThreadPoolExecutor | None = None
        self._key_locks: dict[str, list] = {}

    def __repr__(self) -> str:
        endpoint = f" at {redact_url(self.endpoint_url)}" if self.endpoint_url else ""
        return f"<{type(self).__name__} {self._base}{endpoint}>"

    # -- plumbing --------------------------------------------------------------------------
    def _endpoint(self) -> str | None:
        """The endpoint URL passed to boto3; None lets boto3 find its own."""
        if self.host is None:
            return self.opts.endpoint_url
        for candidate in (self.opts.endpoint_url, os.environ.get("AWS_ENDPOINT_URL_S3"),
                          os.environ.get("AWS_ENDPOINT_URL")):
            if candidate and urlsplit(candidate).netloc.lower() == self.host.lower():
                return candidate.rstrip("/")
        return f"{'https' if self.opts.secure else 'http'}://{self.host}"

    def _addressing_style(self) -> str | None:
        if self.opts.addressing_style:
            return self.opts.addressing_style
        overridden = self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        # S3-compatible servers rarely have wildcard DNS for virtual-hosted buckets
        return "path" if overridden else None

    def _make_client(self):
        o = self.opts
        s3_config: dict[str, Any] = {}
        style = self._addressing_style()
        if style:
            s3_config["addressing_style"] = style
        config = Config(
            retries={"mode": o.retry_mode or "standard", "total_max_attempts": o.max_attempts or 8},
            max_pool_connections=o.max_pool_connections,
            connect_timeout=o.connect_timeout,
            read_timeout=o.read_timeout,
            tcp_keepalive=True,
            user_agent_extra=f"clearml-data-s3/{__version__}",
            s3=s3_config or None,
            signature_version=UNSIGNED if o.anonymous else None,
            # "off": send no checksum a store might reject (botocore >= 1.36 adds CRC32 by default)
            request_checksum_calculation=None if o.algorithm else "when_required",
        )
        try:
            session = boto3.session.Session(profile_name=o.profile, region_name=o.region)
            return session.client("s3", endpoint_url=self.endpoint_url, config=config)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, "") from exc

    @property
    def client(self):
        """The boto3 S3 client (created on first use; boto3 clients are thread safe)."""
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
                client = self._client
        return client

    def _executor(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.opts.max_concurrency,
                                                    thread_name_prefix="clearml-data-s3")
                pool = self._pool
        return pool

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            client, self._client = self._client, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if client is not None:
            client.close()

    def _key(self, key: str) -> str:
        check_relpath(key)
        full = f"{self.prefix}/{key}" if self.prefix else key
        if len(full.encode("utf-8")) > MAX_KEY_BYTES:
            raise ValueError(f"S3 keys are at most {MAX_KEY_BYTES} bytes: {full[:60]!r}...")
        return full

    def _where(self, key: str) -> str:
        return f"{self._base}/{key}" if key else self._base

    def _error(self, exc: BaseException, key: str, create_only: bool = False) -> OSError:
        """A builtin OSError for a botocore error; its text never holds credentials."""
        where = self._where(key)
        if isinstance(exc, ClientError):
            code, status = _code(exc)
            message = " ".join(scrub(str((exc.response.get("Error") or {}).get("Message") or "")).split())
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
                return OSError(errno.EAGAIN, f"the server is busy ({detail}; gave up after "
                                             f"{(attempts or 0) + 1} attempts)", where)
            return OSError(errno.EIO, f"S3 error ({detail})", where)
        text = " ".join(scrub(str(exc)).split())
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError,
                            ProfileNotFound)):
            return PermissionError(errno.EACCES, f"no usable AWS credentials ({type(exc).__name__}: {text}); "
                                   "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
                                   "or use an instance role", where)
        if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
            return TimeoutError(errno.ETIMEDOUT, f"timed out: {text}", where)
        if isinstance(exc, EndpointConnectionError):
            return ConnectionRefusedError(errno.ECONNREFUSED, f"cannot connect: {text}", where)
        if isinstance(exc, (BotoConnectionError, HTTPClientError, ConnectionClosedError)):
            return ConnectionError(errno.ECONNRESET, f"connection failed: {text}", where)
        if isinstance(exc, (FlexibleChecksumError, ChecksumError)):
            return _ChecksumMismatch(errno.EIO, f"checksum mismatch: {text}", where)
        if isinstance(exc, OSError):
            return exc
        return OSError(errno.EIO, f"{type(exc).__name__}: {text}", where)

    def _call(self, method: str, key: str, *, create_only: bool = False, **params):
        """Call a client method; errors become builtin OSErrors."""
        fn = getattr(self.client, method)
        params.setdefault("Bucket", self.bucket)
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return fn(**params)
            except ClientError as exc:
                code, status = _code(exc)
                if create_only and (code == "ConditionalRequestConflict" or status == 409) \
                        and attempt < CONFLICT_ATTEMPTS:
                    _backoff(attempt)  # another conditional write is in flight: ask again
                    continue
                raise self._error(exc, key, create_only) from exc
            except BotoCoreError as exc:
                raise self._error(exc, key) from exc
        raise AssertionError("unreachable")

    def _write_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.opts.algorithm:
            params["ChecksumAlgorithm"] = self.opts.algorithm
        if self.opts.sse:
            params["ServerSideEncryption"] = self.opts.sse
            if self.opts.sse_kms_key_id:
                params["SSEKMSKeyId"] = self.opts.sse_kms_key_id
        return params

    def _head(self, full: str, key: str) -> dict:
        """HEAD, with the object's checksum when checksums are on."""
        params = {"ChecksumMode": "ENABLED"} if self.opts.algorithm else {}
        return self._call("head_object", key, Key=full, **params)

    # -- writing ---------------------------------------------------------------------------
    def put_file(self, local_path: str, key: str, *, overwrite: bool = True) -> None:
        full = self._key(key)
        with open(local_path, "rb") as fh:
            if overwrite:
                self._put(fh, full, key, overwrite=True)
                return
            # Threads of this process race for one key here, not on the server: some stores
            # (moto among them) check If-None-Match and write in two steps. Across processes
            # the server's If-None-Match decides.
            with self._key_lock(full):
                if self._exists(full, key):  # before sending any byte
                    raise FileExistsError(errno.EEXIST, "object exists", self._where(key))
                self._put(fh, full, key, overwrite=False)

    def _put(self, fh, full: str, key: str, overwrite: bool) -> None:
        size = os.fstat(fh.fileno()).st_size
        if size < self.opts.multipart_threshold:
            data = fh.read()  # one snapshot: a retried PUT resends exactly these bytes
            params = self._write_params()
            if not overwrite:
                params["IfNoneMatch"] = "*"
            self._call("put_object", key, create_only=not overwrite, Key=full, Body=data, **params)
        else:
            self._put_multipart(fh.fileno(), size, full, key, overwrite)

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

    def part_size(self, size: int) -> int:
        """The part size of a multipart upload of ``size`` bytes (at most 10,000 parts)."""
        part = self.opts.multipart_chunksize
        if size > part * MAX_PARTS:
            part = math.ceil(size / MAX_PARTS / MiB) * MiB
        return part

    def _put_multipart(self, fd: int, size: int, full: str, key: str, overwrite: bool) -> None:
        part_size = self.part_size(size)
        params = self._write_params()
        created = self._call("create_multipart_upload", key, Key=full,
                             Metadata={PART_SIZE_META: str(part_size)}, **params)
        upload_id = created["UploadId"]
        try:
            parts = self._in_parallel([
                (self._upload_part, (fd, full, key, upload_id, n + 1, off, min(part_size, size - off)))
                for n, off in enumerate(range(0, size, part_size))
            ])
            self._complete(full, key, upload_id, parts, overwrite)
        except BaseException:
            self._abort(full, key, upload_id)
            raise

    def _upload_part(self, fd: int, full: str, key: str, upload_id: str, number: int,
                     offset: int, length: int) -> dict:
        data = _pread(fd, length, offset)
        if len(data) != length:
            raise OSError(errno.EIO, "the file shrank while it was uploaded", self._where(key))
        params: dict[str, Any] = {}
        if self.opts.algorithm:
            params["ChecksumAlgorithm"] = self.opts.algorithm
        resp = self._call("upload_part", key, Key=full, UploadId=upload_id, PartNumber=number,
                          Body=data, **params)
        part = {"PartNumber": number, "ETag": resp["ETag"]}
        if self.opts.algorithm and resp.get(f"Checksum{self.opts.algorithm}"):
            part[f"Checksum{self.opts.algorithm}"] = resp[f"Checksum{self.opts.algorithm}"]
        return part

    def _complete(self, full: str, key: str, upload_id: str, parts: list[dict], overwrite: bool) -> None:
        params: dict[str, Any] = {"IfNoneMatch": "*"} if not overwrite else {}
        try:
            self._call("complete_multipart_upload", key, create_only=not overwrite, Key=full,
                       UploadId=upload_id, MultipartUpload={"Parts": parts}, **params)
        except FileNotFoundError:
            # NoSuchUpload after a retried request: the first attempt may have completed it
            expected = multipart_etag([p["ETag"] for p in parts])
            try:
                etag = self._call("head_object", key, Key=full).get("ETag")
            except OSError:
                etag = None
            if expected is None or etag != expected:
                raise
            log.debug("multipart upload of %s completed by an earlier attempt", self._where(key))

    def _abort(self, full: str, key: str, upload_id: str) -> None:
        try:
            self._call("abort_multipart_upload", key, Key=full, UploadId=upload_id)
        except FileNotFoundError:
            pass
        except Exception as exc:  # the parts stay invisible; a lifecycle rule removes them
            log.warning("could not abort the multipart upload of %s (%s); its parts are not visible "
                        "but are stored until a lifecycle rule removes them", self._where(key), exc)

    def _in_parallel(self, calls: list[tuple[Callable, tuple]]) -> list:
        """Run calls in the driver's pool; the first failure cancels the rest and is raised."""
        if len(calls) == 1:
            fn, args = calls[0]
            return [fn(*args)]
        pool = self._executor()
        futures: list[Future] = [pool.submit(fn, *args) for fn, args in calls]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                raise failed[0].exception()
            return [f.result() for f in futures]
        finally:
            for f in futures:
                f.cancel()
            wait(futures)  # nothing may touch the file or the upload once we return

    # -- reading ---------------------------------------------------------------------------
    def get_file(self, key: str, local_path: str) -> None:
        full = self._key(key)
        folder, name = os.path.split(os.path.abspath(local_path))
        tmp = os.path.join(folder, f".{name}.s3-{uuid.uuid4().hex[:12]}.tmp")
        try:
            for attempt in range(1, GET_ATTEMPTS + 1):
                head = self._head(full, key)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
                try:
                    if int(head["ContentLength"]) < self.opts.multipart_threshold:
                        self._download_whole(full, key, fd, head)
                    else:
                        self._download_ranges(full, key, fd, head)
                    break
                except (_ObjectChanged, _ChecksumMismatch) as exc:
                    if attempt == GET_ATTEMPTS:
                        raise
                    log.warning("%s: %s; reading it again", self._where(key), exc.strerror)
                finally:
                    os.close(fd)
            os.replace(tmp, local_path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def _download_whole(self, full: str, key: str, fd: int, head: dict) -> None:
        size = int(head["ContentLength"])
        params = {"IfMatch": head["ETag"]} if head.get("ETag") else {}
        if self.opts.algorithm:
            params["ChecksumMode"] = "ENABLED"  # botocore checks the object's checksum
        written = self._stream(key, fd, 0, size, None, 0, Key=full, **params)[0]
        if written != size:
            raise OSError(errno.EIO, f"read {written} of {size} bytes", self._where(key))

    def range_size(self, size: int, part_size: int) -> int:
        """Bytes per ranged GET: whole parts, about one range per worker, at most 64 MiB."""
        per_worker = math.ceil(size / self.opts.max_concurrency)
        parts = max(1, min(per_worker, MAX_RANGE) // part_size)
        return parts * part_size

    def _download_ranges(self, full: str, key: str, fd: int, head: dict) -> None:
        size = int(head["ContentLength"])
        algorithm, expected, part_size = self._composite(head, size)
        part_size = part_size or self.part_size(size)
        step = self.range_size(size, part_size)
        extra = {"IfMatch": head["ETag"]} if head.get("ETag") else {}
        results = self._in_parallel([
            (self._stream_range, (full, key, fd, off, min(step, size - off), algorithm, part_size, extra))
            for off in range(0, size, step)
        ])
        if sum(n for n, _ in results) != size:
            raise OSError(errno.EIO, "short read", self._where(key))
        if algorithm and expected:
            actual = composite_checksum(algorithm, [d for _, digests in results for d in digests])
            if actual != expected:
                raise _ChecksumMismatch(errno.EIO, f"checksum mismatch: {algorithm} of the parts is {actual}, "
                                                   f"S3 recorded {expected}", self._where(key))

    def _composite(self, head: dict, size: int) -> tuple[str | None, str | None, int | None]:
        """(algorithm, expected composite checksum, part size) when a download can be checked."""
        if not self.opts.algorithm or head.get("ChecksumType") == "FULL_OBJECT":
            return None, None, None
        try:
            part_size = int((head.get("Metadata") or {}).get(PART_SIZE_META, ""))
        except ValueError:
            return None, None, None
        if part_size < MIN_PART:
            return None, None, None
        for algorithm in CHECKSUMS:
            value = head.get(f"Checksum{algorithm}")
            if value:
                checksum, _, count = value.partition("-")
                if count and int(count) != math.ceil(size / part_size):
                    return None, None, None
                return algorithm, checksum, part_size
        return None, None, None

    def _stream_range(self, full: str, key: str, fd: int, offset: int, length: int,
                      algorithm: str | None, part_size: int, extra: dict) -> tuple[int, list[bytes]]:
        return self._stream(key, fd, offset, length, algorithm, part_size, Key=full,
                            Range=f"bytes={offset}-{offset + length - 1}", **extra)

    def _stream(self, key: str, fd: int, offset: int, length: int, algorithm: str | None,
                part_size: int, **params) -> tuple[int, list[bytes]]:
        """GET into ``fd`` at ``offset``: (bytes written, checksum of each part it covered).

        ``offset`` is at a part boundary; a body cut off midway is fetched again.
        """
        attempts = self.opts.max_attempts or 8
        for attempt in range(1, attempts + 1):
            resp = self._call("get_object", key, **params)
            digests: list[bytes] = []
            hasher = _hasher(algorithm) if algorithm else None
            pos = offset
            try:
                for chunk in resp["Body"].iter_chunks(STREAM_CHUNK):
                    if pos + len(chunk) - offset > length:
                        raise OSError(errno.EIO, "the server sent more bytes than asked for", self._where(key))
                    _pwrite(fd, chunk, pos)
                    if hasher is not None:  # split the chunk at part boundaries
                        view = memoryview(chunk)
                        while view:
                            room = part_size - (pos - offset) % part_size
                            hasher.update(view[:room])
                            pos += min(room, len(view))
                            view = view[room:]
                            if (pos - offset) % part_size == 0:
                                digests.append(hasher.digest())
                                hasher = _hasher(algorithm)
                    else:
                        pos += len(chunk)
            except STREAM_ERRORS as exc:
                resp["Body"].close()
                if attempt == attempts:
                    raise self._error(exc, key) from exc
                _backoff(attempt)
                continue
            except (FlexibleChecksumError, ChecksumError) as exc:
                raise self._error(exc, key) from exc
            if hasher is not None and (pos - offset) % part_size:
                digests.append(hasher.digest())
            return pos - offset, digests
        raise AssertionError("unreachable")

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError(f"invalid range: offset {offset}, length {length}")
        full = self._key(key)
        if length == 0:
            self._call("head_object", key, Key=full)
            return b""
        attempts = self.opts.max_attempts or 8
        for attempt in range(1, attempts + 1):
            try:
                resp = self._call("get_object", key, Key=full, Range=f"bytes={offset}-{offset + length - 1}")
            except _RangeNotSatisfiable:
                return b""  # the object exists and ends before offset
            try:
                data = resp["Body"].read()
            except STREAM_ERRORS as exc:
                if attempt == attempts:
                    raise self._error(exc, key) from exc
                _backoff(attempt)
                continue
            if not resp.get("ContentRange") and len(data) > length:  # a server that ignored Range
                data = data[offset:offset + length]
            return data
        raise AssertionError("unreachable")

    def stat(self, key: str) -> ObjectInfo:
        resp = self._call("head_object", key, Key=self._key(key))
        modified = resp.get("LastModified")
        return ObjectInfo(key, int(resp["ContentLength"]), modified.timestamp() if modified else None)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        root = f"{self.prefix}/" if self.prefix else ""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=root + prefix):
                for obj in page.get("Contents") or ():
                    rel = obj["Key"][len(root):]
                    if not rel or rel.endswith("/"):  # folder markers made by consoles
                        continue
                    modified = obj.get("LastModified")
                    yield ObjectInfo(rel, int(obj["Size"]), modified.timestamp() if modified else None)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, prefix) from exc

    def delete(self, key: str) -> None:
        full = self._key(key)
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
                    yield Unfinished(name[len(root):], started.timestamp() if started else None,
                                     str(upload.get("UploadId") or ""))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, prefix) from exc

    def abort_unfinished(self, upload: Unfinished) -> None:
        full = self._key(upload.key)
        try:
            self._call("abort_multipart_upload", upload.key, Key=full, UploadId=upload.upload_id)
        except FileNotFoundError:
            pass  # completed or aborted meanwhile


def _backoff(attempt: int) -> None:
    time.sleep(min(5.0, 0.05 * 2 ** attempt) * random.uniform(0.5, 1.0))


def _pread(fd: int, length: int, offset: int) -> bytes:
    chunks = []
    while length > 0:
        chunk = os.pread(fd, length, offset)
        if not chunk:
            break
        chunks.append(chunk)
        length -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _pwrite(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n
