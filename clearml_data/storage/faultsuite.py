"""Moved to :mod:`clearml_data.testing.faults`; this name keeps working for one release,
with a DeprecationWarning."""

from __future__ import annotations

import warnings

from clearml_data.testing.faults import (
    FaultTarget,
    cache_problems,
    check_retry_bound,
    check_workflow,
    make_source,
    standard_faults,
)

__all__ = [
    "FaultTarget",
    "cache_problems",
    "check_retry_bound",
    "check_workflow",
    "make_source",
    "standard_faults",
]

warnings.warn(
    "clearml_data.storage.faultsuite is deprecated and will be removed in the next release: "
    "import from clearml_data.testing.faults",
    DeprecationWarning,
    stacklevel=2,
)
