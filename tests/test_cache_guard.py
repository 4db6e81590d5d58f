"""The local cache never serves a damaged file: content is hash-checked as it enters, cache
files are read-only, and a file changed through a link is caught by its stat and fetched again."""

import os
import stat
from pathlib import Path

import pytest

from clearml_data import Dataset, IntegrityError
from clearml_data.api import default_service
from clearml_data.cache import guard as cacheguard
from clearml_data.cache.links import remove_tree
from clearml_data.testing import read_tree, write_tree

FILES = {
    "a.txt": b"alpha" * 100,
    "sub/b.bin": os.urandom(3000),
    "sub/c.bin": os.urandom(5000),
    "d.txt": b"delta" * 50,
}


def final(tmp_path, files=FILES):
    ds = Dataset.create(dataset_name="n", dataset_project="p")
    ds.add_files(write_tree(tmp_path / "src", files))
    ds.finalize(auto_upload=True)
    return ds


def tamper(path, data=None):
    """What the cache's owner can do: make the file writable, overwrite it with same-size
    bytes and make it read-only again (same inode, same size; the write moves the mtime)."""
    st = os.stat(path)
    data = data if data is not None else bytes(b ^ 0xFF for b in Path(path).read_bytes())
    assert len(data) == st.st_size
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.write(data)
    os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a coarse clock may not move it
    after = os.stat(path)
    assert (after.st_size, after.st_ino) == (st.st_size, st.st_ino)


@pytest.fixture
def rehashes(monkeypatch):
    """Counts the files the cache guard hashes again."""
    calls = []
    real = cacheguard.sha256_file

    def counting(path):
        calls.append(os.fspath(getattr(path, "name", path)))  # a path, or a file open on it
        return real(path)

    monkeypatch.setattr(cacheguard, "sha256_file", counting)
    return calls


def object_file(digest):
    return default_service().cache.object_file(digest)


def digest_of(ds, path):
    return next(f.hash for f in ds.file_entries if f.relative_path == path)


def test_cache_files_are_read_only(tmp_path, env):
    ds = final(tmp_path)
    for use_soft_links in (None, False):
        folder = ds.get_local_copy(use_soft_links=use_soft_links)
        for p in FILES:
            assert stat.S_IMODE(os.stat(os.path.join(folder, p)).st_mode) == 0o444
    for path in (env.cache / "objects").rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o444


def test_warm_get_is_one_stat_per_file_and_no_read(tmp_path, rehashes):
    ds = final(tmp_path)
    folder = ds.get_local_copy()
    default_service().close()  # a new process: only the on-disk memory is left
    rehashes.clear()
    assert Dataset.get(dataset_id=ds.id).get_local_copy() == folder
    assert rehashes == []
    assert read_tree(folder) == FILES


def test_a_deleted_local_copy_is_rebuilt_without_hashing_again(tmp_path, rehashes):
    ds = final(tmp_path)
    folder = ds.get_local_copy()
    remove_tree(folder)  # unlinking moves every object's ctime; only inode, size and mtime count
    default_service().close()
    rehashes.clear()
    assert Dataset.get(dataset_id=ds.id).get_local_copy() == folder
    assert rehashes == []
    assert read_tree(folder) == FILES


@pytest.mark.parametrize("use_soft_links", [None, True, False])
def test_a_file_changed_through_the_local_copy_is_never_served(tmp_path, use_soft_links, rehashes):
    ds = final(tmp_path)
    folder = ds.get_local_copy(use_soft_links=use_soft_links)
    target = os.path.join(folder, "sub", "b.bin")
    tamper(os.path.realpath(target))  # same size, same inode, a new mtime
    rehashes.clear()
    again = ds.get_local_copy(use_soft_links=use_soft_links)
    assert read_tree(again) == FILES
    assert (
        os.path.realpath(os.path.join(again, "sub", "b.bin")) in rehashes
        or os.path.join(again, "sub", "b.bin") in rehashes
    )
    assert Path(object_file(digest_of(ds, "sub/b.bin"))).read_bytes() == FILES["sub/b.bin"]
    rehashes.clear()
    ds.get_local_copy(use_soft_links=use_soft_links)
    assert rehashes == []  # and recorded: the next get is one stat per file again


def test_a_tampered_object_is_not_copied_into_a_mutable_copy(tmp_path):
    ds = final(tmp_path)
    ds.get_local_copy()
    tamper(object_file(digest_of(ds, "a.txt")))
    copy = ds.get_mutable_local_copy(tmp_path / "copy")
    assert read_tree(copy) == FILES


def test_a_replaced_file_is_detected_by_its_inode(tmp_path):
    ds = final(tmp_path)
    folder = ds.get_local_copy()
    target = os.path.join(folder, "d.txt")
    st = os.stat(target)
    os.unlink(target)
    with open(target, "wb") as fh:
        fh.write(b"x" * st.st_size)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert read_tree(ds.get_local_copy()) == FILES


def test_a_file_made_writable_but_unchanged_is_kept_and_made_read_only_again(tmp_path, rehashes):
    ds = final(tmp_path)
    folder = ds.get_local_copy()
    target = os.path.join(folder, "a.txt")
    ino = os.stat(target).st_ino
    os.chmod(target, 0o644)
    rehashes.clear()
    assert read_tree(ds.get_local_copy()) == FILES
    assert rehashes == [target]
    st = os.stat(target)
    assert st.st_ino == ino and stat.S_IMODE(st.st_mode) == 0o444


def test_a_lost_hash_memory_means_hashing_again_not_serving_blindly(tmp_path, env, rehashes):
    ds = final(tmp_path)
    folder = ds.get_local_copy()
    default_service().close()
    os.unlink(env.cache / "hashes.db")
    tamper(os.path.join(folder, "sub", "c.bin"))
    rehashes.clear()
    assert read_tree(Dataset.get(dataset_id=ds.id).get_local_copy()) == FILES
    assert len(rehashes) >= len(FILES)


def test_upload_never_sends_a_tampered_cached_object(tmp_path, env):
    src = write_tree(tmp_path / "src", {"big.bin": os.urandom(64 * 1024)})
    ds = Dataset.create(dataset_name="n", dataset_project="p")
    ds.add_files(src)
    service = default_service()
    digest = digest_of(ds, "big.bin")
    service.cache.ensure()
    from clearml_data.packs import PendingFile

    service.cache.ingest(PendingFile(digest, 64 * 1024, str(src / "big.bin")))
    os.unlink(src / "big.bin")  # only the cached copy is left, and it is damaged
    tamper(object_file(digest))
    with pytest.raises(Exception, match="is gone"):
        ds.upload()
    assert not list(env.storage.rglob("*.pack")) and not os.path.exists(object_file(digest))


@pytest.mark.parametrize("kind", ["pack", "object"])
def test_damaged_storage_bytes_never_enter_the_cache(tmp_path, env, kind):
    files = {"small.txt": b"s" * 100, "big.bin": os.urandom(17 * 1024 * 1024)}
    ds = final(tmp_path, files)
    default_service().cache.clear()
    victim = next(
        p for p in env.storage.rglob("*") if p.is_file() and (p.suffix == ".pack") == (kind == "pack")
    )
    tamper(victim)
    with pytest.raises(IntegrityError):
        ds.get_local_copy()
    wanted = digest_of(ds, "small.txt" if kind == "pack" else "big.bin")
    assert not os.path.exists(object_file(wanted))
    assert not any((env.cache / "tmp").iterdir())
    assert not [p for p in (env.cache / "datasets").iterdir()]


def test_verify_finds_damage_the_stat_cannot_see_and_get_then_fetches_it_again(tmp_path, env, cli):
    """Bit rot on the medium leaves the stat as it was: verify re-hashes and drops the file."""
    ds = final(tmp_path)
    folder = ds.get_local_copy()
    target = os.path.join(folder, "sub", "b.bin")
    tamper(target)
    service = default_service()
    service.cache.guard.relinked([(target, os.stat(target), digest_of(ds, "sub/b.bin"))])
    assert Path(target).read_bytes() != FILES["sub/b.bin"]  # the stat check alone would serve this
    res = cli("verify", "--id", ds.id, "--json")
    assert res.code == 1, res.out
    problems = res.json["data"]["problems"]
    assert [(p["path"], p["problem"]) for p in problems] == [("sub/b.bin", "hash")]
    assert "cached copy" in problems[0]["detail"] and "removed from the cache" in problems[0]["detail"]
    assert cli("verify", "--id", ds.id).code == 0
    assert read_tree(ds.get_local_copy()) == FILES


def test_verify_dataset_hash_checks_the_cached_content(tmp_path):
    ds = final(tmp_path)
    ds.get_local_copy()
    tamper(object_file(digest_of(ds, "d.txt")))
    assert ds.verify_dataset_hash() == ["d.txt"]
    assert ds.verify_dataset_hash() == []
