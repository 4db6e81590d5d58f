"""Storage drivers: the contract, the plugin machinery and the built-in folder driver.

Plugins import what they need from here (and the helpers of :mod:`.toolkit`)."""

from .base import (
    CONDITIONAL_PUT,
    MULTIPART,
    RANGED_READS,
    DriverInfo,
    ObjectInfo,
    Progress,
    StorageDriver,
    Unfinished,
    fingerprint,
    fingerprint_changed,
    fingerprint_parts,
    redact_text,
    redact_url,
    url_scheme,
)
from .hookspecs import hookimpl, hookspec
from .manager import PluginManager
from .toolkit import Option

__all__ = [
    "CONDITIONAL_PUT",
    "MULTIPART",
    "RANGED_READS",
    "DriverInfo",
    "ObjectInfo",
    "Option",
    "PluginManager",
    "Progress",
    "StorageDriver",
    "Unfinished",
    "fingerprint",
    "fingerprint_changed",
    "fingerprint_parts",
    "hookimpl",
    "hookspec",
    "redact_text",
    "redact_url",
    "url_scheme",
]
