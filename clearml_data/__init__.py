"""clearml-data: versioned datasets of files, with ClearML Data's interface and no server.

    from clearml_data import Dataset, StorageManager

The public names are imported when first used: importing the package, as the
``clearml-data`` command does before anything else, imports nothing more.
"""

__version__ = "0.1.0"

#: public name -> the module that defines it
_PUBLIC = {
    "Dataset": "api",
    "DatasetFile": "api",
    "FileEntry": "api",
    "LinkEntry": "api",
    "Logger": "logger",
    "StorageManager": "storagemanager",
    "Task": "task",
    "CatalogError": "errors",
    "ClearMLDataError": "errors",
    "DatasetNotFoundError": "errors",
    "DatasetStateError": "errors",
    "IntegrityError": "errors",
    "MissingDependencyError": "errors",
    "OutOfScopeError": "errors",
    "PluginError": "errors",
    "StorageError": "errors",
    "UnsafePathError": "errors",
    "UsageError": "errors",
    "VersionExistsError": "errors",
    "hookimpl": "storage.hookspecs",
}

#: written out for tools that read it without running the module; the same names as _PUBLIC
__all__ = [
    "CatalogError",
    "ClearMLDataError",
    "Dataset",
    "DatasetFile",
    "DatasetNotFoundError",
    "DatasetStateError",
    "FileEntry",
    "IntegrityError",
    "LinkEntry",
    "Logger",
    "MissingDependencyError",
    "OutOfScopeError",
    "PluginError",
    "StorageError",
    "StorageManager",
    "Task",
    "UnsafePathError",
    "UsageError",
    "VersionExistsError",
    "__version__",
    "hookimpl",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .api import Dataset, DatasetFile, FileEntry, LinkEntry
    from .errors import (
        CatalogError,
        ClearMLDataError,
        DatasetNotFoundError,
        DatasetStateError,
        IntegrityError,
        MissingDependencyError,
        OutOfScopeError,
        PluginError,
        StorageError,
        UnsafePathError,
        UsageError,
        VersionExistsError,
    )
    from .logger import Logger
    from .storage.hookspecs import hookimpl
    from .storagemanager import StorageManager
    from .task import Task


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
