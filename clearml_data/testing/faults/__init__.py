"""Storage faults on loopback: a fault-injecting HTTP proxy, and the checks that use it.

:mod:`.proxy` holds :class:`FaultProxy` and :class:`Fault` (HTTP errors, cut transfers,
stalls, flipped bits); :mod:`.suite` holds the checks a driver's tests run through it
(:func:`check_retry_bound`, :func:`check_workflow`). Both are importable from here::

    from clearml_data.testing.faults import Fault, FaultProxy, FaultTarget, check_retry_bound

Only the standard library is needed, besides pytest for the tests that use them.
"""

from __future__ import annotations

from .proxy import KINDS, LOOPBACK, Fault, FaultProxy, LogEntry, Rule
from .suite import (
    FaultTarget,
    cache_problems,
    check_retry_bound,
    check_workflow,
    make_source,
    standard_faults,
)

__all__ = [
    "KINDS",
    "LOOPBACK",
    "Fault",
    "FaultProxy",
    "FaultTarget",
    "LogEntry",
    "Rule",
    "cache_problems",
    "check_retry_bound",
    "check_workflow",
    "make_source",
    "standard_faults",
]
