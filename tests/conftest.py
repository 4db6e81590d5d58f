"""Every core test runs in its own catalog, default storage, cache, state and config."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from clearml_data.testing import CliResult, IsolatedEnv


@pytest.fixture(autouse=True)
def env(clearml_data_env: IsolatedEnv) -> IsolatedEnv:
    """Every test gets its own catalog, default storage, cache, state and config."""
    return clearml_data_env


@pytest.fixture
def cli(clearml_data_cli: Callable[..., CliResult]) -> Callable[..., CliResult]:
    """Run ``clearml-data`` in-process: cli("add", "--files", "x") -> CliResult."""
    return clearml_data_cli
