"""clearml-data: versioned datasets of files, with ClearML Data's interface and no server.

    from clearml_data import Dataset
"""

__version__ = "0.1.0"

from .api import Dataset, FileEntry, LinkEntry  # noqa: E402
from .errors import (CatalogError, ClearMLDataError, DatasetNotFoundError,  # noqa: E402
                     DatasetStateError, IntegrityError, MissingDependencyError, PluginError,
                     StorageError, UnsafePathError, UsageError, VersionExistsError)
from .storage.hookspecs import hookimpl  # noqa: E402

__all__ = [
    "CatalogError", "ClearMLDataError", "Dataset", "DatasetNotFoundError", "DatasetStateError",
    "FileEntry", "IntegrityError", "LinkEntry", "MissingDependencyError", "PluginError", "StorageError",
    "UnsafePathError", "UsageError", "VersionExistsError", "__version__", "hookimpl",
]
