"""Version manifests: what a storage needs to hold so that a version outlives its catalog.

When a version is finalized, a manifest is written into its storage, create-only, after its
objects and before the catalog's final flag::

    manifests/<id>.json.gz          one final version (gzip-compressed JSON, below)
    manifests/<id>.deleted.json     a tombstone: the version was deleted (plain JSON)

A manifest is self-contained: besides the version's record and its own change rows (its
lineage), it lists the version's whole merged view and where each content's bytes live, so
the version can be restored and fetched even when its ancestors are gone. The encoding is
deterministic (sorted keys, no gzip timestamp), so the same version always gives the same
bytes. This module only builds, encodes and checks documents; the service writes and reads
them (recovery.py).
"""

from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from .errors import ManifestError, UnsafePathError
from .paths import check_relpath

PREFIX = "manifests/"
FORMAT = "clearml-data-manifest"
TOMBSTONE_FORMAT = "clearml-data-tombstone"
FORMAT_VERSION = 1
#: manifests larger than this (compressed) are refused when read
MAX_BYTES = 1 << 30
#: the record fields a manifest keeps of a version (its catalog row, without status/storage)
RECORD_FIELDS = ("id", "project", "name", "version", "description", "tags", "metadata", "storage",
                 "created_at", "finalized_at", "file_count", "total_size", "added", "modified",
                 "removed", "parents")
_ID = re.compile(r"[0-9a-f]{32}")
_HASH = re.compile(r"[0-9a-f]{64}")
_KEY = re.compile(r"manifests/([0-9a-f]{32})(\.json\.gz|\.deleted\.json)")
_KINDS = ("added", "modified", "removed")


def manifest_key(dataset_id: str) -> str:
    return f"{PREFIX}{dataset_id}.json.gz"


def tombstone_key(dataset_id: str) -> str:
    return f"{PREFIX}{dataset_id}.deleted.json"


def parse_key(key: str) -> tuple[str, str] | None:
    """("manifest" | "tombstone", dataset id) for a key under manifests/, else None."""
    m = _KEY.fullmatch(key)
    if m is None:
        return None
    return ("manifest" if m.group(2) == ".json.gz" else "tombstone"), m.group(1)


@dataclass
class Manifest:
    """A decoded manifest. ``objects`` maps a hash to (storage or None, key, offset, length);
    None means the storage the manifest lives in."""

    record: dict
    changes: list[tuple[str, str, str | None, int | None, str | None]]
    files: dict[str, tuple[str, int, str, str | None]]          # path -> (hash, size, origin, link)
    objects: dict[str, tuple[str | None, str, int, int]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.record["id"]

    @property
    def parents(self) -> list[str]:
        return list(self.record["parents"])

    def local_keys(self) -> set[str]:
        """The keys of the manifest's own storage that its files need."""
        return {loc[1] for loc in self.objects.values() if loc[0] is None}

    def content(self) -> dict:
        """Everything but the finalize time: equal for two finalize attempts of the same draft."""
        record = {k: v for k, v in self.record.items() if k != "finalized_at"}
        return {"record": record, "changes": self.changes, "files": self.files, "objects": self.objects}


def build(record: dict, changes, files, objects) -> Manifest:
    """A manifest from plain values (the service passes catalog rows converted to tuples)."""
    rec = {k: record[k] for k in RECORD_FIELDS}
    return Manifest(rec, [tuple(c) for c in changes], {p: tuple(v) for p, v in files.items()},
                    {h: tuple(v) for h, v in objects.items()})


def encode(m: Manifest) -> bytes:
    out = io.BytesIO()
    write(out, m.record, sorted(m.changes), ((p, *m.files[p]) for p in sorted(m.files)), m.objects.get)
    return out.getvalue()


def write(out: BinaryIO, record: dict, changes: Iterable[tuple], files: Iterable[tuple],
          locate: Callable[[str], tuple | None]) -> None:
    """Stream a manifest into ``out`` (gzip, deterministic bytes) without holding the document.

    ``changes`` are (path, kind, hash, size, link) and ``files`` (path, hash, size, origin,
    link), both sorted by path; ``locate(hash)`` gives (storage or None, key, offset, length).
    The bytes equal ``json.dumps(document, sort_keys=True, separators=(",", ":"))``, gzipped.
    """
    dump = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode

    places: dict[tuple[str | None, str], int] = {}
    with gzip.GzipFile(filename="", fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz:  # no name
        buf: list[str] = []

        def emit(text: str) -> None:
            buf.append(text)
            if len(buf) >= 64:
                gz.write("".join(buf).encode("utf-8"))
                buf.clear()

        def emit_list(rows: Iterable[list]) -> None:
            emit("[")
            batch: list[list] = []
            first = True
            for r in rows:
                batch.append(r)
                if len(batch) == 4096:  # one encoder call per batch: "[a,b,...]" without its brackets
                    emit(("" if first else ",") + dump(batch)[1:-1])
                    batch.clear()
                    first = False
            if batch:
                emit(("" if first else ",") + dump(batch)[1:-1])
            emit("]")

        def file_rows() -> Iterator[list]:
            for p, h, size, origin, link in files:
                loc = locate(h)
                if loc is None:
                    yield [p, h, size, origin, link, None, 0, 0]
                else:
                    index = places.setdefault((loc[0], loc[1]), len(places))
                    yield [p, h, size, origin, link, index, loc[2], loc[3]]

        emit('{"changes":')
        emit_list(list(c) for c in changes)
        emit(',"dataset":' + dump(record) + ',"files":')
        emit_list(file_rows())
        emit(f',"format":{dump(FORMAT)},"format_version":{FORMAT_VERSION},"keys":')
        emit_list(list(k) for k in places)
        emit("}")
        gz.write("".join(buf).encode("utf-8"))


def decode(data: bytes, key: str = "") -> Manifest:
    """Check and decode a manifest; anything malformed raises ManifestError naming the key."""
    where = key or "manifest"
    try:
        if len(data) > MAX_BYTES:
            raise ValueError("too large")
        doc = json.loads(gzip.decompress(data).decode("utf-8"))
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{where} is not a readable manifest ({exc})") from None
    try:
        return _checked(doc)
    except (KeyError, IndexError, TypeError, ValueError, UnsafePathError) as exc:
        raise ManifestError(f"{where} is malformed: {exc}") from None


def _checked(doc: dict) -> Manifest:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError("not a clearml-data manifest")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"format version {doc.get('format_version')!r} is not {FORMAT_VERSION} "
                         "(written by another clearml-data release)")
    rec = doc["dataset"]
    record = {k: rec[k] for k in RECORD_FIELDS}
    _id(record["id"])
    for k in ("project", "name", "version", "description", "storage", "created_at", "finalized_at"):
        _type(record[k], str, k)
    if not isinstance(record["tags"], list) or not all(isinstance(t, str) for t in record["tags"]):
        raise TypeError("tags must be a list of strings")
    _type(record["metadata"], dict, "metadata")
    if not isinstance(record["parents"], list):
        raise TypeError("parents must be a list")
    for p in record["parents"]:
        _id(p)
    if record["id"] in record["parents"]:
        raise ValueError("the version names itself as its parent")
    for k in ("file_count", "total_size", "added", "modified", "removed"):
        _count(record[k], k)
    changes = []
    for path, kind, h, size, link in doc["changes"]:
        check_relpath(_type(path, str, "path"))
        if kind not in _KINDS:
            raise ValueError(f"unknown change kind {kind!r}")
        if kind == "removed":
            if h is not None or size is not None:
                raise ValueError("a removed row carries no content")
        else:
            _hash(h)
            _count(size, "size")
        if link is not None:
            _type(link, str, "link")
        changes.append((path, kind, h, size, link))
    keys = []
    for storage, key in doc["keys"]:
        if storage is None:
            check_relpath(_type(key, str, "key"))
        else:
            _type(storage, str, "storage")
            _type(key, str, "key")
        keys.append((storage, key))
    files = {}
    objects = {}
    for path, h, size, origin, link, index, offset, length in doc["files"]:
        check_relpath(_type(path, str, "path"))
        _hash(h)
        _count(size, "size")
        _id(origin)
        if link is not None:
            _type(link, str, "link")
        files[path] = (h, size, origin, link)
        if index is not None:
            storage, key = keys[_count(index, "key index")]
            objects[h] = (storage, key, _count(offset, "offset"), _count(length, "length"))
    if len(files) != record["file_count"]:
        raise ValueError(f"{len(files)} files listed, the record says {record['file_count']}")
    return Manifest(record, changes, files, objects)


def encode_tombstone(dataset_id: str, parents: list[str], deleted_at: str) -> bytes:
    doc = {"format": TOMBSTONE_FORMAT, "format_version": FORMAT_VERSION, "id": dataset_id,
           "parents": list(parents), "deleted_at": deleted_at}
    return json.dumps(doc, sort_keys=True).encode("utf-8")


def decode_tombstone(data: bytes, key: str = "") -> list[str]:
    """The parents a deleted version had (its children are restored onto them)."""
    try:
        doc = json.loads(data.decode("utf-8"))
        if doc.get("format") != TOMBSTONE_FORMAT:
            raise ValueError("not a clearml-data tombstone")
        parents = doc["parents"]
        for p in parents:
            _id(p)
        return list(parents)
    except (KeyError, TypeError, ValueError, AttributeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{key or 'tombstone'} is malformed: {exc}") from None


def _type(value, kind, what):
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{what} has the wrong type")
    return value


def _count(value, what) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer")
    return value


def _id(value) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValueError(f"{value!r} is not a dataset id")
    return value


def _hash(value) -> str:
    if not isinstance(value, str) or not _HASH.fullmatch(value):
        raise ValueError(f"{value!r} is not a SHA-256")
    return value
