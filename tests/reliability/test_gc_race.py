"""gc running non-stop (minimum age 0) while another process adds, uploads and closes versions
that reuse the content of a version it has just deleted: every final version stays whole."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from figures import reliability_count, report_figures


def _settings(root: str):
    from clearml_data.config import Settings

    return Settings.load(
        catalog=os.path.join(root, "catalog.db"),
        storage=os.path.join(root, "storage"),
        cache_dir=os.path.join(root, "cache"),
    )


def _collector(root: str, stop: str, out: str) -> None:
    from clearml_data.service import Service

    svc = Service(_settings(root))
    runs = deleted = kept = 0
    try:
        while not os.path.exists(stop):
            r = svc.collect_garbage(delete=True, min_age=0)
            runs += 1
            deleted += len(r.deleted)
            kept += r.kept_by_recheck
    finally:
        svc.close()
    Path(out).write_text(f"{runs} {deleted} {kept}")


def _writer(root: str, rounds: int, out: str) -> None:
    """Each round: a version, its deletion, then a new version with the same content plus one file."""
    from clearml_data.errors import StorageError
    from clearml_data.service import Service

    svc = Service(_settings(root))
    finals, reuploads, closed_again = [], 0, 0

    def close(dataset_id: str) -> None:
        nonlocal closed_again
        for _attempt in range(5):
            try:
                svc.finalize(dataset_id, auto_upload=True, chunk_size=0.001)
                return
            except StorageError as exc:  # gc took fresh uploads every time: "close it again"
                print(f"close again: {exc}", file=sys.stderr)
                closed_again += 1
        raise AssertionError(f"{dataset_id} did not close in 5 attempts")

    try:
        for k in range(rounds):
            src = Path(root) / f"src-{k}"
            for i in range(4):
                p = src / f"f{i}.bin"
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(os.urandom(1500 + i) if i % 2 else f"small {k} {i}".encode())
            old = svc.create("old", project="race")
            svc.add_files(old.id, src)
            close(old.id)
            svc.delete(old.id)  # its objects are unreferenced now: gc goes after them
            (src / "new.txt").write_text(f"new {k}")
            new = svc.create("new", project="race")
            svc.add_files(new.id, src)  # reuses what gc is deleting
            up = svc.upload(new.id, chunk_size=0.001)
            reuploads += up.objects > 1
            close(new.id)
            finals.append(new.id)
    finally:
        svc.close()
    Path(out).write_text(" ".join([str(reuploads), str(closed_again), *finals]))


@pytest.mark.reliability
def test_versions_survive_gc_running_during_add_upload_close(tmp_path):
    from clearml_data.service import Service

    rounds = reliability_count(20, 500)
    root = str(tmp_path)
    stop, gc_out, writer_out = (str(tmp_path / n) for n in ("stop", "gc.out", "writer.out"))
    # the two roles run as separate processes, from a script made of this module's functions
    script = tmp_path / "roles.py"
    script.write_text(
        "import os\nimport sys\nfrom pathlib import Path\n\n"
        + "\n\n".join(inspect.getsource(f) for f in (_settings, _collector, _writer))
        + "\n\nimport sys\nrole, *args = sys.argv[1:]\n"
        "_collector(*args) if role == 'gc' else _writer(args[0], int(args[1]), args[2])\n"
    )
    started = time.monotonic()
    logs = {role: tmp_path / f"{role}.err" for role in ("gc", "write")}
    with open(logs["gc"], "w") as gc_err, open(logs["write"], "w") as write_err:
        collector = subprocess.Popen([sys.executable, str(script), "gc", root, stop, gc_out], stderr=gc_err)
        writer = subprocess.Popen(
            [sys.executable, str(script), "write", root, str(rounds), writer_out], stderr=write_err
        )
        code = None
        try:
            code = writer.wait(600)
        finally:
            Path(stop).touch()
            codes = (code, collector.wait(60))
    errors = {role: log.read_text() for role, log in logs.items()}
    assert codes == (0, 0), errors
    runs, deleted, kept = map(int, Path(gc_out).read_text().split())
    reuploads, closed_again, *finals = Path(writer_out).read_text().split()

    svc = Service(_settings(root))
    try:
        svc.cache.clear()
        broken = [i for i in finals if svc.verify_storage(svc.resolve_id(i), full=True).problems]
        leftover = svc.collect_garbage(
            delete=True, min_age=0
        )  # quiet now: only the deleted versions' objects
        still = [i for i in finals if svc.verify_storage(svc.resolve_id(i), full=True).problems]
    finally:
        svc.close()
    report_figures(
        "gc during add/upload/close",
        rounds=rounds,
        gc_runs=runs,
        objects_deleted=deleted,
        kept_by_recheck=kept,
        uploads_that_stored_again=int(reuploads),
        closes_run_again=int(closed_again),
        final_versions=len(finals),
        broken=len(broken) + len(still),
        seconds=round(time.monotonic() - started, 1),
    )
    assert len(finals) == rounds and deleted > 0, errors
    assert broken == [] and still == [] and leftover.deleted is not None
