"""Importing datasets that ClearML itself wrote in offline mode, and the offline-mode API.

The sessions are made by the real ``clearml`` package (2.1.12), run in a subprocess from a
folder of its own (``$CLEARML_DATA_TEST_CLEARML``: tox installs it there with
``pip install --target``), never from the test environment's site-packages, where its
``clearml-data`` console script would replace ours. ClearML runs with its own HOME and
config, ``CLEARML_OFFLINE_MODE=1``, its API server on a loopback port this test listens on
(and checks that nothing connected), and a proxy on a closed loopback port, so that its
update check cannot leave the machine either.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from clearml_data import Dataset
from clearml_data.errors import IntegrityError, UsageError, VersionExistsError
from clearml_data.testing.servers import free_port, unavailable

ENV_SDK = "CLEARML_DATA_TEST_CLEARML"


@pytest.fixture(scope="module")
def clearml_sdk() -> str:
    folder = os.environ.get(ENV_SDK, "")
    if not folder or not (Path(folder) / "clearml" / "__init__.py").is_file():
        unavailable(
            f"${ENV_SDK} does not name a folder holding clearml 2.1.12 (tox installs it there: "
            f"pip install --target DIR clearml==2.1.12)"
        )
    return folder


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_clearml(sdk: str, work: Path, script: str) -> Path:
    """Run ``script`` with ClearML in offline mode; returns the session folder it wrote."""
    home = work / "home"
    home.mkdir(parents=True)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    api = f"http://127.0.0.1:{server.getsockname()[1]}"
    (home / "clearml.conf").write_text(
        f'api {{ api_server: "{api}", web_server: "{api}", files_server: "{api}" }}\n'
        # reports in this process (no reporter subprocess to wait for at exit), no code diff
        "sdk { development { report_use_subprocess: false, store_uncommitted_code_diff: false } }\n"
    )
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: ClearML's update check is refused
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "PYTHONPATH": sdk,
        "PYTHONDONTWRITEBYTECODE": "1",
        "CLEARML_OFFLINE_MODE": "1",
        "CLEARML_CONFIG_FILE": str(home / "clearml.conf"),
        "HTTP_PROXY": closed,
        "HTTPS_PROXY": closed,
        "http_proxy": closed,
        "https_proxy": closed,
    }
    (work / "make_session.py").write_text(textwrap.dedent(script))
    try:
        done = subprocess.run(
            [sys.executable, "make_session.py"],
            check=False,
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        with pytest.raises(BlockingIOError):  # ClearML never tried to reach its server
            server.accept()
    finally:
        server.close()
    sessions = sorted(p for p in (home / ".clearml" / "cache" / "offline").iterdir() if p.is_dir())
    assert len(sessions) == 1, sessions
    assert sessions[0].with_suffix(".zip").is_file()  # ClearML zips the session when the task closes
    return sessions[0]


def make_source(root: Path) -> Path:
    src = root / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.csv").write_text("x,y\n1,2\n")
    (src / "sub" / "deeper" / "c.bin").write_bytes(os.urandom(200_000))
    (src / "sub" / "drop.txt").write_text("removed before upload\n")
    (root / "ext").mkdir()
    (root / "ext" / "e.txt").write_text("external\n")
    return src


SCRIPT = """\
from clearml import Dataset

Dataset.set_offline(True)
ds = Dataset.create(
    dataset_project="vision/raw", dataset_name="offline set", dataset_version="1.2.0",
    dataset_tags=["raw", "two words"], description="made offline by ClearML",
)
ds.add_files("src")
ds.add_files("src/sub/b.csv", dataset_path="copies/csv")
ds.remove_files("sub/drop.txt")
ds.add_external_files("file://{ext}", dataset_path="links")
ds.set_metadata({{"classes": ["cat", "dog"], "count": 2}}, metadata_name="labels")
ds.upload()
print("SESSION", ds.get_offline_mode_folder())
ds.finalize()
"""

EXPECTED = {
    "a.txt": "src/a.txt",
    "copies/csv/b.csv": "src/sub/b.csv",
    "sub/b.csv": "src/sub/b.csv",
    "sub/deeper/c.bin": "src/sub/deeper/c.bin",
}


@pytest.fixture(scope="module")
def session(clearml_sdk: str, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("clearml-offline")
    make_source(work)
    return run_clearml(clearml_sdk, work, SCRIPT.format(ext=work / "ext" / "e.txt"))


def _state(session: Path) -> Path:
    (found,) = [p for p in (session / "data").rglob("state.json")]
    return found


def check_imported(ds: Dataset, work: Path) -> None:
    assert (ds.project, ds.name, ds.version) == ("vision/raw", "offline set", "1.2.0")
    assert sorted(ds.tags) == ["raw", "two words"]  # ClearML's own "external files" tag is left out
    assert ds.description == "made offline by ClearML"
    assert ds.parents == []
    files = ds.file_entries_dict
    assert sorted(files) == sorted(EXPECTED)
    for path, source in EXPECTED.items():
        assert files[path].hash == _sha(work / source)
        assert files[path].size == (work / source).stat().st_size
    (link,) = ds.link_entries
    assert (link.relative_path, link.link) == ("links/e.txt", f"file://{work / 'ext' / 'e.txt'}")
    assert ds.get_metadata("labels") == {"classes": ["cat", "dog"], "count": 2}
    copy = Path(ds.get_local_copy())
    got = {p.relative_to(copy).as_posix(): p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    want = {path: (work / source).read_bytes() for path, source in EXPECTED.items()}
    want["links/e.txt"] = b"external\n"
    assert got == want


@pytest.mark.slow
def test_clearml_session_folder_imports_with_its_files(session: Path) -> None:
    work = session.parents[4]
    state = json.loads(_state(session).read_text())
    recorded = {e["relative_path"]: e["hash"] for e in state["dataset_file_entries"]}
    assert recorded == {p: _sha(work / s) for p, s in EXPECTED.items()}  # ClearML's own hashes

    new_id = Dataset.import_offline_session(str(session), upload=True, finalize=True)
    ds = Dataset.get(dataset_id=new_id)
    assert ds.is_final()
    check_imported(ds, work)


@pytest.mark.slow
def test_clearml_session_zip_imports_from_the_cli(session: Path, cli) -> None:
    work = session.parents[4]
    r = cli("import-offline", session.with_suffix(".zip"), "--finalize", "--json")
    assert r.code == 0, r.err
    data = r.json["data"]
    assert data["clearml_id"] == session.name and data["status"] == "final" and data["files"] == 5
    check_imported(Dataset.get(dataset_id=data["id"]), work)

    again = cli("import-offline", session.with_suffix(".zip"))  # the version exists now
    assert "already has a version 1.2.0" in one_error(again)
    assert len(Dataset.list_datasets(only_completed=False)) == 1


@pytest.mark.slow
def test_a_draft_import_uploads_and_becomes_current(session: Path, cli) -> None:
    r = cli("import-offline", session, "--json")
    assert r.code == 0, r.err
    row = r.json["data"]
    assert row["status"] == "draft"
    ds = Dataset.get(dataset_id=row["id"])
    assert not ds.is_dirty()  # uploaded: closing needs nothing more
    assert cli("close").code == 0  # the import is the current dataset
    check_imported(Dataset.get(dataset_id=row["id"]), session.parents[4])


def one_error(r) -> str:
    """The one error line a failed command printed (no traceback, nothing on stdout)."""
    errors = [line for line in r.err.splitlines() if line.startswith("Error: ")]
    assert r.code == 1 and len(errors) == 1 and "Traceback" not in r.err and r.out == "", r
    return errors[0]


def _copy(session: Path, tmp_path: Path) -> Path:
    target = tmp_path / session.name
    shutil.copytree(session, target)
    return target


def _no_versions() -> None:
    assert Dataset.list_datasets(only_completed=False) == []


@pytest.mark.slow
def test_a_damaged_session_is_refused_with_one_line(session: Path, tmp_path: Path, cli) -> None:
    # the state file edited: task.json's SHA-256 of it no longer matches
    bad = _copy(session, tmp_path / "edited")
    state = _state(bad)
    state.write_text(state.read_text().replace('"size": 6', '"size": 7'))
    r = cli("import-offline", bad)
    assert "is damaged: the artifact 'state' does not match the SHA-256" in one_error(r)
    _no_versions()

    # the state file missing
    state.unlink()
    r = cli("import-offline", bad)
    assert "is incomplete: the artifact 'state'" in one_error(r)
    _no_versions()

    # a truncated zip
    cut = tmp_path / "cut.zip"
    cut.write_bytes(session.with_suffix(".zip").read_bytes()[:300])
    r = cli("import-offline", cut)
    assert "not a ClearML offline session" in one_error(r)
    _no_versions()

    # a zip whose state member was rewritten (a valid zip, but not what ClearML hashed)
    flipped = tmp_path / "flipped.zip"
    with zipfile.ZipFile(session.with_suffix(".zip")) as src, zipfile.ZipFile(flipped, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(
                info, data.replace(b"a.txt", b"A.txt") if info.filename.endswith("state.json") else data
            )
    with pytest.raises(IntegrityError, match="does not match the SHA-256"):
        Dataset.import_offline_session(str(flipped))
    _no_versions()


def test_not_a_session_gets_one_line(tmp_path: Path, cli) -> None:
    r = cli("import-offline", tmp_path / "nowhere")
    assert "no such ClearML offline session" in one_error(r)
    (tmp_path / "empty").mkdir()
    r = cli("import-offline", tmp_path / "empty")
    assert "is not a ClearML offline session: it has no task.json" in one_error(r)
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "task.json").write_text(json.dumps({"id": "offline-1", "system_tags": []}))
    r = cli("import-offline", tmp_path / "task")
    assert "is of a task, not of a dataset" in one_error(r)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UsageError, match="not a folder, and not a zip file"):
        Dataset.import_offline_session(str(tmp_path / "notes.txt"))
    _no_versions()


@pytest.mark.slow
def test_changed_or_missing_source_files_are_refused(clearml_sdk: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    src = make_source(work)
    made = run_clearml(clearml_sdk, work, SCRIPT.format(ext=work / "ext" / "e.txt"))

    (src / "sub" / "b.csv").write_text("x,y\n1,3\n")  # same size, other bytes
    with pytest.raises(
        IntegrityError, match=r"sub/b.csv .*does not match the SHA-256 and size ClearML recorded"
    ):
        Dataset.import_offline_session(str(made), finalize=True)
    _no_versions()

    (src / "sub" / "b.csv").write_text("x,y\n1,2\n")
    (work / "ext" / "e.txt").unlink()  # read after the draft exists: the draft goes again
    with pytest.raises(UsageError):
        Dataset.import_offline_session(str(made), finalize=True)
    _no_versions()

    (src / "a.txt").unlink()
    with pytest.raises(UsageError, match=r"is not at .* any more"):
        Dataset.import_offline_session(str(made))
    _no_versions()


@pytest.mark.slow
def test_clearml_offline_cannot_make_a_child_version(clearml_sdk: str, tmp_path: Path) -> None:
    """ClearML offline has no parents: a parent must be final, and offline nothing is."""
    work = tmp_path / "work"
    work.mkdir()
    make_source(work)
    run_clearml(
        clearml_sdk,
        work,
        """\
        from clearml import Dataset

        Dataset.set_offline(True)
        parent = Dataset.create(dataset_project="p", dataset_name="n")
        parent.add_files("src")
        parent.upload()
        parent.finalize()
        try:
            Dataset.create(dataset_project="p", dataset_name="n", parent_datasets=[parent])
        except ValueError as exc:
            assert "not finalized" in str(exc), exc
        else:
            raise SystemExit("ClearML made a child version offline")
        """,
    )


# -- the offline-mode API (no ClearML needed) --------------------------------------------------------
def test_offline_mode_keeps_storage_untouched(tmp_path: Path, env, caplog) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f.txt").write_text("content")
    assert Dataset.is_offline() is False
    ds = Dataset.create(dataset_project="p", dataset_name="n")
    assert ds.get_offline_mode_folder() is None

    Dataset.set_offline(offline_mode=True)
    assert Dataset.is_offline() is True
    assert ds.get_offline_mode_folder() == Path(env.catalog).parent
    ds.add_files(tmp_path / "data")
    assert ds.upload() is None and ds.is_dirty()  # the files wait for upload
    assert [p for p in Path(env.storage).rglob("*") if p.is_file()] == []  # nothing stored
    assert ds.finalize() is False and not ds.is_final()
    assert "offline mode" in caplog.text
    with pytest.raises(UsageError, match="cannot upload or finalize in offline mode"):
        Dataset.import_offline_session(str(tmp_path))
    with pytest.raises(ValueError, match="cannot squash datasets in offline mode"):
        Dataset.squash("merged", dataset_ids=[ds.id])

    Dataset.set_offline(False)
    ds.upload()
    assert ds.finalize() is True
    assert Path(ds.get_local_copy(), "f.txt").read_text() == "content"


def test_offline_mode_follows_clearml_variable_until_set(monkeypatch) -> None:
    monkeypatch.setenv("CLEARML_OFFLINE_MODE", "1")
    assert Dataset.is_offline() is True
    Dataset.set_offline(False)  # an explicit call wins over the variable
    assert Dataset.is_offline() is False


def synthetic_session(tmp_path: Path, entries: list[dict], parents: tuple[str, ...] = ()) -> Path:
    """A session laid out as ClearML lays it out, recorded as written in another folder
    (``offline_folder``): artifact URIs map from there to wherever the session is now."""
    session = tmp_path / "offline-abc"
    state_dir = session / "data" / "p" / ".datasets" / "n" / "n.offline-abc" / "artifacts" / "state"
    state_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "dataset_file_entries": entries,
        "dataset_link_entries": [],
        "dependency_graph": {"offline-abc": list(parents)},
        "id": "offline-abc",
        "file_count": len(entries),
    }
    data = json.dumps(state).encode()
    (state_dir / "state.json").write_bytes(data)
    uri = f"file:///elsewhere/offline-abc/{state_dir.relative_to(session)}/state.json"
    task = {
        "id": "offline-abc",
        "name": "n",
        "project_name": "p/.datasets/n",
        "system_tags": ["dataset"],
        "tags": [],
        "hyperparams": {"properties": {"version": {"value": "1.0.0"}}},
        "offline_folder": "/elsewhere/offline-abc",
        "execution": {"artifacts": [{"key": "state", "uri": uri, "hash": hashlib.sha256(data).hexdigest()}]},
    }
    (session / "task.json").write_text(json.dumps(task))
    return session


def entry(tmp_path: Path, rel: str, content: bytes = b"12345") -> dict:
    source = tmp_path / "sources" / hashlib.sha256(rel.encode()).hexdigest()
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(content)
    return {
        "relative_path": rel,
        "hash": hashlib.sha256(content).hexdigest(),
        "size": len(content),
        "parent_dataset_id": "offline-abc",
        "artifact_name": None,
        "local_path": str(source),
    }


def test_import_of_an_existing_version_says_so(tmp_path: Path) -> None:
    session = synthetic_session(tmp_path, [entry(tmp_path, "f.txt")])
    first = Dataset.get(dataset_id=Dataset.import_offline_session(str(session), finalize=True))
    assert (first.project, first.name, first.version) == ("p", "n", "1.0.0")
    assert first.list_files() == ["f.txt"]
    with pytest.raises(VersionExistsError, match="imported already"):
        Dataset.import_offline_session(str(session))
    assert len(Dataset.list_datasets(only_completed=False)) == 1


@pytest.mark.parametrize(
    ("paths", "parents", "error", "message"),
    [
        (["../escape.txt"], (), UsageError, "names an unsafe dataset path"),
        (["a/b.txt", "a"], (), UsageError, "would be both a file and a folder"),
        (["twice.txt", "twice.txt"], (), IntegrityError, "is listed twice"),
        (
            ["f.txt"],
            ("0123456789abcdef0123456789abcdef",),
            UsageError,
            "has parent versions .* on a ClearML server",
        ),
    ],
)
def test_hostile_or_unsupported_sessions_are_refused(tmp_path, cli, paths, parents, error, message) -> None:
    session = synthetic_session(tmp_path, [entry(tmp_path, p) for p in paths], parents)
    with pytest.raises(error, match=message):
        Dataset.import_offline_session(str(session))
    assert message.split(" .*")[0] in one_error(cli("import-offline", session))
    _no_versions()


def test_a_task_json_that_is_not_an_object_is_refused(tmp_path: Path, cli) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "task.json").write_text("[1, 2]")
    assert "has no task id" in one_error(cli("import-offline", tmp_path / "s"))
    (tmp_path / "s" / "task.json").write_text("{not json")
    assert "is not valid JSON" in one_error(cli("import-offline", tmp_path / "s"))
    _no_versions()
