"""The rest of ClearML's Python API, and ClearML-style scripts run with only the import changed."""

import os
import shutil

import pytest

from clearml_data import Dataset, LinkEntry, UsageError, VersionExistsError
from clearml_data.testing import read_tree, write_tree


def final(name, src=None, parents=None, project="proj", **kw):
    ds = Dataset.create(dataset_name=name, dataset_project=project, parent_datasets=parents, **kw)
    if src is not None:
        ds.add_files(src)
    ds.finalize(auto_upload=True)
    return ds


# -- ClearML-style scripts ---------------------------------------------------------------------
def test_train_and_test_folders_in_one_dataset(tmp_path):
    train = write_tree(tmp_path / "train", {"0.png": "t0", "1.png": "t1"})
    test = write_tree(tmp_path / "test", {"0.png": "s0"})
    ds = Dataset.create(dataset_name="mnist", dataset_project="datasets")
    ds.add_files(path=train, dataset_path="TRAIN")
    ds.add_files(path=test, dataset_path="TEST")
    ds.upload()
    ds.finalize()
    got = read_tree(Dataset.get(dataset_project="datasets", dataset_name="mnist").get_local_copy())
    assert got == {"TRAIN/0.png": b"t0", "TRAIN/1.png": b"t1", "TEST/0.png": b"s0"}


def test_multi_parent_child_with_no_files_of_its_own(tmp_path):
    a = final("a", write_tree(tmp_path / "a", {"shared.txt": "a", "a.txt": "a"}))
    b = final("b", write_tree(tmp_path / "b", {"shared.txt": "b", "b.txt": "b"}))
    child = Dataset.create(dataset_name="merged", dataset_project="proj", parent_datasets=[a.id, b])
    child.upload()
    child.finalize()
    assert read_tree(child.get_local_copy()) == {"shared.txt": b"b", "a.txt": b"a", "b.txt": b"b"}
    assert child.get_dependency_graph() == {child.id: [a.id, b.id], a.id: [], b.id: []}
    assert child.list_added_files() == [] and child.list_modified_files() == []
    assert child.list_added_files(dataset_id=a.id) == ["b.txt"]
    assert child.list_modified_files(dataset_id=a.id) == ["shared.txt"]


def test_sync_upload_change_sync_upload_in_one_version(tmp_path, env):
    src = write_tree(tmp_path / "s", {"a": "1", "b": "2"})
    ds = Dataset.create(dataset_name="ds", dataset_project="proj")
    assert ds.sync_folder(src) == (0, 2, 0)
    ds.upload()
    (src / "a").write_text("changed")
    (src / "b").unlink()
    (src / "c").write_text("3")
    assert ds.sync_folder(src) == (1, 1, 1)
    ds.upload()
    assert not ds.is_dirty()
    ds.finalize()
    assert read_tree(Dataset.get(ds.id).get_local_copy()) == {"a": b"changed", "c": b"3"}


def test_finalize_with_auto_upload(tmp_path):
    ds = Dataset.create(dataset_name="ds", dataset_project="proj")
    ds.add_files(write_tree(tmp_path / "s", {"x": "x"}))
    assert ds.is_dirty() and not ds.is_final()
    assert ds.finalize(auto_upload=True)
    assert ds.is_final() and not ds.is_dirty()


# -- lineage and comparisons ---------------------------------------------------------------------
def test_list_changed_files_against_parents_and_another_version(tmp_path):
    v1 = final("ds", write_tree(tmp_path / "a", {"keep": "k", "mod": "1", "gone": "g"}))
    v2 = Dataset.create(dataset_name="ds", dataset_project="proj", parent_datasets=[v1])
    v2.add_files(write_tree(tmp_path / "b", {"mod": "2", "new": "n"}))
    v2.remove_files("gone")
    v2.finalize(auto_upload=True)
    assert (v2.list_added_files(), v2.list_modified_files(), v2.list_removed_files()) == (
        ["new"],
        ["mod"],
        ["gone"],
    )
    v3 = final("ds", parents=[v2])
    assert v3.list_added_files() == [] and v3.list_removed_files(dataset_id=v1.id) == ["gone"]
    assert v3.get_dependency_graph() == {v3.id: [v2.id], v2.id: [v1.id], v1.id: []}


def test_get_num_chunks_counts_stored_objects(tmp_path):
    files = {f"small{i}": os.urandom(100) for i in range(50)}
    files["big"] = os.urandom(17 * 1024 * 1024)
    v1 = final("ds", write_tree(tmp_path / "a", files))
    assert v1.get_num_chunks() == 2  # one pack, one large object
    v2 = final("ds", write_tree(tmp_path / "b", {"extra": "e"}), parents=[v1])
    assert v2.get_num_chunks() == 3 and v2.get_num_chunks(include_parents=False) == 1


def test_verify_dataset_hash(tmp_path):
    ds = final("ds", write_tree(tmp_path / "a", {"a": "aaa", "b/c": "ccc"}))
    assert ds.verify_dataset_hash() == []
    copy = ds.get_mutable_local_copy(tmp_path / "copy")
    assert ds.verify_dataset_hash(local_copy_path=copy) == []
    with open(os.path.join(copy, "a"), "w") as fh:
        fh.write("AAA")
    os.unlink(os.path.join(copy, "b", "c"))
    assert ds.verify_dataset_hash(local_copy_path=copy) == ["a", "b/c"]
    assert ds.verify_dataset_hash(local_copy_path=copy, skip_hash=True) == ["b/c"]


# -- squash, rename, move, list ------------------------------------------------------------------
def test_squash_by_ids_and_by_project_name_pairs(tmp_path):
    a = final("a", write_tree(tmp_path / "a", {"x": "a", "ya": "1"}))
    b = final("b", write_tree(tmp_path / "b", {"x": "b", "yb": "2"}))
    sq = Dataset.squash("sq", dataset_ids=[a, b.id])
    assert sq.is_final() and sq.parents == [] and sq.project == "proj"
    assert read_tree(sq.get_local_copy()) == {"x": b"b", "ya": b"1", "yb": b"2"}
    sq2 = Dataset.squash("sq2", dataset_project_name_pairs=[("proj", "b"), ("proj", "a")])
    assert read_tree(sq2.get_local_copy())["x"] == b"a"
    draft = Dataset.squash("sq3", dataset_ids=[a.id], close_squashed_dataset=False)
    assert not draft.is_final()
    with pytest.raises(UsageError, match="not both"):
        Dataset.squash("x", dataset_ids=[a.id], dataset_project_name_pairs=[("proj", "a")])


def test_rename_and_move_every_version(tmp_path):
    v1 = final("ds", write_tree(tmp_path / "a", {"a": "a"}))
    v2 = final("ds", parents=[v1])
    Dataset.rename("renamed", dataset_project="proj", dataset_name="ds")
    Dataset.move_to_project("elsewhere", dataset_project="proj", dataset_name="renamed")
    for v in (v1, v2):
        got = Dataset.get(v.id)
        assert (got.project, got.name) == ("elsewhere", "renamed")
    assert Dataset.get(dataset_project="elsewhere", dataset_name="renamed").id == v2.id
    final("other", project="elsewhere")
    with pytest.raises(VersionExistsError):
        Dataset.rename("other", dataset_project="elsewhere", dataset_name="renamed")


def test_list_datasets_has_clearmls_shape(tmp_path):
    v1 = final("ds", write_tree(tmp_path / "a", {"a": "a"}), dataset_tags=["t1"])
    Dataset.create(dataset_name="draft", dataset_project="proj")
    found = Dataset.list_datasets(dataset_project="proj")
    assert [d["id"] for d in found] == [v1.id]
    assert set(found[0]) == {"name", "created", "project", "id", "tags", "version", "status"}
    assert found[0]["status"] == "completed" and found[0]["tags"] == ["t1"]
    both = Dataset.list_datasets(partial_name="d", only_completed=False)
    assert sorted(d["status"] for d in both) == ["completed", "in_progress"]
    assert Dataset.list_datasets(tags=["nope"]) == []


# -- metadata -----------------------------------------------------------------------------------
def test_metadata_dicts_and_json_values(tmp_path):
    ds = final("ds", write_tree(tmp_path / "a", {"a": "a"}))
    ds.set_metadata({"classes": ["cat", "dog"], "n": 2})
    ds.set_metadata([1, 2, 3], metadata_name="counts")
    again = Dataset.get(ds.id)
    assert again.get_metadata() == {"classes": ["cat", "dog"], "n": 2}
    assert again.get_metadata("counts") == [1, 2, 3] and again.get_metadata("missing") is None
    with pytest.raises(UsageError, match="JSON-serialisable"):
        ds.set_metadata(object())
    with pytest.raises(UsageError, match="JSON-serialisable"):
        ds.set_metadata({"x": float("nan")})


def test_metadata_pandas_dataframe_round_trips(tmp_path):
    pandas = pytest.importorskip("pandas", reason="pandas is an optional dependency of get_metadata")
    ds = final("ds", write_tree(tmp_path / "a", {"a": "a"}))
    frame = pandas.DataFrame({"file": ["a", "b"], "label": [0, 1], "score": [0.5, 0.25]})
    ds.set_metadata(frame, metadata_name="labels")
    got = Dataset.get(ds.id).get_metadata("labels")
    pandas.testing.assert_frame_equal(got, frame)


# -- external files -----------------------------------------------------------------------------
def test_add_external_files_and_link_entries(tmp_path, env):
    ext = write_tree(tmp_path / "remote", {"img/1.jpg": "one", "img/2.jpg": "two", "notes.txt": "n"})
    ds = Dataset.create(dataset_name="ds", dataset_project="proj")
    assert ds.add_external_files(f"file://{ext}", wildcard="*.jpg", dataset_path="pics") == 2
    assert ds.add_external_files(str(ext / "notes.txt")) == 1  # a single file, plain path
    ds.add_files(write_tree(tmp_path / "local", {"local.txt": "l"}))
    ds.finalize(auto_upload=True)
    links = ds.link_entries_dict
    assert set(links) == {"pics/img/1.jpg", "pics/img/2.jpg", "notes.txt"}
    mtime = (ext / "notes.txt").stat().st_mtime_ns  # what the folder says of it; not read (ClearML)
    assert links["notes.txt"] == LinkEntry(
        f"file://{ext}/notes.txt", "notes.txt", ds.id, 1, None, f'{{"mtime_ns":"{mtime}"}}'
    )
    assert set(ds.file_entries_dict) == {"local.txt"}
    shutil.rmtree(env.cache)
    assert read_tree(ds.get_local_copy()) == {
        "pics/img/1.jpg": b"one",
        "pics/img/2.jpg": b"two",
        "notes.txt": b"n",
        "local.txt": b"l",
    }
    child = Dataset.create(dataset_name="ds", dataset_project="proj", parent_datasets=[ds])
    assert child.remove_files(f"file://{ext}/img/*") == 2
    child.finalize(auto_upload=True)
    assert sorted(read_tree(child.get_local_copy())) == ["local.txt", "notes.txt"]


def test_the_package_root_lists_exactly_the_names_it_serves():
    import clearml_data

    assert sorted(clearml_data.__all__) == sorted([*clearml_data._PUBLIC, "__version__"])
    for name in clearml_data.__all__:
        assert getattr(clearml_data, name) is not None
