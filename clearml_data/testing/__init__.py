"""Helpers for testing clearml-data, and storage plugins built on it.

    from clearml_data.testing import isolate, run_cli, write_tree, read_tree

``isolate(root, monkeypatch)`` points the catalog, default storage, cache, CLI state and
config file of this process at fresh paths under ``root``; ``run_cli("add", "--files", d)``
runs ``clearml-data`` in-process and returns its exit code, stdout and stderr. Also here:
``reset_services`` (drop the Python API's cached services, as a new process would start),
``write_tree`` / ``read_tree`` (a folder from and to ``{relative path: bytes}``),
``catalog_dump`` (a catalog as SQL, for before/after comparisons), ``spawn_together``
(processes released at once by a barrier) and ``small_tmpfs`` / ``fill_disk`` (a full disk).

The rest of the kit, for a storage driver's own test suite:

- :mod:`clearml_data.testing.pytest`: opt-in fixtures (``clearml_data_env``,
  ``clearml_data_cli``, ``make_driver``), enabled with
  ``pytest_plugins = ["clearml_data.testing.pytest"]`` in a conftest.py;
- :mod:`clearml_data.testing.conformance`: ``DriverConformance``, the storage contract as tests;
- :mod:`clearml_data.testing.servers`: emulators (moto, fake-gcs-server, Azurite) on 127.0.0.1;
- :mod:`clearml_data.testing.faults`: a fault-injecting proxy, and the checks run through it.

It needs pytest (``pip install 'clearml-data[testing]'``); each emulator needs its own
server package, and only the tests that start it do.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

_ENV = (
    "CLEARML_DATA_CATALOG",
    "CLEARML_DATA_STORAGE",
    "CLEARML_DATA_CACHE_DIR",
    "CLEARML_DATA_STATE_DIR",
    "CLEARML_DATA_CONFIG",
)


@dataclass
class IsolatedEnv:
    root: Path
    catalog: Path
    storage: Path
    cache: Path
    state: Path


def isolate(root: str | os.PathLike, monkeypatch) -> IsolatedEnv:
    """Give this process its own catalog, default storage, cache, state and config under root."""
    root = Path(root)
    env = IsolatedEnv(root, root / "catalog.db", root / "storage", root / "cache", root / "state")
    root.mkdir(parents=True, exist_ok=True)
    values = (env.catalog, env.storage, env.cache, env.state, root / "config.ini")
    for var, value in zip(_ENV, values, strict=True):
        monkeypatch.setenv(var, str(value))
    for var in (
        "CLEARML_DATA_DISABLE_PLUGINS",
        "CLEARML_DATA_CACHE_MAX_SIZE",
        "CLEARML_DATA_CATALOG_LOCK",
        "CLEARML_DATA_CATALOG_LOCK_TIMEOUT",
        "CLEARML_DATA_READ_BLOCK_SIZE",
        "CLEARML_DATA_READ_AHEAD",
    ):
        monkeypatch.delenv(var, raising=False)
    for var in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(var, str(root / "xdg" / var.lower()))
    # offline mode (ClearML's switch, read by the Python API) starts off in every test
    from ..api import ENV_OFFLINE, Dataset

    monkeypatch.delenv(ENV_OFFLINE, raising=False)
    monkeypatch.setattr(Dataset, "_offline_mode", None)
    reset_services()
    return env


def reset_services() -> None:
    """Close the services the Python API, the clearml-data:// filesystem and the PyTorch
    datasets keep per process and configuration, and forget the filesystem's instances and
    the trees it read."""
    from .. import fs
    from ..service import close_shared_services

    close_shared_services()
    fs._trees.clear()
    fs.ClearMLDataFileSystem.clear_instance_cache()


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict:
        return json.loads(self.out)


def run_cli(*argv) -> CliResult:
    """Run ``clearml-data`` in this process: run_cli("add", "--files", "x") -> CliResult."""
    from ..cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], stdout=out, stderr=err)
    return CliResult(code, out.getvalue(), err.getvalue())


def spawn_together(target, jobs: list[dict], timeout: float = 900) -> list[dict]:
    """Run ``target(job, barrier)`` in one spawned process per job, all released together by
    the barrier; wait for them (killing any still running after ``timeout`` seconds) and return
    the JSON result each wrote to ``job["out"]``."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(jobs))
    procs = [ctx.Process(target=target, args=(job, barrier)) for job in jobs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=timeout)
        if p.is_alive():
            p.kill()
            p.join()
    results = []
    for i, (p, job) in enumerate(zip(procs, jobs, strict=True)):
        out = Path(job["out"])
        assert out.exists(), f"worker {job.get('index', i)} left no result (exit code {p.exitcode})"
        results.append(json.loads(out.read_text()))
    return results


def catalog_dump(path: str | os.PathLike) -> list[str]:
    """A catalog's schema and rows as SQL statements, for before/after comparisons."""
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def write_tree(root: str | os.PathLike, files: dict[str, bytes | str]) -> Path:
    """Create files under root from {relative path: content}."""
    root = Path(root)
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def read_tree(root: str | os.PathLike) -> dict[str, bytes]:
    """{relative path: bytes} of every file under root (following links)."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- small disks: a tmpfs to fill up (needs root) -------------------------------------------------
@contextlib.contextmanager
def small_tmpfs(mount: str | os.PathLike, size: str = "3m"):
    """Mount a tmpfs of ``size`` at the new folder ``mount`` for the block; skips the calling
    test when not root or when the mount is refused."""
    import pytest

    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    mount = Path(mount)
    mount.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        check=False,
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def fill_disk(disk: str | os.PathLike) -> Path:
    """Use up every free byte of the filesystem holding ``disk`` with a ballast file in it."""
    ballast = Path(disk) / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            while True:
                try:
                    if os.write(fd, b"\0" * size) < size:
                        break
                except OSError:
                    break
    finally:
        os.close(fd)
    return ballast
