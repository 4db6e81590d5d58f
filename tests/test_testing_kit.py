"""The public test kit (clearml_data.testing): its opt-in pytest fixtures, and the old import
paths that keep working, with a DeprecationWarning, for one release."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest

OLD_PATHS = {
    "clearml_data.storage.conformance": ("clearml_data.testing.conformance", ["DriverConformance"]),
    "clearml_data.storage.testserver": (
        "clearml_data.testing.servers",
        [
            "LoopbackServer",
            "emulator",
            "free_port",
            "keep_loopback_off_proxies",
            "unavailable",
            "unique_name",
        ],
    ),
    "clearml_data.storage.faultproxy": (
        "clearml_data.testing.faults",
        ["Fault", "FaultProxy", "LogEntry", "Rule"],
    ),
    "clearml_data.storage.faultsuite": (
        "clearml_data.testing.faults",
        ["FaultTarget", "check_retry_bound", "check_workflow", "make_source", "standard_faults"],
    ),
}


@pytest.mark.parametrize("old", sorted(OLD_PATHS))
def test_an_old_import_path_still_works_and_warns(old, monkeypatch):
    new, names = OLD_PATHS[old]
    monkeypatch.delitem(sys.modules, old, raising=False)  # import it afresh, so it warns again
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated.*import from {new}") as caught:
        __import__(old)  # as an import statement does
    assert caught[0].filename == __file__  # shown at the import to change, not inside the shim
    shim = sys.modules[old]
    target = importlib.import_module(new)
    assert all(getattr(shim, n) is getattr(target, n) for n in names)
    assert set(names) <= set(shim.__all__)


def _run_pytest(folder) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", str(folder)]
    return subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=300, check=False)


SUITE = """
import pytest

from clearml_data.storage.folder import FolderDriver


@pytest.fixture
def driver_class():
    return FolderDriver


def test_cli_runs_in_its_own_environment(clearml_data_env, clearml_data_cli, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("a")
    assert str(clearml_data_env.root).startswith(str(tmp_path))
    res = clearml_data_cli("create", "--project", "p", "--name", "n")
    assert res.code == 0, res.err
    assert clearml_data_cli("add", "--files", tmp_path / "src").code == 0
    assert clearml_data_cli("close").code == 0
    assert clearml_data_env.catalog.is_file() and any(clearml_data_env.storage.rglob("*"))


def test_make_driver_opens_the_suite_s_driver_class(make_driver, tmp_path):
    driver = make_driver(f"file://{tmp_path}/store")
    driver.put_bytes(b"payload", "k")
    assert isinstance(driver, FolderDriver) and driver.get_bytes("k") == b"payload"
"""


def test_the_fixtures_load_only_where_a_suite_asks_for_them(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\nfilterwarnings =\n    error\n")
    (suite / "test_kit.py").write_text(textwrap.dedent(SUITE))
    res = _run_pytest(suite)
    assert res.returncode != 0 and "fixture 'clearml_data_env' not found" in res.stdout, res.stdout
    (suite / "conftest.py").write_text('pytest_plugins = ["clearml_data.testing.pytest"]\n')
    res = _run_pytest(suite)
    assert res.returncode == 0 and "2 passed" in res.stdout, res.stdout + res.stderr


def test_make_driver_without_a_driver_class_says_what_to_define(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text('pytest_plugins = ["clearml_data.testing.pytest"]\n')
    (suite / "test_no_class.py").write_text("def test_it(make_driver):\n    make_driver('file:///x')\n")
    res = _run_pytest(suite)
    assert res.returncode == 1 and "needs a driver_class fixture" in res.stdout, res.stdout
