"""`clearml-data doctor`: catalog location, filesystem, journal mode, lock method, SQLite
version, integrity check, plugin versions and the link type local copies get."""

from __future__ import annotations

import errno
import os
import sqlite3

import pytest

import clearml_data
from clearml_data.catalog import fs
from clearml_data.service.doctor import probe_link_type


def test_doctor_reports_every_field(cli, env):
    res = cli("-q", "doctor")
    assert res.code == 0
    out = res.out
    assert f"catalog:         {env.catalog}" in out
    assert f"SQLite {sqlite3.sqlite_version}" in out
    assert ", journal wal, lock sqlite" in out
    assert "  integrity:     ok" in out
    assert "local copies use: hardlink" in out
    assert f"folder     clearml-data {clearml_data.__version__} (loaded)" in out
    data = cli("doctor", "--json").json["data"]
    cat = data["catalog"]
    assert cat["path"] == str(env.catalog) and cat["filesystem"] == fs.filesystem_type(env.catalog.parent)
    assert (cat["journal_mode"], cat["lock_method"], cat["lock_file"]) == ("wal", "sqlite", None)
    assert cat["integrity"] == "ok" and data["sqlite"] == sqlite3.sqlite_version
    assert data["cache"]["link_type"] == "hardlink"
    assert data["cache"]["filesystem"] == fs.filesystem_type(env.root)
    assert {
        "name": "folder",
        "package": "clearml-data",
        "version": clearml_data.__version__,
        "status": "loaded",
    } in data["plugins"]
    assert not list((env.cache / "tmp").iterdir())  # the probe cleans up


def test_doctor_on_a_network_mount(cli, env, tmp_path, monkeypatch):
    share = tmp_path / "share"
    share.mkdir()
    mi = tmp_path / "mountinfo"
    mi.write_text(
        f"22 1 8:1 / / rw - ext4 /dev/sda1 rw\n95 22 0:50 / {share} rw - nfs4 filer:/export rw,vers=4.2\n"
    )
    monkeypatch.setattr(fs, "MOUNTINFO", str(mi))
    monkeypatch.setenv("CLEARML_DATA_CATALOG", str(share / "catalog.db"))
    out = cli("-q", "doctor").out
    assert f"  filesystem:    nfs4, journal delete, lock file ({share / 'catalog.db.lock'})" in out
    monkeypatch.setenv("CLEARML_DATA_CATALOG_LOCK", "sqlite")
    assert "  filesystem:    nfs4, journal delete, lock sqlite\n" in cli("-q", "doctor").out


def test_doctor_reports_a_damaged_catalog(cli, env):
    assert cli("create", "--project", "p", "--name", "n").code == 0
    conn = sqlite3.connect(env.catalog)
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("DELETE FROM sqlite_master WHERE name = 'datasets_project_name'")  # orphan an index's pages
    conn.commit()
    conn.close()
    res = cli("doctor", "--json")
    assert res.code == 0
    integrity = res.json["data"]["catalog"]["integrity"]
    assert integrity.startswith("Page ") and "never used" in integrity and "\n" not in integrity
    assert f"  integrity:     {integrity}" in cli("-q", "doctor").out


def test_link_probe_falls_back_when_hard_links_fail(tmp_path, monkeypatch):
    folder = tmp_path / "probe"
    assert probe_link_type(folder) == "hardlink"

    def no_link(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    assert probe_link_type(folder) in ("reflink", "copy")
    assert list(folder.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a tmpfs for the cache")
def test_doctor_probes_the_cache_filesystem(cli, env, tmp_path, monkeypatch):
    import subprocess

    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=False).returncode:
        pytest.skip("mount -t tmpfs is not permitted here")
    try:
        monkeypatch.setenv("CLEARML_DATA_CACHE_DIR", str(mnt / "cache"))
        data = cli("doctor", "--json").json["data"]
        assert data["cache"]["filesystem"] == "tmpfs" and data["cache"]["link_type"] == "hardlink"
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
