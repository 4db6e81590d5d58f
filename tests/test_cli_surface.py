"""The commands around a version: ``show``, ``get`` by project/name/version, parents named by
``project/name[@version]``, the write check of ``create --storage``, the widths of ``list``,
``-v`` after every command, and the symbolic link rule of ``add`` and ``sync``."""

from __future__ import annotations

import os

import pytest

from clearml_data import Dataset
from clearml_data.cli.parser import build_parser
from clearml_data.errors import UnsafePathError, UsageError
from clearml_data.testing import read_tree, write_tree

from cli_checks import error_line, make_version


def all_ids(cli) -> list[str]:
    return [d["id"] for d in cli("search", "--not-only-completed", "--json").json["data"]]


# -- show --------------------------------------------------------------------------------------
def test_show_summarises_one_version(cli, tmp_path, env):
    src = write_tree(tmp_path / "d", {"a.txt": "alpha", "sub/b.txt": "beta"})
    v1 = make_version(cli, src, "--tags", "raw", "daily")
    (src / "c.txt").write_text("gamma!")
    v2 = make_version(cli, src, "--parents", v1)
    Dataset.get(dataset_id=v2).set_metadata({"rows": 3}, metadata_name="stats")
    assert cli("set-description", "--id", v2, "--description", "second cut").code == 0

    res = cli("show", "--project", "team/vision", "--name", "raw")  # the latest version
    assert res.code == 0, res.err
    lines = dict(ln.split(":", 1) for ln in res.out.splitlines())
    fields = {k: v.strip() for k, v in lines.items()}
    assert fields["id"] == v2 and fields["dataset"] == "team/vision/raw"
    assert fields["version"] == "1.0.1" and fields["status"].startswith("final (finalized ")
    assert fields["parents"] == f"{v1} (team/vision/raw 1.0.0)"
    assert fields["files"] == "3 (15 B)"
    assert fields["changes"] == "1 added, 0 modified, 0 removed (against the parents)"
    assert fields["storage"] == str(env.storage)
    assert fields["description"] == "second cut" and fields["tags"] == "-" and fields["metadata"] == "stats"

    data = cli("show", "--project", "team/vision", "--name", "raw", "--version", "1.0.0", "--json").json
    assert data["command"] == "show" and data["status"] == "ok"
    d = data["data"]
    assert d["id"] == v1 and d["tags"] == ["raw", "daily"] and d["parents"] == []
    assert (d["file_count"], d["total_size"], d["metadata_names"]) == (2, 9, [])
    by_id = cli("show", "--id", v2, "--json").json["data"]
    assert by_id["parent_versions"] == [
        {"id": v1, "project": "team/vision", "name": "raw", "version": "1.0.0", "status": "final"}
    ]


def test_show_counts_a_draft_as_it_is_now(cli, tmp_path):
    draft = cli("create", "--project", "p", "--name", "n", "--json").json["data"]["id"]
    assert cli("add", "--files", str(write_tree(tmp_path / "d", {"a": "12345", "b": "678"}))).code == 0
    res = cli("show")  # the current dataset
    assert res.code == 0 and f"id:          {draft}" in res.out
    assert "status:      draft" in res.out and "files:       2 (8 B)" in res.out
    assert "parents:     none" in res.out and "changes:" not in res.out
    line = error_line(cli("show", "--project", "p"))
    assert "--project and --name go together" in line
    assert "no dataset with" in error_line(cli("show", "--project", "p", "--name", "other"))


# -- get by project/name/version ---------------------------------------------------------------
def test_get_takes_project_name_and_version(cli, tmp_path):
    src = write_tree(tmp_path / "d", {"a.txt": "one"})
    v1 = make_version(cli, src)
    (src / "a.txt").write_text("two")
    v2 = make_version(cli, src, "--parents", v1)
    draft = cli("create", "--parents", v2, "--name", "raw", "--json").json["data"]["id"]
    assert draft not in (v1, v2)
    # the latest *final* version: the newer draft is not a local copy's source
    res = cli("get", "--project", "team/vision", "--name", "raw", "--json")
    assert res.code == 0, res.err
    assert res.json["data"]["id"] == v2 and read_tree(res.json["data"]["path"]) == {"a.txt": b"two"}
    res = cli("get", "--project", "team/vision", "--name", "raw", "--version", "1.0.0", "--json")
    assert res.json["data"]["id"] == v1 and read_tree(res.json["data"]["path"]) == {"a.txt": b"one"}
    assert "--version needs both" in error_line(cli("get", "--version", "1.0.0"))


# -- parents by reference ----------------------------------------------------------------------
def test_parents_accept_project_name_and_version_references(cli, tmp_path):
    src = write_tree(tmp_path / "d", {"a.txt": "one"})
    v1 = make_version(cli, src)
    (src / "b.txt").write_text("bee")
    v2 = make_version(cli, src, "--parents", v1)
    other = make_version(cli, write_tree(tmp_path / "o", {"o.txt": "o"}), project="misc", name="extra")

    # the latest final version; the last / ends the (nested) project
    res = cli("create", "--name", "child", "--parents", "team/vision/raw", "--json")
    assert res.code == 0, res.err
    assert res.json["data"]["parents"] == [v2] and res.json["data"]["project"] == "team/vision"
    # an explicit version, mixed with an id, in order
    res = cli("create", "--name", "mix", "--parents", "team/vision/raw@1.0.0", other, "--json")
    assert res.json["data"]["parents"] == [v1, other] and res.json["data"]["project"] == "misc"
    # sync takes the same references (and names the new version after the last parent)
    res = cli("sync", "--folder", str(src), "--parents", "misc/extra", "--skip-close", "--json")
    assert res.code == 0, res.err
    assert cli("show", "--id", res.json["data"]["id"], "--json").json["data"]["parents"] == [other]

    # the Python API takes them too
    api = Dataset.create(dataset_name="api", parent_datasets=["team/vision/raw@1.0", v2])
    assert cli("show", "--id", api.id, "--json").json["data"]["parents"] == [v1, v2]

    before = all_ids(cli)
    assert "no completed dataset with project='team/vision', name='nope'" in error_line(
        cli("create", "--name", "x", "--parents", "team/vision/nope")
    )
    assert "version='9.9'" in error_line(cli("create", "--name", "x", "--parents", "team/vision/raw@9.9"))
    for bad in ("/raw", "team/", "team/vision/raw@"):
        line = error_line(cli("create", "--name", "x", "--parents", bad))
        assert "neither a dataset id nor a project/name[@version] reference" in line
        assert "the last / ends the project" in line
    assert all_ids(cli) == before  # no failed create left a draft


# -- create --storage checks the storage -------------------------------------------------------
def test_create_write_check_leaves_nothing_in_the_storage(cli, tmp_path):
    store = tmp_path / "store"
    res = cli("create", "--project", "p", "--name", "n", "--storage", str(store))
    assert res.code == 0, res.err
    assert [p for p in store.rglob("*") if p.is_file()] == []
    # a file where the storage folder should be: refused before any draft
    (tmp_path / "plain").write_text("not a folder")
    before = all_ids(cli)
    for storage in (tmp_path / "plain", tmp_path / "plain" / "below"):
        line = error_line(cli("create", "--project", "p", "--name", "m", "--storage", str(storage)))
        assert f"storage {storage} cannot be written" in line and "no dataset was created" in line
    assert all_ids(cli) == before
    # sync checks a storage it is given for the version it creates, before it hashes anything
    src = write_tree(tmp_path / "d", {"a": "a"})
    line = error_line(
        cli(
            "sync",
            "--folder",
            str(src),
            "--project",
            "p",
            "--name",
            "s",
            "--storage",
            str(tmp_path / "plain"),
        )
    )
    assert "cannot be written" in line
    assert all_ids(cli) == before
    # without --storage the configured storage is not probed (it may not exist before the first upload)
    assert cli("create", "--project", "p", "--name", "m").code == 0


# -- list widths -------------------------------------------------------------------------------
def test_list_columns_fit_their_content(cli, tmp_path):
    make_version(cli, write_tree(tmp_path / "d", {"a": "x", "bb": "yy"}))
    res = cli("list", "--project", "team/vision", "--name", "raw")
    rows = res.out.splitlines()
    header, rule, *files, total = rows
    assert header == "file name | size | hash"
    # the widest cell of each column sets its width: "file name", "size", a 64-digit hash
    assert max(len(r) for r in [header, *files]) == len("file name") + len(" | size | ") + 64
    assert len(rule) == len(files[0]) and total == "Total 2 files, 3 bytes"


# -- -v after every command --------------------------------------------------------------------
def test_every_command_accepts_v_after_its_name(cli):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert "-v" in p._option_string_actions, name
    assert cli("search", "-v").code == 0 and cli("doctor", "-v").code == 0 and cli("cache", "-v").code == 0


# -- symbolic links ------------------------------------------------------------------------------
def test_links_that_leave_the_folder_need_follow_symlinks(cli, tmp_path):
    outside = write_tree(tmp_path / "outside", {"secret.txt": "far away", "dir/x.txt": "x", "dir/y/z": "z"})
    src = write_tree(tmp_path / "src", {"a.txt": "a", "sub/real.txt": "real"})
    os.symlink(outside / "secret.txt", src / "link.txt")
    os.symlink(outside / "dir", src / "sub" / "dirlink")
    os.symlink("real.txt", src / "sub" / "alias.txt")  # inside: always its content
    os.symlink(src / "sub", src / "subagain")  # a folder inside: skipped unless following
    draft = cli("create", "--project", "p", "--name", "n", "--json").json["data"]["id"]

    line = error_line(cli("add", "--files", str(src)))
    assert "outside the folder being added" in line and "--follow-symlinks" in line
    assert cli("list", "--json").json["data"]["files"] == []  # nothing recorded

    res = cli("add", "--files", str(src), "--follow-symlinks")
    assert res.code == 0, res.err
    files = {f["path"]: f["size"] for f in cli("list", "--id", draft, "--json").json["data"]["files"]}
    assert sorted(files) == [
        "a.txt",
        "link.txt",
        "sub/alias.txt",
        "sub/dirlink/x.txt",
        "sub/dirlink/y/z",
        "sub/real.txt",
        "subagain/alias.txt",
        "subagain/dirlink/x.txt",
        "subagain/dirlink/y/z",
        "subagain/real.txt",
    ]
    assert files["link.txt"] == len("far away")

    # a folder link back into a folder the walk is in: refused, even when following
    os.symlink(src, outside / "dir" / "back")
    line = error_line(cli("add", "--files", str(src), "--follow-symlinks"))
    assert "a folder it is inside (a loop)" in line
    os.unlink(outside / "dir" / "back")
    # a broken link: refused either way
    os.symlink(outside / "missing", src / "gone.txt")
    assert "broken symbolic link" in error_line(cli("add", "--files", str(src), "--follow-symlinks"))


def test_follow_symlinks_in_sync_and_the_api(cli, tmp_path):
    outside = write_tree(tmp_path / "outside", {"w.bin": "weights"})
    src = write_tree(tmp_path / "src", {"a.txt": "a"})
    os.symlink(outside / "w.bin", src / "w.bin")
    before = all_ids(cli)
    line = error_line(cli("sync", "--folder", str(src), "--project", "p", "--name", "n"))
    assert "--follow-symlinks" in line
    assert all_ids(cli) == before
    res = cli("sync", "--folder", str(src), "--project", "p", "--name", "n", "--follow-symlinks", "--json")
    assert res.code == 0 and res.json["data"]["added"] == 2, res.err

    ds = Dataset.create(dataset_name="api", dataset_project="p")
    with pytest.raises(UnsafePathError, match="follow_symlinks=True"):
        ds.add_files(src)
    assert ds.add_files(src, follow_symlinks=True) == 2
    other = Dataset.create(dataset_name="api2", dataset_project="p")
    with pytest.raises(UsageError):
        other.sync_folder(src)
    assert other.sync_folder(src, follow_symlinks=True) == (0, 2, 0)
