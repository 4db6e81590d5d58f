from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from clearml_data import api
from clearml_data.cli import main


@dataclass
class Env:
    root: Path
    catalog: Path
    storage: Path
    cache: Path
    state: Path


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch) -> Env:
    """Every test gets its own catalog, default storage, cache, state and config."""
    root = tmp_path / "clearml-data-env"
    e = Env(root, root / "catalog.db", root / "storage", root / "cache", root / "state")
    root.mkdir()
    monkeypatch.setenv("CLEARML_DATA_CATALOG", str(e.catalog))
    monkeypatch.setenv("CLEARML_DATA_STORAGE", str(e.storage))
    monkeypatch.setenv("CLEARML_DATA_CACHE_DIR", str(e.cache))
    monkeypatch.setenv("CLEARML_DATA_STATE_DIR", str(e.state))
    monkeypatch.setenv("CLEARML_DATA_CONFIG", str(root / "config.ini"))
    monkeypatch.delenv("CLEARML_DATA_DISABLE_PLUGINS", raising=False)
    for var in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(var, str(root / "xdg" / var.lower()))
    api._services.clear()
    yield e
    for service in api._services.values():
        service.close()
    api._services.clear()


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict:
        return json.loads(self.out)


@pytest.fixture
def cli():
    """Run ``clearml-data`` in-process: cli("add", "--files", "x") -> CliResult."""
    def run(*argv: str) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        code = main([str(a) for a in argv], stdout=out, stderr=err)
        return CliResult(code, out.getvalue(), err.getvalue())
    return run


def write_tree(root: Path, files: dict[str, bytes | str]) -> Path:
    """Create files under root from {relative path: content}."""
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def read_tree(root: str | os.PathLike) -> dict[str, bytes]:
    """{relative path: bytes} of every file under root (following links)."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}
