"""Moved to :mod:`clearml_data.testing.conformance`; this name keeps working for one release,
with a DeprecationWarning."""

from __future__ import annotations

import warnings

from clearml_data.testing.conformance import DriverConformance

__all__ = ["DriverConformance"]

warnings.warn(
    "clearml_data.storage.conformance is deprecated and will be removed in the next release: "
    "import from clearml_data.testing.conformance",
    DeprecationWarning,
    stacklevel=2,
)
