"""The catalog's lock file: taking, renewing, stale-lock recovery, timeouts, and when it is used."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from clearml_data.catalog import Catalog, fs
from clearml_data.catalog.lockfile import LockFile, resolve_lock_method
from clearml_data.errors import CatalogLockedError


def _plant(path, *, host=None, pid=None, expires_in=60.0, lease=30.0, token="planted"):
    now = time.time()
    path.write_text(
        json.dumps(
            {
                "host": host or socket.gethostname(),
                "pid": pid or os.getpid(),
                "token": token,
                "lease": lease,
                "acquired": now - 5,
                "expires": now + expires_in,
            }
        )
    )


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_lock_file_holds_host_pid_and_lease(tmp_path):
    lock = LockFile(tmp_path / "c.db.lock", lease=30)
    with lock.held():
        data = json.loads((tmp_path / "c.db.lock").read_text())
        assert data["host"] == socket.gethostname() and data["pid"] == os.getpid()
        assert 25 < data["expires"] - time.time() <= 30
        with lock.held():  # reentrant
            assert lock.still_ours()
        assert (tmp_path / "c.db.lock").exists()
    assert not (tmp_path / "c.db.lock").exists()


def test_second_holder_waits_until_release(tmp_path):
    path = tmp_path / "c.db.lock"
    first, second = LockFile(path), LockFile(path, timeout=10)
    order = []
    first.acquire()

    def other():
        with second.held():
            order.append("second")

    t = threading.Thread(target=other)
    t.start()
    time.sleep(0.3)
    order.append("first releases")
    first.release()
    t.join(10)
    assert order == ["first releases", "second"]
    assert second.broken == 0


def test_lease_is_renewed_while_held(tmp_path):
    path = tmp_path / "c.db.lock"
    holder = LockFile(path, lease=0.3)
    waiter = LockFile(path, timeout=0.2)
    with holder.held():
        start = json.loads(path.read_text())["expires"]
        time.sleep(1.0)  # three leases: it would be stale by now without renewal
        assert json.loads(path.read_text())["expires"] > start + 0.5
        with pytest.raises(CatalogLockedError):
            waiter.acquire()
        assert waiter.broken == 0 and holder.still_ours()
    assert not path.exists()


def test_expired_lease_is_broken(tmp_path):
    path = tmp_path / "c.db.lock"
    _plant(path, host="another-host", pid=4242, expires_in=-1)
    lock = LockFile(path, timeout=5)
    with lock.held():
        assert lock.still_ours()
    assert lock.broken == 1
    assert not path.exists() and not list(tmp_path.glob("*.stale-*"))


def test_dead_holder_on_this_host_is_broken_before_its_lease_ends(tmp_path):
    path = tmp_path / "c.db.lock"
    _plant(path, pid=_dead_pid(), expires_in=3600)
    lock = LockFile(path, timeout=5)
    with lock.held():
        pass
    assert lock.broken == 1


def test_live_holder_elsewhere_is_waited_for_then_named(tmp_path):
    path = tmp_path / "c.db.lock"
    _plant(path, host="gpu-node-7", pid=4242, expires_in=3600)
    lock = LockFile(path, timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(CatalogLockedError) as err:
        lock.acquire()
    assert time.monotonic() - t0 >= 0.3
    message = str(err.value)
    assert str(path) in message and "pid 4242 on gpu-node-7" in message and "\n" not in message
    assert "delete the file only if no clearml-data process" in message
    assert json.loads(path.read_text())["token"] == "planted"  # untouched


def test_live_holder_on_this_host_is_not_broken(tmp_path):
    path = tmp_path / "c.db.lock"
    _plant(path, pid=os.getppid(), expires_in=3600)
    with pytest.raises(CatalogLockedError):
        LockFile(path, timeout=0.2).acquire()
    assert path.exists()


def test_empty_lock_file_is_stale_only_when_older_than_a_lease(tmp_path):
    path = tmp_path / "c.db.lock"
    path.write_bytes(b"")  # a holder that died between create and write, or is writing now
    with pytest.raises(CatalogLockedError):
        LockFile(path, lease=30, timeout=0.2).acquire()
    old = time.time() - 60
    os.utime(path, (old, old))
    lock = LockFile(path, lease=30, timeout=5)
    with lock.held():
        pass
    assert lock.broken == 1


def test_lock_renewed_during_a_break_is_put_back(tmp_path):
    """A breaker moves the file aside, then finds it is not what it judged stale: it restores it."""
    path = tmp_path / "c.db.lock"
    _plant(path, host="h", pid=1, expires_in=-1, token="old")
    breaker = LockFile(path, timeout=5)
    real_read = LockFile._read
    calls = []

    def read(p):
        raw = real_read(p)
        if ".stale-" in str(p) and not calls:  # the holder renewed just before the rename
            calls.append(p)
            _plant(p, host="h", pid=1, expires_in=60, token="old")
            return real_read(p)
        return raw

    breaker._read = read
    assert breaker._break_if_stale() is False
    assert json.loads(path.read_text())["expires"] > time.time()
    assert breaker.broken == 0 and not list(tmp_path.glob("*.stale-*"))


def test_lost_lock_rolls_the_transaction_back(tmp_path):
    cat = Catalog(tmp_path / "c.db", lock="file")
    with pytest.raises(CatalogLockedError, match="lost the catalog lock file"), cat.write() as c:
        c.execute("INSERT INTO objects (storage, hash, key, offset, length) VALUES ('s', 'h', 'k', 0, 1)")
        _plant(tmp_path / "c.db.lock", token="someone-else")  # broken and taken by another
    (tmp_path / "c.db.lock").unlink()
    assert cat.conn.execute("SELECT COUNT(*) FROM objects").fetchone()[0] == 0
    cat.close()


def test_file_method_locks_reads_and_writes(tmp_path):
    cat = Catalog(tmp_path / "c.db", lock="file")
    assert cat.lock_method == "file" and cat.journal_mode == "delete"
    seen = []
    with cat.write() as c:
        seen.append((tmp_path / "c.db.lock").exists())
        c.execute("INSERT INTO objects (storage, hash, key, offset, length) VALUES ('s', 'h', 'k', 0, 1)")
    with cat.read():
        seen.append((tmp_path / "c.db.lock").exists())
    assert seen == [True, True] and not (tmp_path / "c.db.lock").exists()
    # a statement outside a transaction waits for the lock like a transaction does
    _plant(tmp_path / "c.db.lock", host="elsewhere", pid=99, expires_in=3600)
    cat.lock_file.timeout = 0.2
    with pytest.raises(CatalogLockedError):
        cat.find_datasets()
    (tmp_path / "c.db.lock").unlink()
    assert cat.locate_objects(["h"])["h"][0].key == "k"
    cat.close()


def test_sqlite_method_makes_no_lock_file(tmp_path):
    cat = Catalog(tmp_path / "c.db", lock="sqlite")
    with cat.write():
        assert not (tmp_path / "c.db.lock").exists()
    assert cat.lock_file is None and cat.journal_mode == "wal"
    cat.close()


def test_resolve_lock_method():
    assert resolve_lock_method("auto", "nfs4", True) == "file"
    assert resolve_lock_method(None, "ext4", False) == "sqlite"
    assert resolve_lock_method("FILE", "ext4", False) == "file"
    assert resolve_lock_method("sqlite", "nfs", True) == "sqlite"
    with pytest.raises(ValueError):
        resolve_lock_method("flock", "ext4", False)


def _fake_mountinfo(tmp_path, monkeypatch, fstype: str):
    share = tmp_path / "share"
    share.mkdir()
    mi = tmp_path / "mountinfo"
    mi.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        f"95 22 0:50 / {share} rw,relatime shared:60 - {fstype} server:/export rw,vers=4.2\n"
    )
    monkeypatch.setattr(fs, "MOUNTINFO", str(mi))
    return share


@pytest.mark.parametrize("fstype", ["nfs4", "cifs", "fuse.sshfs", "lustre", "gpfs"])
def test_network_mount_detected_from_mountinfo_gets_lock_file(tmp_path, monkeypatch, fstype):
    share = _fake_mountinfo(tmp_path, monkeypatch, fstype)
    cat = Catalog(share / "catalog.db")
    info = cat.info()
    assert (info["filesystem"], info["journal_mode"], info["lock_method"]) == (fstype, "delete", "file")
    assert info["lock_file"] == str(share / "catalog.db.lock")
    cat.close()
    local = Catalog(tmp_path / "local.db")
    assert (local.fs_type, local.journal_mode, local.lock_method) == ("ext4", "wal", "sqlite")
    local.close()
    forced = Catalog(share / "forced.db", lock="sqlite")
    assert (forced.journal_mode, forced.lock_method) == ("delete", "sqlite")
    forced.close()


def test_cli_waits_then_names_the_holder(cli, env, monkeypatch):
    monkeypatch.setenv("CLEARML_DATA_CATALOG_LOCK", "file")
    monkeypatch.setenv("CLEARML_DATA_CATALOG_LOCK_TIMEOUT", "0.5")
    assert cli("create", "--project", "p", "--name", "n").code == 0
    _plant(env.catalog.with_name("catalog.db.lock"), host="gpu-node-7", pid=4242, expires_in=3600)
    res = cli("create", "--project", "p", "--name", "n")
    assert res.code == 1 and "Traceback" not in res.err
    line = res.err.strip().splitlines()[-1]
    assert line.startswith("Error: waited 0.5 s for the catalog lock file ")
    assert "pid 4242 on gpu-node-7" in line and "catalog.db.lock" in line


@pytest.mark.parametrize(
    "var,value",
    [
        ("CLEARML_DATA_CATALOG_LOCK", "flock"),
        ("CLEARML_DATA_CATALOG_LOCK_TIMEOUT", "soon"),
        ("CLEARML_DATA_CATALOG_LOCK_TIMEOUT", "-1"),
    ],
)
def test_bad_lock_settings_are_one_line_errors(cli, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    res = cli("doctor")
    assert res.code == 1 and "Traceback" not in res.err
    key = var.removeprefix("CLEARML_DATA_").lower()
    assert f"the {key} setting (from ${var}) is {value!r}" in res.err


def test_lock_setting_from_config_file(cli, env):
    (env.root / "config.ini").write_text("[clearml-data]\ncatalog_lock = file\ncatalog_lock_timeout = 7\n")
    data = cli("doctor", "--json").json["data"]
    assert data["catalog"]["lock_method"] == "file" and data["catalog"]["journal_mode"] == "delete"
