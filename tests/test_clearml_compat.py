"""ClearML Data's behaviour, case by case: where ours matches it, and where it keeps a
deliberate difference (docs/user-guide.md, "Differences from ClearML Data").

The tree is the one the comparison with ClearML 2.1.12 ran on: ``src`` holds a.txt, b.csv,
img.jpg, sub/c.txt, sub/d.csv, sub/deeper/e.jpg and sub/deeper/f.csv; ``src2`` is the same
without b.csv, with a.txt changed and new.txt added.
"""

import os
from pathlib import Path

import pytest

from clearml_data import Dataset, DatasetNotFoundError, DatasetStateError, UsageError
from clearml_data.cli.parser import build_parser
from clearml_data.cli.render import FLAGS
from clearml_data.errors import ClearMLDataError, UnsafePathError
from clearml_data.paths import glob_matches
from clearml_data.testing import read_tree, write_tree

ALL = ["a.txt", "b.csv", "img.jpg", "sub/c.txt", "sub/d.csv", "sub/deeper/e.jpg", "sub/deeper/f.csv"]
TREE = {
    "a.txt": "a-text",
    "b.csv": "b,c",
    "img.jpg": "jpeg-ish",
    "sub/c.txt": "c-text",
    "sub/d.csv": "d,e",
    "sub/deeper/e.jpg": "e-jpg",
    "sub/deeper/f.csv": "f,g",
}


@pytest.fixture
def src(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_tree(tmp_path / "src", TREE)
    tree2 = {k: v for k, v in TREE.items() if k != "b.csv"}
    tree2.update({"a.txt": "a-changed", "new.txt": "new"})
    write_tree(tmp_path / "src2", tree2)
    (tmp_path / "single.json").write_text("{}")
    return tmp_path / "src"


def draft(name="ds", **kw):
    return Dataset.create(dataset_name=name, dataset_project="cases", **kw)


def with_src(name="ds"):
    ds = draft(name)
    ds.add_files("src")
    return ds


# -- add_files (cases 1-13) ------------------------------------------------------------------
@pytest.mark.parametrize(
    "args,kwargs,count,files",
    [
        (("src",), {}, 7, ALL),  # 1
        (("src",), {"dataset_path": "more"}, 7, ["more/" + p for p in ALL]),  # 2
        (("src",), {"dataset_path": "/lead"}, 7, ["lead/" + p for p in ALL]),  # 3: "/" is the root
        (("src",), {"dataset_path": "more/"}, 7, ["more/" + p for p in ALL]),  # 4
        (("src",), {"wildcard": "*.csv"}, 3, ["b.csv", "sub/d.csv", "sub/deeper/f.csv"]),  # 5
        (("src",), {"wildcard": "*.csv", "recursive": False}, 1, ["b.csv"]),  # 6
        # 7: "deeper/*" is "**/deeper/*", as pathlib's rglob reads it
        (
            ("src",),
            {"wildcard": ["*.txt", "deeper/*"]},
            4,
            ["a.txt", "sub/c.txt", "sub/deeper/e.jpg", "sub/deeper/f.csv"],
        ),
        (("src",), {"wildcard": "sub/*.csv"}, 1, ["sub/d.csv"]),  # 8: "*" stops at "/"
        (("src",), {"wildcard": "~/data/*.jpg"}, 0, []),  # 9
        (("single.json",), {}, 1, ["single.json"]),  # 10
        (("single.json",), {"wildcard": "*.csv"}, 0, []),  # 11: kept: the wildcard filters a file too
        (("single.json",), {"dataset_path": "one"}, 1, ["one/single.json"]),  # 12
        (("src/sub",), {"local_base_folder": "src"}, 4, [p for p in ALL if p.startswith("sub/")]),  # 13
        # glob, not recursive, still reaches into the folder a wildcard names (ClearML's path.glob)
        (("src",), {"wildcard": "sub/*.csv", "recursive": False}, 1, ["sub/d.csv"]),
        (("src",), {"wildcard": "sub/**/*.csv"}, 2, ["sub/d.csv", "sub/deeper/f.csv"]),
        (("src",), {"wildcard": "/*.txt"}, 2, ["a.txt", "sub/c.txt"]),  # a leading "/" is dropped
        # wildcards match below the folder given, whatever local_base_folder says
        (("src/sub",), {"local_base_folder": "src", "wildcard": "sub/*"}, 0, []),
        (
            ("src/sub",),
            {"local_base_folder": "src", "wildcard": "deeper/*"},
            2,
            ["sub/deeper/e.jpg", "sub/deeper/f.csv"],
        ),
    ],
)
def test_add_files_case(src, args, kwargs, count, files):
    ds = draft()
    assert ds.add_files(*args, **kwargs) == count
    assert ds.list_files() == files


@pytest.mark.parametrize(
    "pattern",
    [
        "*",
        "*.csv",
        "sub/*.csv",
        "deeper/*",
        "sub/*",
        "*/*.jpg",
        "**/*.csv",
        "sub/**/*",
        "s*/d*",
        "[ab].*",
        "x/*",
    ],
)
@pytest.mark.parametrize("recursive", [True, False])
def test_add_files_wildcards_select_what_pathlib_globbing_selects(src, pattern, recursive):
    # ClearML's add_files collects path.rglob(w) (path.glob(w) when not recursive)
    found = src.rglob(pattern) if recursive else src.glob(pattern)
    expected = sorted(p.relative_to(src).as_posix() for p in found if p.is_file())
    ds = draft()
    ds.add_files("src", wildcard=pattern, recursive=recursive)
    assert ds.list_files() == expected
    assert sorted(p for p in ALL if glob_matches(p, pattern, recursive)) == expected


def test_add_files_counts_only_files_new_to_the_version(src, capsys):
    # cases 14-16: ClearML also counts files added again before an upload (7, 7 offline, 6);
    # ours counts what is new to the version, the same before and after an upload
    ds = with_src()
    assert ds.add_files("src") == 0  # 14
    ds.upload()
    assert ds.add_files("src") == 0  # 15
    Path("src/a.txt").write_text("a-modified")
    assert ds.add_files("src", verbose=True) == 0  # 16: one modified, nothing new
    assert capsys.readouterr().out.splitlines() == ["Modified a.txt", "0 added, 1 modified, 6 unchanged"]
    Path("src/new.txt").write_text("n")
    assert ds.add_files("src") == 1


# -- remove_files (cases 17-31) --------------------------------------------------------------
@pytest.mark.parametrize(
    "args,kwargs,count",
    [
        (("*.csv",), {}, 3),  # 17
        (("*.csv",), {"recursive": False}, 1),  # 18
        (("sub/*.csv",), {}, 2),  # 19
        (("sub/*.csv",), {"recursive": False}, 1),  # 20
        (("sub/*",), {}, 4),  # 21
        (("sub/",), {}, 4),  # 22: kept: a folder names what is under it (ClearML removes nothing)
        (("sub",), {}, 4),  # 23: kept, as 22
        (("c.txt",), {}, 1),  # 24
        (("c.txt",), {"recursive": False}, 0),  # 25
        (("a.txt",), {}, 1),  # 26
        (("/a.txt",), {}, 1),  # 27: "/" is the dataset root
        (("/sub/deeper/",), {}, 2),
        (("src/a.txt",), {}, 0),  # 28
        (("*",), {}, 7),  # 29
        (("nomatch*",), {}, 0),  # 31
    ],
)
def test_remove_files_case(src, args, kwargs, count):
    ds = with_src()
    before = ds.list_files()
    assert ds.remove_files(*args, **kwargs) == count
    assert len(ds.list_files()) == len(before) - count


def test_remove_files_case_values(src):
    ds = with_src()
    assert ds.remove_files("sub/*.csv", recursive=False) == 1
    assert ds.list_files() == [
        "a.txt",
        "b.csv",
        "img.jpg",
        "sub/c.txt",
        "sub/deeper/e.jpg",
        "sub/deeper/f.csv",
    ]
    assert ds.remove_files("/sub") == 3
    assert ds.list_files() == ["a.txt", "b.csv", "img.jpg"]


def test_leading_slash_pattern_is_the_pattern_without_it(src):
    # as ClearML: "/a.txt" is "a.txt", which (recursive) also names a nested a.txt
    Path("src/sub/a.txt").write_text("nested")
    ds = with_src()
    assert ds.remove_files("/a.txt") == 2
    assert "sub/a.txt" not in ds.list_files() and "a.txt" not in ds.list_files()


def test_wildcard_ending_in_double_star_takes_every_file_below(src):
    # ClearML on Python < 3.13 adds nothing here (pathlib yields folders only); 3.13 and ours: files
    ds = draft()
    assert ds.add_files("src", wildcard="sub/**") == 4
    assert ds.list_files() == [p for p in ALL if p.startswith("sub/")]


def test_remove_files_without_an_argument_removes_nothing(src):
    # case 30: kept: ClearML's remove_files() empties the dataset; ours asks for "*"
    ds = with_src()
    with pytest.raises(ValueError, match="needs a dataset_path") as exc:
        ds.remove_files()
    assert isinstance(exc.value, UsageError) and '"*"' in str(exc.value)
    assert ds.list_files() == ALL
    assert ds.remove_files("*") == 7 and ds.list_files() == []


@pytest.mark.parametrize("bad", ["../a.txt", "/../a.txt", "sub/../../x", "C:/a.txt"])
def test_dataset_paths_still_refuse_escapes(src, bad):
    ds = with_src()
    with pytest.raises(UnsafePathError):
        ds.remove_files(bad)
    with pytest.raises(UnsafePathError):
        ds.add_files("src", dataset_path=bad)
    assert ds.list_files() == ALL


# -- list_files (cases 32-39) ----------------------------------------------------------------
@pytest.mark.parametrize(
    "args,kwargs,files",
    [
        ((), {}, ALL),  # 32
        (("sub/*",), {}, [p for p in ALL if p.startswith("sub/")]),  # 33
        (("*.csv",), {}, ["b.csv", "sub/d.csv", "sub/deeper/f.csv"]),  # 34
        (("*.csv",), {"recursive": False}, ["b.csv"]),  # 35
        (("sub/",), {}, [p for p in ALL if p.startswith("sub/")]),  # 36: kept: a folder lists its files
        (("sub",), {}, [p for p in ALL if p.startswith("sub/")]),  # 37: kept, as 36
        (("c.txt",), {}, ["sub/c.txt"]),  # 38
        (
            (["*.jpg", "*.csv"],),
            {},
            ["b.csv", "img.jpg", "sub/d.csv", "sub/deeper/e.jpg", "sub/deeper/f.csv"],
        ),  # 39
        (("/sub/deeper/*",), {}, ["sub/deeper/e.jpg", "sub/deeper/f.csv"]),
        ((["/a.txt", "/img.jpg"],), {}, ["a.txt", "img.jpg"]),
    ],
)
def test_list_files_case(src, args, kwargs, files):
    assert with_src().list_files(*args, **kwargs) == files


# -- sync_folder (cases 40-42) ---------------------------------------------------------------
def test_sync_folder_counts_what_the_call_changed(src):
    # case 40: ClearML answers (1, 6, 1) here, counting the unchanged files of the draft as added
    ds = with_src()
    assert ds.sync_folder("src2") == (1, 1, 1)
    assert ds.list_files() == sorted(p for p in [*ALL, "new.txt"] if p != "b.csv")
    # over a final parent, ClearML's count is (1, 1, 1) too
    ds.finalize(auto_upload=True)
    child = draft(parent_datasets=[ds.id])
    assert child.sync_folder("src") == (1, 1, 1)


def test_sync_folder_into_a_folder_and_the_change_lists(src):
    ds = with_src()
    assert ds.sync_folder("src2", dataset_path="x") == (0, 7, 0)  # 41
    assert ds.sync_folder("src2", dataset_path="/x") == (0, 0, 0)  # "/x" is the same folder
    fresh = draft("fresh")
    fresh.sync_folder("src2")
    assert (fresh.list_added_files(), fresh.list_modified_files(), fresh.list_removed_files()) == (
        fresh.list_files(),
        [],
        [],
    )  # 42


# -- external files (cases 43-48) ------------------------------------------------------------
def test_external_files_cases(src):
    url = "file://" + str(src)
    ds = draft()
    assert ds.add_external_files(url, dataset_path="links") == 7  # 43
    assert {p: e.link for p, e in ds.link_entries_dict.items()} == {f"links/{p}": f"{url}/{p}" for p in ALL}
    assert ds.remove_files(f"{url}/a.txt") == 1  # 47
    assert ds.remove_files("links/sub/*") == 4  # 48
    assert ds.list_files() == ["links/b.csv", "links/img.jpg"]

    other = draft("other")
    assert other.add_external_files(url + "/", wildcard="*.csv") == 3  # 44
    assert other.add_external_files(url + "/a.txt") == 1  # 45
    assert other.list_files() == ["a.txt", "b.csv", "sub/d.csv", "sub/deeper/f.csv"]


def test_external_file_dataset_path_with_a_leading_slash(src):
    # ClearML's SDK page: add_external_files(..., dataset_path="/my_dataset/new_folder/")
    ds = draft()
    assert (
        ds.add_external_files("file://" + str(src / "img.jpg"), dataset_path="/my_dataset/new_folder/") == 1
    )
    assert ds.list_files() == ["my_dataset/new_folder/img.jpg"]
    ds.finalize(auto_upload=True)
    copy = ds.get_local_copy()
    assert read_tree(copy) == {"my_dataset/new_folder/img.jpg": b"jpeg-ish"}


# -- leading "/" elsewhere -------------------------------------------------------------------
def test_leading_slash_in_a_partial_local_copy(src):
    ds = with_src()
    ds.finalize(auto_upload=True)
    assert sorted(read_tree(ds.get_local_copy(files=["/sub/deeper/*"]))) == [
        "sub/deeper/e.jpg",
        "sub/deeper/f.csv",
    ]


def test_leading_slash_on_the_command_line(src, cli):
    assert cli("create", "--project", "cases", "--name", "cli").code == 0
    res = cli("add", "--files", "src", "--dataset-folder", "/x")
    assert res.code == 0, res.err
    res = cli("remove", "--files", "/x/a.txt")
    assert res.code == 0 and "1 file removed" in res.out
    res = cli("list", "--json")
    assert sorted(f["path"] for f in res.json["data"]["files"]) == ["x/" + p for p in ALL if p != "a.txt"]
    res = cli("add", "--files", "src", "--dataset-folder", "/../x")
    assert res.code == 1 and "'..'" in res.err


# -- versions, state and tags (cases 51-61) --------------------------------------------------
def test_file_entries_in_path_order(src):
    # case 51: kept: sorted by path; ClearML's order is that of a Python set (varies)
    assert [e.relative_path for e in with_src().file_entries] == ALL


def test_num_chunks_and_dirty_before_and_after_upload(src):
    # cases 52-53: ClearML offline never uploads ([0, 0] and [True, True]); ours, like
    # ClearML with a server, counts what upload stored and is clean once it did
    ds = with_src()
    assert (ds.get_num_chunks(), ds.is_dirty()) == (0, True)
    ds.upload()
    assert ds.get_num_chunks() >= 1 and not ds.is_dirty()
    assert ds.get_num_chunks(include_parents=False) == ds.get_num_chunks()


def test_content_the_storage_holds_is_not_pending(src):
    # case 54: ClearML offline fails (one Task per process); here the content is deduplicated
    first = with_src("first")
    first.finalize(auto_upload=True)
    second = with_src("second")
    assert not second.is_dirty()
    assert second.finalize()  # nothing to upload: finalize needs no auto_upload
    assert read_tree(second.get_local_copy()) == {p: v.encode() for p, v in TREE.items()}


def test_a_string_tag_is_one_tag(src):
    ds = draft(dataset_tags="abc")  # case 55: ClearML gives ["a", "b", "c"]
    assert ds.tags == ["abc"]
    ds.add_tags("my tag")  # ClearML's add_tags splits a string at spaces
    assert ds.tags == ["abc", "my tag"]
    ds.tags = "only"
    assert ds.tags == ["only"]


def test_tags_keep_their_order(src):
    # case 56: kept: ClearML's add_tags goes through a set (["z", "y", "x"] in the run)
    ds = with_src()
    ds.add_tags("x")
    ds.add_tags(["y", "z", "x"])
    assert ds.tags == ["x", "y", "z"]


def test_version_storage_and_description(src, env):
    ds = with_src()
    assert ds.version == "1.0.0"  # 57
    # 58: the storage the version uploads to (ClearML offline: its session folder)
    assert os.path.abspath(ds.get_default_storage()) == os.path.abspath(str(env.storage))
    ds.set_description("hello")
    assert ds.description == "hello"  # 59: ClearML's Dataset has no description to read back


def test_finalize_with_pending_uploads_and_with_auto_upload(src):
    ds = with_src()
    with pytest.raises(ValueError, match="pending uploads"):  # 60: as ClearML with a server
        ds.finalize()
    assert not ds.is_final()
    assert ds.finalize(auto_upload=True) is True and ds.is_final()  # 61


# -- exceptions ClearML code catches ---------------------------------------------------------
def test_not_found_is_a_value_error_and_still_a_lookup_error(src):
    try:
        ds = Dataset.get(dataset_project="cases", dataset_name="missing")
    except ValueError:
        ds = Dataset.create(dataset_project="cases", dataset_name="missing")
    assert not ds.is_final() and ds.name == "missing"
    with pytest.raises(LookupError):
        Dataset.get(dataset_id="0" * 32)
    assert issubclass(DatasetNotFoundError, (ClearMLDataError))
    assert issubclass(DatasetNotFoundError, LookupError) and issubclass(DatasetNotFoundError, ValueError)
    assert issubclass(DatasetStateError, ValueError) and issubclass(DatasetStateError, ClearMLDataError)


def test_state_errors_clearml_signals_with_value_error(src):
    ds = with_src()
    with pytest.raises(ValueError) as exc:  # a local copy of a draft
        ds.get_local_copy()
    assert isinstance(exc.value, DatasetStateError)
    with pytest.raises(ValueError, match="not final"):  # a parent that is not final
        draft("child", parent_datasets=[ds.id])
    with pytest.raises(ValueError, match="not final"):  # publishing a draft
        ds.publish()
    ds.finalize(auto_upload=True)
    with pytest.raises(ValueError, match="final"):  # changing a final version
        ds.add_files("src")


def test_unknown_get_argument_is_both_type_and_value_error(src):
    with pytest.raises(TypeError) as exc:
        Dataset.get(dataset_project="cases", dataset_name="x", bogus=1)
    assert isinstance(exc.value, ValueError)


def test_cli_errors_keep_their_exit_code_and_type(src, cli):
    res = cli("--json", "get", "--id", "0" * 32)
    assert res.code == 1 and res.json["errors"][0]["type"] == "DatasetNotFoundError"
    with_src()
    ds = Dataset.list_datasets(only_completed=False)[0]
    res = cli("--json", "get", "--id", ds["id"])
    assert res.code == 1 and res.json["errors"][0]["type"] == "DatasetStateError"


# -- lookup by tags --------------------------------------------------------------------------
def _tagged(name, tags, version=None, project="cases", final=True):
    ds = Dataset.create(
        dataset_name=name, dataset_project=project, dataset_tags=tags, dataset_version=version
    )
    if final:
        ds.finalize()
    return ds


def test_get_by_tags_alone(src):
    old = _tagged("raw-data", ["raw"], "1.0.0")
    new = _tagged("raw-data", ["raw", "checked"], "1.0.1")
    _tagged("other", ["unrelated"], "9.0.0", project="elsewhere")
    assert Dataset.get(dataset_tags=["raw"]).id == new.id  # the highest version carrying the tag
    assert Dataset.get(dataset_tags="raw").id == new.id  # a string is one tag
    assert Dataset.get(dataset_tags=["raw", "checked"]).id == new.id
    only_old = _tagged("raw-data", ["old"], "0.9.0")
    assert Dataset.get(dataset_tags=["old"]).id == only_old.id
    with pytest.raises(DatasetNotFoundError, match="tags"):
        Dataset.get(dataset_tags=["raw", "unrelated"])  # every tag given must be there
    assert Dataset.get(dataset_tags=["raw"], dataset_version="1.0.0").id == old.id
    draft_one = _tagged("raw-data", ["raw"], "2.0.0", final=False)
    assert Dataset.get(dataset_tags=["raw"]).id == draft_one.id  # as ClearML: drafts count too
    assert Dataset.get(dataset_tags=["raw"], only_completed=True).id == new.id


def test_get_by_tags_across_projects_and_names(src):
    a = _tagged("a", ["shared"], "1.0.0", project="p1")
    b = _tagged("b", ["shared"], "1.0.0", project="p2")
    assert Dataset.get(dataset_tags=["shared"]).id == b.id  # same version: the newest
    c = _tagged("c", ["shared"], "0.1.0", project="p3")
    assert Dataset.get(dataset_tags=["shared"]).id == b.id != c.id  # the highest version wins
    assert Dataset.get(dataset_project="p1", dataset_tags=["shared"]).id == a.id


def test_tags_given_as_a_string_everywhere(src):
    _tagged("ds", "my tag", "1.0.0")
    assert [d["tags"] for d in Dataset.list_datasets(tags="my tag")] == [["my tag"]]
    assert Dataset.list_datasets(tags="my") == []
    with pytest.raises(UsageError, match="no dataset given"):
        Dataset.get()


# -- ClearML's other parameters --------------------------------------------------------------
def test_get_takes_silence_alias_warnings(src):
    ds = _tagged("ds", [], "1.0.0")
    got = Dataset.get(dataset_id=ds.id, alias="train", silence_alias_warnings=True)
    assert got.id == ds.id


def test_changed_files_are_counted_from_the_catalog(src):
    base = with_src("base")
    base.finalize(auto_upload=True)
    child = draft("child", parent_datasets=[base.id])
    child.sync_folder("src2")
    assert child.changed_files == {"files added": 1, "files removed": 1, "files modified": 1}
    child.update_changed_files(num_files_added=5, num_files_removed=None)
    assert child.changed_files == {"files added": 1, "files removed": 1, "files modified": 1}
    with pytest.raises(ValueError, match="num_files_modified"):
        child.update_changed_files(num_files_modified=-1)


# -- verbose=True ----------------------------------------------------------------------------
def test_verbose_prints_what_each_call_did(src, capsys):
    ds = draft()
    ds.add_files("src", wildcard="*.txt", verbose=True)
    assert capsys.readouterr().out.splitlines() == [
        "Added a.txt",
        "Added sub/c.txt",
        "2 added, 0 modified, 0 unchanged",
    ]
    ds.remove_files("sub/*", verbose=True)
    assert capsys.readouterr().out.splitlines() == ["Removed sub/c.txt", "1 removed"]
    ds.sync_folder("src2", verbose=True)
    out = capsys.readouterr().out.splitlines()
    assert "Modified a.txt" in out and "Added new.txt" in out and out[-1] == "0 removed, 6 added, 1 modified"
    ds.add_external_files("file://" + str(src / "b.csv"), dataset_path="links", verbose=True)
    assert capsys.readouterr().out.splitlines() == ["Added links/b.csv", "1 added, 0 modified, 0 unchanged"]
    ds.upload(verbose=True, show_progress=False)
    assert capsys.readouterr().out.startswith("uploaded ")
    ds.finalize(verbose=True)
    assert f"dataset {ds.id} finalized" in capsys.readouterr().out
    ds.get_local_copy(show_progress=False)
    assert ds.verify_dataset_hash(verbose=True) == []
    assert capsys.readouterr().out.splitlines() == ["no errors found"]


def test_quiet_without_verbose(src, capsys):
    ds = draft()
    ds.add_files("src")
    ds.sync_folder("src2")
    ds.remove_files("*.txt")
    ds.finalize(auto_upload=True)
    assert capsys.readouterr().out == ""


# -- errors name the flags on the command line, the parameters in Python ---------------------
def test_errors_name_flags_on_the_command_line_and_parameters_in_python(src, cli):
    ds = with_src()
    ds.finalize(auto_upload=True)
    with pytest.raises(UsageError) as exc:
        ds.get_local_copy(part=0)
    assert str(exc.value) == "part and num_parts go together"
    res = cli("get", "--id", ds.id, "--part", "0")
    assert "Error: --part and --num-parts go together" in res.err
    res = cli("get", "--id", ds.id, "--part", "3", "--num-parts", "2")
    assert "Error: --part must be between 0 and --num-parts - 1 (got --part=3, --num-parts=2)" in res.err

    with pytest.raises(UsageError, match=r"^partial_name '\(' is not a valid"):
        Dataset.list_datasets(partial_name="(")
    assert "Error: --name '(' is not a valid regular expression" in cli("search", "--name", "(").err

    with pytest.raises(UsageError, match="pass dataset_project"):
        Dataset.create(dataset_name="x")
    assert "(pass --project)" in cli("create", "--name", "x").err


def test_every_flag_an_error_may_name_exists():
    parser = build_parser("0")
    flags = set()
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            flags.update(action.option_strings)
            if action.choices and isinstance(action.choices, dict):
                stack.extend(action.choices.values())
    assert set(FLAGS.values()) <= flags
