"""Probes for ``clearml-data doctor``: facts about this machine that no setting records."""

from __future__ import annotations

import os

from .cache import Cache, tempfiles
from .cache.links import link_or_copy
from .catalog.fs import filesystem_type


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
