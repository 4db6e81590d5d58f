"""Code that runs inside the processes test_interrupt.py spawns (a spawned child imports the
function it runs by module name; the test puts this folder on sys.path first)."""

from __future__ import annotations

import hashlib
import io
import json
import time
import traceback
from pathlib import Path


def tree_hashes(root: str) -> dict[str, str]:
    """{relative path: sha256} of every file under root (following links)."""
    out = {}
    base = Path(root)
    for p in sorted(base.rglob("*")):
        if p.is_file():
            out[p.relative_to(base).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _cli(*argv: str) -> tuple[int, str, str]:
    from clearml_data.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _one(job: dict) -> dict:
    kind, dataset_id = job["kind"], job["id"]
    if kind == "api":
        from clearml_data import Dataset
        from clearml_data.testing import reset_services

        reset_services()  # a fresh service, as in a new process
        path = Dataset.get(dataset_id=dataset_id).get_local_copy()
    else:
        argv = ["get", "--id", dataset_id, "--json"]
        if kind == "copy":
            argv += ["--copy", job["target"]]
        code, out, err = _cli(*argv)
        if code != 0:
            return {"ok": False, "error": err.strip().splitlines()[-1] if err.strip() else f"exit {code}"}
        path = json.loads(out)["data"]["path"]
    if job["verify"] or kind == "copy":  # a cached copy may be pruned by then: checked when nothing prunes
        got = tree_hashes(path)
        if got != job["expect"]:
            wrong = sorted(set(got) ^ set(job["expect"]) | {p for p in got if got[p] != job["expect"].get(p)})
            return {"ok": False, "error": f"{kind}: {path} does not hold the version: {wrong[:3]}"}
    return {"ok": True}


def getter(index: int, inbox, outbox, barrier) -> None:
    """Run the gets the test sends, all workers at once (a barrier before each)."""
    while True:
        job = inbox.get()
        if job is None:
            return
        try:
            barrier.wait(timeout=300)
            result = _one(job)
        except BaseException as exc:
            result = {"ok": False, "error": "".join(traceback.format_exception(exc))}
        outbox.put({"index": index, "kind": job["kind"], **result})


def looper(kind: str, stop, outbox) -> None:
    """``cache prune --max-size 0`` or ``gc --delete --min-age 0`` over and over until told to stop."""
    argv = {"prune": ("cache", "prune", "--max-size", "0"), "gc": ("gc", "--delete", "--min-age", "0")}[kind]
    runs, errors = 0, []
    try:
        while not stop.is_set():
            code, _out, err = _cli(*argv)
            runs += 1
            if code != 0:
                errors.append(err.strip().splitlines()[-1] if err.strip() else f"exit {code}")
            time.sleep(0.002)
    except BaseException as exc:
        errors.append("".join(traceback.format_exception(exc)))
    outbox.put({"kind": kind, "runs": runs, "errors": errors[:5], "failed": len(errors)})


def sleeper(seconds: float) -> None:
    """A live process whose pid a temporary file names."""
    time.sleep(seconds)
