"""Code that runs inside the processes the tree-conflict race tests spawn.

A "spawn" child imports the function it runs by module name, so it lives here, beside the
tests, which put this folder on sys.path first.
"""

from __future__ import annotations

import json
import traceback


def racer(job: dict, barrier) -> None:
    """Run ``job["steps"]`` (one per round: [op, draft id, local folder]) on the shared
    catalog, each round started together with the other racers by ``barrier``; write
    [{"ok": bool, "error": str}] to ``job["out"]``."""
    from concurrency_workers import _service

    from clearml_data.errors import ClearMLDataError

    done: list[dict] = []
    fatal = None
    try:
        service = _service(job)
        for op, draft, folder in job["steps"]:
            barrier.wait(timeout=120)
            try:
                if op == "add":
                    service.add_files(draft, folder)
                else:
                    service.sync_folder(draft, folder)
                done.append({"ok": True, "error": ""})
            except ClearMLDataError as exc:
                done.append({"ok": False, "error": str(exc)})
    except BaseException:
        fatal = traceback.format_exc()
    with open(job["out"], "w", encoding="utf-8") as fh:
        json.dump({"steps": done, "fatal": fatal}, fh)
