"""Opt-in pytest fixtures for testing clearml-data and storage plugins built on it.

Enable them in the top-level conftest.py of a test suite (they are not loaded otherwise)::

    pytest_plugins = ["clearml_data.testing.pytest"]

``clearml_data_env``
    This test's own catalog, default storage, cache, state and config under ``tmp_path``
    (an :class:`~clearml_data.testing.IsolatedEnv`); the Python API's services are closed
    after the test.
``clearml_data_cli``
    ``clearml_data_cli("add", "--files", d)`` runs ``clearml-data`` in-process in that
    environment and returns a :class:`~clearml_data.testing.CliResult`.
``make_driver``
    ``make_driver(url, **options)`` opens a driver of the class the suite's own
    ``driver_class`` fixture returns (which also sets up the environment the driver needs);
    every driver made is closed after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..storage.base import StorageDriver
from . import CliResult, IsolatedEnv, isolate, reset_services, run_cli


@pytest.fixture
def clearml_data_env(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[IsolatedEnv]:
    """Own catalog, default storage, cache, state and config for one test."""
    env = isolate(tmp_path / "clearml-data-env", monkeypatch)
    yield env
    reset_services()


@pytest.fixture
def clearml_data_cli(clearml_data_env: IsolatedEnv) -> Callable[..., CliResult]:
    """Run ``clearml-data`` in-process: clearml_data_cli("add", "--files", "x") -> CliResult."""
    return run_cli


@pytest.fixture
def driver_class() -> type[StorageDriver]:
    """The driver class ``make_driver`` opens: a suite that uses make_driver overrides this."""
    pytest.fail(
        "make_driver needs a driver_class fixture that returns the driver class "
        "(define one in the suite's conftest.py)",
        pytrace=False,
    )


@pytest.fixture
def make_driver(driver_class: type[StorageDriver]) -> Iterator[Callable[..., StorageDriver]]:
    """make_driver(url, **options) -> a driver_class driver, closed at the end of the test."""
    made: list[StorageDriver] = []

    def make(url: str, **options: Any) -> StorageDriver:
        driver = driver_class(url, **options)
        made.append(driver)
        return driver

    yield make
    for driver in made:
        driver.close()
