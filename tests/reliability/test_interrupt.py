"""Commands cut short: kill -9 of ``get --copy``, Ctrl-C at any moment, a full state folder.

- a killed ``get --copy`` (a SIGKILL at a random moment, or at a named crash point) leaves
  only complete files under their names, and the same command finishes it: the folder then
  equals the version byte for byte; a folder holding anything else is still refused;
- SIGINT at delays from 0 ms after the command's first instruction through its work, for
  create, add, close, get and list: the one line ``User aborted`` and exit status 130,
  never a traceback;
- the state folder on a full disk: create and sync fail with one line naming the folder,
  leave no draft, and the same command run after space is freed makes exactly one.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import signal
import time
from pathlib import Path

import pytest

from clearml_data import Dataset
from clearml_data import _crashpoints as crashpoints
from clearml_data.cache import Cache
from clearml_data.cache.links import COPY_TEMP_PREFIX, remove_tree
from clearml_data.cli import main
from clearml_data.config import Settings
from clearml_data.service import Service
from clearml_data.testing import fill_disk, reset_services, small_tmpfs, write_tree

from figures import reliability_count, report_figures

pytestmark = pytest.mark.reliability


def make_version(root: Path, files: dict[str, bytes], chunk_mb: float = 0.02) -> tuple[str, dict[str, str]]:
    """A final version of ``files`` (packs of ~20 KB; larger files are objects of their own)."""
    ds = Dataset.create(dataset_name="v", dataset_project="interrupt")
    ds.add_files(write_tree(root, files))
    ds.upload(chunk_size=chunk_mb)
    ds.finalize()
    reset_services()  # no SQLite connection may cross a fork
    return ds.id, {p: hashlib.sha256(b).hexdigest() for p, b in files.items()}


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def mixed_files(rng: random.Random, small: int, large: int) -> dict[str, bytes]:
    files = {f"d{i % 5}/s{i}.bin": rng.randbytes(rng.randrange(500, 6000)) for i in range(small)}
    files.update({f"big/b{i}.bin": rng.randbytes(120_000 + i) for i in range(large)})
    return files


# -- kill -9 of get --copy --------------------------------------------------------------------
COPY_KILLS = reliability_count(16, 300)


def fork_cli(argv: list[str], crash_at: str | None = None, trace: Path | None = None) -> int:
    """Run ``clearml-data argv`` in a forked child (no interpreter start-up); returns its pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.environ.pop(crashpoints.ENV, None)
        os.environ.pop(crashpoints.TRACE_ENV, None)
        if crash_at:
            os.environ[crashpoints.ENV] = crash_at
        if trace:
            os.environ[crashpoints.TRACE_ENV] = str(trace)
        code = main(argv, stdout=io.StringIO(), stderr=io.StringIO())
    finally:
        os._exit(code)


def wait(pid: int) -> int:
    """Exit status of a child, or minus the signal that killed it."""
    _pid, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def half_written(target: Path, expect: dict[str, str]) -> list[str]:
    """Files that are neither complete files of the version under their names nor the
    temporary file a copy writes aside (what a kill must never leave)."""
    bad = []
    for p in sorted(target.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(target).as_posix()
        if p.name.startswith(COPY_TEMP_PREFIX):
            continue
        if expect.get(rel) != hashlib.sha256(p.read_bytes()).hexdigest():
            bad.append(rel)
    return bad


def test_killed_copy_is_finished_by_the_same_command(env, tmp_path):
    rng = random.Random(8)
    dataset_id, expect = make_version(tmp_path / "src", mixed_files(rng, 100, 6))
    # calibration: how long an uncut copy takes, and how often it reaches each point
    counts: dict[str, int] = {}
    took = []
    for cold in (True, False):
        if cold:
            Cache(env.cache).clear()
        trace = tmp_path / f"trace-{cold}"
        target = tmp_path / f"calibrate-{cold}"
        t0 = time.perf_counter()
        assert wait(fork_cli(["get", "--id", dataset_id, "--copy", str(target)], trace=trace)) == 0
        took.append(time.perf_counter() - t0)
        assert tree_hashes(target) == expect
        if cold:
            for line in trace.read_text().splitlines():
                counts[line] = counts.get(line, 0) + 1
    points = [p for p in ("copy.file_written", "cache.temp_written") if counts.get(p)]
    assert points == ["copy.file_written", "cache.temp_written"]
    figures = {"kills": 0, "named": 0, "random": 0, "partial_folders": 0, "finished": 0, "half_written": 0}
    problems: list[str] = []
    for k in range(COPY_KILLS):
        cold = k % 2 == 0
        if cold:
            Cache(env.cache).clear()
        target = tmp_path / "copies" / str(k)
        argv = ["get", "--id", dataset_id, "--copy", str(target)]
        if k % 3 == 0:  # a named point, at a random one of its passes
            point = points[(k // 3) % len(points)] if cold else "copy.file_written"
            code = wait(fork_cli(argv, crash_at=f"{point}@{rng.randint(1, counts[point])}"))
            killed = code == crashpoints.EXIT_CODE
            figures["named"] += killed
        else:
            pid = fork_cli(argv)
            time.sleep(rng.uniform(0, took[0] if cold else took[1]))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            code = wait(pid)
            killed = code == -signal.SIGKILL
            figures["random"] += killed
        if not killed and code != 0:
            problems.append(f"run {k}: the copy failed on its own ({code})")
            continue
        figures["kills"] += killed
        if target.is_dir() and any(p.is_file() for p in target.rglob("*")):
            figures["partial_folders"] += killed
        bad = half_written(target, expect) if target.is_dir() else []
        if bad:
            figures["half_written"] += 1
            problems.append(f"run {k}: a kill left files with wrong bytes under their names: {bad[:3]}")
        code = wait(fork_cli(argv))  # the same command again
        if code != 0:
            problems.append(f"run {k}: the same command, run again, failed ({code})")
            continue
        got = tree_hashes(target)
        if got != expect:
            wrong = sorted(set(got) ^ set(expect) | {p for p in got if got[p] != expect.get(p)})
            problems.append(f"run {k}: the finished folder is not the version: {wrong[:3]}")
            continue
        figures["finished"] += 1
        leftovers = list((env.cache / "tmp").iterdir()) + list(
            tmp_path.glob(f"copies/{k}/**/{COPY_TEMP_PREFIX}*")
        )
        if leftovers:
            problems.append(f"run {k}: temporary files left: {leftovers[:3]}")
        remove_tree(target)
    report_figures("kill -9 of get --copy", **figures, seconds_per_copy=round(took[0], 2))
    assert problems == []
    assert figures["kills"] >= COPY_KILLS // 2 and figures["named"] > 0 and figures["partial_folders"] > 0


CORRUPTIONS = {
    "another file": lambda t, rel: (t / "notes.txt").write_text("mine"),
    "other bytes under a version name": lambda t, rel: (t / rel).write_bytes(b"mine"),
    "same size, other bytes": lambda t, rel: (t / rel).write_bytes(bytes(len((t / rel).read_bytes()))),
    "a symlink under a version name": lambda t, rel: (
        (t / rel).unlink(),
        (t / rel).symlink_to("/etc/hostname"),
    ),
    "another folder": lambda t, rel: (t / "extra").mkdir(),
    "a version file where a folder is": lambda t, rel: (
        remove_tree(t / "big"),
        (t / "big").write_bytes(b"x"),
    ),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_folder_holding_anything_else_is_still_refused(corruption, env, tmp_path, cli):
    rng = random.Random(corruption)
    dataset_id, expect = make_version(tmp_path / "src", mixed_files(rng, 12, 2))
    target = tmp_path / "copy"
    assert cli("get", "--id", dataset_id, "--copy", target).code == 0
    victim = sorted(expect)[rng.randrange(len(expect))]
    (target / victim).unlink()  # an unfinished copy ...
    CORRUPTIONS[corruption](target, sorted(p for p in expect if p != victim and p.startswith("d"))[0])
    before = {
        p.relative_to(target).as_posix(): (p.is_symlink(), p.read_bytes() if p.is_file() else None)
        for p in target.rglob("*")
    }
    res = cli("get", "--id", dataset_id, "--copy", target)  # ... with something of the user's in it
    assert res.code == 1 and "Traceback" not in res.err
    errors = [line for line in res.err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "is not empty" in errors[0] and "--overwrite" in errors[0], res.err
    after = {
        p.relative_to(target).as_posix(): (p.is_symlink(), p.read_bytes() if p.is_file() else None)
        for p in target.rglob("*")
    }
    assert after == before  # nothing touched
    assert cli("get", "--id", dataset_id, "--copy", target, "--overwrite").code == 0
    assert tree_hashes(target) == expect
    report_figures(f"get --copy refuses a folder with {corruption}", refused=1, untouched=1)


# -- a full state folder ----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    with small_tmpfs(tmp_path / "small", "1m") as mount:
        yield mount


def versions_named(name: str) -> list:
    svc = Service(Settings.load())
    try:
        return svc.catalog.find_datasets(project="full", name=name)
    finally:
        svc.close()


@pytest.mark.parametrize("command", ["create", "sync"])
@pytest.mark.parametrize("state_exists", [False, True], ids=["new state folder", "state file there"])
def test_a_full_state_folder_is_named_and_leaves_no_draft(
    command, state_exists, small_disk, env, tmp_path, monkeypatch, cli
):
    state = small_disk / "state"
    monkeypatch.setenv("CLEARML_DATA_STATE_DIR", str(state))
    src = write_tree(tmp_path / "src", {"a.txt": "a", "sub/b.bin": os.urandom(3000)})
    figures = {"failures": 0, "clean_errors": 0, "drafts_left": 0, "reruns_made_one": 0}
    for r in range(reliability_count(2, 10)):
        name = f"n{r}"
        argv = {
            "create": ("create", "--project", "full", "--name", name),
            "sync": ("sync", "--project", "full", "--name", name, "--folder", src),
        }[command]
        if state_exists and r == 0:
            assert cli("create", "--project", "full", "--name", "before").code == 0
        before = (state / "current.json").read_bytes() if (state / "current.json").exists() else None
        ballast = fill_disk(small_disk)
        res = cli(*argv)
        figures["failures"] += 1
        errors = [line for line in res.err.splitlines() if line.startswith("Error:")]
        assert res.code == 1 and len(errors) == 1 and "Traceback" not in res.err, res.err
        assert str(state) in errors[0] and "no space left" in errors[0], errors[0]
        figures["clean_errors"] += 1
        left = versions_named(name)
        figures["drafts_left"] += len(left)
        assert left == []  # nothing behind the failed command
        assert not [p for p in state.iterdir() if p.name.startswith(".current-")] if state.is_dir() else True
        current = (state / "current.json").read_bytes() if (state / "current.json").exists() else None
        assert current == before  # the remembered dataset is as it was
        ballast.unlink()
        res = cli(*argv, "--json")
        assert res.code == 0, res.err
        made = versions_named(name)
        assert len(made) == 1 and made[0].status == ("draft" if command == "create" else "final")
        figures["reruns_made_one"] += 1
    report_figures(
        f"full state folder ({command}, {'state file there' if state_exists else 'new'})", **figures
    )
