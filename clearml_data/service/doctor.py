"""``clearml-data doctor``: the settings in force and where each came from, the catalog's
health, the cache's filesystem and link type, and the plugins loaded; plus the probes for
facts about this machine that no setting records."""

from __future__ import annotations

import os
import platform
import sqlite3
from typing import Any

from .. import tempfiles
from ..cache import Cache, link_or_copy
from ..catalog.fs import filesystem_type
from ..errors import ClearMLDataError
from ..storage import redact_url
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


def doctor(ws: Workspace) -> dict[str, Any]:
    """The settings in force and where each came from, the catalog's health, the cache's
    filesystem and link type, and the plugins and drivers loaded."""
    from .. import __version__  # the package's own version (its __init__ loads lazily)

    s = ws.settings
    catalog: dict[str, Any] = {"path": str(s.catalog), "source": s.sources.get("catalog")}
    cache: dict[str, Any] = {"path": str(s.cache_dir), "source": s.sources.get("cache_dir"),
                             "max_size": s.cache_max_size, "max_size_source": s.sources.get("cache_max_size")}
    info: dict[str, Any] = {
        "clearml_data": __version__,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "config_file": str(s.config_file),
        "catalog": catalog,
        "storage": {"url": redact_url(s.storage), "source": s.sources.get("storage")},
        "cache": cache,
        "state_dir": str(s.state_dir),
    }
    try:
        catalog.update(ws.catalog.info())
        catalog["integrity"] = ws.catalog.integrity_check()
    except ClearMLDataError as exc:
        catalog["error"] = str(exc)
    cache.update(probe_cache(ws.cache))
    info["plugins"] = [
        {"name": r.name, "package": r.package, "version": r.version, "status": r.status,
         **({"error": r.error} if r.error else {})}
        for r in ws.plugins.records
    ]
    try:
        info["drivers"] = {scheme: rec.plugin for scheme, rec in sorted(ws.plugins.drivers.items())}
    except ClearMLDataError as exc:
        info["drivers"] = {"error": str(exc)}
    return info
