"""What a command leaves when it fails or has nothing to do, through both faces.

A failed command leaves no new draft behind and the current dataset as it was; an add of
several items (and a remove of several patterns) is all or nothing; a second close says the version is already final; a
source file gone or changed before the upload gets a message that says what to do; the
cache size limit holds after a close as after a get.
"""

from __future__ import annotations

import os

import pytest

from clearml_data import Dataset, DatasetStateError, IntegrityError, UsageError
from clearml_data.config import CurrentDataset, Settings
from clearml_data.service import Service
from clearml_data.testing import read_tree, write_tree

MiB = 1024 * 1024


def _ids(cli, *extra: str) -> list[str]:
    return [d["id"] for d in cli("search", "--not-only-completed", "--json", *extra).json["data"]]


def _current() -> str | None:
    return CurrentDataset(Settings.load()).get()


# -- a failed command leaves no draft -------------------------------------------------------
def test_a_failed_sync_leaves_no_draft_and_the_current_dataset_as_it_was(cli, tmp_path):
    assert cli("create", "--project", "p", "--name", "mine").code == 0
    mine = _current()
    res = cli("sync", "--project", "P", "--name", "N", "--folder", tmp_path / "missing")
    assert res.code == 1 and "no such folder" in res.err and "Traceback" not in res.err
    assert _ids(cli) == [mine]  # no draft P/N, not even for a moment made current
    assert _current() == mine
    # a later plain sync goes into the draft that was current, never into a leftover
    src = write_tree(tmp_path / "src", {"a.txt": "a"})
    assert cli("sync", "--folder", src, "--skip-close").code == 0
    assert cli("list", "--id", mine, "--json").json["data"]["total_files"] == 1


def test_a_sync_whose_close_fails_drops_its_draft_and_keeps_what_was_stored(cli, tmp_path, env):
    cli("create", "--project", "p", "--name", "mine")
    mine = _current()
    src = write_tree(tmp_path / "src", {"a.txt": "a" * 100, "b.txt": "b" * 100})
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the storage folder should be")
    res = cli("sync", "--project", "P", "--name", "N", "--folder", src, "--storage", f"{blocked}/sub")
    assert res.code == 1
    assert _ids(cli) == [mine] and _current() == mine
    # the same sync into a storage that works makes exactly one version
    res = cli("sync", "--project", "P", "--name", "N", "--folder", src, "--json")
    assert res.code == 0 and res.json["data"]["closed"] is True
    assert len(_ids(cli)) == 2


def test_the_api_leaves_no_draft_when_sync_or_create_fails(tmp_path):
    service = Service()
    try:
        with pytest.raises(UsageError, match="no such folder"):
            service.sync(tmp_path / "missing", project="P", name="N")
        with pytest.raises(UsageError, match="not a folder"):
            service.sync(write_tree(tmp_path / "f", {"x": "x"}) / "x", project="P", name="N")
        draft = Dataset.create(dataset_name="d", dataset_project="P")
        with pytest.raises(DatasetStateError, match="not final"):
            Dataset.create(dataset_name="child", dataset_project="P", parent_datasets=[draft.id])
        with pytest.raises(UsageError):
            Dataset.create(dataset_name="bad", dataset_project="P", output_uri="nope://x/y")
        assert [r.id for r in service.search(only_completed=False)] == [draft.id]
    finally:
        service.close()


# -- a multi-path add is all or nothing --------------------------------------------------------
@pytest.mark.parametrize("missing_first", [False, True])
def test_add_of_several_paths_is_all_or_nothing_in_either_order(cli, tmp_path, missing_first):
    good = write_tree(tmp_path / "good", {"a.txt": "a", "sub/b.txt": "b"})
    missing = str(tmp_path / "missing")
    cli("create", "--project", "p", "--name", "d")
    paths = [missing, good] if missing_first else [good, missing]
    res = cli("add", "--files", *paths)
    assert res.code == 1 and "no such file or folder" in res.err
    assert cli("list", "--json").json["data"]["total_files"] == 0
    res = cli("add", "--files", good, write_tree(tmp_path / "more", {"c.txt": "c"}), "-v", "--json")
    assert res.code == 0 and res.json["data"]["added"] == 3
    assert f"{good}: 2 added, 0 modified, 0 unchanged" in res.err
    assert "more: 1 added" in res.err


def test_remove_of_several_patterns_is_all_or_nothing(cli, tmp_path):
    src = write_tree(tmp_path / "src", {"a.txt": "a", "b.txt": "b", "sub/c.txt": "c"})
    cli("create", "--project", "p", "--name", "d")
    assert cli("add", "--files", src).code == 0
    res = cli("remove", "--files", "a.txt", "sub/../../x")
    assert res.code != 0 and "Traceback" not in res.err
    assert cli("list", "--json").json["data"]["total_files"] == 3  # a.txt is still there
    res = cli("remove", "--files", "a.txt", "sub/", "--json")
    assert res.code == 0 and sorted(res.json["data"]["removed"]) == ["a.txt", "sub/c.txt"]
    assert cli("list", "--json").json["data"]["total_files"] == 1


def test_add_of_files_and_links_is_one_write(cli, tmp_path):
    good = write_tree(tmp_path / "good", {"a.txt": "a"})
    outside = write_tree(tmp_path / "outside", {"x.bin": "x"})
    cli("create", "--project", "p", "--name", "d")
    res = cli("add", "--files", good, "--links", f"file://{outside}", f"file://{tmp_path}/nothing-here")
    assert res.code == 1 and "no external file found" in res.err
    assert cli("list", "--json").json["data"]["total_files"] == 0
    res = cli("add", "--files", good, "--links", f"file://{outside}", "--json")
    assert res.code == 0 and res.json["data"]["added"] == 2


def test_api_add_files_takes_a_list_and_adds_all_or_nothing(tmp_path):
    good = write_tree(tmp_path / "good", {"a.txt": "a"})
    ds = Dataset.create(dataset_name="d", dataset_project="p")
    for paths in ([good, tmp_path / "missing"], [tmp_path / "missing", good]):
        with pytest.raises(UsageError, match="no such file or folder"):
            ds.add_files(paths)
        assert ds.list_files() == []
    with pytest.raises(UsageError, match="no external file found"):
        ds.add_external_files([f"file://{good}", f"file://{tmp_path}/nothing-here"])
    assert ds.list_files() == []
    assert ds.add_files([good, write_tree(tmp_path / "more", {"b.txt": "b"})]) == 2


# -- a second close ------------------------------------------------------------------------------
def test_a_second_close_says_the_version_is_already_final(cli, tmp_path):
    src = write_tree(tmp_path / "src", {"a.txt": "a"})
    made = cli("sync", "--project", "p", "--name", "d", "--folder", src, "--json").json["data"]
    for argv in (("close",), ("close", "--id", made["id"])):
        res = cli(*argv)
        assert res.code == 1
        assert f"dataset {made['id']} (p/d version 1.0.0) is already final" in res.err
        assert "no current dataset" not in res.err
    res = cli("add", "--files", src)  # another command names the closed version and what to do
    assert res.code == 1 and made["id"] in res.err and "--parents" in res.err
    res = cli("list")  # one that reads a final version is told how to name it
    assert res.code == 1 and f"pass --id {made['id']} to use it" in res.err


# -- source files gone or changed before the upload ---------------------------------------------------
def test_a_source_file_gone_before_close_says_remove_it_or_put_it_back(cli, tmp_path):
    src = write_tree(tmp_path / "src", {"keep.txt": "k", "gone.txt": "g"})
    cli("create", "--project", "p", "--name", "d")
    cli("add", "--files", src)
    os.unlink(os.path.join(src, "gone.txt"))
    res = cli("close")
    assert res.code == 1
    assert "add the file again" not in res.err
    assert "clearml-data remove --id" in res.err and "--files gone.txt" in res.err
    assert "Dataset.remove_files('gone.txt')" in res.err
    assert cli("remove", "--files", "gone.txt").code == 0  # the advice works
    assert cli("close").code == 0


def test_a_source_file_changed_at_the_same_size_says_its_content_changed(tmp_path):
    src = write_tree(tmp_path / "src", {"big.bin": b"a" * (17 * MiB)})
    ds = Dataset.create(dataset_name="d", dataset_project="p")
    ds.add_files(src)
    with open(os.path.join(src, "big.bin"), "r+b") as fh:
        fh.write(b"b")
    with pytest.raises(IntegrityError) as exc:
        ds.upload()
    text = str(exc.value)
    assert "17825792 -> 17825792" not in text
    assert "its content differs at the same size (17,825,792 bytes)" in text
    assert "SHA-256" in text and "last modified" in text


# -- the cache size limit -------------------------------------------------------------------------------
def test_the_cache_limit_holds_after_close_and_get_still_works(cli, tmp_path, monkeypatch):
    files = {f"big{i}.bin": os.urandom(20 * MiB) for i in range(3)}
    src = write_tree(tmp_path / "src", files)
    monkeypatch.setenv("CLEARML_DATA_CACHE_MAX_SIZE", "10M")
    cli("create", "--project", "p", "--name", "d")
    cli("add", "--files", src)
    made = cli("close", "--json").json["data"]
    usage = cli("cache", "--json").json["data"]
    assert usage["total_bytes"] <= 10 * MiB, usage
    path = cli("get", "--id", made["id"], "--json").json["data"]["path"]
    assert read_tree(path) == files
