"""Hook specifications for storage plugins (pluggy project ``clearml_data``).

A plugin is a module (or object) registered under the ``clearml_data`` entry-point
group that implements one or more of these hooks with ``@clearml_data.hookimpl``.
Hooks evolve only by adding arguments, so an implementation written today keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from .base import DriverInfo

PROJECT = "clearml_data"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def clearml_data_storage_drivers() -> Iterable[DriverInfo]:
    """Return the storage drivers this plugin provides, one :class:`DriverInfo` per URL scheme.

    The driver class named by ``DriverInfo.factory`` is imported only when a URL of
    that scheme is used, so a plugin whose SDK is missing still loads and can say what
    to install.

    .. versionadded:: 0.1
    """
    return ()  # a specification: pluggy calls the implementations, never this body
