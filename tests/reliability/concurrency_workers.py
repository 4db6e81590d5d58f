"""Code that runs inside the processes the concurrency tests spawn.

It lives in its own module (not in the test file) because a "spawn" child imports the
function it runs by module name; the tests put this folder on sys.path first.
"""

from __future__ import annotations

import json
import os
import sqlite3
import traceback
from pathlib import Path


def _service(job: dict):
    """A Service on the shared catalog, with this worker's own cache and config."""
    os.environ["CLEARML_DATA_CONFIG"] = job["config"]
    os.environ["CLEARML_DATA_STATE_DIR"] = job["state"]
    for var in (
        "CLEARML_DATA_CATALOG_LOCK",
        "CLEARML_DATA_CATALOG_LOCK_TIMEOUT",
        "CLEARML_DATA_DISABLE_PLUGINS",
        "CLEARML_DATA_CACHE_MAX_SIZE",
    ):
        os.environ.pop(var, None)
    from clearml_data.catalog import Catalog
    from clearml_data.config import Settings
    from clearml_data.service import Service

    if job.get("deferred"):
        Catalog._begin = "BEGIN"  # the negative control: deferred transactions
    settings = Settings.load(catalog=job["catalog"], storage=job["storage"], cache_dir=job["cache"])
    service = Service(settings)
    service._catalog = Catalog(
        job["catalog"], journal_mode=job["journal"], lock=job["lock"], vfs=job.get("vfs")
    )
    return service


def writer(job: dict, barrier) -> None:
    """Attempt ``job["writes"]`` writes through the service layer, cycling through
    create a version -> add a file -> close it (upload to the folder storage, final flag).
    Each attempt is recorded in ``job["out"]`` (JSON) with what the catalog must show if
    it was committed; a failed step ends its cycle (the next cycle starts with a create).
    """
    ops: list[dict] = []
    fatal = None
    try:
        service = _service(job)
        work = Path(job["work"])
        work.mkdir(parents=True, exist_ok=True)
        barrier.wait(timeout=120)
        cycle = 0
        while len(ops) < job["writes"]:
            cycle += 1
            row_id = None
            for step in ("create", "add", "close"):
                if len(ops) >= job["writes"]:
                    break
                rec: dict = {"op": step}
                ops.append(rec)
                try:
                    if step == "create":
                        row = service.create(name=job["name"], project=job["project"])
                        row_id = rec["id"] = row.id
                    elif step == "add":
                        src = work / f"w{job['index']}-c{cycle}.txt"
                        src.write_text(f"worker {job['index']} cycle {cycle}\n")
                        rec["id"], rec["path"] = row_id, src.name
                        service.add_files(row_id, str(src))
                    else:
                        rec["id"] = row_id
                        service.finalize(row_id, auto_upload=True)
                    rec["ok"] = True
                except Exception as exc:
                    rec["ok"] = False
                    rec["error"] = f"{type(exc).__name__}: {exc}"
                    break
        service.close()
    except BaseException as exc:
        fatal = "".join(traceback.format_exception(exc))
    finally:
        Path(job["out"]).write_text(json.dumps({"ops": ops, "fatal": fatal}))


def closer(job: dict, barrier) -> None:
    """Close each draft of ``job["drafts"]`` through the CLI, in step with the other closer."""
    results = []
    fatal = None
    try:
        os.environ.update(
            {
                "CLEARML_DATA_CATALOG": job["catalog"],
                "CLEARML_DATA_STORAGE": job["storage"],
                "CLEARML_DATA_CACHE_DIR": job["cache"],
                "CLEARML_DATA_CONFIG": job["config"],
                "CLEARML_DATA_STATE_DIR": job["state"],
            }
        )
        from clearml_data.testing import run_cli

        for draft in job["drafts"]:
            barrier.wait(timeout=120)
            r = run_cli("-q", "close", "--id", draft)
            results.append({"id": draft, "code": r.code, "out": r.out, "err": r.err})
    except BaseException as exc:
        fatal = "".join(traceback.format_exception(exc))
    finally:
        Path(job["out"]).write_text(json.dumps({"results": results, "fatal": fatal}))


def audit(catalog: str, ops: list[dict]) -> dict:
    """Check the writes against the catalog file (opened plainly, after every writer ended)."""
    figures = {
        "attempted": len(ops),
        "committed": 0,
        "errors": sum(1 for o in ops if not o.get("ok")),
        "silently_lost": 0,
        "duplicates": None,
        "integrity": None,
        "final_missing_objects": None,
    }
    try:
        conn = sqlite3.connect(catalog)
        try:
            figures["integrity"] = "; ".join(
                r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()[:3]
            )
            status = dict(conn.execute("SELECT id, status FROM datasets"))
            paths = set(conn.execute("SELECT dataset_id, path FROM changes"))
            for o in ops:
                if o["op"] == "create":
                    done = o.get("id") in status
                elif o["op"] == "add":
                    done = (o["id"], o["path"]) in paths
                else:
                    done = status.get(o["id"]) == "final"
                figures["committed"] += done
                figures["silently_lost"] += bool(o.get("ok") and not done)
            figures["duplicates"] = conn.execute(
                "SELECT COUNT(*) FROM (SELECT 1 FROM datasets GROUP BY project, name, version "
                "HAVING COUNT(*) > 1)"
            ).fetchone()[0]
            figures["final_missing_objects"] = conn.execute(
                "SELECT COUNT(*) FROM changes c JOIN datasets d ON d.id = c.dataset_id "
                "WHERE d.status = 'final' AND c.hash IS NOT NULL AND NOT EXISTS "
                "(SELECT 1 FROM objects o WHERE o.storage = d.storage AND o.hash = c.hash)"
            ).fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        figures["integrity"] = f"unreadable: {exc}"
    figures["lost"] = figures["attempted"] - figures["committed"]
    return figures
