"""The state every service operation works on: one :class:`Workspace`.

It holds the settings, the catalog (opened on first use), the local cache, the storage
plugins (loaded on first use), the per-machine hash memory and a small LRU of the views of
final versions (which never change). The operation modules are plain functions of a
Workspace; nothing else is shared between them.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..cache import Cache, PruneResult
from ..cache.hashmemory import HashMemory
from ..catalog import Catalog
from ..config import Settings
from ..errors import ClearMLDataError
from ..storage import PluginManager, StorageDriver
from ..storage.calls import storage_error

T = TypeVar("T")

log = logging.getLogger(__name__)

#: a view maps a dataset path to (hash, size, id of the version that introduced it)
View = dict[str, tuple[str, int, str]]

#: views of final versions kept in memory (a view of a large version is large)
VIEWS_KEPT = 4


class Workspace:
    """Settings, catalog, cache, plugins, hash memory and view cache of one service."""

    def __init__(
        self,
        settings: Settings,
        plugins: PluginManager | None = None,
        new_plugins: Callable[[], PluginManager] = PluginManager,
    ):
        self.settings = settings
        self._catalog: Catalog | None = None
        self._plugins = plugins
        self._new_plugins = new_plugins
        self.cache = Cache(settings.cache_dir)
        #: per-machine (inode, size, times) -> hash memory, so unchanged files are not re-read
        self.hash_memory = HashMemory(settings.cache_dir / "hashes.db")
        self.cache.guard.memory = self.hash_memory  # what each cached file was when checked
        self.views: OrderedDict[str, View] = OrderedDict()
        #: bytes that streamed reads put into the cache since it was last pruned (service.reading)
        self.read_since_fit = 0

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog(
                self.settings.catalog,
                lock=self.settings.catalog_lock,
                lock_timeout=self.settings.catalog_lock_timeout,
            )
        return self._catalog

    @catalog.setter
    def catalog(self, catalog: Catalog | None) -> None:
        self._catalog = catalog

    @property
    def plugins(self) -> PluginManager:
        if self._plugins is None:
            self._plugins = self._new_plugins()
        return self._plugins

    def driver(self, storage: str) -> StorageDriver:
        return self.plugins.driver(storage)

    def fit_cache(self, keep: Iterable[str] = ()) -> PruneResult | None:
        """Prune the local cache to the cache_max_size setting, if one is set, at the end of
        an operation that put content into it (least recently used first; the local copies
        named in ``keep`` stay). None when there is no limit, when another process is using
        the cache (its own end prunes then), or when pruning failed: that is logged, never
        raised, so housekeeping cannot hide the operation's own outcome."""
        limit = self.settings.cache_max_size
        if limit is None:
            return None
        try:
            return self.cache.prune(limit, keep=keep, blocking=False)
        except Exception as exc:  # noqa: BLE001 - pruning is housekeeping
            log.warning("the cache could not be pruned to its size limit: %s", exc)
            return None

    # -- the view cache -------------------------------------------------------------------
    def remembered_view(self, dataset_id: str) -> View | None:
        view = self.views.get(dataset_id)
        if view is not None:
            self.views.move_to_end(dataset_id)
        return view

    def remember_view(self, dataset_id: str, view: View) -> None:
        """Keep the view of a final version (the caller checks that it is final)."""
        self.views[dataset_id] = view
        while len(self.views) > VIEWS_KEPT:
            self.views.popitem(last=False)

    def forget_views(self, dataset_id: str | None = None) -> None:
        """Drop one remembered view, or all of them (after a change to the lineage)."""
        if dataset_id is None:
            self.views.clear()
        else:
            self.views.pop(dataset_id, None)

    def close(self) -> None:
        self.cache.guard.flush()
        self.hash_memory.close()
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None
        if self._plugins is not None:
            self._plugins.close()


def storage_call(storage: str, key: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a driver method; FileNotFoundError and FileExistsError pass, other OSErrors
    become StorageError naming the storage (credentials hidden)."""
    try:
        return fn(*args, **kwargs)
    except (FileNotFoundError, FileExistsError, ClearMLDataError):
        raise
    except OSError as exc:
        raise storage_error(exc, storage, key) from exc
