"""Ctrl-C at any moment: SIGINT to the ``clearml-data`` console script at delays from 0 ms
after the command's first instruction through its work, for create, add, close, get and
list, ends in the one line ``User aborted[: what it left and what to run next]`` and exit
status 130, never a traceback (or, when the signal comes after the work is done, in the
command's normal end). Mid-upload, that line names the draft kept and the command that
resumes it, and a sync that made a draft says that none is left.

"0 ms" is the moment the command's entry module has been imported (its first instruction
takes SIGINT over): the child runs with PYTHONPROFILEIMPORTTIME=1, and the test sends the
signal that long after the child reports that import. What the interpreter does before
(its own start-up, ``site`` and ``.pth`` files) is outside any program's reach.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clearml_data import Dataset
from clearml_data.cache import Cache
from clearml_data.config import Settings
from clearml_data.service import Service
from clearml_data.testing import reset_services, write_tree

from figures import reliability_count, report_figures

pytestmark = pytest.mark.reliability

SCRIPT = Path(sys.executable).parent / "clearml-data"
MARKER = "| clearml_data.__main__"
FIXED_DELAYS = [0.0, 0.002, 0.02, 0.1][: reliability_count(3, 4)]
WORK_FRACTIONS = [0.5, 0.9] if reliability_count(0, 1) == 0 else [0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.97]
REPEATS = reliability_count(1, 3)


@pytest.fixture
def script():
    if not SCRIPT.exists():
        pytest.skip(f"no console script at {SCRIPT}")
    if "clearml_data.__main__" not in SCRIPT.read_text(errors="replace"):
        pytest.fail(f"{SCRIPT} does not start at clearml_data.__main__: install the package again")
    return SCRIPT


class World:
    def __init__(self, env, root: Path):
        self.env = env
        self.root = root
        rng = random.Random(9)
        self.files = {f"d{i % 6}/f{i}.bin": rng.randbytes(rng.randrange(2000, 12000)) for i in range(200)}
        self.files.update({f"big/b{i}.bin": rng.randbytes(400_000 + i) for i in range(3)})
        self.src = write_tree(root / "src", self.files)
        ds = Dataset.create(dataset_name="final", dataset_project="sigint")
        ds.add_files(self.src)
        ds.upload(chunk_size=0.05)
        ds.finalize()
        self.final = ds.id
        reset_services()

    def draft(self, with_files: bool) -> str:
        svc = Service(Settings.load())
        try:
            row = svc.create(name="draft", project="sigint")
            if with_files:
                svc.add_files(row.id, str(self.src))
            return row.id
        finally:
            svc.close()

    def argv(self, command: str) -> list[str]:
        """The command line, with its state made ready (a fresh draft, an empty cache)."""
        if command == "create":
            return ["create", "--project", "sigint", "--name", "new"]
        if command == "add":
            return ["add", "--id", self.draft(False), "--files", str(self.src)]
        if command == "close":
            return ["close", "--id", self.draft(True), "--chunk-size", "0.05"]
        if command == "get":
            Cache(self.env.cache).clear()
            return ["get", "--id", self.final]
        return ["list", "--id", self.final]


def launch(script: Path, argv: list[str], delay: float | None) -> dict:
    """Run the console script; ``delay`` seconds after it reports its entry module imported,
    send SIGINT. Returns its exit status, its output, how long it took to print its result,
    and how long after the signal the result came."""
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    proc = subprocess.Popen([str(script), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    ready = threading.Event()
    err_lines: list[str] = []
    out: list[bytes] = []
    first_out: list[float] = []  # when the result came (main() flushes stdout once, at the end)

    def read_err():
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith("import time:"):
                if line.endswith(MARKER):
                    ready.set()
                continue
            err_lines.append(line)

    def read_out():
        while True:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            if not out:
                first_out.append(time.perf_counter())
            out.append(chunk)

    readers = [threading.Thread(target=read_err), threading.Thread(target=read_out)]
    for t in readers:
        t.start()
    assert ready.wait(60), "the command never imported its entry module"
    started = time.perf_counter()
    sent = None
    if delay is not None:
        time.sleep(delay)
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=120)
    for t in readers:
        t.join()
    proc.stdout.close()
    proc.stderr.close()
    return {
        "code": code,
        "err": err_lines,
        "out": b"".join(out).decode(errors="replace"),
        "work": (first_out[0] if first_out else time.perf_counter()) - started,
        "late_by": None if sent is None or not first_out else first_out[0] - sent,
    }


def judge(res: dict) -> str:
    """'aborted', 'finished', or what went wrong."""
    err = res["err"]
    text = "\n".join(err)
    if "Traceback" in text or "Exception ignored" in text or "Fatal Python error" in text:
        return f"a traceback: {text[-1500:]}"
    if res["code"] == 130:
        aborted = [line for line in err if line.startswith("User aborted")]
        if (
            err
            and err[-1].startswith("User aborted")
            and len(aborted) == 1
            and not any(line.startswith("Error:") for line in err)
        ):
            return "aborted"
        return f"exit 130 without exactly one final 'User aborted' line: {err[-5:]}"
    if res["code"] == 0:
        if res["late_by"] is not None and res["late_by"] > LATENCY:
            return f"SIGINT was not acted upon: the result came {res['late_by'] * 1000:.0f} ms after it"
        return "finished"
    return f"exit status {res['code']}: {err[-5:]}"


COMMANDS = ["create", "add", "close", "get", "list"]
#: a SIGINT is acted upon within this time (the main thread may be inside one C call meanwhile)
LATENCY = 0.05


@pytest.mark.parametrize("command", COMMANDS)
def test_ctrl_c_at_any_moment_is_one_line_and_exit_130(command, script, env, tmp_path):
    world = World(env, tmp_path)
    calm = launch(script, world.argv(command), None)  # how long its work takes, uncut
    assert calm["code"] == 0, calm["err"]
    delays = FIXED_DELAYS + [f * calm["work"] for f in WORK_FRACTIONS]
    outcomes: dict[str, int] = {}
    problems = []
    for delay in delays:
        for _ in range(REPEATS):
            res = launch(script, world.argv(command), delay)
            verdict = judge(res)
            outcomes[verdict if verdict in ("aborted", "finished") else "wrong"] = (
                outcomes.get(verdict if verdict in ("aborted", "finished") else "wrong", 0) + 1
            )
            if verdict not in ("aborted", "finished"):
                problems.append(f"SIGINT {delay * 1000:.0f} ms after start: {verdict}")
    # the catalog is sound afterwards: the same command still works
    assert launch(script, world.argv(command), None)["code"] == 0
    report_figures(
        f"Ctrl-C during {command}",
        signals=len(delays) * REPEATS,
        aborted=outcomes.get("aborted", 0),
        finished_first=outcomes.get("finished", 0),
        wrong=outcomes.get("wrong", 0),
        work_ms=round(calm["work"] * 1000),
    )
    assert problems == []
    assert outcomes.get("aborted", 0) >= len(FIXED_DELAYS) * REPEATS


# -- what the line says mid-work ------------------------------------------------------------------
def _interrupt_at(script: Path, argv: list[str], point: str, tmp_path: Path) -> dict:
    """Run the console script and send SIGINT as soon as it reaches the crash point ``point``
    (seen through CLEARML_DATA_CRASH_TRACE, which only records the points reached)."""
    trace = tmp_path / f"trace-{time.monotonic_ns()}"
    env = dict(os.environ, CLEARML_DATA_CRASH_TRACE=str(trace))
    proc = subprocess.Popen([str(script), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if trace.exists() and point in trace.read_text().split():
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.002)
    out, err = proc.communicate(timeout=120)
    return {"code": proc.returncode, "out": out.decode(), "err": err.decode().splitlines()}


@pytest.fixture
def many_files(tmp_path):
    return write_tree(
        tmp_path / "many", {f"d{i % 40}/f{i}.bin": os.urandom(64) + bytes([i % 256]) for i in range(20_000)}
    )


def test_ctrl_c_during_close_names_the_draft_kept_and_the_command_that_resumes(script, tmp_path, many_files):
    ds = Dataset.create(dataset_name="d", dataset_project="sigint")
    ds.add_files(many_files)
    reset_services()
    res = _interrupt_at(script, ["close", "--id", ds.id], "upload.planned", tmp_path)
    if res["code"] == 0:
        pytest.skip("the close finished before the signal landed")
    assert res["code"] == 130, res["err"]
    assert res["err"][-1] == (
        f"User aborted: dataset {ds.id} is still a draft and keeps what was uploaded; run "
        f"`clearml-data close --id {ds.id}` to resume"
    ), res["err"]
    assert not any("Traceback" in line for line in res["err"])
    again = subprocess.run(
        [str(script), "close", "--id", ds.id], check=False, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    assert Dataset.get(dataset_id=ds.id).is_final()


def test_ctrl_c_during_a_sync_that_made_a_draft_leaves_none_and_says_so(script, tmp_path, many_files):
    before = Dataset.create(dataset_name="current", dataset_project="sigint")
    reset_services()
    subprocess.run(
        [str(script), "add", "--id", before.id, "--files", str(many_files / "d0")],
        check=True,
        capture_output=True,
    )
    argv = ["sync", "--project", "sigint", "--name", "synced", "--folder", str(many_files)]
    res = _interrupt_at(script, argv, "upload.planned", tmp_path)
    if res["code"] == 0:
        pytest.skip("the sync finished before the signal landed")
    assert res["code"] == 130, res["err"]
    assert res["err"][-1].startswith(
        "User aborted: no new version was made and the current dataset is as before"
    ), res["err"]
    service = Service(Settings.load())
    try:
        assert [r.id for r in service.search(only_completed=False)] == [before.id]
    finally:
        service.close()
    listed = subprocess.run(
        [str(script), "list", "--json"], check=False, capture_output=True, text=True, timeout=120
    )
    assert f'"id": "{before.id}"' in listed.stdout  # still the current dataset
