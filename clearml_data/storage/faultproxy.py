"""Moved to :mod:`clearml_data.testing.faults`; this name keeps working for one release,
with a DeprecationWarning."""

from __future__ import annotations

import warnings

from clearml_data.testing.faults import KINDS, LOOPBACK, Fault, FaultProxy, LogEntry, Rule

__all__ = [
    "KINDS",
    "LOOPBACK",
    "Fault",
    "FaultProxy",
    "LogEntry",
    "Rule",
]

warnings.warn(
    "clearml_data.storage.faultproxy is deprecated and will be removed in the next release: "
    "import from clearml_data.testing.faults",
    DeprecationWarning,
    stacklevel=2,
)
