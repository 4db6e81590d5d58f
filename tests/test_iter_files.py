"""Dataset.iter_files: a version's files without their bytes, split as get_local_copy splits
them, each opened in place (the storage read through Dataset.open)."""

from __future__ import annotations

import hashlib
import os

import pytest

from clearml_data import Dataset, DatasetFile, UsageError
from clearml_data.testing import read_tree, write_tree


def make_final(src, parents=None) -> Dataset:
    ds = Dataset.create(dataset_name="ds", dataset_project="proj", parent_datasets=parents)
    if src is not None:
        ds.add_files(src)
    ds.upload()
    assert ds.finalize()
    return Dataset.get(dataset_id=ds.id)


@pytest.fixture
def tree(tmp_path) -> dict[str, bytes]:
    files = {f"d{i % 3}/f{i:02}.bin": os.urandom(10 + 97 * i) for i in range(11)}
    files["top.txt"] = b"top"
    files["empty"] = b""
    write_tree(tmp_path / "src", files)
    return files


def test_every_file_sorted_with_its_size_and_hash(tmp_path, tree):
    ds = make_final(tmp_path / "src")
    listed = list(ds.iter_files())
    assert [f.path for f in listed] == sorted(tree) == ds.list_files()
    for f in listed:
        assert isinstance(f, DatasetFile)
        assert f.size == len(tree[f.path])
        assert f.hash == hashlib.sha256(tree[f.path]).hexdigest()
        assert f.dataset_id == ds.id
        with f.open() as fh:
            assert fh.read() == tree[f.path]


def test_the_parts_are_get_local_copys_parts(tmp_path, tree):
    ds = make_final(tmp_path / "src")
    for num_parts in (1, 2, 3, 5, 20):
        seen = []
        for part in range(num_parts):
            paths = [f.path for f in ds.iter_files(part=part, num_parts=num_parts)]
            assert paths == sorted(
                read_tree(ds.get_local_copy(part=part, num_parts=num_parts, show_progress=False))
            )
            seen += paths
        assert seen == sorted(tree), f"{num_parts} parts hold every file once"


def test_files_patterns_choose_a_subset_then_the_part(tmp_path, tree):
    ds = make_final(tmp_path / "src")
    assert [f.path for f in ds.iter_files(files="d1/*")] == sorted(p for p in tree if p.startswith("d1/"))
    assert [f.path for f in ds.iter_files(files=["top.txt", "*.bin"])] == sorted(
        p for p in tree if p != "empty"
    )
    both = [f.path for f in ds.iter_files(part=1, num_parts=2, files=["d0/*", "d2/*"])]
    chosen = sorted(p for p in tree if p.startswith(("d0/", "d2/")))
    assert both == chosen[len(chosen) // 2 :]
    assert list(ds.iter_files(files="nothing-like-this")) == []


def test_a_child_lists_its_merged_view_and_where_each_file_came_from(tmp_path, tree):
    parent = make_final(tmp_path / "src")
    write_tree(tmp_path / "more", {"top.txt": "changed", "new/one": "1"})
    child = make_final(tmp_path / "more", parents=[parent])
    listed = {f.path: f for f in child.iter_files()}
    assert sorted(listed) == sorted([*tree, "new/one"])
    assert listed["top.txt"].dataset_id == child.id and listed["d0/f00.bin"].dataset_id == parent.id
    with listed["top.txt"].open() as fh:
        assert fh.read() == b"changed"


def test_bad_parts_raise_at_the_call(tmp_path, tree):
    ds = make_final(tmp_path / "src")
    with pytest.raises(UsageError, match="part and num_parts go together"):
        ds.iter_files(part=1)
    with pytest.raises(UsageError, match="between 0 and num_parts - 1"):
        ds.iter_files(part=2, num_parts=2)
    with pytest.raises(UsageError):
        ds.iter_files(part=0, num_parts=0)


def test_listing_reads_nothing_from_storage(tmp_path, tree, env):
    ds = make_final(tmp_path / "src")
    away = tmp_path / "storage-away"
    env.storage.rename(away)  # no storage at all while the files are listed
    try:
        listed = list(ds.iter_files(part=0, num_parts=2))
    finally:
        away.rename(env.storage)
    assert [f.path for f in listed] == sorted(tree)[: len(tree) // 2]


def test_an_external_file_registered_without_reading_has_no_hash(tmp_path, tree):
    outside = write_tree(tmp_path / "outside", {"ext.csv": "a,b\n1,2\n"})
    ds = Dataset.create(dataset_name="ext", dataset_project="proj")
    ds.add_external_files(f"file://{outside}/ext.csv", dataset_path="links")
    ds.add_files(tmp_path / "src")
    ds.upload()
    ds.finalize()
    listed = {f.path: f for f in ds.iter_files()}
    assert listed["links/ext.csv"].hash is None and listed["links/ext.csv"].size == 8
    assert listed["top.txt"].hash == hashlib.sha256(b"top").hexdigest()
