"""Temporary files left by dead writers are swept; those of live writers never are."""

import os
import subprocess
import sys
import time

import pytest

from clearml_data import tempfiles
from clearml_data.cache import Cache
from clearml_data.storage.folder import TMP_FOLDER, TMP_PREFIX, FolderDriver


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_abandoned_temporaries_are_swept(tmp_path):
    tmp_path = tmp_path / "tmp"
    tmp_path.mkdir()
    host = tempfiles.owner_tag().split(".")[0]
    dead = tmp_path / f"obj-{host}.{_dead_pid()}.abc.tmp"
    live = tmp_path / f"obj-{tempfiles.owner_tag()}def.tmp"
    foreign_new = tmp_path / "obj-otherhost.1.x.tmp"
    foreign_old = tmp_path / "obj-otherhost.2.y.tmp"
    untagged = tmp_path / "obj-legacy.tmp"
    other = tmp_path / f"keep-{host}.{_dead_pid()}.z"
    for p in (dead, live, foreign_new, foreign_old, untagged, other):
        p.write_bytes(b"x")
    old = time.time() - tempfiles.STALE_AFTER - 60
    os.utime(foreign_old, (old, old))
    assert tempfiles.sweep(tmp_path, ("obj-",)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (live, foreign_new, untagged, other)
    )
    assert tempfiles.sweep(tmp_path / "missing", ("obj-",)) == 0


def test_cache_and_folder_storage_sweep_their_own_folders(tmp_path):
    host = tempfiles.owner_tag().split(".")[0]
    cache = Cache(tmp_path / "cache")
    cache.ensure()
    (cache.tmp / f"pack-{host}.{_dead_pid()}.a.tmp").write_bytes(b"half a pack")
    fd, mine = cache.tempfile()
    os.close(fd)
    cache.ensure()  # sweeps
    assert [p.name for p in cache.tmp.iterdir()] == [os.path.basename(mine)]

    driver = FolderDriver(str(tmp_path / "storage"))
    src = tmp_path / "src"
    src.write_bytes(b"object bytes")
    driver.put_file(str(src), "objects/ab/abc")
    stale = tmp_path / "storage" / TMP_FOLDER / f"{TMP_PREFIX}{host}.{_dead_pid()}.b"
    stale.write_bytes(b"partial")
    assert [o.key for o in driver.list()] == ["objects/ab/abc"]  # temporaries are not objects
    assert driver.clean_temporaries() == 1
    assert not stale.exists() and driver.get_bytes("objects/ab/abc") == b"object bytes"


def test_a_refused_exclusive_put_still_sweeps_what_a_killed_writer_left(tmp_path):
    """A writer killed between linking its object and removing its temporary file leaves
    both: the run that repeats the put is refused (the object exists), and sweeps the file."""
    host = tempfiles.owner_tag().split(".")[0]
    FolderDriver(str(tmp_path / "storage")).put_bytes(b"tombstone", "manifests/a.tomb")
    left = tmp_path / "storage" / TMP_FOLDER / f"{TMP_PREFIX}{host}.{_dead_pid()}.c"
    left.write_bytes(b"tombstone")
    again = FolderDriver(str(tmp_path / "storage"))  # the next process
    with pytest.raises(FileExistsError):
        again.put_bytes(b"tombstone", "manifests/a.tomb", overwrite=False)
    assert not left.exists()
