"""The built-in read-only driver for ``http://`` and ``https://`` URLs (the standard library's urllib).

A web server is a place files are read from, never written to: ``put_file`` and ``delete``
refuse with ``PermissionError`` naming the scheme, and ``list`` with an ``OSError`` (HTTP has
no listing). A key is a path under the driver's URL, percent-encoded on the way out; a query
string of the URL (a signed link) is sent with every request.

- size: ``HEAD``'s ``Content-Length``; a server that refuses ``HEAD`` is asked for one byte
  with a ranged ``GET`` and its ``Content-Range`` read instead;
- ranges: ``Range: bytes=a-b``; a server that ignores it (200) is read up to the range and no
  further, so a range is never more than what the caller asked for;
- errors: 404 and 410 are ``FileNotFoundError``, 401 and 403 ``PermissionError``, 408, 429
  and 5xx ``ConnectionError`` (retried by :mod:`.calls`), an answer shorter than its
  ``Content-Length`` ``ConnectionError`` too. Credentials in the URL (``user:password@``)
  are sent as basic authentication and never shown.
"""

from __future__ import annotations

import base64
import email.utils
import errno
import http.client
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from .base import RANGED_READS, DriverInfo, ObjectInfo, Progress, StorageDriver, redact_url
from .hookspecs import hookimpl
from .toolkit import Option, positive_float, positive_int

#: bytes read from a response at a time
BLOCK = 1024 * 1024
#: statuses worth another try: the server may answer next time
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@hookimpl
def clearml_data_storage_drivers():
    return [
        DriverInfo(scheme, "clearml_data.storage.http:HttpDriver", description="web server (read-only)")
        for scheme in ("http", "https")
    ]


class HttpDriver(StorageDriver):
    schemes = ("http", "https")
    capabilities = frozenset({RANGED_READS})
    default_max_workers = 4
    declared_options = (
        Option("timeout", positive_float, 60.0, "seconds to wait for the server to connect or send"),
        Option("max_attempts", positive_int, 3, "tries of a read that fails transiently"),
    )

    def __init__(self, url: str, **options: Any):
        super().__init__(url, **options)
        parts = urlsplit(url)
        self.scheme = parts.scheme.lower()
        host = parts.hostname or ""
        if not host:
            raise ValueError("an http(s) URL needs a host")
        netloc = host if ":" not in host else f"[{host}]"
        if parts.port is not None:
            netloc += f":{parts.port}"
        self._headers = {"User-Agent": "clearml-data"}
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        self._base = (self.scheme, netloc, parts.path.rstrip("/"), parts.query)
        self.timeout = float(self.options["timeout"])

    # -- requests --------------------------------------------------------------------------
    def object_url(self, key: str) -> str:
        """The URL a key is read from (no credentials in it)."""
        scheme, netloc, path, query = self._base
        full = f"{path}/{quote(self.full_key(key))}" if key else path or "/"
        return urlunsplit((scheme, netloc, full, query, ""))

    def _open(self, key: str, method: str = "GET", headers: dict[str, str] | None = None):
        request = urllib.request.Request(
            self.object_url(key), method=method, headers={**self._headers, **(headers or {})}
        )
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise _error(exc.code, exc.reason, key, method) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise TimeoutError(errno.ETIMEDOUT, f"{self.scheme} server did not answer", key) from exc
            raise ConnectionError(errno.ECONNREFUSED, f"cannot reach the server: {reason}", key) from exc
        except (http.client.HTTPException, ConnectionError) as exc:
            raise ConnectionError(errno.ECONNRESET, f"the server broke the connection: {exc}", key) from exc

    # -- reads -----------------------------------------------------------------------------
    def stat(self, key: str) -> ObjectInfo:
        try:
            with self._open(key, "HEAD") as resp:
                length = resp.headers.get("Content-Length")
                modified = resp.headers.get("Last-Modified")
        except PermissionError as exc:
            if getattr(exc, "status", None) != 405:
                raise
            length = modified = None
        if length is None:  # HEAD refused or without a length: a one-byte ranged GET
            length, modified = self._size_by_range(key)
        return ObjectInfo(key, int(length), _mtime(modified))

    def _size_by_range(self, key: str) -> tuple[int, str | None]:
        try:
            resp = self._open(key, headers={"Range": "bytes=0-0"})
        except _RangeNotSatisfiable:  # nothing to give: an empty object
            return 0, None
        with resp:
            modified = resp.headers.get("Last-Modified")
            total = resp.headers.get("Content-Range", "").rpartition("/")[2]
            if resp.status == 206 and total.isdigit():
                return int(total), modified
            length = resp.headers.get("Content-Length")
            if resp.status == 200 and length is not None:
                return int(length), modified
            raise OSError(errno.EIO, "the server gives no size for this file", key)

    def get_file(self, key: str, local_path: str, *, callback: Progress | None = None) -> None:
        with self._open(key) as resp:  # opened before the file: a missing key leaves no file
            expected = resp.headers.get("Content-Length")
            got = 0
            # readinto one reused buffer: several times faster than read() of new blocks
            view = memoryview(bytearray(BLOCK))
            with open(local_path, "wb") as out:
                while True:
                    try:
                        n = resp.readinto(view)
                    except (http.client.HTTPException, OSError) as exc:
                        raise ConnectionError(
                            errno.ECONNRESET, f"the download broke off: {exc}", key
                        ) from exc
                    if not n:
                        break
                    out.write(view[:n])
                    got += n
                    if callback is not None:
                        callback(n)
        if expected is not None and got != int(expected):
            os.unlink(local_path)
            raise ConnectionError(errno.EIO, f"the server sent {got} of {expected} bytes", key)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError(f"a negative offset or length ({offset}, {length}) for {key}")
        if not length:
            self.stat(key)  # a missing key is still an error
            return b""
        try:
            resp = self._open(key, headers={"Range": f"bytes={offset}-{offset + length - 1}"})
        except _RangeNotSatisfiable:  # at or past the end (or an empty object)
            return b""
        with resp:
            if resp.status == 206:
                data = _read_all(resp, length, key)
            else:  # the whole object: skip to the range, read it, stop
                _read_all(resp, offset, key, skip=True)
                data = _read_all(resp, length, key)
        return data[:length]

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        raise OSError(
            errno.EOPNOTSUPP, f"{self.scheme}:// servers cannot be listed; name each file's URL", prefix
        )

    # -- writes: refused -------------------------------------------------------------------
    def _read_only(self, key: str) -> PermissionError:
        return PermissionError(
            errno.EACCES,
            f"{self.scheme}:// storage is read-only: clearml-data reads files from web servers "
            "and never writes to them",
            key,
        )

    def put_file(
        self, local_path: str, key: str, *, overwrite: bool = True, callback: Progress | None = None
    ) -> None:
        raise self._read_only(key)

    def put_bytes(self, data: bytes, key: str, *, overwrite: bool = True) -> None:
        raise self._read_only(key)

    def delete(self, key: str) -> None:
        raise self._read_only(key)

    def __repr__(self) -> str:
        return f"<HttpDriver {redact_url(self.url)}>"


class _RangeNotSatisfiable(OSError):
    """HTTP 416: the range starts at or past the object's end."""


def _error(status: int, reason: object, key: str, method: str) -> OSError:
    text = f"HTTP {status} {reason}".strip()
    exc: OSError
    if status in (404, 410):
        exc = FileNotFoundError(errno.ENOENT, f"no such object ({text})", key)
    elif status == 416:
        exc = _RangeNotSatisfiable(errno.EINVAL, text, key)
    elif status in (401, 403, 405):
        exc = PermissionError(errno.EACCES, text, key)
    elif status in TRANSIENT_STATUS:
        exc = ConnectionError(errno.EAGAIN, text, key)
    else:
        exc = OSError(errno.EIO, f"{method} answered {text}", key)
    exc.status = status  # type: ignore[attr-defined] # read by stat's HEAD fallback
    return exc


def _read_all(resp, n: int, key: str, skip: bool = False) -> bytes:
    """Up to ``n`` bytes of the response (fewer only at its end); with ``skip``, read and drop them."""
    parts: list[bytes] = []
    left = n
    while left > 0:
        try:
            block = resp.read(min(BLOCK, left))
        except (http.client.HTTPException, OSError) as exc:
            raise ConnectionError(errno.ECONNRESET, f"the download broke off: {exc}", key) from exc
        if not block:
            break
        left -= len(block)
        if not skip:
            parts.append(block)
    return b"".join(parts)


def _mtime(header: str | None) -> float | None:
    if not header:
        return None
    try:
        return email.utils.parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError):
        return None
