"""Concurrent writers on one catalog: 16 processes, each creating versions, adding files and
closing them through the service layer, must lose nothing, duplicate no version and leave
the SQLite file intact, in WAL and in rollback-journal mode, and over a VFS whose locks do
nothing when the catalog's own lock file is in use. Each guarantee has a negative control
that breaks the mechanism behind it and shows that the same check then fails.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from clearml_data.catalog import Catalog
from clearml_data.config import Settings
from clearml_data.service import Service
from clearml_data.testing import spawn_together, write_tree

from figures import reliability_count, report_figures

pytestmark = pytest.mark.reliability

PROCESSES = 16
WRITES = reliability_count(12, 500)  # per process
CONTROL_WRITES = reliability_count(12, 150)  # per process, in the negative controls
CLOSE_RACES = reliability_count(6, 100)
HERE = Path(__file__).parent


@pytest.fixture
def workers(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))  # a spawned child imports its target by module name
    import concurrency_workers

    return concurrency_workers


def _spawn(target, jobs: list[dict]) -> list[dict]:
    return spawn_together(target, jobs, timeout=900)


def _jobs(root: Path, n: int, **extra) -> list[dict]:
    jobs = []
    for i in range(n):
        w = root / f"worker-{i}"
        jobs.append(
            {
                "index": i,
                "catalog": str(root / "catalog.db"),
                "storage": str(root / "storage"),
                "cache": str(w / "cache"),
                "config": str(w / "config.ini"),
                "state": str(w / "state"),
                "work": str(w / "files"),
                "out": str(w / "result.json"),
                **extra,
            }
        )
    return jobs


def run_writers(
    workers,
    root: Path,
    *,
    writes: int,
    journal: str,
    lock: str = "sqlite",
    vfs: str | None = None,
    deferred: bool = False,
) -> dict:
    Catalog(root / "catalog.db", journal_mode=journal, lock=lock, vfs=vfs).close()  # schema, journal mode
    jobs = _jobs(
        root,
        PROCESSES,
        writes=writes,
        journal=journal,
        lock=lock,
        vfs=vfs,
        deferred=deferred,
        project="team",
        name="shared",
    )
    results = _spawn(workers.writer, jobs)
    fatal = [r["fatal"] for r in results if r["fatal"]]
    ops = [op for r in results for op in r["ops"]]
    figures = workers.audit(str(root / "catalog.db"), ops)
    figures["worker_crashes"] = len(fatal)
    figures["sample_errors"] = sorted({o["error"] for o in ops if not o.get("ok")})[:3] + fatal[:1]
    return figures


def _assert_clean(f: dict, writes: int) -> None:
    assert f["worker_crashes"] == 0, f["sample_errors"]
    assert f["attempted"] == PROCESSES * writes
    assert f["errors"] == 0, f["sample_errors"]
    assert f["committed"] == f["attempted"] and f["lost"] == 0 and f["silently_lost"] == 0
    assert f["duplicates"] == 0
    assert f["integrity"] == "ok"
    assert f["final_missing_objects"] == 0


def _failed(f: dict) -> bool:
    return bool(
        f["lost"]
        or f["duplicates"]
        or f["integrity"] != "ok"
        or f["worker_crashes"]
        or f["final_missing_objects"]
    )


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_concurrent_writers_lose_nothing(workers, tmp_path, journal):
    f = run_writers(workers, tmp_path, writes=WRITES, journal=journal)
    report_figures(
        f"concurrent writers ({journal} journal)",
        processes=PROCESSES,
        attempted=f["attempted"],
        committed=f["committed"],
        lost=f["lost"],
        duplicates=f["duplicates"],
        integrity=f["integrity"],
    )
    _assert_clean(f, WRITES)


@pytest.mark.parametrize("journal", reliability_count(["wal"], ["wal", "delete"]))  # CI: one is enough
def test_control_deferred_transactions_lose_writes(workers, tmp_path, journal):
    """The same writers with deferred transactions (BEGIN instead of BEGIN IMMEDIATE)."""
    f = run_writers(workers, tmp_path, writes=CONTROL_WRITES, journal=journal, deferred=True)
    report_figures(
        f"control: deferred transactions ({journal} journal)",
        processes=PROCESSES,
        attempted=f["attempted"],
        committed=f["committed"],
        lost=f["lost"],
        duplicates=f["duplicates"],
        integrity=f["integrity"],
    )
    assert _failed(f), f"the control lost nothing: {f}"


def test_no_op_locks_with_lock_file_lose_nothing(workers, tmp_path):
    """SQLite's unix-none VFS takes no locks at all, like a network mount whose locks do
    nothing; the catalog's own lock file must keep the writers apart."""
    f = run_writers(workers, tmp_path, writes=WRITES, journal="delete", lock="file", vfs="unix-none")
    report_figures(
        "concurrent writers (no-op locks, lock file)",
        processes=PROCESSES,
        attempted=f["attempted"],
        committed=f["committed"],
        lost=f["lost"],
        duplicates=f["duplicates"],
        integrity=f["integrity"],
    )
    _assert_clean(f, WRITES)
    assert not (tmp_path / "catalog.db.lock").exists()


def test_control_no_op_locks_without_lock_file_fail(workers, tmp_path):
    f = run_writers(
        workers, tmp_path, writes=CONTROL_WRITES, journal="delete", lock="sqlite", vfs="unix-none"
    )
    report_figures(
        "control: no-op locks, no lock file",
        processes=PROCESSES,
        attempted=f["attempted"],
        committed=f["committed"],
        lost=f["lost"],
        duplicates=f["duplicates"],
        integrity=f["integrity"][:60],
        crashes=f["worker_crashes"],
    )
    assert _failed(f), f"the control lost nothing: {f}"


def test_two_processes_closing_one_draft(workers, tmp_path, env):
    """Both run `clearml-data close --id X` at the same moment: one wins, the other exits 1
    with a one-line error, round after round."""
    service = Service(Settings.load())
    drafts = []
    for i in range(CLOSE_RACES):
        row = service.create(name="raced", project="team")
        src = write_tree(tmp_path / f"src{i}", {"a.txt": f"draft {i}\n", "b.bin": os.urandom(64)})
        service.add_files(row.id, str(src))
        drafts.append(row.id)
    service.close()
    jobs = _jobs(tmp_path / "closers", 2, drafts=drafts)
    for job in jobs:
        job.update(catalog=str(env.catalog), storage=str(env.storage))
    results = _spawn(workers.closer, jobs)
    assert [r["fatal"] for r in results] == [None, None]
    losers = []
    for a, b in zip(results[0]["results"], results[1]["results"], strict=True):
        assert a["id"] == b["id"]
        codes = sorted((a["code"], b["code"]))
        assert codes == [0, 1], (a, b)
        loser = a if a["code"] else b
        assert loser["out"] == "" and "Traceback" not in loser["err"]
        lines = loser["err"].splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), loser["err"]
        assert re.search(
            r"was finalized or deleted by another process|is already final|"
            r"is final and cannot be changed",
            lines[0],
        ), lines[0]
        losers.append(lines[0])
    service = Service(Settings.load())
    try:
        assert {service.resolve_id(d).status for d in drafts} == {"final"}
        assert all(len(service.list_files(service.resolve_id(d))) == 2 for d in drafts)
        assert service.catalog.integrity_check() == "ok"
    finally:
        service.close()
    runs = results[0]["results"] + results[1]["results"]
    report_figures(
        "two closers of one draft",
        races=len(drafts),
        winners=sum(r["code"] == 0 for r in runs),
        clear_errors=len(losers),
        lost_inside_finalize=sum("another process" in e for e in losers),
        found_it_final=sum("another process" not in e for e in losers),
    )
