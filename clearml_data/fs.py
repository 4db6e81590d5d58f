"""The ``clearml-data://`` filesystem: final versions, read in place, through fsspec.

Installed with the package, it is registered under the protocol ``clearml-data`` (the
``fsspec.specs`` entry point), so that ``fsspec.open("clearml-data://<id>/train.csv")`` and
every library that opens URLs through fsspec (pandas, pyarrow, Dask, Hugging Face
``datasets``) read versions with no import. Paths are ``<version>/<path in the version>``,
where ``<version>`` is either form of :mod:`clearml_data.urls`. A file opens as a
:class:`~clearml_data.service.reading.VersionFile`: ranged reads, a block cache, the
SHA-256 checked when a file is read to its end, and the local cache used and filled.

It is read-only: every write (``open(..., "wb")``, ``rm``, ``mkdir``, ``put``, ``mv``, …)
raises :class:`~clearml_data.errors.ReadOnlyError`, a ``PermissionError``.

Options (keyword arguments, or fsspec ``storage_options``): ``block_size`` and
``read_ahead`` (bytes; the settings of the same names otherwise), ``fill_cache``, and the
workspace settings ``catalog``, ``storage`` and ``cache_dir`` (read from the environment
and the config file otherwise). An instance holds no open connection until it is used and
pickles as its options, so Dask ships it to worker processes, where it is made again.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from fsspec import AbstractFileSystem

from .errors import DatasetNotFoundError, NotAFileError, PathNotFoundError, ReadOnlyError
from .service import DatasetRow, Service, shared_service
from .service.reading import VersionFile
from .urls import PREFIX, PROTOCOL, DatasetURL, parse_url

__all__ = ["ClearMLDataFileSystem"]

_READ_ONLY_HINT = "versions are changed by creating a new one (clearml-data create --parents ...)"

#: the directory trees of final versions kept in memory, by (catalog, id): they never change
TREES_KEPT = 8


@dataclass
class _Tree:
    """The files of one final version, and its folders with their entries."""

    files: dict[str, tuple[str, int]]  # path -> (hash, size)
    folders: dict[str, list[str]] = field(default_factory=dict)  # folder ("" root) -> names in it

    @classmethod
    def of(cls, view: dict[str, tuple[str, int, str]]) -> _Tree:
        tree = cls({p: (e[0], e[1]) for p, e in view.items()})
        folders: dict[str, set[str]] = {"": set()}
        for p in tree.files:
            parent, _sep, name = p.rpartition("/")
            folders.setdefault(parent, set()).add(name)
            while parent:  # the folders above, up to one already known
                up, _sep, base = parent.rpartition("/")
                names = folders.setdefault(up, set())
                if base in names:
                    break
                names.add(base)
                parent = up
        tree.folders = {k: sorted(v) for k, v in folders.items()}
        return tree


_trees: OrderedDict[tuple[str, str], _Tree] = OrderedDict()
_trees_lock = threading.Lock()


def _service(catalog: str | None, storage: str | None, cache_dir: str | None) -> Service:
    """The service of this process for the settings given, the rest from the environment
    and the config file, as the Python API reads them (one per process: see
    :func:`~clearml_data.service.shared_service`)."""
    from .config import Settings

    return shared_service(Settings.load(catalog=catalog, storage=storage, cache_dir=cache_dir))


def _bounds(size: int, start: int | None, end: int | None) -> tuple[int, int]:
    """The byte range [lo, hi) of a file of ``size`` bytes that fsspec's ``start`` and ``end``
    name (None: its start, its end; negative: from its end), with ``hi`` at most ``size``."""
    lo = 0 if start is None else (start if start >= 0 else max(0, size + start))
    hi = size if end is None else min(size, end if end >= 0 else max(0, size + end))
    return lo, hi


class ClearMLDataFileSystem(AbstractFileSystem):
    """Read-only fsspec filesystem of the final versions of a clearml-data catalog."""

    protocol = PROTOCOL
    root_marker = ""
    #: versions are final and never change: what was listed stays true
    cachable = True

    def __init__(
        self,
        block_size: int | None = None,
        read_ahead: int | None = None,
        fill_cache: bool = True,
        catalog: str | None = None,
        storage: str | None = None,
        cache_dir: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(
            block_size=block_size,
            read_ahead=read_ahead,
            fill_cache=fill_cache,
            catalog=catalog,
            storage=storage,
            cache_dir=cache_dir,
            **kwargs,
        )
        self.read_block_size = block_size
        self.read_ahead = read_ahead
        self.fill_cache = fill_cache
        self._settings = (
            None if catalog is None else str(catalog),
            None if storage is None else str(storage),
            None if cache_dir is None else str(cache_dir),
        )
        self._svc: Service | None = None
        self._svc_pid = 0
        self._refs: dict[str, str] = {}  # a version reference as written -> its id

    # -- the service, made when first used -----------------------------------------------------
    @property
    def service(self) -> Service:
        if self._svc is None or self._svc_pid != os.getpid():
            self._svc = _service(*self._settings)
            self._svc_pid = os.getpid()
        return self._svc

    # -- paths ----------------------------------------------------------------------------
    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        text = str(path)
        if text[: len(PREFIX)].lower() == PREFIX:
            text = text[len(PREFIX) :]
        return text.strip("/")

    def unstrip_protocol(self, name: str) -> str:
        return name if name[: len(PREFIX)].lower() == PREFIX else PREFIX + name.lstrip("/")

    def _split(self, path: str) -> tuple[str, DatasetURL]:
        """(the version reference as written, the parsed URL) of a path or URL."""
        stripped = self._strip_protocol(path)
        parsed = parse_url(PREFIX + stripped)
        ref = stripped[: len(stripped) - len(parsed.path)].rstrip("/") if parsed.path else stripped
        return ref, parsed

    def _lookup(self, ref: str, parsed: DatasetURL) -> DatasetRow:
        """The version a reference names: an id, or a name and version once resolved, are
        remembered; ``@latest`` is resolved each time (a new version may be final now)."""
        known = self._refs.get(ref)
        if known is not None:
            return self.service.resolve_id(known)
        row = self.service.resolve_url(parsed)
        if parsed.dataset_id is not None or not parsed.is_latest:
            self._refs[ref] = row.id
        return row

    def _tree(self, row: DatasetRow) -> _Tree:
        if not row.is_final:  # only final versions are read: the error that says so
            from .service.lookup import final

            final(self.service.workspace, row.id)
        key = (str(self.service.settings.catalog), row.id)
        with _trees_lock:
            tree = _trees.get(key)
            if tree is not None:
                _trees.move_to_end(key)
                return tree
        tree = _Tree.of(self.service.view(row))
        with _trees_lock:
            _trees[key] = tree
            while len(_trees) > TREES_KEPT:
                _trees.popitem(last=False)
        return tree

    def _resolve(self, path: str) -> tuple[str, DatasetRow, _Tree, str]:
        ref, parsed = self._split(path)
        row = self._row(ref, parsed)
        return ref, row, self._tree(row), parsed.path

    def _row(self, ref: str, parsed: DatasetURL) -> DatasetRow:
        """The version a reference names (see :meth:`_lookup`); no such version is a
        ``FileNotFoundError`` here, as fsspec callers expect of a path that is not there."""
        try:
            return self._lookup(ref, parsed)
        except DatasetNotFoundError as exc:
            raise PathNotFoundError(" ".join(str(exc.args[0]).split()), path=ref, hint=exc.hint) from None

    @staticmethod
    def _file_info(ref: str, rel: str, digest: str, size: int) -> dict[str, Any]:
        return {"name": f"{ref}/{rel}", "size": size, "type": "file", "sha256": digest}

    @staticmethod
    def _folder_info(ref: str, rel: str) -> dict[str, Any]:
        return {"name": f"{ref}/{rel}" if rel else ref, "size": 0, "type": "directory"}

    def _missing(self, row: DatasetRow, rel: str) -> PathNotFoundError:
        return PathNotFoundError(
            f"dataset {row.id} has no file or folder {rel!r}",
            path=rel,
            hint="list its files with clearml-data list or Dataset.list_files",
        )

    # -- reading ----------------------------------------------------------------------------
    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        ref, row, tree, rel = self._resolve(path)
        entry = tree.files.get(rel)
        if entry is not None:
            out = [self._file_info(ref, rel, *entry)]
        elif rel in tree.folders:
            out = []
            for name in tree.folders[rel]:
                child = f"{rel}/{name}" if rel else name
                found = tree.files.get(child)
                out.append(self._file_info(ref, child, *found) if found else self._folder_info(ref, child))
        else:
            raise self._missing(row, rel)
        return out if detail else [o["name"] for o in out]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        ref, row, tree, rel = self._resolve(path)
        entry = tree.files.get(rel)
        if entry is not None:
            return self._file_info(ref, rel, *entry)
        if rel in tree.folders:
            return self._folder_info(ref, rel)
        raise self._missing(row, rel)

    def find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,
        detail: bool = False,
        **kwargs: Any,
    ) -> Any:
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        ref, _row, tree, rel = self._resolve(path)
        out: dict[str, dict[str, Any]] = {}
        entry = tree.files.get(rel)
        if entry is not None:
            out[f"{ref}/{rel}"] = self._file_info(ref, rel, *entry)
        elif rel in tree.folders:
            base = rel.count("/") + 1 if rel else 0
            prefix = f"{rel}/" if rel else ""
            for p in sorted(tree.files):
                if not p.startswith(prefix):
                    continue
                if maxdepth is not None and p.count("/") + 1 - base > maxdepth:
                    continue
                out[f"{ref}/{p}"] = self._file_info(ref, p, *tree.files[p])
            if withdirs:  # the folder itself too, as fsspec's own find gives it
                out[f"{ref}/{rel}" if rel else ref] = self._folder_info(ref, rel)
                for folder in tree.folders:
                    if folder and folder.startswith(prefix):
                        if maxdepth is not None and folder.count("/") + 1 - base > maxdepth:
                            continue
                        out[f"{ref}/{folder}"] = self._folder_info(ref, folder)
        else:
            return {} if detail else []
        names = sorted(out)
        return {n: out[n] for n in names} if detail else names

    def ukey(self, path: str) -> str:
        """A file's SHA-256: the same bytes wherever, and whenever, they are read."""
        info = self.info(path)
        if info["type"] != "file":
            raise NotAFileError(f"{path} is a folder", hint="only files have a content hash")
        return str(info["sha256"])

    def open_version_file(self, path: str, **options: Any) -> VersionFile:
        """The file at ``path`` (a URL or ``<version>/<path>``) as a VersionFile."""
        _ref, parsed = self._split(path)
        row = self._row(_ref, parsed)
        return self.service.open_file(
            row.id,
            parsed.path,
            block_size=options.get("block_size", self.read_block_size),
            read_ahead=options.get("read_ahead", self.read_ahead),
            fill_cache=options.get("fill_cache", self.fill_cache),
        )

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: Any = None,
        autocommit: bool = True,
        cache_options: Any = None,
        **kwargs: Any,
    ) -> VersionFile:
        if mode != "rb":
            raise ReadOnlyError(
                f"the clearml-data filesystem is read-only: cannot open {path} with mode {mode!r}",
                hint=_READ_ONLY_HINT,
            )
        options: dict[str, Any] = {}
        if isinstance(block_size, int) and block_size > 0:
            options["block_size"] = block_size
        for key in ("read_ahead", "fill_cache"):
            if key in kwargs:
                options[key] = kwargs[key]
        return self.open_version_file(path, **options)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        with self.open_version_file(path) as f:
            lo, hi = _bounds(f.size, start, end)
            return f.read_at(lo, hi - lo) if hi > lo else b""

    def cat_ranges(
        self,
        paths: list[str],
        starts: Any,
        ends: Any,
        max_gap: Any = None,
        on_error: str = "return",
        **kwargs: Any,
    ) -> list[Any]:
        """The byte ranges asked for, each file opened once for all of its ranges."""
        if not isinstance(starts, list):
            starts = [starts] * len(paths)
        if not isinstance(ends, list):
            ends = [ends] * len(paths)
        if len(starts) != len(paths) or len(ends) != len(paths):
            raise ValueError("paths, starts and ends must have the same length")
        out: list[Any] = [b""] * len(paths)
        by_path: dict[str, list[int]] = {}
        for i, p in enumerate(paths):
            by_path.setdefault(p, []).append(i)
        for p, indexes in by_path.items():
            try:
                with self.open_version_file(p) as f:
                    for i in indexes:
                        lo, hi = _bounds(f.size, starts[i], ends[i])
                        out[i] = f.read_at(lo, hi - lo) if hi > lo else b""
            except Exception as exc:
                if on_error == "raise":
                    raise
                for i in indexes:
                    out[i] = exc
        return out

    def invalidate_cache(self, path: str | None = None) -> None:
        """Forget which version each reference by version string named (``@latest`` is
        resolved at each call anyway)."""
        self._refs.clear()
        super().invalidate_cache(path)

    # -- writes are refused ------------------------------------------------------------------
    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise ReadOnlyError(
            "the clearml-data filesystem is read-only: versions cannot be changed through it",
            hint=_READ_ONLY_HINT,
        )

    mkdir = makedirs = rmdir = _refuse
    rm = rm_file = _rm = _refuse
    put = put_file = pipe = pipe_file = _refuse
    touch = mv = copy = cp_file = _refuse
