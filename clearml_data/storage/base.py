"""The storage driver contract.

A driver gives access to one storage URL (a folder, a bucket prefix, a container)
as a flat namespace of keys ("packs/ab/ab12....pack"). It implements a handful of
primitives; everything else is derived here. Drivers raise Python's builtin
exceptions — ``FileNotFoundError`` for a missing key, ``FileExistsError`` for a
create-only put of an existing key, ``PermissionError`` — and the service wraps them.

Objects are written once and never modified. A put must be atomic: a reader sees
either nothing or the whole object, never a prefix of it.

Options reach a driver as keyword arguments: the class declares them in
``declared_options`` (see :mod:`clearml_data.storage.toolkit`), the plugin manager
resolves them from the environment and the config file, and :class:`StorageDriver`'s
constructor parses them into ``self.options``. ``put_file`` and ``get_file`` take a
progress ``callback``, called with the number of bytes just moved (increments).
"""

from __future__ import annotations

import abc
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from ..errors import UnsafePathError
from ..paths import check_relpath
from .scrub import scrub
from .toolkit import Option, resolve_options

#: a progress callback: called with the number of bytes moved since its last call
Progress = Callable[[int], object]

#: capability flags a driver may declare
RANGED_READS = "ranged_reads"
MULTIPART = "multipart"
CONDITIONAL_PUT = "conditional_put"


class DriverInfo(NamedTuple):
    """What a plugin's ``clearml_data_storage_drivers`` hook returns, one per URL scheme."""

    scheme: str  #: "file", "s3", "gs", "azure", ...
    factory: str  #: "package.module:Class", imported only when used
    requires: tuple[str, ...] = ()  #: importable modules the driver needs
    install_hint: str = ""  #: shown when one of ``requires`` is missing
    description: str = ""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    mtime: float | None = None
    #: what the store knows of this version of the object without reading it (its ETag,
    #: version id, native checksum, generation or mtime), as :func:`fingerprint` writes it;
    #: None when the driver says nothing (a driver written before this field existed)
    fingerprint: str | None = None


#: the longest fingerprint kept (a driver's is cut to it)
MAX_FINGERPRINT = 512
#: values that JSON writes as they are (no escapes), so a fingerprint of them needs no encoder
_PLAIN = re.compile(r"[A-Za-z0-9+/=._:-]*")


def fingerprint(**parts: object) -> str | None:
    """A fingerprint from named parts (``etag=..., version=...``): canonical JSON of those
    that are set, or None if none is. Two fingerprints are compared part by part
    (:func:`fingerprint_changed`), so a listing that knows fewer parts than a stat still matches."""
    kept = [(k, str(v)) for k, v in sorted(parts.items()) if v not in (None, "")]
    if not kept:
        return None
    if all(_PLAIN.fullmatch(v) for _k, v in kept):  # the usual case, built 5x faster (listings)
        text = "{" + ",".join(f'"{k}":"{v}"' for k, v in kept) + "}"
    else:
        text = json.dumps(dict(kept), sort_keys=True, separators=(",", ":"))
    return text[:MAX_FINGERPRINT]


def fingerprint_parts(fp: str | None) -> dict[str, str]:
    """The named parts of a fingerprint ({} for None or one that is not ours)."""
    if not fp:
        return {}
    try:
        parts = json.loads(fp)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in parts.items()} if isinstance(parts, dict) else {}


def fingerprint_changed(recorded: str | None, now: str | None) -> list[str]:
    """The parts both fingerprints have and that differ ("etag: a -> b"); [] when they agree
    or share no part (then only the size can tell)."""
    old, new = fingerprint_parts(recorded), fingerprint_parts(now)
    return [f"{k}: {old[k]} -> {new[k]}" for k in sorted(old.keys() & new.keys()) if old[k] != new[k]]


class Unfinished(NamedTuple):
    """An upload that was started and neither completed nor aborted (a killed writer's)."""

    key: str  #: the key it was writing, relative to the driver's URL
    started: float | None  #: when it started (seconds since the epoch), when known
    upload_id: str  #: the driver's handle for it; shown to users, never a credential


class StorageDriver(abc.ABC):
    """Base class of every storage driver; subclasses implement the abstract primitives."""

    #: URL schemes this class serves
    schemes: ClassVar[tuple[str, ...]] = ()
    #: subset of {RANGED_READS, MULTIPART, CONDITIONAL_PUT}
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: parallel transfers the service runs on this driver when the user sets no --max-workers
    default_max_workers: ClassVar[int] = 8
    #: the options the class accepts (keyword arguments of the constructor); see toolkit.Option
    declared_options: ClassVar[tuple[Option, ...]] = ()
    #: longest full key (prefix included) the store takes, in UTF-8 bytes and in characters
    max_key_bytes: ClassVar[int | None] = None
    max_key_chars: ClassVar[int | None] = None

    #: what :meth:`full_key` puts before every key ("" or "a/b", no slash at either end)
    prefix: str = ""

    def __init__(self, url: str, **options: Any):
        self.url = url
        #: the options, parsed and with defaults when the class declares them, else as given
        self.options: dict[str, Any] = (
            resolve_options(url_scheme(url), self.declared_options, options)
            if self.declared_options
            else options
        )

    def full_key(self, key: str) -> str:
        """The store's name of ``key``: checked as a clean relative path, joined to
        :attr:`prefix` and checked against the store's length limits (UnsafePathError, a
        ValueError, when it is not a key)."""
        check_relpath(key)
        full = f"{self.prefix}/{key}" if self.prefix else key
        if self.max_key_bytes is not None and len(full.encode("utf-8")) > self.max_key_bytes:
            raise UnsafePathError(
                f"keys of this store are at most {self.max_key_bytes} bytes: {full[:60]!r}..."
            )
        if self.max_key_chars is not None and len(full) > self.max_key_chars:
            raise UnsafePathError(
                f"keys of this store are at most {self.max_key_chars} characters: {full[:60]!r}..."
            )
        return full

    # -- primitives ----------------------------------------------------------------
    @abc.abstractmethod
    def put_file(
        self, local_path: str, key: str, *, overwrite: bool = True, callback: Progress | None = None
    ) -> None:
        """Store the local file's bytes at ``key``, atomically.

        With ``overwrite=False`` an existing key raises ``FileExistsError`` and is left
        untouched (create-only put). ``callback``, when given, is called with the number of
        bytes sent since its last call, as they go. A driver written before ``callback``
        existed may leave it out of its signature: the core then reports the whole size
        once the put returns.
        """

    @abc.abstractmethod
    def get_file(self, key: str, local_path: str, *, callback: Progress | None = None) -> None:
        """Copy the object's bytes into ``local_path`` (created or replaced).

        ``local_path`` is a temporary name the core chose and removes if this raises.
        ``callback`` as for :meth:`put_file`, with the bytes received.
        """

    @abc.abstractmethod
    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """Return ``length`` bytes of the object from ``offset`` (fewer only at its end)."""

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size (and mtime and fingerprint when known) of the object; ``FileNotFoundError`` if
        missing. The fingerprint must change when the object's bytes do (an overwrite)."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in any order."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; a missing key raises ``FileNotFoundError``."""

    # -- derived -------------------------------------------------------------------
    def put_bytes(self, data: bytes, key: str, *, overwrite: bool = True) -> None:
        fd, tmp = tempfile.mkstemp(prefix="clearml-data-put-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            self.put_file(tmp, key, overwrite=overwrite)
        finally:
            os.unlink(tmp)

    def get_bytes(self, key: str) -> bytes:
        size = self.stat(key).size
        return self.read_range(key, 0, size) if size else b""

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except FileNotFoundError:
            return False
        return True

    def list_unfinished(self, prefix: str = "") -> Iterator[Unfinished]:
        """Uploads under ``prefix`` that were started and never completed or aborted: S3
        multipart uploads, GCS resumable sessions, Azure blobs of only uncommitted blocks.
        Drivers whose puts leave nothing behind keep this default, which yields nothing."""
        return iter(())

    def abort_unfinished(self, upload: Unfinished) -> None:  # noqa: B027 - optional, no-op by default
        """Abort one upload :meth:`list_unfinished` yielded, freeing what it holds; one that
        is gone already (completed, aborted, expired) is no error."""

    def clean_temporaries(self) -> int:
        """Remove temporary data that crashed writers left in the storage; returns how many
        items. Best effort; drivers whose puts leave nothing behind keep this default."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional, no-op by default
        """Release connections; the driver is not used afterwards."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {redact_url(self.url)}>"


_SECRET_QUERY = re.compile(
    r"(?i)((?:sig|signature|se|sv|sp|token|key|secret|password|accountkey|sharedaccesssignature|"
    r"x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|credential|upload_id|uploadid)=)[^&;#]*"
)
_SECRET_PAIR = re.compile(r"(?i)((?:AccountKey|SharedAccessSignature|password|secret)=)[^;]*")


def redact_url(url: str) -> str:
    """Hide credentials in a URL or connection string: user:password@, signed query params."""
    text = str(url)
    if "://" in text:
        try:
            parts = urlsplit(text)
        except ValueError:
            parts = None
        if parts is not None and parts.netloc:
            netloc = parts.netloc
            if "@" in netloc:
                netloc = "***@" + netloc.rsplit("@", 1)[1]
            query = _SECRET_QUERY.sub(r"\1***", parts.query)
            text = urlunsplit((parts.scheme, netloc, parts.path, query, "***" if parts.fragment else ""))
    return _SECRET_PAIR.sub(r"\1***", text)


def redact_text(text: object) -> str:
    """Hide credentials in free text (an SDK's error message, a log line): the shared
    scrubber of :mod:`clearml_data.storage.scrub`, which also knows the values of the
    credential variables set in the environment."""
    return scrub(text)


def url_scheme(url: str) -> str:
    """The driver scheme of a storage URL; plain paths are "file"."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    return m.group(1).lower() if m else "file"
