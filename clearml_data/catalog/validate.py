"""Checks on rows read back from the catalog before anything acts on them.

The catalog is a file that anyone with write access can change. A row that clearml-data
could not have written (a path that leaves its folder, a hash that is not a SHA-256, a
negative size or offset, a length that is not its content's size) stops the command with a
:class:`CatalogError` naming the row, before a byte is read or written with it.
"""

from __future__ import annotations

from ..errors import CatalogError, UnsafePathError
from ..hashing import EMPTY_SHA256
from ..packs import is_pack_key
from ..paths import check_relpath, describe, is_hash
from . import ChangeRow, ObjectRow

_KINDS = ("added", "modified", "removed")
_HINT = "the catalog was changed outside clearml-data; restore it from a backup"


def check_change(dataset_id: str, path: str, kind: str, digest: str | None, size: int | None) -> None:
    """A change row of ``dataset_id``: a clean path, a known kind, a SHA-256 and a size."""
    row = ChangeRow(path, kind, digest, size)
    try:
        check_relpath(row.path)
    except UnsafePathError as exc:
        raise CatalogError(
            f"dataset {dataset_id} has a file row with an unsafe path: {exc}", hint=_HINT
        ) from None
    if row.kind not in _KINDS:
        raise CatalogError(
            f"dataset {dataset_id} has a file row {describe(row.path)} of unknown kind {row.kind!r}",
            hint=_HINT,
        )
    if row.kind != "removed" and not (is_hash(row.hash) and type(row.size) is int and row.size >= 0):
        raise CatalogError(
            f"dataset {dataset_id} has a file row {describe(row.path)} with a malformed hash or size",
            hint=_HINT,
        )


def check_location(loc: ObjectRow) -> ObjectRow:
    """Where a content's bytes live: a clean key and a non-negative offset and length."""
    try:
        check_relpath(loc.key)
    except UnsafePathError as exc:
        raise CatalogError(
            f"the catalog names an unsafe storage key for content {str(loc.hash)[:12]}: {exc}", hint=_HINT
        ) from None
    if not (
        is_hash(loc.hash)
        and type(loc.offset) is int
        and type(loc.length) is int
        and loc.offset >= 0
        and loc.length >= 0
    ):
        raise CatalogError(f"the catalog holds a malformed location for {loc.key!r}", hint=_HINT)
    return loc


def check_length(loc: ObjectRow, size: int, dataset_id: str) -> ObjectRow:
    """A location holds exactly the bytes of its content: its length is the file rows' size."""
    if loc.length != size:
        raise CatalogError(
            f"the catalog records {loc.length:,} bytes for content {loc.hash[:12]}… "
            f"in {loc.key!r}, but the file rows of dataset {dataset_id} give it {size:,}",
            hint=_HINT,
        )
    return loc


def extent_problem(key: str, entries: list[tuple[str, int, int]], size: int) -> str:
    """What is wrong with reading the (hash, offset, length) ``entries`` from the object ``key``
    whose real size is ``size`` (empty if nothing). A pack must hold every entry; any other
    object is exactly one content."""
    whole = not is_pack_key(key)
    for digest, offset, length in entries:
        if whole and offset == 0 and size != length:
            return f"has {size:,} bytes, but the catalog expects {length:,}"
        if offset + length > size:
            return (
                f"has {size:,} bytes, but the catalog reads content {digest[:12]}… from bytes "
                f"{offset:,} to {offset + length:,} of it"
            )
    return ""


def check_empty(digest: str, dataset_id: str) -> None:
    """A content of size 0 is the empty content: its hash must be the SHA-256 of no bytes."""
    if digest != EMPTY_SHA256:
        raise CatalogError(
            f"dataset {dataset_id} gives the content {digest[:12]}… a size of 0, but that is not "
            "the hash of empty content",
            hint=_HINT,
        )
