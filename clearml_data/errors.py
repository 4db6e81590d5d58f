"""The exception tree: one root, small families, data on the exception.

Every error a user can cause derives from :class:`ClearMLDataError`; the CLI turns
it into a one-line message and a non-zero exit code.
"""

from __future__ import annotations


class ClearMLDataError(Exception):
    """Root of every error raised on purpose by clearml-data."""

    #: A short suggestion of what to do next, shown after the message.
    hint: str | None = None
    #: The Python parameter names the message and hint mention, word for word; the CLI
    #: shows each as its flag (``num_parts`` -> ``--num-parts``), the API as it is.
    params: tuple[str, ...] = ()

    def __init__(self, message: str, *, hint: str | None = None, params: tuple[str, ...] = ()):
        super().__init__(message)
        if hint is not None:
            self.hint = hint
        if params:
            self.params = tuple(params)

    def __str__(self) -> str:  # one line, always
        text = " ".join(super().__str__().split())
        return f"{text} ({self.hint})" if self.hint else text


class UsageError(ClearMLDataError, ValueError):
    """The arguments given do not make sense together, or a value is malformed."""


class VersionExistsError(UsageError):
    """A dataset with this project, name and version already exists."""


class DatasetNotFoundError(ClearMLDataError, LookupError, ValueError):
    """No dataset matches the id, or the project/name/version given.

    Also a ``ValueError``, which is what ClearML raises here: ClearML code written as
    ``try: Dataset.get(...) except ValueError: Dataset.create(...)`` works unchanged."""


class DatasetStateError(ClearMLDataError, ValueError):
    """The operation does not fit the dataset's state, e.g. adding to a final version, a
    local copy of a draft, finalizing with pending uploads. Also a ``ValueError``, as in ClearML."""


class UnexpectedArgumentError(UsageError, TypeError):
    """A keyword argument the call does not take: a ``TypeError`` as Python's own, and a
    ``ValueError`` as ClearML's ``Dataset.get`` raises for it."""


class CatalogError(ClearMLDataError):
    """The catalog cannot be opened, read or written."""


class CatalogLockedError(CatalogError):
    """Another process kept the catalog locked for longer than the retry budget."""


class SchemaVersionError(CatalogError):
    """The catalog was written by a newer clearml-data than this one."""


class IntegrityError(ClearMLDataError):
    """Bytes do not match the hash or size the catalog records for them."""

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.path = path


class StorageError(ClearMLDataError):
    """A storage could not be reached, read or written."""

    def __init__(
        self, message: str, *, url: str | None = None, key: str | None = None, hint: str | None = None
    ):
        super().__init__(message, hint=hint)
        self.url = url
        self.key = key


class MissingDependencyError(StorageError):
    """The driver for a URL scheme needs a package that is not installed."""

    def __init__(self, scheme: str, missing: str, install_hint: str):
        super().__init__(
            f"the {scheme}:// storage driver needs the package {missing!r}, which is not installed",
            hint=install_hint,
        )
        self.scheme = scheme
        self.missing = missing
        self.install_hint = install_hint


class PluginError(ClearMLDataError):
    """A storage plugin is broken, or two plugins claim the same URL scheme."""


class UnsafePathError(UsageError):
    """A path would leave its folder (absolute, '..', NUL, ...)."""


class DiskFullError(ClearMLDataError):
    """A local folder (cache, target, storage) ran out of space; nothing half-written is kept."""

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.path = path


class ManifestError(StorageError):
    """A manifest or tombstone in a storage cannot be read or is malformed."""


class OutOfScopeError(ClearMLDataError, NotImplementedError):
    """A ClearML feature that clearml-data does not provide (a Task: experiment tracking)."""


class PathNotFoundError(ClearMLDataError, FileNotFoundError):
    """A version holds no file (or folder) at the path given: a ``FileNotFoundError``, which
    is what file-reading code (fsspec, pandas) expects for a missing path."""

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.path = path


class NotAFileError(ClearMLDataError, IsADirectoryError):
    """The path is a folder of the version, and only files can be opened."""


class ReadOnlyError(ClearMLDataError, PermissionError):
    """A write through a reading interface (the ``clearml-data://`` filesystem, a file opened
    from a version): versions are changed only by creating a new one. A ``PermissionError``,
    which is what fsspec callers expect of a read-only filesystem."""
