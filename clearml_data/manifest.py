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
them (service/manifests.py).
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import re
import zlib
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
#: tombstones larger than this are refused unread
MAX_TOMBSTONE_BYTES = 1 << 16
#: the longest external file fingerprint a manifest may carry (storage.base.MAX_FINGERPRINT)
MAX_FINGERPRINT = 512
#: the record fields a manifest keeps of a version (its catalog row, without status/storage)
RECORD_FIELDS = (
    "id",
    "project",
    "name",
    "version",
    "description",
    "tags",
    "metadata",
    "storage",
    "created_at",
    "finalized_at",
    "file_count",
    "total_size",
    "added",
    "modified",
    "removed",
    "parents",
)
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
    files: dict[str, tuple[str, int, str, str | None]]  # path -> (hash, size, origin, link)
    objects: dict[str, tuple[str | None, str, int, int]] = field(default_factory=dict)
    #: path -> what the storage said of an external file when it was added (its fingerprint);
    #: the section is written only when there are some, so older manifests simply lack it
    fingerprints: dict[str, str] = field(default_factory=dict)

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
        return {
            "record": record,
            "changes": self.changes,
            "files": self.files,
            "objects": self.objects,
            "fingerprints": self.fingerprints,
        }


def build(record: dict, changes, files, objects, fingerprints=None) -> Manifest:
    """A manifest from plain values (the service passes catalog rows converted to tuples)."""
    rec = {k: record[k] for k in RECORD_FIELDS}
    return Manifest(
        rec,
        [tuple(c) for c in changes],
        {p: tuple(v) for p, v in files.items()},
        {h: tuple(v) for h, v in objects.items()},
        dict(fingerprints or {}),
    )


def encode(m: Manifest) -> bytes:
    out = io.BytesIO()
    write(
        out,
        m.record,
        sorted(m.changes),
        ((p, *m.files[p]) for p in sorted(m.files)),
        m.objects.get,
        sorted(m.fingerprints.items()),
    )
    return out.getvalue()


def write(
    out: BinaryIO,
    record: dict,
    changes: Iterable[tuple],
    files: Iterable[tuple],
    locate: Callable[[str], tuple | None],
    fingerprints: list[tuple[str, str]] | None = None,
) -> None:
    """Stream a manifest into ``out`` (gzip, deterministic bytes) without holding the document.

    ``changes`` are (path, kind, hash, size, link) and ``files`` (path, hash, size, origin,
    link), both sorted by path; ``locate(hash)`` gives (storage or None, key, offset, length);
    ``fingerprints`` are (path, fingerprint) of the external files that have one, sorted by
    path (the section is left out when there are none).
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
        if fingerprints:
            emit(',"fingerprints":')
            emit_list([p, fp] for p, fp in fingerprints)
        emit(f',"format":{dump(FORMAT)},"format_version":{FORMAT_VERSION},"keys":')
        emit_list(list(k) for k in places)
        emit("}")
        gz.write("".join(buf).encode("utf-8"))


def decode(data: bytes | BinaryIO, key: str = "", size: int | None = None) -> Manifest:
    """Check and decode a manifest; anything malformed raises ManifestError naming the key.

    ``data`` is the compressed bytes, or a readable binary file of ``size`` bytes positioned
    at its start (read streamed: a manifest is never held whole, compressed or inflated).
    """
    where = key or "manifest"
    if isinstance(data, (bytes, bytearray, memoryview)):
        size = len(data)
        data = io.BytesIO(data)
    try:
        doc = _read_document(data, size)
    except (OSError, EOFError, ValueError, UnicodeDecodeError, zlib.error) as exc:
        raise ManifestError(f"{where} is not a readable manifest ({exc})") from None
    try:
        return _checked(doc)
    except (KeyError, IndexError, TypeError, ValueError, UnsafePathError) as exc:
        raise ManifestError(f"{where} is malformed: {exc}") from None


#: inflated bytes read at a time
_CHUNK = 1 << 18
#: the longest single row (a change, a file, a key) and the longest dataset record, inflated
MAX_ROW_BYTES = 1 << 20
MAX_RECORD_BYTES = 16 << 20
#: whitespace allowed between two tokens (the writer puts none)
_MAX_BLANKS = 4096
_BLANKS = re.compile(r"[ \t\n\r]*")


def _blank_end(buf: str, pos: int) -> int:
    """Where the run of JSON whitespace at ``pos`` ends (``pos`` itself when there is none)."""
    m = _BLANKS.match(buf, pos)
    return m.end() if m else pos


_ROWS = ("changes", "files", "fingerprints", "keys")
_DECODER = json.JSONDecoder()
#: change rows (read before the record that bounds them) are kept in the first pass while
#: they inflate to at most this many times the file's size (a manifest of random hashes: 2.5-6)
KEEP_RATIO = 8


def claimed_size(fh: BinaryIO, size: int) -> int:
    """The inflated size a gzip file claims in its trailer (the last 4 bytes: ISIZE)."""
    if size < 18:  # header (10) + empty deflate stream (>=2) + trailer (8)
        raise ValueError("too short for gzip")
    start = fh.tell()
    fh.seek(start + size - 4)
    tail = fh.read(4)
    fh.seek(start)
    if len(tail) != 4:
        raise EOFError("cut short")
    return int.from_bytes(tail, "little")


class _Inflater:
    """Text of a gzip stream, inflated on demand, never past the size the stream claims."""

    def __init__(self, fh: BinaryIO, size: int, limit: int):
        self._fh = fh
        self._left = size
        self._limit = limit
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self.inflated = 0
        self.done = False
        self.buf = ""
        self.pos = 0

    def more(self) -> bool:
        """Append inflated text to ``buf`` (dropping what was consumed); False at the end."""
        return self.fill(len(self.buf) - self.pos + 1)

    def fill(self, n: int) -> bool:
        """Have at least ``n`` characters not consumed yet in ``buf`` (fewer at the end), with
        one join however many pieces that takes; False if nothing could be added."""
        pieces = [self.buf[self.pos :]]
        have = len(pieces[0])
        while have < n:
            text = self._inflate()
            if text is None:
                break
            pieces.append(text)
            have += len(text)
        if len(pieces) == 1:
            return False
        self.buf = "".join(pieces)
        self.pos = 0
        return True

    def _inflate(self) -> str | None:
        """The next piece of inflated text, or None at the end."""
        while not self.done:
            if self._z.unconsumed_tail:
                out = self._z.decompress(self._z.unconsumed_tail, _CHUNK)
            elif self._z.eof:
                out = b""
                self._finish()
            else:
                raw = self._fh.read(min(_CHUNK, self._left)) if self._left > 0 else b""
                if not raw:
                    raise EOFError("the gzip stream is cut short")
                self._left -= len(raw)
                out = self._z.decompress(raw, _CHUNK)
            if self._z.eof and not self._z.unconsumed_tail:
                self._finish()
            self.inflated += len(out)
            if self.inflated > self._limit:
                raise ValueError(f"it inflates past the {self._limit:,} bytes it claims to hold")
            text = self._utf8.decode(out, final=self.done)
            if text:
                return text
        return None

    def _finish(self) -> None:
        if self._z.unused_data or self._left > 0:
            raise ValueError("data follows the gzip stream")
        self.done = True

    def peek(self) -> str:
        """The next character that is not blank ('' at the end)."""
        blanks = 0
        while True:
            end = _blank_end(self.buf, self.pos)
            blanks += end - self.pos
            self.pos = end
            if blanks > _MAX_BLANKS:
                raise ValueError("too much whitespace")
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise ValueError(f"expected {ch!r} at inflated byte {self.inflated - len(self.buf) + self.pos}")
        self.pos += 1

    def value(self, limit: int):
        """One JSON value of at most ``limit`` characters, parsed from the stream."""
        self.peek()
        while True:
            end = None
            try:
                obj, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError:
                if self.done or len(self.buf) - self.pos > limit:
                    raise
            # a value that ends where the text does (a number) may go on: read more first
            if end is not None and (end < len(self.buf) or self.done):
                if end - self.pos > limit:
                    raise ValueError(f"a value longer than {limit:,} characters")
                self.pos = end
                return obj
            if len(self.buf) - self.pos > limit:
                raise ValueError(f"a value longer than {limit:,} characters")
            have = len(self.buf) - self.pos  # read as much again: linear, not quadratic
            if not self.fill(min(2 * have + _CHUNK, limit + 1)):
                raise ValueError("the manifest ends inside a value")

    def rows(self) -> list | None:
        """Whole rows up to the last one that ends in the text read so far, parsed in one
        call (much faster than one by one), or None: the caller then parses one row."""
        self.fill(_CHUNK)
        if self.buf.find("]]", self.pos) >= 0:  # perhaps the end of the section: all the rest
            try:
                rows, end = _DECODER.raw_decode("[" + self.buf[self.pos :])
            except json.JSONDecodeError:
                pass
            else:
                self.pos += end - 2  # at the section's closing bracket
                return rows
        cut = self.buf.rfind("],", self.pos)
        if cut < 0:
            return None
        try:  # a cut inside a string leaves it unterminated: an error, never other rows
            rows = json.loads("[" + self.buf[self.pos : cut + 1] + "]")
        except json.JSONDecodeError:
            return None
        self.pos = cut + 1
        return rows


def _read_document(fh: BinaryIO, size: int | None) -> dict:
    """The manifest document, parsed row by row from the inflated stream.

    Inflating stops at the size the gzip trailer claims (zlib checks the claim at the end).
    The change rows come before the dataset record, so the first pass only counts them; the
    record's claims then bound every section (files and keys: its file count, itself at most
    one per compressed byte; changes: files plus removals), and a second pass collects the
    change rows. Rows must come sorted by path. A small file that inflates to gigabytes is
    refused after a few reads, holding next to nothing.
    """
    if size is None:
        raise ValueError("unknown size")
    if size > MAX_BYTES:
        raise ValueError(f"too large ({size:,} bytes, at most {MAX_BYTES:,})")
    start = fh.tell()
    claim = claimed_size(fh, size)
    doc = _parse(_Inflater(fh, size, claim), size, collect_changes=False)
    if isinstance(doc.get("changes"), int):  # counted, not kept: read them now
        fh.seek(start)
        doc["changes"] = _parse(_Inflater(fh, size, claim), size, collect_changes=True)["changes"]
    return doc


def _parse(stream: _Inflater, size: int, collect_changes: bool) -> dict:
    doc: dict = {}
    stream.expect("{")
    while stream.peek() != "}":
        if doc:
            stream.expect(",")
        name = stream.value(64)
        if not isinstance(name, str) or name in doc:
            raise ValueError(f"unexpected member {name!r}")
        stream.expect(":")
        if name in _ROWS:
            if name != "changes" and "dataset" not in doc:
                raise ValueError(f"{name} come before the dataset record")
            # change rows are kept while they inflate to no more than KEEP_RATIO times the
            # file (most manifests: one pass); past that the first pass only counts them
            keep = (
                True if name != "changes" or collect_changes else stream.inflated + KEEP_RATIO * size + _CHUNK
            )
            doc[name] = _rows(stream, name, _bounds(doc, size).get(name), keep)
            if name == "changes" and collect_changes:
                return doc  # the second pass: the rest was read by the first
        else:
            doc[name] = stream.value(MAX_RECORD_BYTES if name == "dataset" else 256)
            if name == "dataset" and "changes" in doc:
                changes = doc["changes"]
                _check_count(
                    changes if isinstance(changes, int) else len(changes),
                    _bounds(doc, size).get("changes"),
                    "changes",
                )
    stream.expect("}")
    if stream.peek() != "":
        raise ValueError("data follows the manifest")
    return doc


def _rows(stream: _Inflater, name: str, most: int | None, keep: bool | int) -> list | int:
    """The rows of one section, or how many there are: if not ``keep``, or if the stream
    inflates past ``keep`` bytes (an int) while they are read."""
    rows: list = []
    count = 0
    stream.expect("[")
    last = None
    while stream.peek() != "]":
        if count:
            stream.expect(",")
        batch = stream.rows() or [stream.value(MAX_ROW_BYTES)]
        for row in batch:
            if not isinstance(row, list) or not row:
                raise ValueError(f"a row of {name} is not a list")
            if name != "keys":  # the writer lists changes and files by path, each path once
                if not isinstance(row[0], str) or (last is not None and row[0] <= last):
                    raise ValueError(f"{name} are not sorted by path, each path once")
                last = row[0]
        count += len(batch)
        _check_count(count, most, name)
        if keep is not True and keep is not False and stream.inflated > keep:
            rows, keep = [], False
        if keep:
            rows.extend(batch)
    stream.expect("]")
    return rows if keep else count


def _bounds(doc: dict, size: int) -> dict[str, int]:
    """The most rows each section may have, from the dataset record's claims: files and keys
    (one place per file at most) its file count, changes its files plus its removals (an added
    or modified path is a file of the view). A row never takes less than one compressed byte."""
    rec = doc.get("dataset")
    if not isinstance(rec, dict):
        return {}
    files, removed = rec.get("file_count"), rec.get("removed")
    if not isinstance(files, int) or not isinstance(removed, int) or files < 0 or removed < 0:
        raise ValueError("file_count and removed must be non-negative integers")
    if files + removed > size:
        raise ValueError(f"it claims {files + removed:,} rows in {size:,} bytes")
    return {"files": files, "keys": files, "fingerprints": files, "changes": files + removed}


def _check_count(count: int, most: int | None, name: str) -> None:
    if most is not None and count > most:
        raise ValueError(f"more {name} than the dataset record claims ({most:,} at most)")


def _checked(doc: dict) -> Manifest:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError("not a clearml-data manifest")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"format version {doc.get('format_version')!r} is not {FORMAT_VERSION} "
            "(written by another clearml-data release)"
        )
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
    fingerprints = {}
    for path, fp in doc.get("fingerprints", []):
        if path not in files or files[path][3] is None:
            raise ValueError(f"a fingerprint for {path!r}, which is no external file of the version")
        if len(_type(fp, str, "fingerprint")) > MAX_FINGERPRINT:
            raise ValueError("a fingerprint too long")
        fingerprints[path] = fp
    return Manifest(record, changes, files, objects, fingerprints)


def encode_tombstone(dataset_id: str, parents: list[str], deleted_at: str) -> bytes:
    doc = {
        "format": TOMBSTONE_FORMAT,
        "format_version": FORMAT_VERSION,
        "id": dataset_id,
        "parents": list(parents),
        "deleted_at": deleted_at,
    }
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
