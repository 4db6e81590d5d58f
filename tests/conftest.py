from __future__ import annotations

import pytest

from clearml_data.testing import IsolatedEnv, isolate, reset_services, run_cli


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch) -> IsolatedEnv:
    """Every test gets its own catalog, default storage, cache, state and config."""
    e = isolate(tmp_path / "clearml-data-env", monkeypatch)
    yield e
    reset_services()


@pytest.fixture
def cli():
    """Run ``clearml-data`` in-process: cli("add", "--files", "x") -> CliResult."""
    return run_cli
