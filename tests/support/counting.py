"""A folder driver that records every call the core makes of it: ``counted:///<folder>``.

Tests register it in the service's plugin manager (:func:`use_counting_driver`) and store
versions at ``counted:///<folder>``; ``CountingFolder.calls`` then lists each call
(method, key, offset, length), so a test can assert what was read and how often, through the
real folder driver underneath.
"""

from __future__ import annotations

import threading
from typing import ClassVar

from clearml_data.storage import DriverInfo, PluginManager, hookimpl
from clearml_data.storage.folder import FolderDriver, folder_path

SCHEME = "counted"


class CountingFolder(FolderDriver):
    schemes = (SCHEME,)
    calls: ClassVar[list[tuple[str, str, int, int]]] = []
    _lock = threading.Lock()

    def __init__(self, url, **options):
        super().__init__(url, **options)
        self.root = folder_path("file://" + url.split("://", 1)[1])

    @classmethod
    def note(cls, *call) -> None:
        with cls._lock:
            cls.calls.append(call)

    @classmethod
    def reads(cls) -> list[tuple[str, str, int, int]]:
        """The calls that moved bytes out of the storage (ranged reads and whole gets)."""
        return [c for c in cls.calls if c[0] in ("read_range", "get_file")]

    def read_range(self, key, offset, length):
        self.note("read_range", key, offset, length)
        return super().read_range(key, offset, length)

    def get_file(self, key, local_path, *, callback=None):
        self.note("get_file", key, 0, -1)
        return super().get_file(key, local_path, callback=callback)

    def stat(self, key):
        self.note("stat", key, 0, 0)
        return super().stat(key)


class WholeFolder(CountingFolder):
    """``whole:///<folder>``: a counting folder driver that cannot read a range (no
    RANGED_READS), as a storage whose protocol has no ranged GET."""

    schemes = ("whole",)
    capabilities = frozenset()


class _Plugin:
    @hookimpl
    def clearml_data_storage_drivers(self):
        return [
            DriverInfo(SCHEME, f"{__name__}:CountingFolder"),
            DriverInfo("whole", f"{__name__}:WholeFolder"),
        ]


def counting_manager() -> PluginManager:
    manager = PluginManager(load_entry_points=False)
    manager.register(_Plugin(), "counting-test")
    return manager


def use_counting_driver(monkeypatch) -> type[CountingFolder]:
    """Make every service built from now on know ``counted://`` (and the built-in drivers)."""
    import clearml_data.service as service

    monkeypatch.setattr(service, "_new_plugins", counting_manager)
    CountingFolder.calls.clear()
    return CountingFolder
