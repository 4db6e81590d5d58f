"""Storage drivers: the contract, the plugin machinery and the built-in folder driver."""

from .base import (CONDITIONAL_PUT, MULTIPART, RANGED_READS, DriverInfo, ObjectInfo,
                   StorageDriver, Unfinished, redact_url, url_scheme)
from .hookspecs import hookimpl, hookspec
from .manager import PluginManager

__all__ = [
    "CONDITIONAL_PUT", "MULTIPART", "RANGED_READS", "DriverInfo", "ObjectInfo", "PluginManager",
    "StorageDriver", "Unfinished", "hookimpl", "hookspec", "redact_url", "url_scheme",
]
