"""What the catalog says about the objects of one storage: the queries garbage collection needs.

``snapshot`` reads, in one read transaction, which keys of a storage the catalog's versions
(drafts included) still need and which hashes each key holds, together with SQLite's
``data_version``: if that number is unchanged later, inside a write transaction, no other
connection has committed since, so the snapshot still describes the catalog exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from . import Catalog, _chunks


@dataclass
class Snapshot:
    version: int
    #: keys of the storage that some change row (of any version, draft or final) needs
    referenced: set[str] = field(default_factory=set)
    #: key -> the hashes the catalog records at that key in this storage
    hashes: dict[str, list[str]] = field(default_factory=dict)


def data_version(catalog: Catalog) -> int:
    return catalog.conn.execute("PRAGMA data_version").fetchone()[0]


def snapshot(catalog: Catalog, storage: str) -> Snapshot:
    with catalog.read() as c:
        snap = Snapshot(data_version(catalog))  # read first: a later commit only makes it stale
        for key, h in c.execute("SELECT key, hash FROM objects WHERE storage = ?", [storage]):
            snap.hashes.setdefault(key, []).append(h)
        # one pass over the change rows, each looked up by the objects primary key
        snap.referenced = {
            r[0]
            for r in c.execute(
                "SELECT DISTINCT o.key FROM changes AS c JOIN objects AS o "
                "ON o.storage = ? AND o.hash = c.hash WHERE c.hash IS NOT NULL",
                [storage],
            )
        }
    return snap


def forget_objects(catalog: Catalog, storage: str, rows: Iterable[tuple[str, str]]) -> int:
    """Delete the objects rows (hash, key) of a storage; returns how many went."""
    n = 0
    with catalog.write() as c:
        for chunk in _chunks(list(rows)):
            cur = c.executemany(
                "DELETE FROM objects WHERE storage = ? AND hash = ? AND key = ?",
                [(storage, h, k) for h, k in chunk],
            )
            n += cur.rowcount
    return n


def all_ids(catalog: Catalog) -> set[str]:
    return {r[0] for r in catalog.conn.execute("SELECT id FROM datasets")}
