"""Catalog schema, as numbered migrations (sqlite-utils ``Migrations``).

Never edit a migration that has shipped: add a new one.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("clearml_data")


@migrations(name="0001_initial")
def _initial(db: Database) -> None:
    _run(
        db,
        """
        CREATE TABLE datasets (
            id           TEXT PRIMARY KEY,
            project      TEXT NOT NULL,
            name         TEXT NOT NULL,
            version      TEXT NOT NULL,
            status       TEXT NOT NULL CHECK (status IN ('draft', 'final', 'published')),
            description  TEXT NOT NULL DEFAULT '',
            tags         TEXT NOT NULL DEFAULT '[]',
            metadata     TEXT NOT NULL DEFAULT '{}',
            storage      TEXT NOT NULL,
            created_at   TEXT NOT NULL,
            updated_at   TEXT NOT NULL,
            finalized_at TEXT,
            file_count   INTEGER,
            total_size   INTEGER,
            added        INTEGER,
            modified     INTEGER,
            removed      INTEGER,
            UNIQUE (project, name, version)
        );
        CREATE INDEX datasets_project_name ON datasets (project, name);

        -- ordered parents: the view of a version merges them in position order
        CREATE TABLE dataset_parents (
            dataset_id TEXT NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
            position   INTEGER NOT NULL,
            parent_id  TEXT NOT NULL REFERENCES datasets (id),
            PRIMARY KEY (dataset_id, position)
        );
        CREATE INDEX dataset_parents_parent ON dataset_parents (parent_id);

        -- a version's change-set against its merged parents
        CREATE TABLE changes (
            dataset_id TEXT NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
            path       TEXT NOT NULL,
            kind       TEXT NOT NULL CHECK (kind IN ('added', 'modified', 'removed')),
            hash       TEXT,
            size       INTEGER,
            source     TEXT,  -- local file to upload from, while the version is a draft
            PRIMARY KEY (dataset_id, path)
        ) WITHOUT ROWID;

        -- where the bytes of a content hash live in a storage (a pack entry or its own object)
        CREATE TABLE objects (
            storage TEXT NOT NULL,
            hash    TEXT NOT NULL,
            key     TEXT NOT NULL,
            offset  INTEGER NOT NULL,
            length  INTEGER NOT NULL,
            PRIMARY KEY (storage, hash)
        ) WITHOUT ROWID;
        CREATE INDEX objects_hash ON objects (hash);
        """,
    )


@migrations(name="0002_external_links")
def _external_links(db: Database) -> None:
    # a file registered in place (add_external_files): the URL its bytes are read from
    _run(db, "ALTER TABLE changes ADD COLUMN link TEXT")


@migrations(name="0003_checked_objects")
def _checked_objects(db: Database) -> None:
    # 1: this catalog wrote the row (an upload it saw stored, an external file it hashed) or
    # saw the object there with the right size; 0: read from a manifest, not seen yet. Rows of
    # older catalogs may have come from manifests: they start unchecked, each is seen once
    _run(db, "ALTER TABLE objects ADD COLUMN checked INTEGER NOT NULL DEFAULT 0")


@migrations(name="0004_damaged_objects")
def _damaged_objects(db: Database) -> None:
    # 1: verify found the bytes at this location missing or different. Dedup then counts the
    # content as missing, so the next upload (or a repair) stores it again and replaces the row
    _run(db, "ALTER TABLE objects ADD COLUMN damaged INTEGER NOT NULL DEFAULT 0")
    # few rows are ever damaged: "is any?" is one lookup in this index, not a pass over objects
    _run(db, "CREATE INDEX objects_damaged ON objects (hash) WHERE damaged = 1")


@migrations(name="0005_link_fingerprints")
def _link_fingerprints(db: Database) -> None:
    # what the storage said of an external file when it was registered (its ETag, version,
    # checksum or mtime, see storage.base.ObjectInfo.fingerprint); NULL when it said nothing
    _run(db, "ALTER TABLE changes ADD COLUMN fingerprint TEXT")
    # the external files of a version are looked up on every get: an index of those rows only
    _run(db, "CREATE INDEX changes_links ON changes (dataset_id) WHERE link IS NOT NULL")


def _run(db: Database, script: str) -> None:
    """Run DDL statements one by one (``executescript`` would commit the migration's transaction)."""
    for statement in script.split(";\n"):
        lines = [ln for ln in statement.splitlines() if ln.strip() and not ln.strip().startswith("--")]
        if lines:
            db.execute("\n".join(lines))
