"""Hostile input: crafted paths, names, ids, links and catalogs.

Each hostile input must end in a one-line error and a non-zero exit, with no traceback,
nothing written outside the target and the catalog unchanged (a dump compared before and
after). Commands run in-process through the CLI; a sample also runs in subprocesses,
where a traceback could escape past ``main``.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearml_data.paths import check_relpath
from clearml_data.testing import catalog_dump, reset_services, run_cli, write_tree

from figures import reliability_count, report_figures

#: ~30 paths that must never become (part of) a dataset path
HOSTILE = [
    "../x",
    "../../etc/passwd",
    "a/../../x",
    "..",
    "./../x",
    "/../x",  # a leading "/" is the dataset root (see below), which ".." still cannot leave
    "//../etc/passwd",
    "C:x",
    "c:\\windows",
    "\\\\server\\share",
    "a\\b",
    "a\x00b",
    "a\nb",
    "a\rb",
    "a\tb",
    "a\x1b[31mb",
    "a\x7fb",
    "a\x85b",
    "\u202eevil.txt",
    "a\u2066b",
    "a\u2028b",
    "x" * 256,
    "a/" + "\u00e9" * 128,
    "CON",
    "nul",
    "a/COM1/b",
    "LPT9",
    "trailing.",
    "a /b",
    "a./b",
    "...",
    "caf\udce9",
]


def _dump(env) -> list[str]:
    """The catalog's content as SQL (schema and rows), for before/after comparisons."""
    reset_services()
    return catalog_dump(env.catalog)


def _tree(root: Path, skip: tuple[Path, ...]) -> dict[str, tuple[int, int]]:
    """{path: (size, mtime_ns)} of every file and link under root (folders: that they exist)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(dirpath, d) not in skip]
        out.update((str(Path(dirpath, d)), (0, 0)) for d in dirs)
        for name in files:
            st = Path(dirpath, name).lstat()
            out[str(Path(dirpath, name))] = (st.st_size, st.st_mtime_ns)
    return out


class Guard:
    """Runs a command that must be refused and checks every invariant."""

    def __init__(self, env, root: Path):
        self.env = env
        self.root = root
        self.tried = 0
        self.refused = 0

    def refused_cleanly(self, *argv, verify_report: bool = False) -> str:
        # the cache may gain verified objects and lock files; the catalog is compared by dump
        skip = (self.env.cache, self.env.state)
        before, files_before = _dump(self.env), _tree(self.root, skip)
        catalog_files = {str(p) for p in self.env.catalog.parent.glob(self.env.catalog.name + "*")}
        r = run_cli("-q", *argv)
        self.tried += 1
        assert r.code != 0, (argv, r.out, r.err)
        assert "Traceback" not in r.err + r.out, (argv, r.err)
        if not verify_report:
            lines = r.err.splitlines()
            assert len(lines) == 1 and lines[0].startswith("Error: "), (argv, r.err)
            assert lines[0].isprintable(), lines[0]
        after = _tree(self.root, skip)
        changed = {
            p
            for p in set(files_before) | set(after)
            if files_before.get(p) != after.get(p) and p not in catalog_files
        }
        assert not changed, (argv, sorted(changed))
        if argv[0] == "verify":  # the one write verify makes: locations it found damaged are marked
            with sqlite3.connect(self.env.catalog) as db:
                marked = db.execute("UPDATE objects SET damaged = 0 WHERE damaged = 1").rowcount
            assert marked or not verify_report, (argv, "a location verify named was not marked damaged")
        assert _dump(self.env) == before, argv
        self.refused += 1
        return r.err


@pytest.fixture
def guard(env, tmp_path):
    return Guard(env, tmp_path)


@pytest.fixture
def draft(env, tmp_path):
    src = write_tree(tmp_path / "src", {"a.txt": "alpha", "sub/b.txt": "beta"})
    r = run_cli("--json", "create", "--project", "p", "--name", "n")
    assert r.code == 0, r.err
    did = r.json["data"]["id"]
    assert run_cli("add", "--id", did, "--files", str(src)).code == 0
    return did, src


@pytest.fixture
def final(env, tmp_path):
    src = write_tree(tmp_path / "fsrc", {"a.txt": "alpha" * 100, "sub/b.txt": "beta", "c.txt": "gamma"})
    r = run_cli("--json", "create", "--project", "p", "--name", "final")
    did = r.json["data"]["id"]
    assert run_cli("add", "--id", did, "--files", str(src)).code == 0
    assert run_cli("close", "--id", did).code == 0
    reset_services()
    return did


# -- hostile dataset paths -------------------------------------------------------------------
@pytest.mark.reliability
def test_hostile_dataset_folders_and_remove_patterns(draft, guard):
    did, src = draft
    for path in HOSTILE:
        guard.refused_cleanly("add", "--id", did, "--files", src, f"--dataset-folder={path}")
        guard.refused_cleanly(
            "sync", "--id", did, "--folder", src, f"--dataset-folder={path}", "--skip-close"
        )
        if path.strip(". ") and path not in ("...",):
            guard.refused_cleanly("remove", "--id", did, f"--files={path}")
    report_figures(
        "hostile input",
        group="dataset paths and remove patterns",
        tried=guard.tried,
        refused_cleanly=guard.refused,
    )


@pytest.mark.reliability
def test_leading_slash_is_the_dataset_root_and_copies_stay_inside(env, tmp_path):
    # "/etc/passwd" as a dataset folder is "etc/passwd" inside the dataset (ClearML's rule):
    # stored relative, and a local copy writes it below its target folder, nowhere else
    from clearml_data import Dataset

    src = write_tree(tmp_path / "src", {"a.txt": "alpha"})
    ds = Dataset.create(dataset_name="lead", dataset_project="p")
    for folder in ("/etc/passwd", "//abs", "/"):
        ds.add_files(src, dataset_path=folder)
    ds.finalize(auto_upload=True)
    assert ds.list_files() == ["a.txt", "abs/a.txt", "etc/passwd/a.txt"]
    outside = _tree(tmp_path, (env.cache, env.state, tmp_path / "copy"))
    copy = Path(ds.get_mutable_local_copy(tmp_path / "copy"))
    assert sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()) == ds.list_files()
    assert _tree(tmp_path, (env.cache, env.state, tmp_path / "copy")) == outside
    assert not os.path.exists("/etc/passwd/a.txt")


@pytest.mark.reliability
def test_hostile_paths_through_the_api(env, draft, tmp_path):
    from clearml_data import Dataset
    from clearml_data.errors import ClearMLDataError

    did, src = draft
    ds = Dataset.get(dataset_id=did)
    before = _dump(env)
    refused = 0
    for path in HOSTILE:
        calls = [
            (ds.add_files, {"path": src, "dataset_path": path}),
            (ds.sync_folder, {"local_path": src, "dataset_path": path}),
        ]
        if path.strip(". "):
            calls.append((ds.remove_files, {"dataset_path": path}))
        for call, kwargs in calls:
            with pytest.raises(ClearMLDataError) as info:
                call(**kwargs)
            assert "\n" not in str(info.value)
            refused += 1
    assert _dump(env) == before
    report_figures("hostile input", group="python api", tried=refused, refused_cleanly=refused)


@pytest.mark.reliability
def test_hypothesis_names_are_stored_safely_or_refused(env, draft, tmp_path):
    did, src = draft
    count = {"tried": 0, "accepted": 0, "refused": 0}
    alphabet = st.one_of(st.sampled_from(list("./\\:\x00\n\x1b\u202e .")), st.characters())

    @settings(
        max_examples=reliability_count(40, 400),
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.text(alphabet, min_size=1, max_size=12))
    def check(name):
        before = _dump(env)
        r = run_cli("-q", "add", "--id", did, "--files", src, f"--dataset-folder={name}")
        count["tried"] += 1
        assert "Traceback" not in r.err
        if r.code != 0:
            assert len(r.err.splitlines()) == 1 and r.err.startswith("Error: ")
            assert _dump(env) == before
            count["refused"] += 1
            return
        count["accepted"] += 1
        reset_services()
        with sqlite3.connect(env.catalog) as db:
            paths = [row[0] for row in db.execute("SELECT path FROM changes")]
        db.close()
        for p in paths:
            assert check_relpath(p) == p
        assert run_cli("-q", "remove", "--id", did, "--files", "*").code == 0
        assert run_cli("-q", "add", "--id", did, "--files", src).code == 0

    check()
    assert count["refused"] > 0
    report_figures(
        "hostile input",
        group="hypothesis dataset folders",
        tried=count["tried"],
        refused_cleanly=count["refused"],
        stored_safely=count["accepted"],
    )


# -- local files: names that are not UTF-8, symlinks that leave the folder --------------------
@pytest.mark.reliability
def test_non_utf8_file_name_is_refused_with_its_bytes(draft, guard, tmp_path):
    did, _src = draft
    folder = write_tree(tmp_path / "raw", {"ok.txt": "fine"})
    fd = os.open(os.path.join(os.fsencode(folder), b"caf\xe9.txt"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    err = guard.refused_cleanly("add", "--id", did, "--files", folder)
    assert "b'caf\\xe9.txt'" in err
    guard.refused_cleanly("sync", "--id", did, "--folder", folder, "--skip-close")
    report_figures("hostile input", group="non-utf8 names", tried=guard.tried, refused_cleanly=guard.refused)


@pytest.mark.reliability
def test_symlinks_leaving_the_folder_are_refused(env, draft, guard, tmp_path):
    did, _src = draft
    outside = write_tree(tmp_path / "outside", {"secret.txt": "do not upload", "dir/x.txt": "x"})
    cases = {
        "file": lambda f: os.symlink(outside / "secret.txt", f / "link.txt"),
        "relative": lambda f: os.symlink("../../outside/secret.txt", f / "sub" / "link.txt"),
        "folder": lambda f: os.symlink(outside / "dir", f / "dirlink"),
        "dangling": lambda f: os.symlink(outside / "missing", f / "gone.txt"),
        "absolute-root": lambda f: os.symlink("/", f / "root"),
    }
    for name, make in cases.items():
        folder = write_tree(tmp_path / f"links-{name}", {"ok.txt": "fine", "sub/in.txt": "in"})
        make(folder)
        err = guard.refused_cleanly("add", "--id", did, "--files", folder)
        assert "outside the folder" in err, err
    # a link that stays inside the folder is followed: its target's bytes are stored
    inside = write_tree(tmp_path / "links-inside", {"real.txt": "real bytes"})
    os.symlink("real.txt", inside / "alias.txt")
    assert run_cli("add", "--id", did, "--files", inside, "--dataset-folder", "in").code == 0
    listed = run_cli("--json", "list", "--id", did).json["data"]["files"]
    by_path = {f["path"]: f["hash"] for f in listed}
    assert by_path["in/alias.txt"] == by_path["in/real.txt"]
    report_figures("hostile input", group="symlinks", tried=guard.tried, refused_cleanly=guard.refused)


# -- names, versions and ids -------------------------------------------------------------------
@pytest.mark.reliability
def test_overlong_and_control_names_are_refused(env, guard, final):
    long = "n" * 256
    for argv in (
        ["create", "--project", long, "--name", "n"],
        ["create", "--project", "p", "--name", long],
        ["create", "--project", "p", "--name", "n", "--version", long],
        ["create", "--project", "p", "--name", "a\x1b[2Jb"],
        ["create", "--project", "a\nb", "--name", "n"],
        ["create", "--project", "p", "--name", "n", "--tags", "t\x00"],
        ["rename", "--project", "p", "--name", "final", "--new-name", long],
        ["move", "--project", "p", "--name", "final", "--new-project", "x\x07"],
    ):
        guard.refused_cleanly(*argv)
    report_figures("hostile input", group="names", tried=guard.tried, refused_cleanly=guard.refused)


@pytest.mark.reliability
def test_sql_looking_names_are_stored_literally(env, final):
    names = [
        "x'; DROP TABLE datasets; --",
        'a" OR 1=1 --',
        "%",
        "_",
        "name\\'",
        "Robert'); DELETE FROM changes;--",
    ]
    tables_before = _dump(env)
    for i, name in enumerate(names):
        r = run_cli("--json", "create", "--project", name, "--name", name, "--version", f"{i}.0')--")
        assert r.code != 0 or r.json["data"]["name"] == name
        if r.code != 0:  # a version that is not PEP 440 may be refused, cleanly
            assert "Traceback" not in r.err and len(r.err.splitlines()) >= 1
            r = run_cli("--json", "create", "--project", name, "--name", name)
            assert r.code == 0, r.err
        found = run_cli("--json", "search", "--project", name, "--not-only-completed").json["data"]
        assert [d["name"] for d in found] == [name]
    assert run_cli("-q", "search", "--name", "%").out.count("%") <= 2  # a regex, not SQL LIKE
    # every row that was there is still there, unchanged
    after = set(_dump(env))
    assert set(tables_before) <= after
    assert run_cli("list", "--id", final).code == 0


@pytest.mark.reliability
def test_hostile_ids(env, guard, final, tmp_path):
    bad_ids = [
        "../../x",
        "..",
        "/etc/passwd",
        final[:8] + "/../..",
        final + "\x00",
        "%",
        "*",
        "'; DROP TABLE x;--",
        final[:7],
        "g" * 32,
        final.upper() + "0",
    ]
    for bad in bad_ids:
        for argv in (
            ["get", "--id", bad],
            ["list", "--id", bad],
            ["verify", "--id", bad],
            ["create", "--project", "p", "--name", "c", "--parents", bad],
            ["compare", "--source", bad, "--target", final],
            ["delete", "--id", bad],
            ["search", "--ids", bad],
            ["squash", "--name", "s", "--ids", bad, final],
        ):
            guard.refused_cleanly(*argv)
    # a remembered current dataset that was tampered with
    state = env.state / "current.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    import json

    state.write_text(json.dumps({str(env.catalog): "../../x"}))
    guard.refused_cleanly("list")
    report_figures("hostile input", group="ids", tried=guard.tried, refused_cleanly=guard.refused)


# -- a crafted catalog -----------------------------------------------------------------------------
def _craft(env, sql: str, params=()) -> None:
    reset_services()
    db = sqlite3.connect(env.catalog)
    try:
        with db:
            db.execute("PRAGMA foreign_keys = OFF")
            db.execute(sql, params)
    finally:
        db.close()


CRAFTED = {
    "traversal path": ("UPDATE changes SET path = '../../escaped.txt' WHERE path = 'a.txt'", ()),
    "deep traversal": (
        "UPDATE changes SET path = 'sub/../../../../tmp/escaped' WHERE path = 'sub/b.txt'",
        (),
    ),
    "absolute path": ("UPDATE changes SET path = '/tmp/escaped.txt' WHERE path = 'a.txt'", ()),
    "escape sequence in path": (
        "UPDATE changes SET path = 'a' || char(27) || '[2J.txt' WHERE path = 'a.txt'",
        (),
    ),
    "hash naming a file": (
        "UPDATE changes SET hash = '../../../../../../etc/passwd' WHERE path = 'a.txt'",
        (),
    ),
    "negative size": ("UPDATE changes SET size = -5 WHERE path = 'a.txt'", ()),
    "hash not hex": ("UPDATE changes SET hash = upper(hash) WHERE path = 'a.txt'", ()),
    "key traversal": ("UPDATE objects SET key = '../../../../etc/passwd'", ()),
    "negative offset": ("UPDATE objects SET offset = -1", ()),
    "offset past the end": ("UPDATE objects SET offset = offset + 1000000", ()),
    "length past the end": ("UPDATE objects SET length = length + 1000000", ()),
}


@pytest.mark.reliability
@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_catalog_rows(env, guard, final, tmp_path, case):
    sql, params = CRAFTED[case]
    _craft(env, sql, params)
    copy = tmp_path / "copy"
    reads_only = case in ("offset past the end", "length past the end")
    for argv in (
        ["get", "--id", final],
        ["get", "--id", final, "--copy", copy],
        ["verify", "--id", final],
        ["verify", "--id", final, "--filesize"],
    ):
        guard.refused_cleanly(*argv, verify_report=reads_only and argv[0] == "verify")
    if not reads_only and case not in ("key traversal", "negative offset"):
        guard.refused_cleanly("list", "--id", final)
        guard.refused_cleanly("verify", "--id", final, "--folder", tmp_path / "fsrc")
    assert not copy.exists() or not any(copy.iterdir())
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/escaped.txt").exists()
    report_figures(
        "hostile input", group=f"crafted catalog: {case}", tried=guard.tried, refused_cleanly=guard.refused
    )


@pytest.mark.reliability
def test_crafted_catalog_ids_and_cycles(env, guard, final, tmp_path):
    r = run_cli("--json", "create", "--project", "p", "--name", "child", "--parents", final)
    child = r.json["data"]["id"]
    assert run_cli("close", "--id", child).code == 0
    # a parent cycle: final's parent is its own child
    _craft(
        env, "INSERT INTO dataset_parents (dataset_id, position, parent_id) VALUES (?, 0, ?)", (final, child)
    )
    for argv in (
        ["get", "--id", child],
        ["list", "--id", final],
        ["verify", "--id", child],
        ["squash", "--name", "sq", "--ids", child],
    ):
        guard.refused_cleanly(*argv)
    _craft(env, "DELETE FROM dataset_parents WHERE dataset_id = ?", (final,))
    # a parent id that names a path, and a dataset whose id does
    _craft(env, "UPDATE dataset_parents SET parent_id = '../../../x' WHERE dataset_id = ?", (child,))
    guard.refused_cleanly("get", "--id", child)
    guard.refused_cleanly("list", "--id", child)
    _craft(env, "UPDATE datasets SET id = ? WHERE id = ?", (final[:8] + "/../../../../../tmp/x", final))
    for argv in (
        ["get", "--id", final[:8]],
        ["list", "--id", final[:8]],
        ["delete", "--id", final[:8], "--force"],
    ):
        guard.refused_cleanly(*argv)
    report_figures(
        "hostile input",
        group="crafted catalog: ids and cycles",
        tried=guard.tried,
        refused_cleanly=guard.refused,
    )


@pytest.mark.reliability
def test_get_targets(env, guard, final, tmp_path):
    guard.refused_cleanly("get", "--id", final, "--copy", "a\x00b")
    guard.refused_cleanly("get", "--id", final, "--link", "a\x00b")
    report_figures("hostile input", group="get targets", tried=guard.tried, refused_cleanly=guard.refused)


# -- in real processes: nothing escapes past main ---------------------------------------------
@pytest.mark.reliability
def test_hostile_input_in_subprocesses(env, final, tmp_path):
    src = write_tree(tmp_path / "src", {"a.txt": "alpha"})
    os.symlink(tmp_path / "fsrc" / "a.txt", src / "out.txt")
    r = run_cli("--json", "create", "--project", "p", "--name", "sub")
    did = r.json["data"]["id"]
    argvs = [
        ["add", "--id", did, "--files", str(tmp_path / "fsrc"), "--dataset-folder", p]
        for p in HOSTILE
        if "\x00" not in p and "\udce9" not in p
    ][: reliability_count(6, 40)]
    argvs += [
        ["add", "--id", did, "--files", str(src)],
        ["get", "--id", "../../x"],
        ["create", "--project", "p", "--name", "n" * 300],
    ]
    _craft(env, "UPDATE changes SET path = '../../escaped.txt' WHERE path = 'a.txt'")
    argvs += [
        ["get", "--id", final],
        ["list", "--id", final],
        ["verify", "--id", final, "--folder", str(tmp_path)],
    ]
    before = _dump(env)
    for argv in argvs:
        p = subprocess.run(
            [sys.executable, "-m", "clearml_data", "-q", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert p.returncode != 0, argv
        assert "Traceback" not in p.stderr and len(p.stderr.splitlines()) == 1, (argv, p.stderr)
    assert _dump(env) == before
    report_figures("hostile input", group="subprocesses", tried=len(argvs), refused_cleanly=len(argvs))
