"""The Python API end to end: versions, parents, merges, removals, dedup, local copies."""

import os
import stat

import pytest

from clearml_data import Dataset, DatasetNotFoundError, DatasetStateError, UsageError
from clearml_data.api import default_service
from clearml_data.testing import read_tree, write_tree


def make_final(name, files_dir=None, parents=None, project="proj", **kw):
    ds = Dataset.create(dataset_name=name, dataset_project=project, parent_datasets=parents, **kw)
    if files_dir is not None:
        ds.add_files(files_dir)
    ds.upload()
    assert ds.finalize()
    return ds


def test_seed_workflow_round_trip(tmp_path):
    src = write_tree(
        tmp_path / "data_folder", {"a.txt": "alpha", "sub/b.bin": os.urandom(5000), "sub/deeper/c.txt": ""}
    )
    ds = Dataset.create(dataset_name="initial_version", dataset_project="dataset_example")
    assert ds.version == "1.0.0" and not ds.is_final()
    assert ds.add_files(src) == 3
    assert ds.is_dirty()
    ds.upload()
    assert not ds.is_dirty()
    ds.finalize()
    copy = Dataset.get(dataset_id=ds.id).get_local_copy()
    assert read_tree(copy) == read_tree(src)  # the folder's own name is dropped (ClearML semantics)
    mode = os.stat(os.path.join(copy, "a.txt")).st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def test_get_by_project_and_name_picks_the_highest_version(tmp_path):
    src = write_tree(tmp_path / "d", {"f": "1"})
    v1 = make_final("ds", src)
    v2 = make_final("ds", parents=[v1])
    v3 = Dataset.create(dataset_name="ds", dataset_project="proj", dataset_version="1.0.10")
    assert (v1.version, v2.version) == ("1.0.0", "1.0.1")
    assert Dataset.get(dataset_project="proj", dataset_name="ds").id == v3.id
    assert Dataset.get(dataset_project="proj", dataset_name="ds", only_completed=True).id == v2.id
    assert Dataset.get(dataset_project="proj", dataset_name="ds", dataset_version="1.0.0").id == v1.id
    assert Dataset.get(v1.id[:8]).id == v1.id  # positional id, unique prefix
    with pytest.raises(DatasetNotFoundError):
        Dataset.get(dataset_project="proj", dataset_name="nope")
    with pytest.raises(UsageError):
        Dataset.create(dataset_name="ds", dataset_project="proj", dataset_version="1.0.1")


def test_child_version_gets_exactly_the_merged_tree(tmp_path):
    base = write_tree(
        tmp_path / "base", {"keep.txt": "keep", "change.txt": "old", "drop.txt": "drop", "dir/x.txt": "x"}
    )
    parent = make_final("ds", base)
    child = Dataset.create(dataset_name="ds", dataset_project="proj", parent_datasets=[parent.id])
    write_tree(tmp_path / "upd", {"change.txt": "new", "added.txt": "added"})
    assert child.add_files(tmp_path / "upd") == 1  # one new path; change.txt is a modification
    assert child.remove_files("drop.txt") == 1
    child.upload()
    child.finalize()
    got = read_tree(Dataset.get(child.id).get_local_copy())
    assert got == {"keep.txt": b"keep", "change.txt": b"new", "added.txt": b"added", "dir/x.txt": b"x"}
    entries = child.file_entries_dict
    assert entries["keep.txt"].parent_dataset_id == parent.id
    assert entries["change.txt"].parent_dataset_id == child.id
    assert child.list_files(dataset_id=child.id) == ["added.txt", "change.txt"]
    assert read_tree(Dataset.get(parent.id).get_local_copy())["change.txt"] == b"old"


def test_multi_parent_merge_later_parent_wins(tmp_path):
    a = make_final("a", write_tree(tmp_path / "a", {"same.txt": "from a", "only_a.txt": "a"}))
    b = make_final("b", write_tree(tmp_path / "b", {"same.txt": "from b", "only_b.txt": "b"}))
    child = make_final("merged", parents=[a, b])
    assert read_tree(child.get_local_copy()) == {
        "same.txt": b"from b",
        "only_a.txt": b"a",
        "only_b.txt": b"b",
    }
    other = make_final("merged2", parents=[b, a])
    assert read_tree(other.get_local_copy())["same.txt"] == b"from a"


def test_readding_parent_content_and_removing_an_added_file_leave_no_rows(tmp_path):
    parent = make_final("ds", write_tree(tmp_path / "p", {"a.txt": "same"}))
    child = Dataset.create(dataset_name="ds", dataset_project="proj", parent_datasets=[parent])
    assert child.add_files(write_tree(tmp_path / "c", {"a.txt": "same"})) == 0
    child.add_files(write_tree(tmp_path / "n", {"new.txt": "n"}))
    child.remove_files("new.txt")
    svc = default_service()
    assert svc.catalog.changes(child.id) == []
    assert not child.is_dirty()


def test_dataset_path_and_wildcard(tmp_path):
    src = write_tree(tmp_path / "imgs", {"a.jpg": "a", "b.png": "b", "sub/c.jpg": "c"})
    ds = Dataset.create(dataset_name="ds", dataset_project="proj")
    assert ds.add_files(src, wildcard="*.jpg", dataset_path="TRAIN") == 2
    assert ds.add_files(src / "b.png", dataset_path="TEST/png") == 1
    assert ds.list_files() == ["TEST/png/b.png", "TRAIN/a.jpg", "TRAIN/sub/c.jpg"]
    assert ds.add_files(src, dataset_path="flat", recursive=False) == 2
    assert ds.list_files("flat/*") == ["flat/a.jpg", "flat/b.png"]
    assert ds.remove_files("TRAIN") == 2  # a folder removes everything below it
    assert ds.list_files("*.jpg") == ["flat/a.jpg"]


def test_dedup_second_version_uploads_about_one_file(tmp_path, env):
    files = {f"f{i:03}.bin": os.urandom(64 * 1024) for i in range(40)}
    src = write_tree(tmp_path / "src", files)
    v1 = make_final("ds", src)

    def stored_bytes():
        return sum(p.stat().st_size for p in env.storage.rglob("*") if p.is_file())

    before = stored_bytes()
    (src / "f000.bin").write_bytes(os.urandom(64 * 1024))
    os.rename(src / "f001.bin", src / "renamed.bin")  # a rename uploads nothing
    v2 = Dataset.create(dataset_name="ds", dataset_project="proj", parent_datasets=[v1])
    removed, added, modified = v2.sync_folder(src)
    assert (removed, added, modified) == (1, 1, 1)
    svc = default_service()
    result = svc.upload(v2.id)
    assert result.uploaded_bytes == 64 * 1024
    assert stored_bytes() - before == 64 * 1024
    v2.finalize()
    assert read_tree(v2.get_local_copy()) == read_tree(src)


def test_renamed_file_in_new_dataset_uploads_nothing(tmp_path):
    src = write_tree(tmp_path / "src", {"a.bin": os.urandom(1000)})
    make_final("one", src)
    os.rename(src / "a.bin", src / "b.bin")
    ds = Dataset.create(dataset_name="two", dataset_project="other")
    ds.add_files(src)
    assert not ds.is_dirty()  # content already held by the shared storage
    assert ds.upload() is True
    ds.finalize()
    assert read_tree(ds.get_local_copy()) == {"b.bin": (src / "b.bin").read_bytes()}


def test_final_versions_cannot_change(tmp_path):
    ds = make_final("ds", write_tree(tmp_path / "s", {"a": "a"}))
    with pytest.raises(DatasetStateError):
        ds.add_files(tmp_path / "s")
    with pytest.raises(DatasetStateError):
        ds.remove_files("a")
    with pytest.raises(DatasetStateError):
        ds.finalize()
    assert ds.finalize(raise_on_error=False) is False


def test_finalize_refuses_pending_uploads_unless_auto_upload(tmp_path):
    ds = Dataset.create(dataset_name="ds", dataset_project="proj")
    ds.add_files(write_tree(tmp_path / "s", {"a": "a"}))
    with pytest.raises(DatasetStateError, match="pending uploads"):
        ds.finalize()
    assert ds.finalize(auto_upload=True)
    assert ds.is_final()


def test_draft_and_parent_must_be_final(tmp_path):
    draft = Dataset.create(dataset_name="ds", dataset_project="proj")
    with pytest.raises(DatasetStateError):
        Dataset.create(dataset_name="child", dataset_project="proj", parent_datasets=[draft])
    with pytest.raises(DatasetStateError):
        draft.get_local_copy()
    assert draft.get_local_copy(raise_on_error=False) is None


def test_project_comes_from_the_last_parent(tmp_path):
    p = make_final("ds", write_tree(tmp_path / "s", {"a": "a"}), project="from-parent")
    child = Dataset.create(dataset_name="child", parent_datasets=[p])
    assert child.project == "from-parent"
    with pytest.raises(UsageError, match="project"):
        Dataset.create(dataset_name="orphan")


def test_link_modes_and_mutable_copy(tmp_path):
    src = write_tree(tmp_path / "s", {"a.txt": "a", "d/b.txt": "b"})
    ds = make_final("ds", src)
    linked = ds.get_local_copy()
    soft = ds.get_local_copy(use_soft_links=True)
    copied = ds.get_local_copy(use_soft_links=False)
    assert len({linked, soft, copied}) == 3
    assert os.path.islink(os.path.join(soft, "a.txt"))
    assert os.stat(os.path.join(linked, "a.txt")).st_nlink >= 2
    assert os.stat(os.path.join(copied, "a.txt")).st_nlink == 1
    for folder in (linked, soft, copied):
        assert read_tree(folder) == read_tree(src)
    target = tmp_path / "mutable"
    out = ds.get_mutable_local_copy(target)
    (target / "a.txt").write_text("changed")  # writable, and does not touch the cache
    assert read_tree(ds.get_local_copy())["a.txt"] == b"a"
    with pytest.raises(UsageError, match="not empty"):
        ds.get_mutable_local_copy(target)
    ds.get_mutable_local_copy(target, overwrite=True)
    assert read_tree(out) == read_tree(src)


def test_damaged_cached_copy_is_rebuilt(tmp_path):
    src = write_tree(tmp_path / "s", {"a.txt": "aaaa", "b.txt": "bbbb"})
    ds = make_final("ds", src)
    copy = ds.get_local_copy()
    os.chmod(os.path.join(copy, "b.txt"), 0o644)
    os.unlink(os.path.join(copy, "b.txt"))
    assert read_tree(ds.get_local_copy()) == read_tree(src)


def test_parts_are_disjoint_and_cover_every_file(tmp_path):
    src = write_tree(tmp_path / "s", {f"f{i:02}.txt": str(i) for i in range(10)})
    ds = make_final("ds", src)
    seen = []
    for k in range(3):
        part = read_tree(ds.get_local_copy(part=k, num_parts=3))
        seen += list(part)
    assert sorted(seen) == sorted(read_tree(src)) and len(seen) == len(set(seen))
    assert list(read_tree(ds.get_local_copy(files=["f05.txt"]))) == ["f05.txt"]
    with pytest.raises(UsageError):
        ds.get_local_copy(part=3, num_parts=3)


def test_sync_folder_reports_changes(tmp_path):
    src = write_tree(tmp_path / "s", {"a": "a", "b": "b", "sub/c": "c"})
    ds = Dataset.create(dataset_name="ds", dataset_project="proj")
    assert ds.sync_folder(src) == (0, 3, 0)
    (src / "a").write_text("A")
    (src / "b").unlink()
    write_tree(src, {"new": "n"})
    assert ds.sync_folder(src) == (1, 1, 1)
    ds.upload()
    ds.finalize()
    assert read_tree(ds.get_local_copy()) == read_tree(src)


def test_sync_into_a_dataset_folder_leaves_other_folders_alone(tmp_path):
    ds = Dataset.create(dataset_name="ds", dataset_project="proj")
    ds.add_files(write_tree(tmp_path / "t", {"x": "x"}), dataset_path="TEST")
    src = write_tree(tmp_path / "s", {"a": "a"})
    assert ds.sync_folder(src, dataset_path="TRAIN") == (0, 1, 0)
    (src / "a").unlink()
    assert ds.sync_folder(src, dataset_path="TRAIN") == (1, 0, 0)
    assert ds.list_files() == ["TEST/x"]


def test_file_and_folder_with_the_same_path_are_refused(tmp_path):
    ds = Dataset.create(dataset_name="ds", dataset_project="proj")
    ds.add_files(write_tree(tmp_path / "a", {"x": "file"}))
    with pytest.raises(UsageError, match="both a file and a folder"):
        ds.add_files(write_tree(tmp_path / "b", {"x/y": "nested"}))


def test_source_changed_after_add_is_caught_at_upload(tmp_path):
    src = write_tree(tmp_path / "s", {"a.txt": "original"})
    ds = Dataset.create(dataset_name="ds", dataset_project="proj")
    ds.add_files(src)
    (src / "a.txt").write_text("tampered!")
    from clearml_data import IntegrityError

    with pytest.raises(IntegrityError, match="changed after it was added"):
        ds.upload()
    assert ds.is_dirty()


def test_version_and_tags_setters(tmp_path):
    ds = Dataset.create(dataset_name="ds", dataset_project="proj", dataset_tags=["a"])
    ds.tags = ["x", "y"]
    ds.add_tags("z")
    ds.version = "2.0.0"
    again = Dataset.get(ds.id)
    assert again.tags == ["x", "y", "z"] and again.version == "2.0.0"


def test_get_auto_create_and_writable_copy(tmp_path):
    created = Dataset.get(dataset_project="proj", dataset_name="auto", auto_create=True)
    assert created.version == "1.0.0" and not created.is_final()
    created.add_files(write_tree(tmp_path / "s", {"a": "a"}))
    created.finalize(auto_upload=True)
    child = Dataset.get(dataset_project="proj", dataset_name="auto", writable_copy=True)
    assert child.parents == [created.id] and child.version == "1.0.1"
    with pytest.raises(TypeError):
        Dataset.get(dataset_id=created.id, bogus=1)


def test_delete_with_children_is_refused_unless_forced(tmp_path):
    v1 = make_final("ds", write_tree(tmp_path / "a", {"a": "a", "gone": "g"}))
    v2 = Dataset.create(dataset_name="ds", dataset_project="proj", parent_datasets=[v1])
    v2.add_files(write_tree(tmp_path / "b", {"b": "b"}))
    v2.remove_files("gone")
    v2.finalize(auto_upload=True)
    v3 = make_final("ds", parents=[v2])
    expected = read_tree(v3.get_local_copy())
    with pytest.raises(DatasetStateError, match="child"):
        Dataset.delete(dataset_id=v2.id)
    Dataset.delete(dataset_id=v2.id, force=True)
    with pytest.raises(DatasetNotFoundError):
        Dataset.get(v2.id)
    v3 = Dataset.get(v3.id)
    assert v3.parents == [v1.id]
    assert read_tree(v3.get_local_copy()) == expected == {"a": b"a", "b": b"b"}


def test_delete_entire_dataset_needs_force(tmp_path):
    v1 = make_final("ds", write_tree(tmp_path / "a", {"a": "a"}))
    make_final("ds", parents=[v1])
    with pytest.raises(UsageError, match="force"):
        Dataset.delete(dataset_project="proj", dataset_name="ds", entire_dataset=True)
    assert (
        len(Dataset.delete(dataset_project="proj", dataset_name="ds", entire_dataset=True, force=True)) == 2
    )
    with pytest.raises(DatasetNotFoundError):
        Dataset.get(dataset_project="proj", dataset_name="ds")


def test_missing_folder_and_bad_ids(tmp_path):
    ds = Dataset.create(dataset_name="ds", dataset_project="proj")
    with pytest.raises(UsageError, match="no such file or folder"):
        ds.add_files(tmp_path / "missing")
    for bad in ("../../x", "zz", "1234"):
        with pytest.raises(UsageError):
            Dataset.get(bad)
    with pytest.raises(DatasetNotFoundError):
        Dataset.get("0" * 32)


GET_COPY = """
import json, sys
from clearml_data import Dataset
from clearml_data.testing import read_tree
path = Dataset.get(sys.argv[1]).get_local_copy(show_progress=False)
print(json.dumps([path, {k: v.hex() for k, v in read_tree(path).items()}]))
"""


def test_concurrent_get_never_sees_a_half_built_copy(tmp_path, env, monkeypatch):
    import json
    import subprocess
    import sys

    src = write_tree(tmp_path / "s", {f"d{i % 7}/f{i:04}": os.urandom(3000) for i in range(600)})
    ds = make_final("ds", src)
    monkeypatch.setenv("CLEARML_DATA_CACHE_DIR", str(tmp_path / "fresh-cache"))
    procs = [
        subprocess.Popen([sys.executable, "-c", GET_COPY, ds.id], stdout=subprocess.PIPE) for _ in range(4)
    ]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        path, tree = json.loads(out)
        results.append((path, {k: bytes.fromhex(v) for k, v in tree.items()}))
    expected = read_tree(src)
    assert len({path for path, _ in results}) == 1
    assert all(tree == expected for _, tree in results)
    leftovers = [p.name for p in (tmp_path / "fresh-cache" / "datasets").iterdir()]
    assert leftovers == [ds.id]  # no staging folders left behind
    assert not list((tmp_path / "fresh-cache" / "tmp").iterdir())


def test_link_falls_back_to_copy_across_filesystems(tmp_path, monkeypatch):
    import errno

    from clearml_data.cache import links

    def no_link(src, dst):
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(links.os, "link", no_link)
    src = tmp_path / "src"
    src.write_bytes(b"payload")
    method = links.link_or_copy(str(src), str(tmp_path / "dst"))
    assert method in ("reflink", "copy")
    assert (tmp_path / "dst").read_bytes() == b"payload"
    assert not os.stat(tmp_path / "dst").st_mode & stat.S_IWUSR


def test_large_file_changed_during_upload_stores_the_hashed_bytes(tmp_path, env, monkeypatch):
    import hashlib

    from clearml_data.packs import LARGE_FILE
    from clearml_data.storage.folder import FolderDriver

    original = os.urandom(LARGE_FILE + 1)
    src = write_tree(tmp_path / "s", {"big.bin": original})
    ds = Dataset.create(dataset_name="ds", dataset_project="proj")
    ds.add_files(src)
    put = FolderDriver.put_file

    def put_while_the_user_edits(self, local_path, key, **kw):
        (src / "big.bin").write_bytes(b"edited meanwhile" * 100)  # after hashing, before sending
        return put(self, local_path, key, **kw)

    monkeypatch.setattr(FolderDriver, "put_file", put_while_the_user_edits)
    ds.upload()
    digest = hashlib.sha256(original).hexdigest()
    stored = env.storage / "objects" / digest[:2] / digest
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == digest
    assert ds.finalize()


def test_versions_equal_by_pep440_are_one_version(tmp_path):
    make_final("ds", write_tree(tmp_path / "a", {"a": "a"}), dataset_version="1.0")
    from clearml_data import VersionExistsError

    with pytest.raises(VersionExistsError, match=r"already has a version 1\.0"):
        Dataset.create(dataset_name="ds", dataset_project="proj", dataset_version="1.0.0")
    assert Dataset.get(dataset_project="proj", dataset_name="ds", dataset_version="1.0.0").version == "1.0"
    auto = Dataset.create(dataset_name="ds", dataset_project="proj")
    assert auto.version == "1.1"


def test_delete_needs_an_id_or_both_project_and_name(tmp_path):
    make_final("ds", write_tree(tmp_path / "a", {"a": "a"}))
    with pytest.raises(UsageError, match="both dataset_project and dataset_name"):
        Dataset.delete(dataset_project="proj")
    assert Dataset.get(dataset_project="proj", dataset_name="ds")


def test_forced_delete_recounts_the_child_changes(tmp_path):
    v1 = make_final("ds", write_tree(tmp_path / "a", {"a": "a"}))
    v2 = make_final("ds", write_tree(tmp_path / "b", {"b": "b"}), parents=[v1])
    v3 = make_final("ds", write_tree(tmp_path / "c", {"c": "c"}), parents=[v2])
    svc = default_service()
    assert svc.resolve_id(v3.id).added == 1
    Dataset.delete(dataset_id=v2.id, force=True)
    row = svc.resolve_id(v3.id)
    assert (row.added, row.modified, row.removed) == (2, 0, 0)
    assert sorted(v.relative_path for v in Dataset.get(v3.id).file_entries) == ["a", "b", "c"]
