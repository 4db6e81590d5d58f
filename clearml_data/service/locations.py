"""Where a content's bytes live, and when a recorded location is trusted.

The catalog may hold several locations of one content (one per storage). Reads prefer
the version's own storage (:func:`preferred_location`) and group the contents they need
by stored object, so that a pack is read in few ranged reads (:func:`by_stored_key`).

A location that was not written by this catalog (one restored from a manifest) is
*unchecked*: before dedup skips an upload because of it, or a read relies on it, a stat
(and for a pack entry used by dedup, a hash of its bytes) must confirm it; it is then
marked checked. See :func:`confirm_stored` and :func:`readable_locations`.

:func:`check_writable` asks a storage, before anything is recorded against it, whether it
takes a write at all.
"""

from __future__ import annotations

import hashlib
import logging
import uuid

from ..catalog import DatasetRow, ObjectRow, preferred_location
from ..catalog.validate import check_location, extent_problem
from ..errors import StorageError
from ..packs import is_pack_key, object_key
from ..parallel import ordered_map
from ..storage import StorageDriver, redact_text, redact_url
from .workspace import Workspace, storage_call

log = logging.getLogger(__name__)

#: (storage, key) of a stored object -> [(hash, offset, length)] of the contents read from it
ByKey = dict[tuple[str, str], list[tuple[str, int, int]]]

__all__ = [
    "ByKey",
    "by_stored_key",
    "check_writable",
    "confirm_stored",
    "hash_range",
    "preferred_location",
    "readable_locations",
    "stored_by_upload",
]


def stored_by_upload(key: str, digest: str) -> bool:
    """Whether ``key`` is where an upload stores ``digest`` (a pack, or its own object), not an
    external file's place."""
    return is_pack_key(key) or key == object_key(digest)


def by_stored_key(by_key: ByKey, digest: str, locs: list[ObjectRow], storage: str) -> ObjectRow:
    """Add ``digest`` to ``by_key`` under the object it is read from (a checked location,
    preferring ``storage``), and return that location."""
    loc = check_location(preferred_location(locs, storage))
    by_key.setdefault((loc.storage, loc.key), []).append((digest, loc.offset, loc.length))
    return loc


def hash_range(
    driver: StorageDriver, key: str, offset: int, length: int, block: int = 8 * 1024 * 1024
) -> str:
    """SHA-256 of ``length`` bytes of the object ``key`` from ``offset``, read in blocks."""
    h = hashlib.sha256()
    done = 0
    while done < length:
        n = min(block, length - done)
        data = driver.read_range(key, offset + done, n)
        if len(data) != n:
            raise OSError(f"short read of {key} at {offset + done}")
        h.update(data)
        done += n
    return h.hexdigest()


def confirm_stored(ws: Workspace, storage: str, rows: list[ObjectRow]) -> int:
    """Before dedup skips a content: each unchecked row of ``storage`` (the rows given, as
    ``Catalog.unchecked_objects`` finds them) is seen there first, one stat per key, and
    marked checked if it is where an upload puts content (the content's own object of its
    size, or a pack entry the pack covers and whose bytes hash right). A row that is not
    stays unchecked, so the content counts as missing and is uploaded (its row then
    replaced). Returns the rows marked."""
    if not rows:
        return 0
    problems = _confirm(ws, storage, rows, dedup=True)
    good = [r for r in rows if r not in problems]
    if good:
        ws.catalog.mark_checked(good)
    for r, why in list(problems.items())[:3]:
        log.info("not trusting the recorded location of %s: %s", r.hash[:12], why)
    return len(good)


def unstored(row: DatasetRow, digest: str) -> StorageError:
    """The error for a content of ``row`` that no location row names."""
    return StorageError(
        f"no storage holds the content {digest[:12]}… of dataset {row.id}",
        hint="the version was not uploaded completely; run verify",
    )


def readable_locations(
    ws: Workspace, row: DatasetRow, locations: dict[str, list[ObjectRow]]
) -> dict[str, list[ObjectRow]]:
    """The location to read each content from: the version's own storage first, then the
    others; an unchecked one is read only once a stat shows it holds enough bytes (it is
    then marked checked), else the next is tried. Contents with rows but no readable
    location raise StorageError; those without rows are left to the caller."""
    order = {
        h: sorted(locs, key=lambda x: (x.damaged, x.storage != row.storage)) for h, locs in locations.items()
    }
    chosen: dict[str, list[ObjectRow]] = {}
    why: dict[str, str] = {}
    turn = {h: 0 for h in order if order[h]}
    while turn:
        doubtful: dict[str, list[ObjectRow]] = {}
        for h, i in turn.items():
            loc = order[h][i]
            if loc.checked:
                chosen[h] = [loc]
            else:
                doubtful.setdefault(loc.storage, []).append(loc)
        problems: dict[ObjectRow, str] = {}
        for storage, locs in doubtful.items():
            problems.update(_confirm(ws, storage, locs, dedup=False))
        good = [loc for locs in doubtful.values() for loc in locs if loc not in problems]
        if good:
            ws.catalog.mark_checked(good)
        for loc in good:
            chosen[loc.hash] = [loc]
        nxt = {}
        for loc, reason in problems.items():
            why.setdefault(loc.hash, reason)
            if turn[loc.hash] + 1 < len(order[loc.hash]):
                nxt[loc.hash] = turn[loc.hash] + 1
        turn = nxt
    lost = sorted(h for h in why if h not in chosen)
    if lost:
        raise StorageError(
            f"no readable location for content {lost[0][:12]}… of dataset {row.id}"
            + (f" (and {len(lost) - 1} more)" if len(lost) > 1 else "")
            + f": {why[lost[0]]}",
            hint="the catalog (or the manifest it was rebuilt from) names bytes that are not "
            "there; run clearml-data verify",
        )
    return chosen


def _confirm(ws: Workspace, storage: str, rows: list[ObjectRow], dedup: bool) -> dict[ObjectRow, str]:
    """{row: why it cannot be trusted} for the rows of one storage that a stat refutes."""
    driver = ws.driver(storage)

    def size_of(key: str) -> int | None:
        try:
            return storage_call(storage, key, driver.stat, key).size
        except FileNotFoundError:
            return None

    def entry_hash(r: ObjectRow) -> str | None:
        try:
            return storage_call(storage, r.key, hash_range, driver, r.key, r.offset, r.length)
        except FileNotFoundError:
            return None

    keys = sorted({r.key for r in rows})
    sizes = dict(ordered_map(size_of, keys, driver.default_max_workers, window=64))
    problems = {}
    for r in rows:
        reason = _misfit(r, sizes[r.key], dedup)
        if reason is not None:
            problems[r] = f"{r.key} in {redact_url(storage)} {reason}"
    # a pack's name says nothing of its entries: before dedup relies on one, its bytes are hashed
    entries = [r for r in rows if dedup and r not in problems and is_pack_key(r.key)]
    for r, digest in ordered_map(entry_hash, entries, driver.default_max_workers, window=64):
        if digest != r.hash:
            problems[r] = f"{r.key} in {redact_url(storage)} holds other bytes at {r.offset:,}"
    return problems


def _misfit(r: ObjectRow, size: int | None, dedup: bool) -> str | None:
    """Why a stat of ``size`` bytes (None: no object) refutes a location, or None.

    A pack must cover the entry; any other object must be exactly the content. For dedup the
    key must also be where an upload puts the content (its own object, or a pack)."""
    if size is None:
        return "is missing"
    if not is_pack_key(r.key):
        if dedup and r.key != object_key(r.hash):
            return "is not where an upload stores this content"
        if r.offset != 0:
            return f"holds one content, but the catalog reads it from byte {r.offset:,}"
    return extent_problem(r.key, [(r.hash, r.offset, r.length)], size) or None


#: the probe's key begins so; it sits outside objects/, packs/ and manifests, where gc looks
PROBE_PREFIX = "clearml-data-write-check-"


def check_writable(ws: Workspace, storage: str) -> None:
    """Refuse a storage that cannot be written: a create-only put of a tiny object under a
    fresh key, then its delete. A storage that takes the put but refuses the delete is usable
    (uploads never delete), so that is only logged; any failure of the put is one StorageError."""
    driver = ws.driver(storage)
    key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    url = redact_url(storage)
    try:
        driver.put_bytes(b"clearml-data write check\n", key, overwrite=False)
    except OSError as exc:
        raise StorageError(
            f"storage {url} cannot be written: {redact_text(exc.strerror or exc)}",
            url=url,
            key=key,
            hint="check the URL and the credentials; a bucket or container must exist already; "
            "no dataset was created",
        ) from exc
    try:
        driver.delete(key)
    except OSError as exc:
        log.warning("the write check left %s in %s: %s", key, url, redact_text(exc.strerror or exc))
