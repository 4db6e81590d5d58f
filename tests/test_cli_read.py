"""The commands that read part of a version: ``get --files`` (a subset of the files) and
``cat`` (one file, streamed to stdout)."""

from __future__ import annotations

import os
import shutil

from clearml_data import Dataset
from clearml_data.testing import read_tree, write_tree

BIG = 17 * 1024 * 1024  # stored as its own object (16 MiB and more), not packed


def make_version(cli, folder, *extra, project="team/vision", name="raw") -> str:
    res = cli("sync", "--folder", str(folder), "--project", project, "--name", name, *extra, "--json")
    assert res.code == 0, res.err
    return res.json["data"]["id"]


def error_line(res) -> str:
    """The one ``Error:`` line of a failed command (never a traceback)."""
    assert res.code == 1 and "Traceback" not in res.err, res.err
    [line] = [ln for ln in res.err.splitlines() if ln.startswith("Error:")]
    return line


TREE = {
    "train/a.csv": "a,1\n",
    "train/b.csv": "b,2\n",
    "train/img/x.jpg": b"\xff\xd8x",
    "val/c.csv": "c,3\n",
    "README.md": "# readme\n",
}


# -- get --files ----------------------------------------------------------------------------------
def test_get_files_makes_a_copy_of_the_matching_files_only(cli, tmp_path):
    ds = make_version(cli, write_tree(tmp_path / "d", TREE))
    res = cli("get", "--id", ds, "--files", "*.csv", "README.md", "--json")
    assert res.code == 0, res.err
    data = res.json["data"]
    assert read_tree(data["path"]) == {
        "README.md": b"# readme\n",
        "train/a.csv": b"a,1\n",
        "train/b.csv": b"b,2\n",
        "val/c.csv": b"c,3\n",
    }
    assert (data["files"], data["bytes"]) == (4, 4 + 4 + 4 + 9)
    # a folder matches everything below it, and the whole copy is still there, apart
    res = cli("get", "--id", ds, "--files", "train/img", "--json")
    assert read_tree(res.json["data"]["path"]) == {"train/img/x.jpg": b"\xff\xd8x"}
    full = cli("get", "--id", ds, "--json").json["data"]["path"]
    assert len(read_tree(full)) == 5 and full != data["path"]


def test_get_files_is_the_subset_the_python_api_gets(cli, tmp_path):
    ds = make_version(cli, write_tree(tmp_path / "d", TREE))
    by_cli = cli("get", "--id", ds, "--files", "train/*", "--json").json["data"]["path"]
    by_api = Dataset.get(dataset_id=ds).get_local_copy(files=["train/*"], show_progress=False)
    assert by_cli == by_api  # one cached folder for one selection, whichever face asked
    assert sorted(read_tree(by_cli)) == ["train/a.csv", "train/b.csv", "train/img/x.jpg"]


def test_get_files_downloads_only_what_the_subset_needs(cli, tmp_path, env):
    big_a, big_b = os.urandom(BIG), os.urandom(BIG)
    ds = make_version(cli, write_tree(tmp_path / "d", {"a.bin": big_a, "b.bin": big_b, "s.txt": "s"}))
    shutil.rmtree(env.cache)  # the close left both in the cache
    res = cli("get", "--id", ds, "--files", "a.bin", "--json")
    assert res.code == 0, res.err
    assert read_tree(res.json["data"]["path"]) == {"a.bin": big_a}
    usage = cli("cache", "--json").json["data"]
    assert usage["objects"] == 1 and BIG <= usage["object_bytes"] < 2 * BIG


def test_get_files_with_copy_and_with_parts(cli, tmp_path):
    ds = make_version(cli, write_tree(tmp_path / "d", TREE))
    copy = tmp_path / "copy"
    res = cli("get", "--id", ds, "--files", "train", "--copy", str(copy))
    assert res.code == 0, res.err
    assert sorted(read_tree(copy)) == ["train/a.csv", "train/b.csv", "train/img/x.jpg"]
    assert os.access(copy / "train" / "a.csv", os.W_OK)  # a real, writable copy
    # the parts split the subset: together they hold it once
    got = []
    for part in range(2):
        res = cli("get", "--id", ds, "--files", "*.csv", "--part", part, "--num-parts", "2", "--json")
        assert res.code == 0, res.err
        got += sorted(read_tree(res.json["data"]["path"]))
    assert got == ["train/a.csv", "train/b.csv", "val/c.csv"]


def test_get_files_refuses_a_pattern_that_matches_nothing(cli, tmp_path, env):
    ds = make_version(cli, write_tree(tmp_path / "d", TREE))
    copy = tmp_path / "copy"
    line = error_line(cli("get", "--id", ds, "--files", "*.csv", "*.parquet", "--copy", str(copy)))
    assert f"no file of dataset {ds} matches '*.parquet'" in line
    assert f"clearml-data list --id {ds}" in line
    assert not copy.exists()
    assert cli("get", "--id", ds, "--files").code == 2  # --files needs at least one pattern
