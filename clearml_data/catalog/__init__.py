"""The catalog: every SQL statement of clearml-data lives in this package.

One SQLite file holds datasets, their ordered parents, each version's change rows and
where each content hash is stored. Writes are ``BEGIN IMMEDIATE`` transactions with a
busy timeout and a bounded retry; the journal is WAL on local disks and DELETE on
network filesystems, where WAL does not work. On network filesystems (or when the
``catalog_lock`` setting says ``file``) every transaction also holds the catalog's own lock
file (lockfile.py), since the filesystem's locks may do nothing there.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import _crashpoints as crashpoints
from .. import versions
from ..diskspace import nearly_full
from ..errors import CatalogError, CatalogLockedError, DiskFullError, SchemaVersionError, VersionExistsError
from .fs import filesystem_type, is_network_filesystem
from .lockfile import DEFAULT_TIMEOUT, LockedConnection, LockFile, resolve_lock_method

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000
WRITE_ATTEMPTS = 4
SQL_VARS = 900  # stay below SQLite's variable limit in IN (...) lists
#: the schema migrations this version knows, in order (schema.py holds their code; a test
#: keeps the two in step). Checking them needs no sqlite-utils import, which is slow when
#: pandas is installed, so a command that finds the catalog current starts faster.
SCHEMA = (
    "0001_initial",
    "0002_external_links",
    "0003_checked_objects",
    "0004_damaged_objects",
    "0005_link_fingerprints",
)
MIGRATION_SET = "clearml_data"


@dataclass
class DatasetRow:
    id: str
    project: str
    name: str
    version: str
    status: str
    storage: str
    created_at: str
    updated_at: str
    description: str = ""
    tags: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    finalized_at: str | None = None
    file_count: int | None = None
    total_size: int | None = None
    added: int | None = None
    modified: int | None = None
    removed: int | None = None
    parents: list[str] = field(default_factory=list)

    @property
    def is_final(self) -> bool:
        return self.status in ("final", "published")


@dataclass(frozen=True)
class ChangeRow:
    path: str
    kind: str  # added | modified | removed
    hash: str | None
    size: int | None
    source: str | None = None
    link: str | None = None  # URL of an external file registered in place
    #: of an external file: what its storage said of it when registered (ObjectInfo.fingerprint)
    fingerprint: str | None = None


@dataclass(frozen=True)
class ObjectRow:
    storage: str
    hash: str
    key: str
    offset: int
    length: int
    #: this catalog wrote the row or saw the object with the right size (not just a manifest's word)
    checked: bool = False
    #: verify found these bytes missing or different: dedup does not trust the row
    damaged: bool = False


_DATASET_COLUMNS = (
    "id",
    "project",
    "name",
    "version",
    "status",
    "description",
    "tags",
    "metadata",
    "storage",
    "created_at",
    "updated_at",
    "finalized_at",
    "file_count",
    "total_size",
    "added",
    "modified",
    "removed",
)


def preferred_location(locs: Sequence[ObjectRow], storage: str) -> ObjectRow:
    """The location to read a content from: one in ``storage`` (the version's own) if any,
    else the first known; one that verify found damaged only when there is no other. ``locs``
    must not be empty."""
    return min(locs, key=lambda x: (x.damaged, x.storage != storage))


def _json_column(data: dict, column: str, kind: type) -> list | dict:
    """Decode a dataset's JSON column (tags: a list of strings, metadata: an object)."""
    text = data[column]
    value: Any
    try:
        value = json.loads(text) if text else kind()
    except (TypeError, ValueError, RecursionError):
        value = None
    if kind is list:
        fits = isinstance(value, list) and all(isinstance(t, str) for t in value)
    else:
        fits = isinstance(value, dict)
    if not fits:
        what = "a list of strings" if kind is list else "a JSON object"
        raise CatalogError(
            f"dataset {data['id']} has a {column} column that is not {what}",
            hint="the catalog was changed outside clearml-data; restore it from a backup",
        )
    return value


def _chunks(items: Sequence, size: int = SQL_VARS) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Catalog:
    """A connection to one catalog file.

    ``lock``: ``auto`` (the lock file on network filesystems, SQLite's locks elsewhere),
    ``file`` or ``sqlite``. ``vfs`` opens the file through another SQLite VFS; the tests use
    ``unix-none`` to stand in for a network mount whose locks do nothing.
    """

    #: how write transactions begin. Tests only: the negative control of the concurrency
    #: tests sets "BEGIN" (deferred) on the class to show that writes are then lost.
    _begin = "BEGIN IMMEDIATE"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        journal_mode: str | None = None,
        lock: str | None = None,
        lock_timeout: float = DEFAULT_TIMEOUT,
        vfs: str | None = None,
    ):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CatalogError(
                f"cannot create the catalog folder {self.path.parent}: {exc.strerror}"
            ) from None
        self.fs_type = filesystem_type(self.path.parent)
        try:
            self.lock_method = resolve_lock_method(lock, self.fs_type, is_network_filesystem(self.fs_type))
        except ValueError as exc:
            raise CatalogError(str(exc)) from None
        self.journal_mode = journal_mode or (
            "delete" if is_network_filesystem(self.fs_type) or self.lock_method == "file" else "wal"
        )
        self.lock_file = (
            LockFile(self.path.with_name(self.path.name + ".lock"), timeout=lock_timeout)
            if self.lock_method == "file"
            else None
        )
        try:
            conn = sqlite3.connect(
                _sqlite_uri(self.path, vfs) if vfs else str(self.path),
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
                uri=bool(vfs),
            )
        except sqlite3.Error as exc:
            raise CatalogError(f"cannot open the catalog {self.path}: {exc}") from None
        if self.lock_file is not None:
            # the wrapper takes the lock file around each write transaction; it has the methods used here
            conn = LockedConnection(conn, self.lock_file)  # type: ignore[assignment]
        self.conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            self._set_journal_mode()
            conn.execute(
                "PRAGMA synchronous = NORMAL" if self.journal_mode == "wal" else "PRAGMA synchronous = FULL"
            )
            self._migrate()
        except sqlite3.DatabaseError as exc:
            conn.close()
            if nearly_full(self.path.parent):  # SQLite says "disk I/O error" when it cannot grow a file
                raise DiskFullError(
                    f"no space left on device: cannot open the catalog {self.path} ({exc})",
                    path=str(self.path),
                    hint="free some space, then run the same command again",
                ) from None
            raise CatalogError(f"{self.path} is not a usable clearml-data catalog: {exc}") from None
        except BaseException:  # e.g. the lock file stayed held
            conn.close()
            raise

    def _set_journal_mode(self) -> None:
        current = self.conn.execute("PRAGMA journal_mode").fetchone()[0]
        if current.lower() != self.journal_mode:
            for attempt in range(WRITE_ATTEMPTS):
                try:
                    self.conn.execute(f"PRAGMA journal_mode = {self.journal_mode}")
                    return
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc):
                        raise
                    _backoff(attempt)

    def applied_migrations(self) -> list[str]:
        try:
            return [
                r[0]
                for r in self.conn.execute(
                    "SELECT name FROM _sqlite_migrations WHERE migration_set = ? ORDER BY id", [MIGRATION_SET]
                )
            ]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise

    def _migrate(self) -> None:
        known = set(SCHEMA)
        applied = set(self.applied_migrations())
        unknown = applied - known
        if unknown:
            raise SchemaVersionError(
                f"the catalog {self.path} was written by a newer clearml-data "
                f"(migration {sorted(unknown)[-1]})",
                hint="upgrade clearml-data",
            )
        if applied == known:
            return
        from sqlite_utils import Database

        from .schema import migrations

        with self.write():
            migrations.apply(Database(self.conn, execute_plugins=False))

    def close(self) -> None:
        self.conn.close()

    # -- transactions ------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: the write lock is taken up front."""
        if self.lock_file is None or self.conn.in_transaction:
            with self._write() as c:
                yield c
            return
        with self.lock_file.held(), self._write() as c:
            yield c

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self.conn.in_transaction:  # nested: the outer transaction owns the lock
            yield self.conn
            return
        for attempt in range(WRITE_ATTEMPTS):
            try:
                self.conn.execute(self._begin)
                break
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise CatalogError(f"cannot write the catalog {self.path}: {exc}") from None
                _backoff(attempt)
        else:
            raise CatalogLockedError(
                f"the catalog {self.path} stayed locked by another process",
                hint="try again; if it persists, check for a hung clearml-data process",
            )
        try:
            yield self.conn
            crashpoints.reach("catalog.before_commit")
        except sqlite3.Error as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise CatalogError(f"cannot write the catalog {self.path}: {exc}") from None
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        else:
            if self.lock_file is not None and not self.lock_file.still_ours():
                self.conn.execute("ROLLBACK")
                raise CatalogLockedError(
                    f"lost the catalog lock file {self.lock_file.path} while writing (this process was "
                    "stalled for longer than its lease); nothing was written",
                    hint="try again",
                )
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise CatalogError(f"cannot commit to the catalog {self.path}: {exc}") from None

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every statement inside sees one snapshot."""
        if self.conn.in_transaction:
            yield self.conn
            return
        with self.lock_file.held() if self.lock_file is not None else nullcontext():
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            finally:
                if self.conn.in_transaction:
                    self.conn.execute("COMMIT")

    # -- datasets ----------------------------------------------------------------------
    def insert_dataset(self, row: DatasetRow, pick_version: Callable[[list[str]], str] | None = None) -> None:
        """Insert a dataset and its parents; ``pick_version(existing versions)`` chooses its
        version inside the same write transaction, so concurrent creators never collide."""
        with self.write() as c:
            existing = self.versions_of(row.project, row.name)
            if pick_version is not None:
                row.version = pick_version(existing)
            clash = versions.taken_by(row.version, existing)
            if clash is not None:
                raise VersionExistsError(
                    f"dataset {row.project}/{row.name} already has a version {clash}",
                    hint="pick another version, or omit it to get the next one",
                )
            values = self._dataset_values(row)
            try:
                c.execute(
                    f"INSERT INTO datasets ({', '.join(_DATASET_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(_DATASET_COLUMNS))})",
                    values,
                )
            except sqlite3.IntegrityError:
                raise VersionExistsError(
                    f"dataset {row.project}/{row.name} already has a version {row.version}",
                    hint="pick another version, or omit it to get the next one",
                ) from None
            c.executemany(
                "INSERT INTO dataset_parents (dataset_id, position, parent_id) VALUES (?, ?, ?)",
                [(row.id, i, p) for i, p in enumerate(row.parents)],
            )

    @staticmethod
    def _dataset_values(row: DatasetRow) -> list:
        values = []
        for col in _DATASET_COLUMNS:
            v = getattr(row, col)
            if col in ("tags", "metadata"):
                v = json.dumps(v, sort_keys=True)
            values.append(v)
        return values

    def update_dataset(self, dataset_id: str, **fields) -> None:
        if not fields:
            return
        for key in ("tags", "metadata"):
            if key in fields:
                fields[key] = json.dumps(fields[key], sort_keys=True)
        unknown = set(fields) - set(_DATASET_COLUMNS)
        if unknown:
            raise ValueError(f"unknown dataset columns {unknown}")
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.write() as c:
            c.execute(f"UPDATE datasets SET {sets} WHERE id = ?", [*fields.values(), dataset_id])

    def _rows_to_datasets(self, rows: list[sqlite3.Row | tuple]) -> list[DatasetRow]:
        result = []
        for r in rows:
            data = dict(zip(_DATASET_COLUMNS, r, strict=True))
            data["tags"] = _json_column(data, "tags", list)
            data["metadata"] = _json_column(data, "metadata", dict)
            result.append(DatasetRow(**data))
        if result:
            parents: dict[str, list[str]] = {d.id: [] for d in result}
            ids = list(parents)
            for chunk in _chunks(ids):
                q = (
                    "SELECT dataset_id, parent_id FROM dataset_parents WHERE dataset_id IN "
                    f"({', '.join('?' * len(chunk))}) ORDER BY dataset_id, position"
                )
                for did, pid in self.conn.execute(q, list(chunk)):
                    parents[did].append(pid)
            for d in result:
                d.parents = parents[d.id]
        return result

    def get_dataset(self, dataset_id: str) -> DatasetRow | None:
        rows = self.conn.execute(
            f"SELECT {', '.join(_DATASET_COLUMNS)} FROM datasets WHERE id = ?", [dataset_id]
        ).fetchall()
        found = self._rows_to_datasets(rows)
        return found[0] if found else None

    def ids_with_prefix(self, prefix: str, limit: int = 3) -> list[str]:
        rows = self.conn.execute(
            "SELECT id FROM datasets WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
            [prefix, prefix + "\x7f", limit],
        ).fetchall()
        return [r[0] for r in rows]

    def find_datasets(
        self,
        *,
        project: str | None = None,
        name: str | None = None,
        version: str | None = None,
        statuses: Iterable[str] | None = None,
        ids: Iterable[str] | None = None,
    ) -> list[DatasetRow]:
        where, params = [], []
        for col, value in (("project", project), ("name", name), ("version", version)):
            if value is not None:
                where.append(f"{col} = ?")
                params.append(value)
        if statuses is not None:
            statuses = list(statuses)
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params.extend(statuses)
        if ids is not None:
            ids = list(ids)
            where.append(f"id IN ({', '.join('?' * len(ids))})")
            params.extend(ids)
        sql = f"SELECT {', '.join(_DATASET_COLUMNS)} FROM datasets"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at, id"
        return self._rows_to_datasets(self.conn.execute(sql, params).fetchall())

    def versions_of(self, project: str, name: str) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT version FROM datasets WHERE project = ? AND name = ?", [project, name]
            )
        ]

    def relabel(
        self, project: str, name: str, *, new_project: str | None = None, new_name: str | None = None
    ) -> list[str]:
        """Rename (``new_name``) or move (``new_project``) every version of project/name."""
        with self.write() as c:
            ids = [
                r[0]
                for r in c.execute(
                    "SELECT id FROM datasets WHERE project = ? AND name = ? ORDER BY created_at",
                    [project, name],
                )
            ]
            if not ids:
                return []
            target = (new_project or project, new_name or name)
            mine = self.versions_of(project, name)
            theirs = self.versions_of(*target)
            clash = next((v for v in mine if versions.taken_by(v, theirs)), None)
            if clash is not None:
                raise VersionExistsError(
                    f"dataset {target[0]}/{target[1]} already has a version {clash}",
                    hint="rename or move one of them first",
                )
            c.execute(
                "UPDATE datasets SET project = ?, name = ?, "
                "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE project = ? AND name = ?",
                [*target, project, name],
            )
            return ids

    def children(self, dataset_id: str) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT DISTINCT dataset_id FROM dataset_parents WHERE parent_id = ? ORDER BY dataset_id",
                [dataset_id],
            )
        ]

    def set_parents(self, dataset_id: str, parents: Sequence[str]) -> None:
        with self.write() as c:
            c.execute("DELETE FROM dataset_parents WHERE dataset_id = ?", [dataset_id])
            c.executemany(
                "INSERT INTO dataset_parents (dataset_id, position, parent_id) VALUES (?, ?, ?)",
                [(dataset_id, i, p) for i, p in enumerate(parents)],
            )

    def delete_dataset(self, dataset_id: str) -> None:
        with self.write() as c:
            c.execute("DELETE FROM changes WHERE dataset_id = ?", [dataset_id])
            c.execute("DELETE FROM dataset_parents WHERE dataset_id = ?", [dataset_id])
            c.execute("DELETE FROM datasets WHERE id = ?", [dataset_id])

    # -- change rows ---------------------------------------------------------------------
    def changes(self, dataset_id: str) -> list[ChangeRow]:
        return [
            ChangeRow(*r)
            for r in self.conn.execute(
                "SELECT path, kind, hash, size, source, link, fingerprint FROM changes WHERE dataset_id = ? "
                "ORDER BY path",
                [dataset_id],
            )
        ]

    def change_tuples(self, dataset_id: str) -> Iterator[tuple[str, str, str, int]]:
        """(path, kind, hash, size) of a version's change rows, streamed in no particular order."""
        return self.conn.execute(
            "SELECT path, kind, hash, size FROM changes WHERE dataset_id = ?", [dataset_id]
        )

    def data_version(self) -> int:
        """A number that changes whenever another connection commits to the catalog (SQLite's
        ``PRAGMA data_version``): equal readings mean nobody else wrote in between."""
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def links(self, dataset_ids: Iterable[str]) -> dict[tuple[str, str], str]:
        """{(dataset id, path): URL} of the external-file rows of these datasets."""
        found: dict[tuple[str, str], str] = {}
        for chunk in _chunks(list(set(dataset_ids))):
            q = (
                # the index of external-file rows: a version of a million files and no links
                # costs one index lookup, not a pass over its rows
                "SELECT dataset_id, path, link FROM changes INDEXED BY changes_links "
                "WHERE link IS NOT NULL AND dataset_id IN "
                f"({', '.join('?' * len(chunk))})"
            )
            for did, path, link in self.conn.execute(q, list(chunk)):
                found[(did, path)] = link
        return found

    def link_fingerprints(self, dataset_ids: Iterable[str]) -> dict[tuple[str, str], str]:
        """{(dataset id, path): fingerprint} of the external-file rows of these datasets that
        carry one (see :attr:`ChangeRow.fingerprint`)."""
        found: dict[tuple[str, str], str] = {}
        for chunk in _chunks(list(set(dataset_ids))):
            q = (
                "SELECT dataset_id, path, fingerprint FROM changes INDEXED BY changes_links "
                "WHERE link IS NOT NULL "
                f"AND fingerprint IS NOT NULL AND dataset_id IN ({', '.join('?' * len(chunk))})"
            )
            for did, path, fp in self.conn.execute(q, list(chunk)):
                found[(did, path)] = fp
        return found

    def count_changes(self, dataset_id: str) -> dict[str, int]:
        counts = {"added": 0, "modified": 0, "removed": 0}
        for kind, n in self.conn.execute(
            "SELECT kind, COUNT(*) FROM changes WHERE dataset_id = ? GROUP BY kind", [dataset_id]
        ):
            counts[kind] = n
        return counts

    def replace_changes(
        self, dataset_id: str, upserts: Iterable[ChangeRow], deletes: Iterable[str] = ()
    ) -> None:
        """Write change rows (insert or replace by path) and drop others, in one transaction."""
        with self.write() as c:
            c.executemany(
                "DELETE FROM changes WHERE dataset_id = ? AND path = ?", ((dataset_id, p) for p in deletes)
            )
            c.executemany(
                "INSERT OR REPLACE INTO changes "
                "(dataset_id, path, kind, hash, size, source, link, fingerprint) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (dataset_id, r.path, r.kind, r.hash, r.size, r.source, r.link, r.fingerprint)
                    for r in upserts
                ),
            )
            c.execute(
                "UPDATE datasets SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?",
                [dataset_id],
            )

    def clear_sources(self, dataset_id: str) -> None:
        with self.write() as c:
            c.execute(
                "UPDATE changes SET source = NULL WHERE dataset_id = ? AND source IS NOT NULL", [dataset_id]
            )

    # -- objects ------------------------------------------------------------------------
    def missing_objects(self, storage: str, hashes: Iterable[str]) -> set[str]:
        """The hashes among ``hashes`` that ``storage`` does not hold yet, as far as this
        catalog has checked (a row read from a manifest and not seen yet does not count)."""
        wanted = list(set(hashes))
        have: set[str] = set()
        for chunk in _chunks(wanted):
            q = (
                "SELECT hash FROM objects WHERE storage = ? AND checked = 1 AND damaged = 0 "
                f"AND hash IN ({', '.join('?' * len(chunk))})"
            )
            have.update(r[0] for r in self.conn.execute(q, [storage, *chunk]))
        return set(wanted) - have

    def has_missing_objects(self, dataset_id: str, storage: str) -> bool:
        """Whether some content of a version's change rows is not in ``storage`` yet (one query;
        external files, which stay where they are, do not count; nor do unchecked rows)."""
        return (
            self.conn.execute(
                "SELECT 1 FROM changes c WHERE c.dataset_id = ? AND c.kind != 'removed' AND c.link IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM objects o WHERE o.storage = ? AND o.hash = c.hash "
                "AND o.checked = 1 AND o.damaged = 0) LIMIT 1",
                [dataset_id, storage],
            ).fetchone()
            is not None
        )

    def unchecked_objects(self, storage: str, hashes: Iterable[str]) -> list[ObjectRow]:
        """The rows of ``storage`` for these hashes that this catalog has not checked."""
        found: list[ObjectRow] = []
        for chunk in _chunks(list(set(hashes))):
            q = (
                "SELECT storage, hash, key, offset, length FROM objects WHERE storage = ? AND checked = 0 "
                f"AND hash IN ({', '.join('?' * len(chunk))})"
            )
            found += [ObjectRow(*r) for r in self.conn.execute(q, [storage, *chunk])]
        return found

    def unchecked_objects_of(self, dataset_id: str, storage: str) -> list[ObjectRow]:
        """The unchecked rows of ``storage`` for the contents of a version's change rows (one
        query; it finds none once the version's contents are uploaded or seen)."""
        return [
            ObjectRow(*r)
            for r in self.conn.execute(
                "SELECT DISTINCT o.storage, o.hash, o.key, o.offset, o.length FROM changes c JOIN objects o "
                "ON o.storage = ? AND o.hash = c.hash WHERE c.dataset_id = ? AND c.kind != 'removed' "
                "AND c.link IS NULL AND o.checked = 0",
                [storage, dataset_id],
            )
        ]

    def add_objects(self, rows: Iterable[ObjectRow], checked: bool = False) -> None:
        """Record locations. ``checked``: this catalog stored or saw them; such a row replaces an
        unchecked or damaged one of the same storage and hash, and is never replaced; an
        unchecked row (read from a manifest) never replaces anything."""
        with self.write() as c:
            c.executemany(
                "INSERT INTO objects (storage, hash, key, offset, length, checked) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (storage, hash) DO UPDATE SET "
                "key = excluded.key, offset = excluded.offset, length = excluded.length, "
                "checked = 1, damaged = 0 WHERE excluded.checked = 1 "
                "AND (objects.checked = 0 OR objects.damaged = 1)",
                ((r.storage, r.hash, r.key, r.offset, r.length, int(checked)) for r in rows),
            )

    def mark_checked(self, rows: Iterable[ObjectRow]) -> None:
        """Rows seen in their storage with the right size (unless replaced meanwhile)."""
        with self.write() as c:
            c.executemany(
                "UPDATE objects SET checked = 1 WHERE storage = ? AND hash = ? AND key = ? "
                "AND offset = ? AND length = ?",
                ((r.storage, r.hash, r.key, r.offset, r.length) for r in rows),
            )

    def mark_damaged(self, rows: Iterable[ObjectRow]) -> int:
        """Locations whose bytes verify found missing or different (unless replaced meanwhile);
        returns how many rows were marked."""
        with self.write() as c:
            before = c.total_changes
            c.executemany(
                "UPDATE objects SET damaged = 1 WHERE storage = ? AND hash = ? AND key = ? "
                "AND offset = ? AND length = ? AND damaged = 0",
                ((r.storage, r.hash, r.key, r.offset, r.length) for r in rows),
            )
            return c.total_changes - before

    def damaged_objects(self, hashes: Iterable[str] | None = None) -> list[ObjectRow]:
        """The locations marked damaged (of these hashes, or all)."""
        cols = (
            "SELECT storage, hash, key, offset, length, checked, damaged FROM objects "
            "WHERE damaged = 1"  # the partial index objects_damaged serves it
        )
        if self.conn.execute(cols + " LIMIT 1").fetchone() is None:  # the usual case: none at all
            return []
        if hashes is None:
            rows = list(self.conn.execute(cols + " ORDER BY storage, hash"))
        else:
            rows = []
            for chunk in _chunks(list(set(hashes))):
                rows += self.conn.execute(f"{cols} AND hash IN ({', '.join('?' * len(chunk))})", list(chunk))
        return [ObjectRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), bool(r[6])) for r in rows]

    def object_locations(
        self, hashes: Iterable[str], prefer: str
    ) -> dict[str, tuple[str | None, str, int, int]]:
        """One location per hash: {hash: (None if in ``prefer`` else its storage, key, offset,
        length)}, a location in storage ``prefer`` first."""
        wanted = set(hashes)
        found: dict[str, tuple[str | None, str, int, int]] = {}
        if len(wanted) > 20_000:  # many: one ordered pass over the storage's rows beats IN lists
            for h, key, offset, length in self.conn.execute(
                "SELECT hash, key, offset, length FROM objects WHERE storage = ?", [prefer]
            ):
                if h in wanted:
                    found[h] = (None, key, offset, length)
        for h, locs in self.locate_objects(h for h in wanted if h not in found).items():
            loc = preferred_location(locs, prefer)
            found[h] = (None if loc.storage == prefer else loc.storage, loc.key, loc.offset, loc.length)
        return found

    def sorted_changes(
        self, dataset_id: str
    ) -> Iterator[tuple[str, str, str | None, int | None, str | None]]:
        """(path, kind, hash, size, link) of a version's change rows, by path, streamed."""
        return self.conn.execute(
            "SELECT path, kind, hash, size, link FROM changes WHERE dataset_id = ? ORDER BY path",
            [dataset_id],
        )

    def locate_objects(self, hashes: Iterable[str]) -> dict[str, list[ObjectRow]]:
        """Every known location of each hash, in any storage."""
        wanted = list(set(hashes))
        found: dict[str, list[ObjectRow]] = {}
        for chunk in _chunks(wanted):
            q = (
                "SELECT storage, hash, key, offset, length, checked, damaged FROM objects WHERE hash IN "
                f"({', '.join('?' * len(chunk))})"
            )
            for r in self.conn.execute(q, list(chunk)):
                found.setdefault(r[1], []).append(
                    ObjectRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), bool(r[6]))
                )
        return found

    # -- diagnostics -----------------------------------------------------------------------
    def integrity_check(self) -> str:
        """``ok``, or SQLite's first complaints about the file (``PRAGMA integrity_check``)."""
        rows = [r[0] for r in self.conn.execute("PRAGMA integrity_check").fetchall()]
        if rows == ["ok"]:
            return "ok"
        # one line: rows may hold several lines, under a "*** in database main ***" heading
        problems = [
            ln.strip() for r in rows for ln in str(r).splitlines() if ln.strip() and not ln.startswith("***")
        ]
        return "; ".join(problems[:5])

    def info(self) -> dict:
        sqlite_version = self.conn.execute("SELECT sqlite_version()").fetchone()[0]
        counts = {
            table: self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("datasets", "changes", "objects")
        }
        return {
            "path": str(self.path),
            "filesystem": self.fs_type,
            "journal_mode": self.conn.execute("PRAGMA journal_mode").fetchone()[0],
            "lock_method": self.lock_method,
            "lock_file": str(self.lock_file.path) if self.lock_file is not None else None,
            "sqlite_version": sqlite_version,
            "schema": self.applied_migrations(),
            "counts": counts,
        }


def _sqlite_uri(path: Path, vfs: str) -> str:
    from urllib.parse import quote

    return f"file:{quote(str(path.absolute()))}?vfs={quote(vfs)}"


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _backoff(attempt: int) -> None:
    time.sleep(min(2.0, 0.05 * (2**attempt)) * (0.5 + random.random()))
