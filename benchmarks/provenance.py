"""What a benchmark report records of the software it measured: package versions and the
commit of this checkout (shared by the benchmark scripts next to this file)."""

from __future__ import annotations

import importlib.metadata
import subprocess
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def package_versions(dists: Iterable[str]) -> dict[str, str]:
    """The installed version of each distribution in ``dists`` (those not installed are left
    out), and under ``git`` the short commit of this checkout when git can tell it."""
    found = {}
    for dist in dists:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        found["git"] = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return found
