"""One behaviour under both faces: what ``clearml-data`` does and what ``Dataset`` does are
the same service operation (close, sync, remove, delete, verify, writable copies), so the
two agree on results and on errors."""

import os

import pytest

from clearml_data import Dataset, DatasetStateError, UsageError
from clearml_data.testing import read_tree, write_tree


def _error(res) -> str:
    """The one error line of a failed command, without the "Error: " prefix."""
    assert res.code == 1, res.err
    return next(line for line in res.err.splitlines() if line.startswith("Error: "))[len("Error: ") :]


def _draft(name, src=None, **kw):
    ds = Dataset.create(dataset_name=name, dataset_project="proj", **kw)
    if src is not None:
        ds.add_files(src)
    return ds


# -- sync ---------------------------------------------------------------------------------
def test_sync_folder_counts_what_cli_sync_counts(cli, tmp_path):
    src = write_tree(tmp_path / "src", {"a": "a", "b": "b", "dir/c": "c"})
    res = cli("sync", "--folder", src, "--project", "proj", "--name", "by-cli", "--skip-close", "--json")
    by_cli = res.json["data"]
    ds = _draft("by-api")
    assert ds.sync_folder(src) == (by_cli["removed"], by_cli["added"], by_cli["modified"]) == (0, 3, 0)

    write_tree(src, {"a": "changed", "new": "n"})
    os.remove(os.path.join(src, "b"))
    by_cli = cli("sync", "--folder", src, "--id", by_cli["id"], "--skip-close", "--json").json["data"]
    assert ds.sync_folder(src) == (by_cli["removed"], by_cli["added"], by_cli["modified"]) == (1, 1, 1)
    assert sorted(ds.list_files()) == ["a", "dir/c", "new"]
    assert not ds.is_final()  # the API's sync leaves the draft open, as ClearML's sync_folder does


def test_sync_folder_into_a_final_version_fails_as_the_cli_does(cli, tmp_path):
    src = write_tree(tmp_path / "src", {"a": "a"})
    ds = _draft("ds", src)
    ds.finalize(auto_upload=True)
    with pytest.raises(DatasetStateError) as exc:
        ds.sync_folder(src)
    assert _error(cli("sync", "--folder", src, "--id", ds.id)) == str(exc.value)


def test_cli_sync_that_changes_nothing_reverts_and_leaves_no_version(cli, tmp_path):
    src = write_tree(tmp_path / "src", {"a": "a"})
    parent = _draft("ds", src)
    parent.finalize(auto_upload=True)
    res = cli("sync", "--folder", src, "--parents", parent.id, "--json")
    assert res.code == 0 and res.json["data"]["reverted"] is True
    assert [d["id"] for d in Dataset.list_datasets(only_completed=False)] == [parent.id]


# -- close ----------------------------------------------------------------------------------
def test_finalize_with_auto_upload_is_cli_close(cli, tmp_path):
    src = write_tree(tmp_path / "src", {"a": "alpha", "sub/b": os.urandom(3000)})
    by_api = _draft("by-api", src)
    assert by_api.is_dirty()
    assert by_api.finalize(auto_upload=True) and by_api.is_final()
    other = write_tree(tmp_path / "other", {"a": "another", "sub/b": os.urandom(3000)})
    by_cli = cli("create", "--project", "proj", "--name", "by-cli", "--json").json["data"]["id"]
    cli("add", "--files", other)
    closed = cli("close", "--json").json["data"]
    assert closed["status"] == "final" and closed["upload"]["files"] == 2
    assert read_tree(by_api.get_local_copy()) == read_tree(src)
    assert read_tree(Dataset.get(by_cli).get_local_copy()) == read_tree(other)
    # nothing pending: both close without an upload step
    again = _draft("again", src)
    assert again.finalize(auto_upload=False) and again.is_final()


def test_pending_uploads_refused_with_one_message_by_both_faces(cli, tmp_path):
    src = write_tree(tmp_path / "src", {"a": "a"})
    ds = _draft("ds", src)
    with pytest.raises(DatasetStateError, match="pending uploads") as exc:
        ds.finalize()
    assert not ds.finalize(raise_on_error=False)
    assert _error(cli("close", "--id", ds.id, "--disable-upload")) == str(exc.value)
    assert not ds.is_final()


def test_closing_a_final_version_fails_with_one_message(cli, tmp_path):
    ds = _draft("ds", write_tree(tmp_path / "src", {"a": "a"}))
    ds.finalize(auto_upload=True)
    with pytest.raises(DatasetStateError, match="is already final") as exc:
        ds.finalize()
    assert _error(cli("close", "--id", ds.id)) == str(exc.value)
    with pytest.raises(DatasetStateError, match="is final") as up:
        ds.upload()
    assert _error(cli("upload", "--id", ds.id)) == str(up.value)


# -- remove ---------------------------------------------------------------------------------
def test_remove_files_takes_a_url_for_external_files_as_cli_remove(cli, tmp_path):
    outside = write_tree(tmp_path / "outside", {"x.bin": "x", "y.bin": "y"})
    url = f"file://{outside}"
    src = write_tree(tmp_path / "src", {"local.txt": "l"})
    for name in ("by-api", "by-cli"):
        ds = _draft(name, src)
        ds.add_external_files(url)
        assert sorted(ds.list_files()) == ["local.txt", "x.bin", "y.bin"]
    by_api = Dataset.get(dataset_project="proj", dataset_name="by-api")
    by_cli = Dataset.get(dataset_project="proj", dataset_name="by-cli")
    assert by_api.remove_files(f"{url}/x.bin") == 1
    res = cli("remove", "--id", by_cli.id, "--files", f"{url}/x.bin", "--json")
    assert res.json["data"]["removed"] == ["x.bin"]
    assert sorted(by_api.list_files()) == sorted(by_cli.list_files()) == ["local.txt", "y.bin"]
    assert by_api.remove_files("*.txt") == 1 and by_api.list_files() == ["y.bin"]


# -- delete ---------------------------------------------------------------------------------
def test_delete_entire_dataset_refused_without_force_with_one_message(cli, tmp_path):
    ds = _draft("ds", write_tree(tmp_path / "src", {"a": "a"}))
    ds.finalize(auto_upload=True)
    _draft("ds", parent_datasets=[ds.id])
    with pytest.raises(UsageError, match="force") as exc:
        Dataset.delete(dataset_project="proj", dataset_name="ds", entire_dataset=True)
    # one message, each face naming its own way to say it: the parameter, the flag
    assert str(exc.value) == "deleting every version of a dataset needs force"
    by_cli = _error(cli("delete", "--project", "proj", "--name", "ds", "--entire-dataset"))
    assert by_cli == "deleting every version of a dataset needs --force"
    assert len(Dataset.list_datasets(only_completed=False)) == 2
    deleted = Dataset.delete(dataset_project="proj", dataset_name="ds", entire_dataset=True, force=True)
    assert len(deleted) == 2


# -- reading --------------------------------------------------------------------------------
def test_writable_copy_is_a_new_child_draft(tmp_path):
    ds = _draft("ds", write_tree(tmp_path / "src", {"a": "a"}), dataset_tags=["t"])
    ds.finalize(auto_upload=True)
    child = Dataset.get(dataset_id=ds.id, writable_copy=True)
    assert child.id != ds.id and not child.is_final()
    assert (child.parents, child.name, child.project, child.tags) == ([ds.id], "ds", "proj", ["t"])
    assert child.list_files() == ["a"]


def test_file_entries_of_a_draft_name_their_local_source(tmp_path):
    src = write_tree(tmp_path / "src", {"a": "a", "b/c": "cc"})
    ds = _draft("ds", src)
    ds.add_external_files(f"file://{write_tree(tmp_path / 'outside', {'x': 'x'})}")
    entries = ds.file_entries_dict
    assert sorted(entries) == ["a", "b/c"]  # external files are link entries
    assert entries["b/c"].local_path == os.path.join(src, "b", "c") and entries["b/c"].size == 2
    assert list(ds.link_entries_dict) == ["x"]
    ds.finalize(auto_upload=True)
    assert all(e.local_path is None for e in ds.file_entries)


def test_verify_dataset_hash_and_cli_verify_find_the_same_damage(cli, tmp_path):
    ds = _draft("ds", write_tree(tmp_path / "src", {"a": "alpha", "b": "beta"}))
    ds.finalize(auto_upload=True)
    assert ds.verify_dataset_hash() == []
    copy = ds.get_mutable_local_copy(tmp_path / "copy")
    with open(os.path.join(copy, "b"), "w") as f:
        f.write("BETA")
    assert ds.verify_dataset_hash(copy) == ["b"]
    res = cli("verify", "--id", ds.id, "--folder", copy, "--json")
    assert res.code == 1 and [p["path"] for p in res.json["data"]["problems"]] == ["b"]
    assert ds.verify_dataset_hash(copy, skip_hash=True) == []  # same size: only a hash finds it


def test_cli_get_reports_what_the_copy_holds(cli, tmp_path):
    ds = _draft("ds", write_tree(tmp_path / "src", {"a": "alpha", "b/c": "12345"}))
    ds.finalize(auto_upload=True)
    got = cli("get", "--id", ds.id, "--link", tmp_path / "here", "--json").json["data"]
    assert (got["files"], got["bytes"]) == (2, 10)
    assert os.path.islink(tmp_path / "here")
    assert read_tree(tmp_path / "here") == {"a": b"alpha", "b/c": b"12345"}
    res = cli("get", "--id", ds.id, "--link", tmp_path / "here")
    assert res.code == 1 and "already exists" in res.err
    assert cli("get", "--id", ds.id, "--link", tmp_path / "here", "--overwrite").code == 0
    part = cli("get", "--id", ds.id, "--part", "0", "--num-parts", "2", "--json").json["data"]
    other = cli("get", "--id", ds.id, "--part", "1", "--num-parts", "2", "--json").json["data"]
    assert part["files"] + other["files"] == 2 and part["bytes"] + other["bytes"] == 10


# -- plugins ----------------------------------------------------------------------------------
def test_plugins_and_doctor_report_the_same_plugins(cli):
    listed = cli("plugins", "--json").json["data"]
    doctor = cli("doctor", "--json").json["data"]
    assert [(p["name"], p["package"], p["status"]) for p in listed] == [
        (p["name"], p["package"], p["status"]) for p in doctor["plugins"]
    ]
    schemes = {s: p["name"] for p in listed for s in p["schemes"]}
    assert schemes == doctor["drivers"] and schemes["file"] == "folder"
