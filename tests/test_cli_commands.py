"""The rest of ClearML's commands: verify, publish, compare, squash, set-description, rename,
move, external links, cache and plugins — their messages, exit codes and JSON data."""

import os

import pytest

from clearml_data.testing import read_tree, write_tree


def make_version(cli, folder, *extra, project="p", name="n") -> str:
    res = cli("sync", "--folder", str(folder), "--project", project, "--name", name, *extra, "--json")
    assert res.code == 0, res.err
    return res.json["data"]["id"]


def stored_files(env):
    """The stored contents (objects and packs; not the versions' manifests)."""
    return sorted(p for p in env.storage.rglob("*") if p.is_file() and "manifests" not in p.parts)


def test_verify_storage_names_damaged_and_missing_files(cli, tmp_path, env):
    big = os.urandom(17 * 1024 * 1024)
    src = write_tree(tmp_path / "d", {"a.txt": "alpha", "b.txt": "beta", "big.bin": big})
    ds = make_version(cli, src)
    res = cli("verify", "--id", ds)
    assert res.code == 0 and "Dataset verification completed successfully, no errors found." in res.out
    pack = next(p for p in stored_files(env) if p.suffix == ".pack")
    obj = next(p for p in stored_files(env) if "objects" in p.parts)
    data = bytearray(pack.read_bytes())
    data[0] ^= 0xFF  # flip a bit of the first packed file
    os.chmod(pack, 0o644)
    pack.write_bytes(bytes(data))
    os.unlink(obj)
    res = cli("verify", "--id", ds, "--json")
    assert res.code == 1 and res.json["status"] == "failed"
    problems = {p["path"]: p["problem"] for p in res.json["data"]["problems"]}
    assert problems == {"a.txt": "hash", "big.bin": "missing"}
    res = cli("verify", "--id", ds, "--filesize")  # sizes only: the flipped bit goes unseen
    assert res.code == 1 and "big.bin: missing" in res.out and "a.txt" not in res.out
    assert "Dataset verification completed, 1 errors found!" in res.out


def test_verify_folder(cli, tmp_path):
    src = write_tree(tmp_path / "d", {"a.txt": "alpha", "sub/b.txt": "beta"})
    ds = make_version(cli, src)
    copy = tmp_path / "copy"
    assert cli("get", "--id", ds, "--copy", str(copy)).code == 0
    assert cli("verify", "--id", ds, "--folder", str(copy)).code == 0
    (copy / "a.txt").write_text("ALPHA")  # same size, other bytes
    (copy / "sub" / "b.txt").unlink()
    res = cli("verify", "--id", ds, "--folder", str(copy))
    assert res.code == 1
    assert "a.txt: hash" in res.out and "sub/b.txt: missing" in res.out
    assert cli("verify", "--id", ds, "--folder", str(copy), "--filesize").out.count("\n") == 2


def test_publish_needs_a_final_version(cli, tmp_path):
    draft = cli("create", "--project", "p", "--name", "n", "--json").json["data"]["id"]
    res = cli("publish", "--id", draft)
    assert res.code == 1 and "not final" in res.err
    cli("add", "--files", str(write_tree(tmp_path / "d", {"a": "a"})))
    cli("close")
    res = cli("publish", "--id", draft)
    assert res.code == 0 and res.out.strip() == "Dataset published"
    assert f"Publishing dataset id {draft}" in res.err
    assert cli("search", "--json").json["data"][0]["status"] == "published"
    assert cli("publish").code == 2  # --id is required, as in ClearML


def test_compare_counts_and_lists(cli, tmp_path):
    src = write_tree(tmp_path / "d", {"keep": "k", "change": "1", "drop": "x"})
    v1 = make_version(cli, src)
    (src / "change").write_text("2")
    (src / "drop").unlink()
    (src / "new1").write_text("n")
    (src / "new2").write_text("m")
    v2 = make_version(cli, src, "--parents", v1)
    res = cli("compare", "--source", v1, "--target", v2)
    assert res.code == 0
    assert res.out.strip() == "Comparison summary: 1 file removed, 1 file modified, 2 files added"
    res = cli("compare", "--source", v1, "--target", v2, "-v")
    assert res.out.splitlines()[:7] == [
        "Removed files:",
        "  drop",
        "Modified files:",
        "  change",
        "Added files:",
        "  new1",
        "  new2",
    ]
    data = cli("compare", "--source", v1, "--target", v2, "--json").json["data"]
    assert (data["added"], data["modified"], data["removed"]) == (["new1", "new2"], ["change"], ["drop"])


def test_squash_makes_a_root_version_of_the_merged_view(cli, tmp_path, env):
    a = make_version(cli, write_tree(tmp_path / "a", {"same": "from a", "only_a": "a"}), name="a")
    b = make_version(cli, write_tree(tmp_path / "b", {"same": "from b", "only_b": "b"}), name="b")
    before = stored_files(env)
    res = cli("squash", "--name", "both", "--ids", a, b, "--json")
    assert res.code == 0, res.err
    data = res.json["data"]
    assert data["parents"] == [] and data["status"] == "final" and data["project"] == "p"
    assert stored_files(env) == before  # same storage: nothing copied again
    path = cli("get", "--id", data["id"], "--json").json["data"]["path"]
    assert read_tree(path) == {"same": b"from b", "only_a": b"a", "only_b": b"b"}
    res = cli("squash", "--name", "again", "--ids", b, a)
    assert res.code == 0 and res.out.startswith("Squashing completed, new dataset created id=")
    again = res.out.strip().rsplit("=", 1)[1]
    assert read_tree(cli("get", "--id", again, "--json").json["data"]["path"])["same"] == b"from a"


def test_squash_into_another_storage_copies_the_content(cli, tmp_path, env):
    a = make_version(cli, write_tree(tmp_path / "a", {"x": "x" * 1000, "y": "y"}), name="a")
    other = tmp_path / "other-storage"
    res = cli("squash", "--name", "moved", "--ids", a, "--storage", str(other), "--json")
    assert res.code == 0, res.err
    assert any(p.suffix == ".pack" for p in other.rglob("*"))
    import shutil

    shutil.rmtree(env.storage)  # the copy in the new storage is all that is needed now
    shutil.rmtree(env.cache)
    path = cli("get", "--id", res.json["data"]["id"], "--json").json["data"]["path"]
    assert read_tree(path) == {"x": b"x" * 1000, "y": b"y"}


def test_set_description_rename_and_move(cli, tmp_path):
    v1 = make_version(cli, write_tree(tmp_path / "a", {"a": "a"}))
    res = cli("set-description", "--id", v1, "--description", "the first one")
    assert res.code == 0 and "Setting description 'the first one' to dataset" in res.err
    v2 = make_version(cli, write_tree(tmp_path / "b", {"b": "b"}), "--parents", v1)
    res = cli("rename", "--project", "p", "--name", "n", "--new-name", "m")
    assert res.code == 0 and res.out.startswith("Dataset(s) renamed")
    res = cli("move", "--project", "p", "--name", "m", "--new-project", "q")
    assert res.code == 0 and res.out.startswith("Dataset(s) moved")
    rows = cli("search", "--json").json["data"]
    assert {(r["project"], r["name"], r["id"]) for r in rows} == {("q", "m", v1), ("q", "m", v2)}
    assert [r["description"] for r in rows if r["id"] == v1] == ["the first one"]
    make_version(cli, write_tree(tmp_path / "c", {"c": "c"}), project="q", name="other")
    res = cli("rename", "--project", "q", "--name", "other", "--new-name", "m")
    assert res.code == 1 and "already has a version 1.0.0" in res.err
    res = cli("move", "--project", "nope", "--name", "m", "--new-project", "x")
    assert res.code == 1 and "no dataset" in res.err


def test_external_links_are_registered_in_place_and_fetched_on_get(cli, tmp_path, env):
    ext = write_tree(tmp_path / "bucket", {"x.bin": "external x", "deep/y.bin": "external y"})
    local = write_tree(tmp_path / "d", {"a.txt": "local"})
    cli("create", "--project", "p", "--name", "n")
    res = cli("add", "--files", str(local), "--links", f"file://{ext}", "--dataset-folder", "data")
    assert res.code == 0 and res.out.strip() == "3 files added"
    assert cli("close").code == 0
    ds = cli("search", "--json").json["data"][0]["id"]
    # the external bytes were not copied into the dataset's storage
    assert all(b"external" not in p.read_bytes() for p in stored_files(env))
    files = {f["path"]: f["link"] for f in cli("list", "--id", ds, "--json").json["data"]["files"]}
    assert files == {
        "data/a.txt": None,
        "data/x.bin": f"file://{ext}/x.bin",
        "data/deep/y.bin": f"file://{ext}/deep/y.bin",
    }
    import shutil

    shutil.rmtree(env.cache)
    path = cli("get", "--id", ds, "--json").json["data"]["path"]
    assert read_tree(path) == {
        "data/a.txt": b"local",
        "data/x.bin": b"external x",
        "data/deep/y.bin": b"external y",
    }
    cli("create", "--project", "p", "--name", "n", "--parents", ds)
    res = cli("remove", "--files", f"file://{ext}/deep")
    assert res.code == 0 and res.out.strip() == "1 file removed"
    assert cli("close").code == 0
    # an external file that changed after it was added is caught, not served
    (ext / "x.bin").write_text("changed!!!")
    shutil.rmtree(env.cache)
    res = cli("get", "--id", ds)
    assert res.code == 1 and "file://" + f"{ext}/x.bin changed since it was added (mtime_ns: " in res.err


def test_add_links_errors(cli, tmp_path):
    cli("create", "--project", "p", "--name", "n")
    res = cli("add", "--links", f"file://{tmp_path}/nothing-here")
    assert res.code == 1 and "no external file found" in res.err
    res = cli("add", "--links", "nosuch://bucket/x")
    assert res.code == 1 and "no storage driver for nosuch://" in res.err


def test_global_verbose_works_before_and_after_the_command(cli, tmp_path):
    ds = make_version(cli, write_tree(tmp_path / "d", {"a": "abc"}))
    for argv in (("-v", "get", "--id", ds), ("get", "--id", ds, "-v"), ("--verbose", "get", "--id", ds)):
        res = cli(*argv)
        assert res.code == 0 and "1 file, 3 bytes" in res.err, argv
    assert "1 file, 3 bytes" not in cli("get", "--id", ds).err


def test_cache_info_prune_clear_and_limit(cli, tmp_path, env, monkeypatch):
    v1 = make_version(cli, write_tree(tmp_path / "a", {"a": os.urandom(3000)}), name="a")
    v2 = make_version(cli, write_tree(tmp_path / "b", {"b": os.urandom(5000)}), name="b")
    cli("get", "--id", v1)
    cli("get", "--id", v2)
    info = cli("cache", "--json").json["data"]
    assert info["path"] == str(env.cache) and info["objects"] == 2 and info["total_bytes"] == 8000
    assert {c["name"] for c in info["copies"]} == {v1, v2}
    res = cli("cache", "prune", "--max-size", "6000")
    assert res.code == 0 and res.out.startswith("Cache pruned:")
    info = cli("cache", "--json").json["data"]
    assert [c["name"] for c in info["copies"]] == [v2] and info["total_bytes"] == 5000  # v1 was older
    assert cli("cache", "clear").code == 0
    assert cli("cache", "--json").json["data"]["total_bytes"] == 0
    assert cli("cache", "prune").code == 1  # no size given, none configured
    monkeypatch.setenv("CLEARML_DATA_CACHE_MAX_SIZE", "4K")
    path = cli("get", "--id", v1, "--json").json["data"]["path"]
    cli("get", "--id", v2)  # over the limit: v1's copy and content are pruned automatically
    info = cli("cache", "--json").json["data"]
    assert info["limit_bytes"] == 4096 and info["total_bytes"] == 5000
    assert [c["name"] for c in info["copies"]] == [v2] and not os.path.exists(path)
    assert read_tree(cli("get", "--id", v1, "--json").json["data"]["path"])  # fetched again


def test_plugins_lists_the_folder_driver(cli):
    res = cli("plugins")
    assert res.code == 0 and "file://" in res.out and "clearml-data" in res.out
    data = cli("plugins", "--json").json["data"]
    assert {
        "name": "folder",
        "package": "clearml-data",
        "status": "loaded",
        "schemes": ["file"],
        "error": None,
    }.items() <= next(d for d in data if d["name"] == "folder").items()


@pytest.mark.parametrize(
    "command, data_keys",
    [
        ("verify", {"id", "checked", "bytes", "mode", "problems"}),
        ("compare", {"source", "target", "added", "modified", "removed"}),
        (
            "publish",
            {
                "id",
                "project",
                "name",
                "version",
                "status",
                "storage",
                "parents",
                "tags",
                "description",
                "created_at",
                "finalized_at",
                "file_count",
                "total_size",
            },
        ),
    ],
)
def test_json_data_of_new_commands_is_pinned(cli, tmp_path, command, data_keys):
    ds = make_version(cli, write_tree(tmp_path / "d", {"a": "a"}))
    argv = {
        "verify": ("verify", "--id", ds),
        "compare": ("compare", "--source", ds, "--target", ds),
        "publish": ("publish", "--id", ds),
    }[command]
    res = cli(*argv, "--json")
    assert res.code == 0 and set(res.json["data"]) == data_keys
    assert res.json["command"] == command and res.json["status"] == "ok"


def test_every_command_takes_verbose_after_its_name():
    from clearml_data.cli.parser import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name in commands:
        extra = {
            "create": ["--name", "n"],
            "remove": ["--files", "x"],
            "sync": ["--folder", "f"],
            "publish": ["--id", "x"],
            "compare": ["--source", "a", "--target", "b"],
            "squash": ["--name", "s", "--ids", "a"],
            "set-description": ["--description", "d"],
            "rename": ["--project", "p", "--name", "n", "--new-name", "m"],
            "move": ["--project", "p", "--name", "n", "--new-project", "q"],
            "catalog": ["rebuild"],
            "import-offline": ["session.zip"],
            "cat": ["a.txt"],
        }.get(name, [])
        assert parser.parse_args([name, *extra, "-v"]).verbose is True, name
        assert parser.parse_args(["-v", name, *extra]).verbose is True, name
        assert parser.parse_args([name, *extra]).verbose is False, name


def test_squash_of_a_parent_and_its_child_honours_the_childs_removals(cli, tmp_path):
    src = write_tree(tmp_path / "d", {"keep": "k", "gone": "g"})
    v1 = make_version(cli, src)
    (src / "gone").unlink()
    (src / "new").write_text("n")
    v2 = make_version(cli, src, "--parents", v1)
    res = cli("squash", "--name", "flat", "--ids", v1, v2, "--json", "-v")
    assert res.code == 0 and "2 files, 2 bytes" in res.err
    path = cli("get", "--id", res.json["data"]["id"], "--json").json["data"]["path"]
    assert read_tree(path) == {"keep": b"k", "new": b"n"}


def test_squash_rename_and_move_refuse_what_makes_no_sense(cli, tmp_path):
    draft = cli("create", "--project", "p", "--name", "n", "--json").json["data"]["id"]
    res = cli("squash", "--name", "s", "--ids", draft)
    assert res.code == 1 and "is a draft" in res.err and "close it first" in res.err
    res = cli("rename", "--project", "p", "--name", "n", "--new-name", "n")
    assert res.code == 1 and "already has that name" in res.err
    res = cli("move", "--project", "p", "--name", "n", "--new-project", "p")
    assert res.code == 1 and "already has that project" in res.err
    res = cli("rename", "--project", "p", "--name", "n", "--new-name", "m")
    assert res.out.strip() == "Dataset(s) renamed: 1 version of p/n is now p/m"


def test_link_wildcards_match_the_path_under_the_url(cli, tmp_path):
    ext = write_tree(tmp_path / "raw", {"2024/a.csv": "a", "2023/b.csv": "b"})
    cli("create", "--project", "p", "--name", "n")
    res = cli("add", "--links", str(ext), "--dataset-folder", "tables", "--wildcard", "2024/*", "--json")
    assert res.code == 0 and res.json["data"]["added"] == 1
    files = [f["path"] for f in cli("list", "--json").json["data"]["files"]]
    assert files == ["tables/2024/a.csv"]


def test_a_bad_cache_size_setting_names_itself(cli, env, monkeypatch):
    monkeypatch.setenv("CLEARML_DATA_CACHE_MAX_SIZE", "lots")
    res = cli("search")
    assert res.code == 1
    assert "the cache_max_size setting (from $CLEARML_DATA_CACHE_MAX_SIZE): 'lots' is not a size" in res.err
    monkeypatch.setenv("CLEARML_DATA_CACHE_MAX_SIZE", "1.5G")
    assert "size limit:    1.5 GiB  [$CLEARML_DATA_CACHE_MAX_SIZE]" in cli("doctor").out


def test_cache_prune_counts_local_copies(cli, tmp_path):
    for name in ("a", "b"):
        ds = make_version(cli, write_tree(tmp_path / name, {name: name * 100}), name=name)
        cli("get", "--id", ds)
    assert "2 local copies" in cli("cache", "prune", "--max-size", "0").out
