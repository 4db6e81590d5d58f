"""Finding storage plugins through entry points and turning URLs into drivers.

Before it builds a driver the manager checks that the class serves the scheme (its
``schemes``, when it declares any; a warning if not), and resolves the options its class declares
(``declared_options``): a ``CLEARML_DATA_<SCHEME>_<OPTION>`` environment variable wins over
the ``[storage.<scheme>]`` section of the config file. Only options that one of them sets
are passed, as keyword arguments, so a class that takes the URL alone is called with the
URL alone. Each driver it builds is guarded (:func:`.calls.guard`): reads are retried on
transient errors and every transfer counts against the process's budget.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pluggy

from .. import config
from ..errors import MissingDependencyError, PluginError, UsageError
from . import hookspecs
from .base import DriverInfo, StorageDriver, redact_url, url_scheme
from .calls import BUDGET, guard
from .toolkit import gather_options, section_name

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "clearml_data"
#: comma-separated plugin (entry-point) names that are not loaded
ENV_DISABLE = "CLEARML_DATA_DISABLE_PLUGINS"
BUILTIN_MODULES = {"folder": "clearml_data.storage.folder", "http": "clearml_data.storage.http"}
#: URL scheme -> the distribution of this project's plugin that serves it (plugins/ in the source
#: tree; the core's extras s3, gcs and azure name the same distributions)
CLOUD_PLUGINS = {"s3": "clearml-data-s3", "gs": "clearml-data-gcs", "azure": "clearml-data-azure"}
#: a source checkout keeps each plugin in <checkout>/plugins/<distribution>
_CHECKOUT = Path(__file__).resolve().parent.parent.parent


def plugin_install_hint(scheme: str) -> str | None:
    """What to install for ``scheme``'s driver: the plugin's distribution and, when this
    package runs from a source checkout, the plugin's folder in it (which installs as it is,
    published or not). None for a scheme no plugin of this project serves."""
    dist = CLOUD_PLUGINS.get(scheme)
    if dist is None:
        return None
    folder = _CHECKOUT / "plugins" / dist
    if not (folder / "setup.cfg").is_file():
        return f"install the plugin: pip install {dist}"
    try:  # from the checkout's root, the short form that its README uses
        shown = "./" + folder.relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):  # elsewhere, or the working folder is gone
        shown = str(folder)
    return f"install the plugin {dist} from this source checkout: pip install {shown}"


@dataclass
class PluginRecord:
    name: str
    package: str
    version: str
    status: str = "loaded"  # loaded | disabled | broken
    error: str = ""


@dataclass
class DriverRecord:
    info: DriverInfo
    plugin: str


class PluginManager:
    """Loads the ``clearml_data`` entry-point group; a broken plugin is a warning."""

    def __init__(self, load_entry_points: bool = True):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.records: list[PluginRecord] = []
        disabled = {n.strip() for n in os.environ.get(ENV_DISABLE, "").split(",") if n.strip()}
        for name in disabled:
            self.pm.set_blocked(name)
        if load_entry_points:
            self._load_entry_points(disabled)
        for name, module in BUILTIN_MODULES.items():
            # running from a source tree without installed metadata: built-ins still work
            if not self.pm.has_plugin(name) and not self.pm.is_blocked(name):
                self.register(importlib.import_module(module), name, "clearml-data")
        self.pm.check_pending()
        self._drivers: dict[str, DriverRecord] | None = None
        self._instances: dict[str, StorageDriver] = {}
        self._lock = threading.Lock()
        #: transfers at once, over every driver of the process (calls.TransferBudget)
        self.budget = BUDGET

    def _load_entry_points(self, disabled: set[str]) -> None:
        seen: set[str] = set()
        for dist in importlib.metadata.distributions():
            for ep in dist.entry_points:
                if ep.group != ENTRY_POINT_GROUP or ep.name in seen:
                    continue
                seen.add(ep.name)
                package = dist.metadata["Name"] or "?"
                version = dist.version or "?"
                if ep.name in disabled:
                    self.records.append(PluginRecord(ep.name, package, version, "disabled"))
                    continue
                try:
                    plugin = ep.load()
                except Exception as exc:  # noqa: BLE001 - a broken third-party plugin must not take us down
                    msg = f"{type(exc).__name__}: {exc}"
                    log.warning("storage plugin %r from %s could not be loaded: %s", ep.name, package, msg)
                    self.records.append(PluginRecord(ep.name, package, version, "broken", msg))
                    continue
                try:
                    self.register(plugin, ep.name, package, version)
                except Exception as exc:  # noqa: BLE001 - e.g. pluggy rejects a hook implementation
                    msg = f"{type(exc).__name__}: {exc}"
                    log.warning(
                        "storage plugin %r from %s could not be registered: %s", ep.name, package, msg
                    )
                    if self.pm.is_registered(plugin):
                        self.pm.unregister(plugin)
                    self.records.append(PluginRecord(ep.name, package, version, "broken", msg))

    def register(self, plugin, name: str, package: str = "", version: str = "") -> None:
        if not version and package:
            try:
                version = importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                from .. import __version__ as version
        self.pm.register(plugin, name=name)
        self.records.append(PluginRecord(name, package, version))
        self._drivers = None

    # -- drivers -------------------------------------------------------------------
    @property
    def drivers(self) -> dict[str, DriverRecord]:
        if self._drivers is None:
            found: dict[str, DriverRecord] = {}
            for impl in self.pm.hook.clearml_data_storage_drivers.get_hookimpls():
                plugin_name = self.pm.get_name(impl.plugin) or "?"
                try:
                    infos = list(cast("Iterable[DriverInfo]", impl.function() or ()))
                except Exception as exc:  # noqa: BLE001 - a plugin's hook that fails is reported, not fatal
                    log.warning("storage plugin %r failed to list its drivers: %s", plugin_name, exc)
                    self._mark_broken(plugin_name, f"{type(exc).__name__}: {exc}")
                    continue
                for info in infos:
                    info = DriverInfo(*info)
                    scheme = info.scheme.lower()
                    if scheme in found:
                        raise PluginError(
                            f"plugins {found[scheme].plugin!r} and {plugin_name!r} both provide "
                            f"the {scheme}:// storage driver",
                            hint=f"disable one with {ENV_DISABLE}=<name>",
                        )
                    found[scheme] = DriverRecord(info, plugin_name)
            self._drivers = found
        return self._drivers

    def _mark_broken(self, name: str, error: str) -> None:
        for rec in self.records:
            if rec.name == name:
                rec.status, rec.error = "broken", error

    def driver_class(self, scheme: str) -> type[StorageDriver]:
        record = self.drivers.get(scheme)
        if record is None:
            known = ", ".join(sorted(f"{s}://" for s in self.drivers)) or "none"
            hint = plugin_install_hint(scheme)
            raise UsageError(f"no storage driver for {scheme}:// URLs (installed: {known})", hint=hint)
        info = record.info
        for module in info.requires:
            if not _importable(module):
                raise MissingDependencyError(scheme, module, info.install_hint or f"pip install {module}")
        module_name, _, attr = info.factory.partition(":")
        if not attr:
            raise PluginError(
                f"storage driver factory {info.factory!r} of plugin {record.plugin!r} "
                f"must name a class as 'package.module:Class'"
            )
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except ImportError as exc:
            missing = exc.name or module_name
            raise MissingDependencyError(
                scheme, missing, info.install_hint or f"pip install {missing}"
            ) from None
        except AttributeError:
            raise PluginError(
                f"storage driver {info.factory!r} of plugin {record.plugin!r} does not exist"
            ) from None
        served = tuple(getattr(cls, "schemes", ()) or ())
        if served and scheme not in served:  # a factory pointing at the wrong class, likely
            log.warning(
                "plugin %r gives %r for %s:// URLs, but that class serves %s",
                record.plugin,
                info.factory,
                scheme,
                ", ".join(f"{s}://" for s in served),
            )
        return cast("type[StorageDriver]", cls)

    def driver_options(self, scheme: str, cls: type[StorageDriver]) -> tuple[dict, dict[str, str]]:
        """The options the environment and the config file set for ``scheme``'s driver,
        typed, and where each came from (for ``doctor``)."""
        section_title = section_name(scheme)
        path = config.config_file_path()
        section = config.read_section(section_title, path)
        declared = tuple(getattr(cls, "declared_options", ()) or ())
        if not declared:
            if section:
                raise UsageError(
                    f"the {scheme}:// storage driver takes no options, but [{section_title}] "
                    f"in {path} sets {', '.join(sorted(section))}",
                    hint=f"remove the [{section_title}] section",
                )
            return {}, {}
        return gather_options(scheme, declared, section=section, section_source=str(path))

    def driver(self, url: str) -> StorageDriver:
        """A driver instance for a storage URL (one per URL, reused)."""
        with self._lock:
            inst = self._instances.get(url)
            if inst is None:
                scheme = url_scheme(url)
                cls = self.driver_class(scheme)
                options, _ = self.driver_options(scheme, cls)
                try:
                    inst = cls(url, **options)
                except (ValueError, OSError) as exc:
                    raise UsageError(f"invalid storage URL {redact_url(url)}: {exc}") from None
                except TypeError as exc:
                    raise PluginError(
                        f"the storage driver for {url_scheme(url)}:// cannot be created: {exc}"
                    ) from None
                self._instances[url] = guard(inst, self.budget)
            return inst

    def close(self) -> None:
        with self._lock:
            for inst in self._instances.values():
                try:
                    inst.close()
                except Exception:  # closing is best effort
                    log.debug("closing %r failed", inst, exc_info=True)
            self._instances.clear()


def _importable(module: str) -> bool:
    """Can ``module`` be imported? Checks every level: "google" alone is a shared namespace."""
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        try:
            if importlib.util.find_spec(".".join(parts[:i])) is None:
                return False
        except (ImportError, ValueError):  # a parent is missing, or blocked in sys.modules
            return False
    return True
