"""Reliability figures: the same tests run small in CI and large from ``tox -e reliability``.

This repository's own test machinery (not shipped): the core's tests and the plugins' use
it alike, as ``from figures import reliability_count, report_figures`` (tox.ini puts this
folder on sys.path). The repository's conftest.py lists what was recorded at the end of
the run.
"""

from __future__ import annotations

import json
import os
from typing import Any, TypeVar

RELIABILITY_ENV = "CLEARML_DATA_RELIABILITY"
REPORT_ENV = "CLEARML_DATA_RELIABILITY_REPORT"
#: every record of this pytest run, in order
figures_recorded: list[dict[str, Any]] = []

T = TypeVar("T")


def reliability_count(ci: T, full: T) -> T:
    """``ci`` in the normal test run, ``full`` when CLEARML_DATA_RELIABILITY=full."""
    return full if os.environ.get(RELIABILITY_ENV, "").lower() == "full" else ci


def report_figures(topic: str, **figures: Any) -> dict[str, Any]:
    """Record what a reliability test injected and survived, e.g.
    report_figures("kill -9", kills=300, survived=300).

    The figures are listed at the end of the pytest run and, when
    CLEARML_DATA_RELIABILITY_REPORT names a file, appended to it as one JSON line.
    """
    record = {"topic": topic, **figures}
    figures_recorded.append(record)
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
    return record
