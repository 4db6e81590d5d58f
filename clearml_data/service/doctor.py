"""``clearml-data doctor``: the settings in force and where each came from, the catalog's
health, the cache's filesystem and link type, and the plugins loaded; plus the probes for
facts about this machine that no setting records."""

from __future__ import annotations

import os
import platform
import re
import shutil
import sqlite3
import types
from typing import Any

from .. import tempfiles
from ..cache import Cache
from ..cache.links import link_or_copy
from ..catalog.fs import filesystem_type
from ..errors import ClearMLDataError
from ..storage import redact_url
from .results import PluginInfo, PluginsReport
from .workspace import Workspace


def probe_link_type(folder: str | os.PathLike) -> str:
    """How a local copy made in ``folder`` gets its files: ``hardlink``, ``reflink`` or ``copy``.

    It makes a small file in ``folder`` and materialises it the way ``get_local_copy`` does
    (hard link, else reflink, else copy), then removes both.
    """
    os.makedirs(folder, exist_ok=True)
    fd, src = tempfiles.mkstemp(folder, "probe-", ".tmp")  # swept from the cache if killed here
    dst = src + ".copy"
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"clearml-data link probe\n")
        return link_or_copy(src, dst)
    finally:
        for path in (dst, src):
            if os.path.lexists(path):
                os.unlink(path)


def probe_cache(cache: Cache) -> dict:
    """The cache's filesystem and the link type its local copies get (probed in its tmp folder)."""
    try:
        link_type = probe_link_type(cache.tmp)
    except OSError as exc:
        link_type = f"unknown ({exc.strerror or exc})"
    return {"filesystem": filesystem_type(cache.root), "link_type": link_type}


#: the import line pip writes into a console script: ``from clearml_data.__main__ import main``
_ENTRY_POINT = re.compile(r"^\s*from\s+([A-Za-z_][\w.]*)\s+import\s+([A-Za-z_]\w*)", re.MULTILINE)
#: ``python -m clearml_data`` works whichever program the PATH's ``clearml-data`` is
FALLBACK = "python -m clearml_data"


def probe_command(name: str = "clearml-data", path: str | None = None) -> dict[str, Any]:
    """Which program ``name`` on ``path`` (default: $PATH) is: ``clearml-data`` (this
    package), ``clearml`` (ClearML's own ``clearml-data``, which replaces this one when both
    are installed in one environment), ``other`` or ``missing``; read from the entry point
    line of the console script pip wrote, and with the fix when it is not this package."""
    found = shutil.which(name, path=path)
    info: dict[str, Any] = {"name": name, "path": found, "program": "missing", "entry_point": None}
    if found is None:
        info["fix"] = f"use {FALLBACK}, or put the environment's bin folder on PATH"
        return info
    try:
        with open(found, "rb") as fh:
            head = fh.read(4096).decode("utf-8", "replace")
    except OSError as exc:
        info.update(program="other", fix=f"cannot read it ({exc.strerror or exc}); use {FALLBACK}")
        return info
    match = _ENTRY_POINT.search(head)
    module = match.group(1) if match else ""
    if match:
        info["entry_point"] = f"{module}:{match.group(2)}"
    if module == "clearml_data" or module.startswith("clearml_data."):
        info["program"] = "clearml-data"
    elif module == "clearml" or module.startswith("clearml."):
        info["program"] = "clearml"
        info["fix"] = (
            f"this is ClearML's command (the clearml package installed in the same environment "
            f"replaced ours): use {FALLBACK}, or install clearml and clearml-data in separate environments"
        )
    else:
        info["program"] = "other"
        info["fix"] = f"it is not clearml-data's command: use {FALLBACK}"
    return info


def doctor(ws: Workspace) -> dict[str, Any]:
    """The settings in force and where each came from, the catalog's health, the cache's
    filesystem and link type, and the plugins and drivers loaded."""
    from .. import __version__  # the package's own version (its __init__ loads lazily)

    s = ws.settings
    catalog: dict[str, Any] = {"path": str(s.catalog), "source": s.sources.get("catalog")}
    cache: dict[str, Any] = {
        "path": str(s.cache_dir),
        "source": s.sources.get("cache_dir"),
        "max_size": s.cache_max_size,
        "max_size_source": s.sources.get("cache_max_size"),
    }
    info: dict[str, Any] = {
        "clearml_data": __version__,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "config_file": str(s.config_file),
        "catalog": catalog,
        "storage": {"url": redact_url(s.storage), "source": s.sources.get("storage")},
        "cache": cache,
        "state_dir": str(s.state_dir),
        "command": probe_command(),
    }
    try:
        catalog.update(ws.catalog.info())
        catalog["integrity"] = ws.catalog.integrity_check()
    except ClearMLDataError as exc:
        catalog["error"] = str(exc)
    cache.update(probe_cache(ws.cache))
    report = plugins_report(ws)
    info["plugins"] = [
        {
            "name": p.name,
            "package": p.package,
            "version": p.version,
            "status": p.status,
            **({"error": p.error} if p.error else {}),
        }
        for p in report.plugins
    ]
    info["drivers"] = report.drivers if report.error is None else {"error": str(report.error)}
    return info


def plugins_report(ws: Workspace) -> PluginsReport:
    """The storage plugins found (loaded, disabled or broken), the URL schemes each serves,
    and the import name of each loaded one (whose loggers ``--debug`` turns on)."""
    pm = ws.plugins
    report = PluginsReport()
    try:
        report.drivers = {scheme: rec.plugin for scheme, rec in sorted(pm.drivers.items())}
    except ClearMLDataError as exc:
        report.error = exc
    for r in pm.records:  # after the drivers: a plugin whose hook fails is marked broken there
        module = _import_name(pm.pm.get_plugin(r.name)) if r.status == "loaded" else ""
        report.plugins.append(
            PluginInfo(
                r.name,
                r.package,
                r.version,
                r.status,
                r.error,
                [s for s, owner in report.drivers.items() if owner == r.name],
                module,
            )
        )
    return report


def _import_name(plugin: object) -> str:
    """The top-level package a registered plugin (a module, a class or an object) comes from."""
    if plugin is None:
        return ""
    name = plugin.__name__ if isinstance(plugin, types.ModuleType) else getattr(plugin, "__module__", "")
    return (name or "").partition(".")[0]
