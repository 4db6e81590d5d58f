"""Local trees and version trees that every command handles honestly.

* A folder or file that cannot be read is an error naming it, for add, add --wildcard and
  sync (which would otherwise take the unreadable part for deleted files); nothing is
  recorded. Run as uid 65534 through setpriv, since root reads everything.
* Dataset paths have at most MAX_DEPTH components and MAX_PATH_BYTES bytes: a tree at the
  limit goes through add, close, list, get, get --copy and verify; one over it (up to a tree
  deeper than PATH_MAX) is refused by add with the limit named, before anything is written.
* A file in one parent and a folder in another: the later parent wins, the earlier entries
  are shadowed, create and close say so, and get / get --copy materialise the result, for
  two and three parents in every order and with the child's own changes.
* Two processes adding (or syncing) a file x/y and a file x/y/z into one draft at the same
  time: at most one gets in, and every version closed afterwards can be fetched.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import os
import sqlite3
import textwrap
import time
from pathlib import Path

import pytest

from clearml_data import Dataset
from clearml_data.errors import UnsafePathError, UsageError
from clearml_data.paths import MAX_DEPTH, MAX_PATH_BYTES
from clearml_data.testing import catalog_dump, read_tree, reset_services, run_cli, spawn_together, write_tree

from figures import reliability_count, report_figures

pytestmark = pytest.mark.reliability

HERE = Path(__file__).parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_trees_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_readonly = _load("test_readonly_cache")
NOBODY = _readonly.NOBODY
nobody_root = _readonly.nobody_root  # a fixture: a folder uid 65534 owns, and an interpreter it can run


def _ok(*argv):
    r = run_cli(*argv)
    assert r.code == 0, (argv, r.err)
    return r


def _json(*argv) -> dict:
    return _ok("--json", *argv).json["data"]


def _refused(*argv) -> str:
    """Run a command that must fail with one clean error line; return that line."""
    r = run_cli("-q", *argv)
    assert r.code != 0, (argv, r.out)
    assert "Traceback" not in r.err + r.out and "unexpected" not in r.err, r.err
    lines = r.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.err
    return lines[0]


def _files(did: str) -> dict[str, str]:
    return {f["path"]: f["hash"] for f in _json("list", "--id", did)["files"]}


def _version(src: Path, files: dict[str, str], project: str = "p", name: str = "v", parents=()) -> str:
    write_tree(src, files)
    args = ["create", "--project", project, "--name", name]
    if parents:
        args += ["--parents", *parents]
    did = _json(*args)["id"]
    if files:
        _ok("add", "--id", did, "--files", src)
    _ok("close", "--id", did)
    return did


def _catalog_rows(env) -> list[str]:
    reset_services()
    return catalog_dump(env.catalog)


# -- unreadable folders and files (as an ordinary user) ---------------------------------------
# Runs as uid 65534. argv: root folder, JSON list of [kind, depth, command] cases.
UNREADABLE_CHILD = textwrap.dedent("""
    import json, os, sys
    from clearml_data.testing import run_cli, write_tree

    root, cases = sys.argv[1], json.loads(sys.argv[2])
    NAMES = ["a", "b", "c", "d", "e", "f", "g", "h"]

    def data(*argv):
        r = run_cli("--json", *argv)
        assert r.code == 0, (argv, r.err)
        return r.json["data"]

    def files(did):
        return sorted(f["path"] for f in data("list", "--id", did)["files"])

    def count():
        return len(data("search", "--not-only-completed"))

    out = []
    for n, (kind, depth, command) in enumerate(cases):
        src = os.path.join(root, "cases", str(n))
        tree = {}
        for level in range(len(NAMES) + 1):
            folder = "/".join(NAMES[:level])
            prefix = folder + "/" if folder else ""
            tree[prefix + f"f{level}.txt"] = f"{n}:{level}"
            tree[prefix + f"g{level}.bin"] = f"{n}:{level}:bin"
        write_tree(src, tree)
        folder = os.path.join(src, *NAMES[:depth])
        target = folder if kind.startswith("folder") else os.path.join(folder, f"f{depth}.txt")
        mode = {"folder-000": 0o000, "folder-no-read": 0o300, "folder-no-search": 0o600, "file-000": 0o000}[kind]
        base = data("create", "--project", "p", "--name", f"base{n}")["id"]
        assert run_cli("add", "--id", base, "--files", src).code == 0
        assert run_cli("close", "--id", base).code == 0
        draft = data("create", "--project", "p", "--name", f"draft{n}", "--parents", base)["id"]
        empty = data("create", "--project", "p", "--name", f"empty{n}")["id"]
        argv = {"add": ["add", "--id", empty, "--files", src],
                "add-wildcard": ["add", "--id", empty, "--files", src, "--wildcard", "*.txt"],
                "sync-new": ["sync", "--parents", base, "--folder", src],
                "sync-draft": ["sync", "--id", draft, "--folder", src, "--skip-close"]}[command]
        before = {"empty": files(empty), "draft": files(draft), "count": count()}
        os.chmod(target, mode)
        try:
            r = run_cli("-q", *argv)
        finally:
            os.chmod(target, 0o755 if kind.startswith("folder") else 0o644)
        after = {"empty": files(empty), "draft": files(draft), "count": count()}
        control = run_cli("-q", *argv)  # readable again: the same command goes through
        out.append({"case": [kind, depth, command], "target": target, "code": r.code, "err": r.err,
                    "out": r.out, "unchanged": before == after, "control": control.code,
                    "control_err": control.err, "tree": len(tree)})
    print(json.dumps({"uid": os.getuid(), "results": out}))
""")


def _as_nobody(root: str, code: str, *args) -> dict:
    return _readonly.as_nobody(root, *args, code=code, timeout=600)


UNREADABLE_KINDS = ["folder-000", "folder-no-read", "folder-no-search", "file-000"]
UNREADABLE_COMMANDS = ["add", "add-wildcard", "sync-new", "sync-draft"]


def test_unreadable_parts_are_errors_never_skipped_or_removed(nobody_root):
    depths = reliability_count([0, 1, 3], [0, 1, 2, 3, 4, 5, 6, 8])
    cases = [[k, d, c] for k in UNREADABLE_KINDS for d in depths for c in UNREADABLE_COMMANDS]
    started = time.monotonic()
    got = _as_nobody(nobody_root, UNREADABLE_CHILD, json.dumps(cases))
    assert got["uid"] == NOBODY
    held = 0
    for r in got["results"]:
        case = r["case"]
        assert r["code"] != 0, (case, r["out"])
        lines = r["err"].splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), (case, r["err"])
        assert "Traceback" not in r["err"]
        assert r["target"] in lines[0], (case, lines[0])  # the error names what cannot be read
        assert "Permission denied" in lines[0], (case, lines[0])
        assert r["unchanged"], case  # no file added or removed, no version made or closed
        assert r["control"] == 0, (case, r["control_err"])
        held += 1
    report_figures(
        "unreadable folders and files",
        cases=len(cases),
        refused_naming_the_path=held,
        depths=len(depths),
        kinds=len(UNREADABLE_KINDS),
        commands=len(UNREADABLE_COMMANDS),
        seconds=round(time.monotonic() - started, 1),
    )


@pytest.mark.parametrize("how", ["fifo", "folder-link", "broken-link"])
def test_what_add_passes_over_is_named(tmp_path, how, caplog):
    src = write_tree(tmp_path / "src", {"a.txt": "a", "sub/b.txt": "b", "other/c.txt": "c"})
    odd = src / "sub" / "odd"
    if how == "fifo":
        os.mkfifo(odd)
    elif how == "folder-link":
        os.symlink(src / "other", odd)
    else:
        os.symlink(src / "sub" / "missing.txt", odd)
    did = _json("create", "--project", "p", "--name", "n")["id"]
    ds = Dataset.get(dataset_id=did)
    with caplog.at_level(logging.WARNING, logger="clearml_data"):
        if how == "broken-link":
            with pytest.raises(UsageError, match="broken symbolic link"):
                ds.add_files(src)
            assert "odd" in _refused("add", "--id", did, "--files", src)
            assert _files(did) == {}
            return
        ds.add_files(src)
    assert any(str(odd) in rec.getMessage() and "skipped" in rec.getMessage() for rec in caplog.records)
    assert sorted(_files(did)) == ["a.txt", "other/c.txt", "sub/b.txt"]


# -- deep trees -------------------------------------------------------------------------------
def _deep_tree(root: Path, depth: int, name: str = "d", files_every: int = 50) -> list[str]:
    """A tree of ``depth`` nested folders named ``name`` with a file in the deepest one (and
    every ``files_every`` levels), built through folder descriptors so that it may be deeper
    than PATH_MAX; returns the dataset paths of its files."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    rels: list[str] = []
    try:
        for level in range(depth + 1):
            if level % files_every == 0 or level == depth:
                f = os.open(f"f{level}.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
                os.write(f, f"level {level}".encode())
                os.close(f)
                rels.append("/".join([name] * level + [f"f{level}.txt"]))
            if level == depth:
                break
            os.mkdir(name, dir_fd=fd)
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
    finally:
        os.close(fd)
    return rels


def _remove_deep(root: Path, name: str = "d") -> None:
    """Remove a tree made by _deep_tree, bottom up through folder descriptors."""
    if not root.exists():
        return
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    depth = 0
    while name in os.listdir(fd):
        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = sub
        depth += 1
    for _ in range(depth + 1):
        for entry in os.listdir(fd):
            if entry != name:
                os.unlink(entry, dir_fd=fd)
        up = os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = up
        if _ < depth:
            os.rmdir(name, dir_fd=fd)
    os.close(fd)
    os.rmdir(root)


def _long_tree(root: Path, total: int) -> str:
    """One file whose dataset path is exactly ``total`` bytes (components of up to 200)."""
    parts, left = [], total
    while left > 201:
        parts.append("L" * 200)
        left -= 201
    parts.append("F" * (left - 4) + ".txt")
    rel = "/".join(parts)
    assert len(rel.encode()) == total
    write_tree(root, {rel: "long"})
    return rel


def _materialised(did: str, rels: list[str], tmp: Path) -> int:
    """Every file of a version comes out of list, get, get --copy and both verifies; the count."""
    listed = _files(did)
    assert sorted(listed) == sorted(rels)
    assert _json("verify", "--id", did)["problems"] == []
    cached = _json("get", "--id", did)["path"]
    copy = tmp / f"copy-{did[:8]}"
    assert _json("get", "--id", did, "--copy", copy)["path"] == str(copy)
    n = 0
    for folder in (Path(cached), copy):
        got = {rel: (folder / rel).read_bytes() for rel in rels}
        assert all(got.values()), folder
        assert _json("verify", "--id", did, "--folder", folder)["problems"] == []
        n += len(got)
    return n


@pytest.mark.parametrize("shape", ["depth", "bytes"])
def test_deep_trees_at_the_limit_go_through_every_command(tmp_path, shape):
    src = tmp_path / "src"
    if shape == "depth":
        rels = _deep_tree(src, MAX_DEPTH - 1)  # the deepest file has MAX_DEPTH components
        assert max(r.count("/") + 1 for r in rels) == MAX_DEPTH
    else:
        rels = [_long_tree(src, MAX_PATH_BYTES)]
    did = _json("create", "--project", "p", "--name", shape)["id"]
    assert _json("add", "--id", did, "--files", src)["added"] == len(rels)
    _ok("close", "--id", did)
    started = time.monotonic()
    served = _materialised(did, rels, tmp_path)
    report_figures(
        "deep trees",
        shape=shape,
        at_limit=True,
        files=len(rels),
        served=served,
        seconds=round(time.monotonic() - started, 2),
    )


def test_python_api_at_and_over_the_limit(tmp_path):
    src = tmp_path / "src"
    rels = _deep_tree(src, MAX_DEPTH - 1)
    ds = Dataset.create(dataset_name="api", dataset_project="p")
    assert ds.add_files(src) == len(rels)
    ds.finalize(auto_upload=True)
    copy = Path(Dataset.get(dataset_id=ds.id).get_mutable_local_copy(tmp_path / "copy"))
    assert set(read_tree(copy)) == set(rels)
    over = Dataset.create(dataset_name="over", dataset_project="p")
    with pytest.raises(UnsafePathError, match=f"at most {MAX_DEPTH} components"):
        over.add_files(src, dataset_path="x")
    assert over.list_files() == []


def _over_limit_cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (argv after `--id ID`, text the refusal must hold)"""
    cases: dict[str, tuple[list[str], str]] = {}
    deeper = tmp_path / "deeper"
    _deep_tree(deeper, MAX_DEPTH)
    cases["one level too deep"] = (["add", "--files", str(deeper)], f"at most {MAX_DEPTH} components")
    cases["too deep, wildcard"] = (
        ["add", "--files", str(deeper), "--wildcard", "*.txt"],
        f"at most {MAX_DEPTH} components",
    )
    at = tmp_path / "at"
    _deep_tree(at, MAX_DEPTH - 1)
    cases["at the limit under a dataset folder"] = (
        ["add", "--files", str(at), "--dataset-folder", "x"],
        f"at most {MAX_DEPTH}",
    )
    longer = tmp_path / "longer"
    _long_tree(longer, MAX_PATH_BYTES + 1)
    cases["one byte too long"] = (["add", "--files", str(longer)], f"at most {MAX_PATH_BYTES} bytes")
    long_at = tmp_path / "long-at"
    _long_tree(long_at, MAX_PATH_BYTES)
    cases["bytes at the limit under a dataset folder"] = (
        ["add", "--files", str(long_at), "--dataset-folder", "y"],
        f"at most {MAX_PATH_BYTES} bytes",
    )
    beyond = tmp_path / "beyond"
    _deep_tree(beyond, 2100)  # over 4096 bytes: no plain path reaches its bottom
    cases["deeper than PATH_MAX"] = (["add", "--files", str(beyond)], f"at most {MAX_DEPTH} components")
    cases["deeper than PATH_MAX, sync"] = (
        ["sync", "--folder", str(beyond), "--skip-close"],
        f"at most {MAX_DEPTH} components",
    )
    return cases


def test_trees_over_the_limit_are_refused_with_the_limit_named(env, tmp_path):
    try:
        cases = _over_limit_cases(tmp_path)
        did = _json("create", "--project", "p", "--name", "over")["id"]
        _ok("add", "--id", did, "--files", write_tree(tmp_path / "small", {"keep.txt": "k"}))
        before = _catalog_rows(env)
        seconds = {}
        for name, (argv, needle) in cases.items():
            started = time.monotonic()
            line = _refused(argv[0], "--id", did, *argv[1:])
            seconds[name] = round(time.monotonic() - started, 2)
            assert needle in line, (name, line)
            assert len(line) < 600, (name, len(line))  # the long path is shortened in the message
            assert _catalog_rows(env) == before, name
        assert list(_files(did)) == ["keep.txt"]
        report_figures(
            "deep trees",
            over_limit=len(cases),
            refused_with_limit=len(cases),
            slowest_seconds=max(seconds.values()),
        )
    finally:
        for name in ("beyond", "deeper", "at"):
            _remove_deep(tmp_path / name)


def test_a_copy_too_long_for_its_folder_is_refused_before_writing(tmp_path):
    src = tmp_path / "src"
    rel = _long_tree(src, MAX_PATH_BYTES)
    did = _json("create", "--project", "p", "--name", "long")["id"]
    _ok("add", "--id", did, "--files", src)
    _ok("close", "--id", did)
    target = tmp_path.joinpath(*["t" * 100] * 10)  # ~1,000 bytes more: over 4096 with the path
    line = _refused("get", "--id", did, "--copy", target)
    assert "needs paths of" in line and "shorter target folder" in line, line
    assert not target.exists() or not any(target.iterdir())
    fine = tmp_path / "short"
    _ok("get", "--id", did, "--copy", fine)
    assert (fine / rel).read_bytes() == b"long"


def test_a_catalog_row_over_the_limit_is_a_clean_error(env, tmp_path):
    did = _version(tmp_path / "src", {"a.txt": "a"})
    reset_services()
    db = sqlite3.connect(env.catalog)
    with db:
        db.execute(
            "UPDATE changes SET path = ? WHERE dataset_id = ?", ["/".join(["d"] * (MAX_DEPTH + 1)), did]
        )
    db.close()
    for argv in (
        ["list", "--id", did],
        ["get", "--id", did],
        ["get", "--id", did, "--copy", tmp_path / "c"],
        ["verify", "--id", did],
    ):
        assert f"at most {MAX_DEPTH}" in _refused(*argv)


# -- a file in one parent, a folder in another ------------------------------------------------
TREES = {
    "file a/b": {"a/b": "file a/b", "one.txt": "1"},
    "folder a/b": {"a/b/c": "c under a/b", "a/b/d/e": "e under a/b/d", "two.txt": "2"},
    "file a": {"a": "file a", "three.txt": "3"},
}


def _expected_merge(trees: list[dict[str, str]]) -> tuple[dict[str, str], set[tuple[str, int, int]]]:
    """The merge rule, written plainly: each later tree removes the earlier entries at or under
    its files and at its folders, then its files go in. (merged view, {(path, from, by)})."""
    merged: dict[str, tuple[str, int]] = {}
    shadowed = set()
    for i, tree in enumerate(trees):
        for p in list(merged):
            if any(p.startswith(q + "/") or q.startswith(p + "/") for q in tree):
                shadowed.add((p, merged[p][1], i))
                del merged[p]
        merged.update({p: (content, i) for p, content in tree.items()})
    return {p: c for p, (c, _i) in merged.items()}, shadowed


def _orders() -> list[tuple[str, ...]]:
    names = list(TREES)
    return list(itertools.permutations(names, 2)) + list(itertools.permutations(names, 3))


CHILD_CHANGES = ["none", "adds beside", "flip back", "conflicting add"]


@pytest.mark.parametrize("order", _orders(), ids=" + ".join)
def test_a_later_parent_wins_a_file_folder_clash(tmp_path, order):
    changes = reliability_count(["none", "flip back"] if len(order) == 3 else CHILD_CHANGES, CHILD_CHANGES)
    parents = [_version(tmp_path / f"p{i}", TREES[name], name=f"p{i}") for i, name in enumerate(order)]
    expected, shadowed = _expected_merge([TREES[n] for n in order])
    assert shadowed, order  # every order here has a clash
    want_shadowed = {(p, parents[a], parents[b]) for p, a, b in shadowed}
    checked = 0
    for k, change in enumerate(changes):
        created = run_cli("--json", "create", "--project", "p", "--name", f"child{k}", "--parents", *parents)
        assert created.code == 0, created.err
        data = created.json["data"]
        assert {(s["path"], s["parent"], s["by"]) for s in data["shadowed"]} == want_shadowed
        text = _ok("-q", "create", "--project", "p", "--name", f"text{k}", "--parents", *parents).out
        assert f"{len(shadowed)} file" in text and "shadowed" in text
        assert all(f"{p} of parent {parents[a]} is shadowed" in text for p, a, _b in shadowed), text
        did = data["id"]
        want = dict(expected)
        if change == "adds beside":
            extra = write_tree(tmp_path / f"extra{k}", {"new/x.txt": "x"})
            _ok("add", "--id", did, "--files", extra)
            want["new/x.txt"] = "x"
        elif change == "flip back":
            # the child takes an earlier parent's shape: remove what won, add one shadowed file
            path, _a, _b = sorted(shadowed)[0]
            top = path.split("/")[0]
            _ok("remove", "--id", did, "--files", top)
            want = {p: c for p, c in want.items() if p != top and not p.startswith(top + "/")}
            back = write_tree(tmp_path / f"back{k}", {path: "the child's " + path})
            _ok("add", "--id", did, "--files", back)
            want[path] = "the child's " + path
        elif change == "conflicting add":
            winner = next(p for p in expected if p.startswith("a"))
            clash = winner.rsplit("/", 1)[0] if "/" in winner else winner + "/z"
            bad = write_tree(tmp_path / f"bad{k}", {clash: "clash"})
            assert "both a file and a folder" in _refused("add", "--id", did, "--files", bad)
        closed = _json("close", "--id", did)
        assert {(s["path"], s["parent"], s["by"]) for s in closed["shadowed"]} == want_shadowed
        assert sorted(_files(did)) == sorted(want)
        cached = Path(_json("get", "--id", did)["path"])
        copy = tmp_path / f"copy{k}"
        _ok("get", "--id", did, "--copy", copy)
        for folder in (cached, copy):
            assert read_tree(folder) == {p: c.encode() for p, c in want.items()}, (change, folder)
        checked += 1
    report_figures(
        "file/folder clashes across parents",
        parents=len(order),
        child_changes=checked,
        shadowed=len(shadowed),
    )


def test_shadowed_files_in_the_python_api_and_sync(tmp_path, caplog):
    p1 = _version(tmp_path / "p1", TREES["file a/b"], name="p1")
    p2 = _version(tmp_path / "p2", TREES["folder a/b"], name="p2")
    with caplog.at_level(logging.WARNING, logger="clearml_data"):
        ds = Dataset.create(dataset_name="child", dataset_project="p", parent_datasets=[p1, p2])
    assert "shadowed" in caplog.text and "a/b" in caplog.text
    found = ds.shadowed_files
    assert [(f.path, f.parent, f.by, f.clash, f.by_kind) for f in found] == [("a/b", p1, p2, "a/b", "folder")]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="clearml_data"):
        ds.finalize()
    assert "shadowed" in caplog.text
    assert set(read_tree(Dataset.get(dataset_id=ds.id).get_local_copy())) == {
        "a/b/c",
        "a/b/d/e",
        "one.txt",
        "two.txt",
    }
    reverse = Dataset.create(dataset_name="reverse", dataset_project="p", parent_datasets=[p2, p1])
    assert [(f.path, f.by_kind, f.clash) for f in reverse.shadowed_files] == [
        ("a/b/c", "file", "a/b"),
        ("a/b/d/e", "file", "a/b"),
    ]
    assert (
        Dataset.create(dataset_name="single", dataset_project="p", parent_datasets=[p1]).shadowed_files == []
    )
    # sync into a new version of both parents reports what was shadowed when it closes
    local = write_tree(
        tmp_path / "local", {"a/b/c": "changed c", "a/b/d/e": "e under a/b/d", "one.txt": "1", "two.txt": "2"}
    )
    r = _ok("--json", "sync", "--parents", p1, p2, "--folder", local).json["data"]
    assert [s["path"] for s in r["shadowed"]] == ["a/b"] and r["closed"]
    assert read_tree(_json("get", "--id", r["id"])["path"])["a/b/c"] == b"changed c"


def test_merges_hold_through_squash_fold_and_rebuild(env, tmp_path):
    p1 = _version(tmp_path / "p1", TREES["file a/b"], name="p1")
    p2 = _version(tmp_path / "p2", TREES["folder a/b"], name="p2")
    p3 = _version(tmp_path / "p3", TREES["file a"], name="p3")
    expected, _shadowed = _expected_merge([TREES["file a/b"], TREES["folder a/b"], TREES["file a"]])
    squashed = Dataset.squash("squashed", dataset_ids=[p1, p2, p3])
    assert read_tree(squashed.get_local_copy()) == {p: c.encode() for p, c in expected.items()}
    # a middle version folded into a child of several parents (delete --force) keeps its view
    mid = _version(tmp_path / "mid", {"m.txt": "m"}, name="mid", parents=[p2])
    child = _json("create", "--project", "p", "--name", "child", "--parents", p1, mid, p3)["id"]
    _ok("close", "--id", child)
    before = _files(child)
    _ok("delete", "--id", mid, "--force")
    assert _files(child) == before
    _ok("get", "--id", child)
    # the catalog rebuilt from the manifests gives every version the same view
    views = {did: _files(did) for did in (p1, p2, p3, child, squashed.id)}
    reset_services()
    for f in env.catalog.parent.glob(env.catalog.name + "*"):
        f.unlink()
    _ok("catalog", "rebuild", "--storage", env.storage)
    assert {did: _files(did) for did in views} == views
    _ok("get", "--id", child, "--copy", tmp_path / "after-rebuild")
    assert set(read_tree(tmp_path / "after-rebuild")) == set(views[child])


def test_a_version_holding_a_clash_is_never_closed_or_half_fetched(env, tmp_path):
    """A clash written into the catalog from outside: close refuses it, get refuses it cleanly."""
    did = _json("create", "--project", "p", "--name", "n")["id"]
    _ok("add", "--id", did, "--files", write_tree(tmp_path / "s", {"x/y/z": "z"}))
    _ok("upload", "--id", did)
    reset_services()
    db = sqlite3.connect(env.catalog)
    with db:
        db.execute(
            "INSERT INTO changes (dataset_id, path, kind, hash, size) SELECT dataset_id, 'x/y', kind, "
            "hash, size FROM changes WHERE dataset_id = ?",
            [did],
        )
    db.close()
    assert "both a file and a folder" in _refused("close", "--id", did)
    db = sqlite3.connect(env.catalog)
    with db:
        db.execute("UPDATE datasets SET status = 'final' WHERE id = ?", [did])
    db.close()
    for argv in (["get", "--id", did], ["get", "--id", did, "--copy", tmp_path / "c"]):
        assert "both as a file and as a folder" in _refused(*argv)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


# -- two writers, one tree conflict -------------------------------------------------------------
RACES = ["add/add", "sync/sync", "add/sync"]


def _race_jobs(env, root: Path, steps: list[list[list[str]]]) -> list[dict]:
    jobs = []
    for i, mine in enumerate(steps):
        w = root / f"racer-{i}"
        jobs.append(
            {
                "index": i,
                "catalog": str(env.catalog),
                "storage": str(env.storage),
                "cache": str(w / "cache"),
                "config": str(w / "config.ini"),
                "state": str(w / "state"),
                "out": str(w / "result.json"),
                "journal": "wal",
                "lock": "sqlite",
                "steps": mine,
            }
        )
        w.mkdir(parents=True)
    return jobs


def test_two_writers_never_get_a_file_and_a_folder_in(env, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    import tree_workers

    rounds = reliability_count(9, 120)
    padding = {f"pad/{i}.bin": os.urandom(2048) for i in range(40)}  # hashing time: the race window
    file_side = write_tree(tmp_path / "file-side", {"x/y": "y is a file", **padding})
    folder_side = write_tree(tmp_path / "folder-side", {"x/y/z": "y is a folder", **padding})
    drafts = [_json("create", "--project", "p", "--name", f"race{r}")["id"] for r in range(rounds)]
    steps: list[list[list[str]]] = [[], []]
    for r, did in enumerate(drafts):
        first, second = RACES[r % len(RACES)].split("/")
        sides = [str(file_side), str(folder_side)] if r % 2 == 0 else [str(folder_side), str(file_side)]
        steps[0].append([first, did, sides[0]])
        steps[1].append([second, did, sides[1]])
    reset_services()
    jobs = _race_jobs(env, tmp_path / "race", steps)
    started = time.monotonic()
    results = spawn_together(tree_workers.racer, jobs, timeout=600)
    assert [r["fatal"] for r in results] == [None, None], results
    both, one, clashes, served = 0, 0, 0, 0
    refused_by_kind = dict.fromkeys(RACES, 0)
    for r, did in enumerate(drafts):
        outcomes = [results[0]["steps"][r], results[1]["steps"][r]]
        kinds = RACES[r % len(RACES)]
        files = _files(did)
        if "x/y" in files and any(p.startswith("x/y/") for p in files):
            clashes += 1
        if all(o["ok"] for o in outcomes):
            both += 1  # fine for a sync, which replaces what the other wrote; never a clash
            assert "sync" in kinds, (kinds, outcomes, sorted(files))
        else:
            one += 1
            refused_by_kind[kinds] += 1
            assert any(o["ok"] for o in outcomes), outcomes
            assert any("both a file and a folder" in o["error"] for o in outcomes), outcomes
        _ok("close", "--id", did)
        cached = read_tree(_json("get", "--id", did)["path"])
        copy = tmp_path / f"copy{r}"
        _ok("get", "--id", did, "--copy", copy)
        assert read_tree(copy) == cached and set(cached) == set(files)
        served += 1
    assert clashes == 0
    assert refused_by_kind["add/add"] == len(range(0, rounds, len(RACES)))  # two adds: always one refused
    report_figures(
        "tree-conflict races",
        rounds=rounds,
        one_refused=one,
        both_accepted_by_sync=both,
        refused_by_kind=refused_by_kind,
        clashes=clashes,
        closed_and_fetched=served,
        seconds=round(time.monotonic() - started, 1),
    )
