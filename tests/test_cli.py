"""The command line, in-process: ClearML's commands, messages, remembered id and errors."""

import os

import pytest

from clearml_data.cli.parser import build_parser
from clearml_data.testing import read_tree, write_tree

ENVELOPE_KEYS = {"clearml_data_result_version", "command", "status", "data", "errors"}


def created_id(res) -> str:
    line = [ln for ln in res.out.splitlines() if ln.startswith("New dataset created id=")][-1]
    return line.split("=", 1)[1]


def test_seed_workflow_verbatim(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_tree(tmp_path / "data_folder", {"a.txt": "a", "b/c.txt": "c"})
    res = cli("create", "--project", "dataset_example", "--name", "initial_version")
    assert res.code == 0, res.err
    assert "Creating a new dataset:" in res.err
    ds_id = created_id(res)
    res = cli("add", "--files", "data_folder")
    assert res.code == 0 and res.out.strip() == "2 files added"
    assert f"Adding files/folder/links to dataset id {ds_id}" in res.err
    res = cli("close")
    assert res.code == 0 and "Dataset closed and finalized" in res.out
    assert (
        f"Finalizing dataset id {ds_id}" in res.err
        and "Pending uploads, starting dataset upload to" in res.err
    )
    from clearml_data import Dataset

    assert read_tree(Dataset.get(dataset_id=ds_id).get_local_copy()) == {"a.txt": b"a", "b/c.txt": b"c"}
    res = cli("get", "--id", ds_id)
    assert res.code == 0 and res.out.startswith("Dataset local copy available for files at: ")


def test_close_clears_the_current_dataset(cli, tmp_path):
    src = write_tree(tmp_path / "d", {"a": "a"})
    cli("create", "--project", "p", "--name", "n")
    assert cli("add", "--files", src).code == 0
    assert cli("close").code == 0
    res = cli("add", "--files", src)
    assert res.code == 1 and "no current dataset" in res.err


def test_explicit_project_name_beats_the_remembered_id(cli, tmp_path):
    src = write_tree(tmp_path / "d", {"a": "a"})
    first = created_id(cli("create", "--project", "p", "--name", "first"))
    cli("add", "--files", src)
    cli("close")
    second = created_id(cli("create", "--project", "p", "--name", "second"))  # now remembered
    res = cli("list", "--project", "p", "--name", "first", "--json")
    assert res.code == 0 and res.json["data"]["id"] == first
    res = cli("delete", "--project", "p", "--name", "first")
    assert res.code == 0 and first in res.out
    assert "Deleting dataset with project=p, name=first" in res.err
    res = cli("list", "--json")  # the remembered id still names the second dataset
    assert res.json["data"]["id"] == second


def test_child_with_parents_sync_and_list(cli, tmp_path):
    src = write_tree(tmp_path / "d", {"keep": "k", "mod": "old", "rm": "r"})
    parent = created_id(cli("create", "--project", "p", "--name", "n"))
    cli("add", "--files", src)
    cli("close")
    (src / "mod").write_text("new")
    (src / "rm").unlink()
    write_tree(src, {"add": "a"})
    res = cli("sync", "--folder", src, "--parents", parent)
    assert res.code == 0, res.err
    assert "Sync completed: 1 files removed, 1 added, 1 modified" in res.out
    assert "Dataset closed and finalized" in res.out
    child = created_id(res)
    res = cli("list", "--id", child, "--json")
    assert [f["path"] for f in res.json["data"]["files"]] == ["add", "keep", "mod"]
    res = cli("list", "--id", child, "--modified")
    assert "Total 2 files" in res.out and "keep" not in res.out
    res = cli("list", "--id", child, "--filter", "k*")
    assert "Total 1 file, 1 bytes" in res.out
    res = cli("search", "--project", "p", "--json")
    versions = sorted(d["version"] for d in res.json["data"])
    assert versions == ["1.0.0", "1.0.1"]
    res = cli("get", "--id", child, "--copy", tmp_path / "copy")
    assert read_tree(tmp_path / "copy") == read_tree(src)


def test_sync_with_no_changes_reverts_the_new_version(cli, tmp_path):
    src = write_tree(tmp_path / "d", {"a": "a"})
    res = cli("sync", "--folder", src, "--project", "p", "--name", "n")
    assert res.code == 0 and "Dataset closed and finalized" in res.out
    parent = created_id(res)
    res = cli("sync", "--folder", src, "--parents", parent)
    assert "Zero modifications on local copy, reverting dataset creation." in res.out
    assert len(cli("search", "--json").json["data"]) == 1


def test_sync_skip_close_keeps_a_draft(cli, tmp_path):
    src = write_tree(tmp_path / "d", {"a": "a"})
    res = cli("sync", "--folder", src, "--project", "p", "--name", "n", "--skip-close")
    ds = created_id(res)
    assert cli("search", "--json").json["data"] == []
    assert cli("search", "--not-only-completed", "--json").json["data"][0]["status"] == "draft"
    res = cli("upload", "--json")
    assert res.code == 0 and res.json["data"]["objects"] == 1
    res = cli("close", "--id", ds, "--disable-upload")
    assert res.code == 0


def test_close_disable_upload_refuses_pending(cli, tmp_path):
    cli("create", "--project", "p", "--name", "n")
    cli("add", "--files", write_tree(tmp_path / "d", {"a": "a"}))
    res = cli("close", "--disable-upload")
    assert res.code == 1 and "pending uploads" in res.err


def test_remove_and_delete_messages(cli, tmp_path):
    cli("create", "--project", "p", "--name", "n")
    cli("add", "--files", write_tree(tmp_path / "d", {"x/a.json": "1", "x/b.json": "2", "c.txt": "3"}))
    res = cli("remove", "--files", "x/")
    assert res.code == 0 and res.out.strip() == "2 files removed"
    res = cli("remove", "--files", "nothing-here")
    assert res.out.strip() == "0 files removed" and "nothing matches" in res.err
    res = cli("delete")
    assert res.code == 0 and "Dataset(s) deleted" in res.out
    res = cli("delete", "--id", "0" * 32)
    assert res.code == 1 and "Dataset(s) deleted" not in res.out  # ClearML's "always deleted" bug


def test_delete_parent_needs_force(cli, tmp_path):
    src = write_tree(tmp_path / "d", {"a": "a"})
    res = cli("sync", "--folder", src, "--project", "p", "--name", "n")
    parent = created_id(res)
    write_tree(src, {"b": "b"})
    cli("sync", "--folder", src, "--parents", parent)
    res = cli("delete", "--id", parent)
    assert res.code == 1 and "child" in res.err and "--force" in res.err
    assert cli("delete", "--id", parent, "--force").code == 0
    res = cli("delete", "--project", "p", "--name", "n", "--entire-dataset")
    assert res.code == 1 and "--force" in res.err
    assert cli("delete", "--project", "p", "--name", "n", "--entire-dataset", "--force").code == 0


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["add", "--id", "0123456789abcdef0123456789abcdef", "--files", "x"], "no dataset with id"),
        (["add", "--id", "../../x", "--files", "x"], "is not a dataset id"),
        (["create", "--name", "n"], "project"),
        (["list"], "no dataset given"),
        (["list", "--project", "nope", "--name", "nope"], "no dataset with"),
        (["get", "--id", "abcdef12"], "no dataset with id"),
        (["create", "--project", "p", "--name", "n", "--storage", "nosuch://bucket"], "no storage driver"),
        (["search", "--name", "("], "not a valid regular expression"),
    ],
)
def test_errors_are_one_line_without_traceback(cli, argv, fragment):
    res = cli(*argv)
    assert res.code == 1
    errors = [ln for ln in res.err.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and fragment in errors[0]
    assert "Traceback" not in res.err + res.out


def test_errors_on_missing_folder_and_final_dataset(cli, tmp_path):
    src = write_tree(tmp_path / "d", {"a": "a"})
    ds = created_id(cli("create", "--project", "p", "--name", "n"))
    res = cli("add", "--files", tmp_path / "missing")
    assert res.code == 1 and "no such file or folder" in res.err
    cli("add", "--files", src)
    cli("close")
    res = cli("add", "--id", ds, "--files", src)
    assert res.code == 1 and "is final" in res.err and "Traceback" not in res.err


def test_json_envelope_is_pinned(cli, tmp_path):
    res = cli("create", "--project", "p", "--name", "n", "--json")
    env = res.json
    assert set(env) == ENVELOPE_KEYS
    assert env["clearml_data_result_version"] == "1" and env["command"] == "create"
    assert env["status"] == "ok" and env["errors"] == []
    assert {"id", "project", "name", "version", "status", "storage", "parents", "tags"} <= set(env["data"])
    res = cli("add", "--files", tmp_path / "missing", "--json")
    env = res.json
    assert res.code == 1 and env["status"] == "error" and env["data"] is None
    assert env["errors"][0]["type"] == "UsageError"
    assert "clearml-data - Dataset Management" not in res.out


def test_catalog_option_and_quiet(cli, tmp_path, env):
    other = tmp_path / "other.db"
    res = cli("create", "--project", "p", "--name", "n", "--catalog", other, "-q")
    assert res.code == 0 and res.err == ""
    assert other.exists()
    assert cli("search", "--not-only-completed", "--json").json["data"] == []
    assert len(cli("--catalog", other, "search", "--not-only-completed", "--json").json["data"]) == 1


def test_doctor_prints_where_things_are(cli, env):
    res = cli("doctor")
    assert res.code == 0
    assert str(env.catalog) in res.out and str(env.cache) in res.out and str(env.storage) in res.out
    assert "SQLite" in res.out and "folder" in res.out
    assert "0 datasets, 0 file rows" in res.out
    cli("create", "--project", "p", "--name", "n")
    assert "1 dataset, 0 file rows" in cli("doctor").out
    data = cli("doctor", "--json").json["data"]
    assert data["catalog"]["source"] == "$CLEARML_DATA_CATALOG"
    assert data["catalog"]["journal_mode"] == "wal"


def test_config_file_overrides_defaults(cli, tmp_path, env, monkeypatch):
    monkeypatch.delenv("CLEARML_DATA_STORAGE")
    (env.root / "config.ini").write_text(f"[clearml-data]\nstorage = {tmp_path / 'from-config'}\n")
    data = cli("doctor", "--json").json["data"]
    assert data["storage"]["url"] == str(tmp_path / "from-config")
    (env.root / "config.ini").write_text("[clearml-data]\nbogus = 1\n")
    res = cli("doctor")
    assert res.code == 1 and "unknown setting" in res.err


def test_every_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    expected = {
        "create",
        "add",
        "remove",
        "upload",
        "close",
        "sync",
        "list",
        "delete",
        "search",
        "get",
        "doctor",
    }
    assert expected <= set(sub.choices)
    for name, p in sub.choices.items():
        text = p.format_help()
        assert p.description and "--catalog" in text and "--json" in text, name


def test_help_and_no_command(cli):
    res = cli("--help")
    assert res.code == 0
    res = cli()
    assert res.code == 2
    res = cli("create")  # argparse: --name is required
    assert res.code == 2


def test_get_link(cli, tmp_path):
    src = write_tree(tmp_path / "d", {"a": "a"})
    ds = created_id(cli("sync", "--folder", src, "--project", "p", "--name", "n"))
    link = tmp_path / "link"
    assert cli("get", "--id", ds, "--link", link).code == 0
    assert os.path.islink(link) and read_tree(link) == {"a": b"a"}
    assert cli("get", "--id", ds, "--link", link).code == 1
    assert cli("get", "--id", ds, "--link", link, "--overwrite").code == 0


@pytest.mark.parametrize(
    "argv",
    [
        ("list", "--version", "1.0.0"),
        ("delete", "--version", "1.0.0"),
        ("list", "--project", "p"),
        ("delete", "--name", "n"),
    ],
)
def test_lookup_needs_both_project_and_name(cli, tmp_path, argv):
    cli("create", "--project", "p", "--name", "n")  # remembered: must not be picked instead
    res = cli(*argv)
    assert res.code == 1 and "--project and --name go together" in res.err
    assert cli("list", "--json").code == 0  # nothing was deleted


@pytest.mark.parametrize("flag", ["--project", "--name"])
def test_sync_needs_both_project_and_name(cli, tmp_path, flag):
    src = write_tree(tmp_path / "d", {"a": "a"})
    res = cli("sync", "--folder", str(src), flag, "x")
    assert res.code == 1 and "both --project and --name" in res.err
    assert cli("search", "--json").json["data"] == []


def test_sync_json_keeps_created_a_boolean(cli, tmp_path):
    src = write_tree(tmp_path / "d", {"a": "a"})
    res = cli("sync", "--folder", str(src), "--project", "p", "--name", "n", "--json")
    data = res.json["data"]
    assert res.code == 0 and data["created"] is True and data["closed"] is True
    assert data["created_at"].startswith("20") and data["finalized_at"]


def test_get_verbose_counts_files_and_bytes(cli, tmp_path):
    src = write_tree(tmp_path / "d", {"a": "abc", "b/c": "de"})
    cli("sync", "--folder", str(src), "--project", "p", "--name", "n")
    ds_id = cli("search", "--json").json["data"][0]["id"]
    res = cli("get", "--id", ds_id, "--verbose", "--json")
    assert res.code == 0 and "2 files, 5 bytes" in res.err
    assert (res.json["data"]["files"], res.json["data"]["bytes"]) == (2, 5)


def test_storage_urls_are_checked_when_the_version_is_created(cli, tmp_path):
    res = cli("create", "--project", "p", "--name", "n", "--storage", "nosuch://bucket/x")
    assert res.code == 1 and "no storage driver for nosuch://" in res.err
    assert cli("search", "--not-only-completed", "--json").json["data"] == []


def test_debug_logging_stays_out_of_third_party_loggers(cli, tmp_path):
    import logging

    cli("--debug", "doctor")
    assert logging.getLogger("clearml_data").level == logging.DEBUG
    assert logging.getLogger("botocore").getEffectiveLevel() >= logging.WARNING
    logging.getLogger("clearml_data").setLevel(logging.NOTSET)
