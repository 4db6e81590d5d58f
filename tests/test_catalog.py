"""The catalog: migrations, journal modes, locking, concurrent writers."""

import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from clearml_data.catalog import Catalog
from clearml_data.catalog.fs import filesystem_type, is_network_filesystem
from clearml_data.errors import CatalogError, SchemaVersionError


def test_migrations_apply_once(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    names = cat.info()["schema"]
    assert names == [
        "0001_initial",
        "0002_external_links",
        "0003_checked_objects",
        "0004_damaged_objects",
        "0005_link_fingerprints",
    ]
    cat.close()
    cat = Catalog(tmp_path / "c.db")
    assert cat.info()["schema"] == names
    assert cat.info()["journal_mode"] == "wal"


def test_an_old_catalog_is_upgraded_in_place(tmp_path):
    from sqlite_utils import Database

    from clearml_data.catalog.schema import migrations

    db = Database(tmp_path / "c.db")
    migrations.apply(db, stop_before="0002_external_links")
    db.execute(
        "INSERT INTO datasets (id, project, name, version, status, storage, created_at, updated_at) "
        "VALUES ('a' || hex(randomblob(15)), 'p', 'n', '1.0.0', 'final', '/s', 'x', 'x')"
    )
    db.execute(
        "INSERT INTO changes (dataset_id, path, kind, hash, size) "
        "SELECT id, 'f', 'added', 'h', 1 FROM datasets"
    )
    db.execute("INSERT INTO objects VALUES ('/s', 'h', 'k', 0, 1)")
    db.conn.commit()
    db.close()
    cat = Catalog(tmp_path / "c.db")
    assert cat.info()["schema"][-1] == "0005_link_fingerprints"
    (row,) = cat.find_datasets(project="p")
    assert cat.changes(row.id)[0].link is None and cat.changes(row.id)[0].size == 1
    # a location of an old catalog may have come from a manifest: unchecked until seen
    (loc,) = cat.locate_objects(["h"])["h"]
    assert (loc.key, loc.checked) == ("k", False) and cat.missing_objects("/s", ["h"]) == {"h"}
    cat.close()


def test_newer_catalog_is_refused(tmp_path):
    Catalog(tmp_path / "c.db").close()
    conn = sqlite3.connect(tmp_path / "c.db")
    conn.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
        "VALUES ('clearml_data', '9999_future', 'now')"
    )
    conn.commit()
    conn.close()
    with pytest.raises(SchemaVersionError, match="newer clearml-data"):
        Catalog(tmp_path / "c.db")


def test_garbage_file_is_a_clear_error(tmp_path):
    (tmp_path / "c.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CatalogError, match="not a usable clearml-data catalog"):
        Catalog(tmp_path / "c.db")


def test_network_filesystem_gets_rollback_journal(tmp_path):
    cat = Catalog(tmp_path / "c.db", journal_mode="delete")
    assert cat.info()["journal_mode"] == "delete"


def test_filesystem_type_from_mountinfo(tmp_path):
    mi = tmp_path / "mountinfo"
    mi.write_text(
        "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
        "40 22 0:50 / /mnt/team\\040share rw - nfs4 server:/export rw\n"
        "41 22 0:51 / /mnt/fuse rw - fuse.sshfs host:/ rw\n"
    )
    assert filesystem_type("/home/user", str(mi)) == "ext4"
    assert filesystem_type("/mnt/team share/catalog.db", str(mi)) == "nfs4"
    assert filesystem_type("/mnt/fuse/x", str(mi)) == "fuse.sshfs"
    assert is_network_filesystem("nfs4") and is_network_filesystem("fuse.sshfs")
    assert not is_network_filesystem("ext4")
    assert filesystem_type("/x", str(tmp_path / "missing")) == "unknown"


def test_writer_waits_for_a_held_lock(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    other = sqlite3.connect(tmp_path / "c.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release():
        time.sleep(0.3)
        other.execute("COMMIT")
        released.set()

    threading.Thread(target=release).start()
    with cat.write() as c:
        assert released.is_set()
        c.execute(
            "INSERT INTO objects (storage, hash, key, offset, length, checked) VALUES ('s', 'h', 'k', 0, 1, 1)"
        )
    assert cat.missing_objects("s", ["h", "x"]) == {"x"}


def test_failed_write_rolls_back(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    with pytest.raises(RuntimeError), cat.write() as c:
        c.execute(
            "INSERT INTO objects (storage, hash, key, offset, length, checked) VALUES ('s', 'h', 'k', 0, 1, 1)"
        )
        raise RuntimeError("boom")
    assert cat.missing_objects("s", ["h"]) == {"h"}


CREATE_MANY = """
import sys
from clearml_data.config import Settings
from clearml_data.service import Service
catalog, storage, cache, n = sys.argv[1:]
svc = Service(Settings.load(catalog=catalog, storage=storage, cache_dir=cache))
for _ in range(int(n)):
    svc.create(name="shared", project="p")
svc.close()
"""


def test_concurrent_creators_lose_nothing(tmp_path):
    args = [str(tmp_path / "c.db"), str(tmp_path / "s"), str(tmp_path / "cache"), "15"]
    Catalog(args[0]).close()
    procs = [subprocess.Popen([sys.executable, "-c", CREATE_MANY, *args]) for _ in range(4)]
    for p in procs:
        assert p.wait(120) == 0
    cat = Catalog(args[0])
    versions = cat.versions_of("p", "shared")
    assert len(versions) == 60 == len(set(versions))
    assert cat.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_the_schema_list_names_every_migration_in_order():
    from clearml_data.catalog import MIGRATION_SET, SCHEMA
    from clearml_data.catalog.schema import migrations

    assert migrations.name == MIGRATION_SET
    assert tuple(m.name for m in migrations._migrations) == SCHEMA
