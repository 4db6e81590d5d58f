"""Moved to :mod:`clearml_data.testing.servers`; this name keeps working for one release,
with a DeprecationWarning."""

from __future__ import annotations

import warnings

from clearml_data.testing.servers import (
    LOOPBACK,
    LoopbackServer,
    answers,
    emulator,
    emulators_required,
    free_port,
    keep_loopback_off_proxies,
    unavailable,
    unique_name,
)

__all__ = [
    "LOOPBACK",
    "LoopbackServer",
    "answers",
    "emulator",
    "emulators_required",
    "free_port",
    "keep_loopback_off_proxies",
    "unavailable",
    "unique_name",
]

warnings.warn(
    "clearml_data.storage.testserver is deprecated and will be removed in the next release: "
    "import from clearml_data.testing.servers",
    DeprecationWarning,
    stacklevel=2,
)
