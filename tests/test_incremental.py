"""A new version after a small change reads only the changed and added files."""

import os
import time

import pytest

from clearml_data import Dataset, UsageError, hashing
from clearml_data.testing import read_tree, write_tree


def _age(folder, seconds=5):
    """Make every file look older than the hash memory's racy window."""
    past = time.time() - seconds
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            os.utime(os.path.join(dirpath, name), (past, past))


def test_new_version_after_a_small_change_hashes_only_what_changed(tmp_path, monkeypatch):
    src = write_tree(tmp_path / "src", {f"d{i % 10}/f{i:03}.bin": os.urandom(512) for i in range(200)})
    _age(src)
    read: list[str] = []
    real = hashing.sha256_file

    def counting(path):
        read.append(os.path.relpath(path, src))
        return real(path)

    monkeypatch.setattr(hashing, "sha256_file", counting)
    v1 = Dataset.create(dataset_name="ds", dataset_project="p")
    v1.sync_folder(src)
    v1.finalize(auto_upload=True)
    assert len(read) == 200
    read.clear()
    changed = ["d0/f000.bin", "d1/f001.bin"]
    for rel in changed:
        (src / rel).write_bytes(os.urandom(600))
    (src / "d2/f002.bin").unlink()
    (src / "d3/f003.bin").unlink()
    write_tree(src, {"new/a.bin": "a", "new/b.bin": "b"})
    v2 = Dataset.create(dataset_name="ds", dataset_project="p", parent_datasets=[v1])
    assert v2.sync_folder(src) == (2, 2, 2)
    assert sorted(read) == sorted([*changed, "new/a.bin", "new/b.bin"])
    v2.finalize(auto_upload=True)
    assert read_tree(v2.get_local_copy()) == read_tree(src)


def test_a_file_rewritten_in_place_with_the_same_size_is_hashed_again(tmp_path):
    src = write_tree(tmp_path / "src", {"a.txt": "first"})
    _age(src)
    v1 = Dataset.create(dataset_name="ds", dataset_project="p")
    v1.add_files(src)
    v1.finalize(auto_upload=True)
    (src / "a.txt").write_text("other")  # same size; new mtime and ctime
    v2 = Dataset.create(dataset_name="ds", dataset_project="p", parent_datasets=[v1])
    v2.add_files(src)
    assert v2.list_modified_files() == ["a.txt"]


def test_recently_modified_files_are_not_remembered(tmp_path, monkeypatch):
    src = write_tree(tmp_path / "src", {"a.txt": "fresh"})  # mtime: now
    read: list[str] = []
    real = hashing.sha256_file
    monkeypatch.setattr(hashing, "sha256_file", lambda p: read.append(p) or real(p))
    for _ in range(2):
        ds = Dataset.create(dataset_name="ds", dataset_project="p")
        ds.add_files(src)
    assert len(read) == 2  # within the racy window: read both times


def test_a_large_add_is_hashed_in_batches_with_the_same_result(tmp_path, monkeypatch):
    from clearml_data.service import drafts as service

    files = {f"d{i % 7}/f{i:03}.bin": os.urandom(100 + i) for i in range(53)}
    src = write_tree(tmp_path / "src", files)
    _age(src)
    batches: list[int] = []
    real = hashing.hash_files

    def counting(stats, *a, **kw):
        batches.append(len(stats))
        return real(stats, *a, **kw)

    monkeypatch.setattr(service, "_ADD_BATCH", 10)
    monkeypatch.setattr(service, "hash_files", counting)
    ds = Dataset.create(dataset_name="ds", dataset_project="p")
    assert ds.add_files(src) == 53
    assert batches == [10, 10, 10, 10, 10, 3]
    ds.finalize(auto_upload=True)
    assert read_tree(ds.get_local_copy()) == {k: v for k, v in files.items()}
    # a file that disappears between the batches is a clear error, and nothing is recorded
    child = Dataset.create(dataset_name="ds", dataset_project="p", parent_datasets=[ds])
    write_tree(src, {"d6/zz.bin": "new"})  # the last folder: hashed in the last batch
    batches.clear()
    real_stat = service._stat_files

    def vanish(sources):
        if batches and (src / "d6/zz.bin").exists():
            (src / "d6/zz.bin").unlink()
        return real_stat(sources)

    monkeypatch.setattr(service, "_stat_files", vanish)
    with pytest.raises(UsageError, match=r"cannot read .*zz\.bin"):
        child.add_files(src)
    assert len(batches) >= 1
    assert child.list_added_files() == [] and child.list_modified_files() == []
