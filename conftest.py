"""Shared by every test suite in this repository (the core's and the plugins')."""

from __future__ import annotations

import pytest

# the kit's fixtures (clearml_data_env, clearml_data_cli, make_driver), for the core's tests and
# the plugins' alike; a plugin in a repository of its own names this in its own top-level conftest
pytest_plugins = ["clearml_data.testing.pytest"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from figures import figures_recorded  # tests/support, on sys.path through tox.ini

    if figures_recorded:
        terminalreporter.section("reliability figures")
        for record in figures_recorded:
            rest = ", ".join(f"{k}={v}" for k, v in record.items() if k != "topic")
            terminalreporter.write_line(f"{record['topic']}: {rest}")
