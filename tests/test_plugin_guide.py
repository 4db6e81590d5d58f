"""docs/plugins.md's example plugin works as printed.

The guide marks each file of its example with ``<!-- example: <path> -->`` just before the
code block. These tests write those blocks into a temporary folder, as the plugin's source
tree, and then:

- import the package and register it with ``PluginManager(load_entry_points=False)``;
- run the example's own test modules with pytest, in this process: the core's
  DriverConformance suite against the example driver, and its CLI workflow test, which
  finds the plugin through the entry point of the example's setup.cfg (a .dist-info
  folder next to the package makes it look installed);
- run the seed workflow (create, add, add --links, close, cache clear, get, verify)
  through the CLI on a memory:// storage, with the example registered in-process.
"""

from __future__ import annotations

import configparser
import importlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import tomllib

import clearml_data.service
from clearml_data.errors import UsageError
from clearml_data.storage import PluginManager, StorageDriver
from clearml_data.testing import isolate, read_tree, reset_services, run_cli, write_tree
from clearml_data.testing.conformance import DriverConformance
from clearml_data.testing.servers import unique_name

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
MARKER = re.compile(r"<!--\s*example:")
BLOCK = re.compile(r"^<!--\s*example:\s*(\S+?)\s*-->[ \t]*\n```[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
#: every file of the example, as the guide names them
FILES = {
    "clearml_data_memory/__init__.py",
    "clearml_data_memory/driver.py",
    "setup.cfg",
    "pyproject.toml",
    "tests/conftest.py",
    "tests/test_memory_conformance.py",
    "tests/test_memory_workflow.py",
}
#: the example driver writes: the read-only drivers' test is skipped for it, every other one passes
CONFORMANCE_TESTS = {name for name in dir(DriverConformance) if name.startswith("test_")} - {
    "test_writes_are_refused"
}


def extract(text: str) -> dict[str, str]:
    """{relative path: content} of every marked code block; each marker must start a block."""
    blocks = {}
    for m in BLOCK.finditer(text):
        assert m.group(1) not in blocks, f"{m.group(1)} is marked twice in {GUIDE.name}"
        blocks[m.group(1)] = m.group(2)
    assert len(blocks) == len(MARKER.findall(text)), (
        f"an <!-- example: ... --> marker in {GUIDE.name} is not directly followed by a code block"
    )
    return blocks


def entry_points(cfg: configparser.ConfigParser, group: str) -> dict[str, str]:
    lines = cfg.get("options.entry_points", group, fallback="").strip().splitlines()
    return dict((part.strip() for part in line.split("=", 1)) for line in lines if line.strip())


@dataclass
class Example:
    root: Path
    files: dict[str, str]
    setup: configparser.ConfigParser
    plugin_name: str  #: the entry-point name in setup.cfg
    package: ModuleType  #: the module the entry point loads

    @property
    def driver_module(self) -> ModuleType:
        return importlib.import_module(f"{self.package.__name__}.driver")

    def plugins(self) -> PluginManager:
        """A plugin manager with only the built-in folder driver and the example."""
        plugins = PluginManager(load_entry_points=False)
        plugins.register(self.package, self.plugin_name)
        return plugins


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    files = extract(GUIDE.read_text(encoding="utf-8"))
    root = tmp_path_factory.mktemp("clearml-data-memory")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    setup = configparser.ConfigParser()
    setup.read_string(files.get("setup.cfg", ""))
    points = entry_points(setup, "clearml_data")
    assert len(points) == 1, f"setup.cfg should declare one clearml_data entry point: {points}"
    ((plugin_name, module_name),) = points.items()
    # what pip would install: metadata with the entry point, so that PluginManager() finds it
    dist = root / f"{module_name}-{setup['metadata']['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {setup['metadata']['name']}\nVersion: {setup['metadata']['version']}\n"
    )
    (dist / "entry_points.txt").write_text(f"[clearml_data]\n{plugin_name} = {module_name}\n")
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        package = importlib.import_module(module_name)
        assert Path(package.__file__).is_relative_to(root), package.__file__
        yield Example(root, files, setup, plugin_name, package)
    finally:
        sys.path.remove(str(root))
        for name, module in list(sys.modules.items()):
            if Path(getattr(module, "__file__", None) or "/").is_relative_to(root):
                del sys.modules[name]
        importlib.invalidate_caches()


def test_the_guide_prints_every_file_of_the_example(example):
    assert set(example.files) == FILES
    for rel, text in example.files.items():
        if rel.endswith(".py"):
            compile(text, rel, "exec")
    assert tomllib.loads(example.files["pyproject.toml"])["build-system"]["build-backend"]


def test_setup_cfg_packages_the_plugin(example):
    setup = example.setup
    assert example.plugin_name == "memory"
    assert setup["metadata"]["version"] == example.package.__version__
    assert "clearml-data" in setup["options"]["install_requires"]
    assert example.package.__name__ in setup["options.packages.find"]["include"].split()


def test_registered_example_serves_memory_urls(example):
    plugins = example.plugins()
    try:
        driver = plugins.driver("memory://x")
        assert type(driver) is example.driver_module.MemoryDriver
        assert isinstance(driver, StorageDriver)
        assert plugins.driver("memory://x") is driver  # one instance per URL
        assert plugins.drivers["memory"].plugin == example.plugin_name
        assert plugins.drivers["file"].plugin == "folder"
        with pytest.raises(UsageError) as caught:
            plugins.driver("memory://alice:s3cr3t@store")
        assert "s3cr3t" not in str(caught.value)
    finally:
        plugins.close()


def test_the_entry_point_is_found_like_an_installed_plugin(example, monkeypatch):
    monkeypatch.delenv("CLEARML_DATA_DISABLE_PLUGINS", raising=False)
    plugins = PluginManager()
    try:
        record = next(r for r in plugins.records if r.name == example.plugin_name)
        assert (record.package, record.status) == ("clearml-data-memory", "loaded")
        assert type(plugins.driver("memory://y")) is example.driver_module.MemoryDriver
    finally:
        plugins.close()


class Outcomes:
    """A pytest plugin that records the outcome of each test of a pytest.main() run."""

    def __init__(self):
        self.passed: set[str] = set()
        self.problems: list[str] = []

    def pytest_runtest_logreport(self, report):
        if report.passed and report.when == "call":
            self.passed.add(report.nodeid)
        elif not report.passed:
            self.problems.append(f"{report.nodeid} ({report.when}, {report.outcome}): {report.longreprtext}")

    def pytest_collectreport(self, report):
        if not report.passed:
            self.problems.append(f"collecting {report.nodeid}: {report.longreprtext}")


def test_the_examples_own_tests_pass(example, tmp_path, monkeypatch):
    """DriverConformance against the example driver, and the example's workflow test."""
    # with --import-mode=importlib the example's tests/conftest.py is the module "tests.conftest",
    # the name this suite's own tests/conftest.py has: the run must import the example's
    monkeypatch.delitem(sys.modules, "tests.conftest", raising=False)
    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\n")
    outcomes = Outcomes()
    code = pytest.main(
        [
            str(example.root / "tests"),
            "-q",
            "-c",
            str(ini),
            "--rootdir",
            str(example.root),
            "-p",
            "no:cacheprovider",
            "-p",
            "no:faulthandler",
            "--import-mode=importlib",
            "-W",
            "error",
            "--basetemp",
            str(tmp_path / "basetemp"),
        ],
        plugins=[outcomes],
    )
    assert code == 0, "\n".join(outcomes.problems) or f"pytest exit code {code}"
    ran = {
        nodeid.rsplit("::", 1)[1]
        for nodeid in outcomes.passed
        if nodeid.startswith("tests/test_memory_conformance.py::Test")
    }
    assert ran >= CONFORMANCE_TESTS, f"conformance tests that did not pass: {CONFORMANCE_TESTS - ran}"
    workflow = {n for n in outcomes.passed if n.startswith("tests/test_memory_workflow.py::")}
    assert len(workflow) == 2, outcomes.passed


def test_seed_workflow_through_the_example_driver(example, tmp_path, monkeypatch):
    env = isolate(tmp_path / "env", monkeypatch)
    # every Service (the CLI's and the Python API's) gets a plugin manager holding the example
    monkeypatch.setattr(clearml_data.service, "PluginManager", example.plugins)
    memory = example.driver_module
    storage = f"memory://{unique_name('seed')}"
    links = f"memory://{unique_name('links')}"
    try:
        files = {"a.txt": b"a", "b/c.txt": b"c", "big/weights.bin": bytes(range(256)) * 6000}
        src = write_tree(tmp_path / "data_folder", files)
        external = memory.MemoryDriver(links)
        external.put_bytes(b"external one", "raw/one.csv")
        external.put_bytes(b"external two", "raw/sub/two.csv")

        res = run_cli(
            "create",
            "--project",
            "dataset_example",
            "--name",
            "initial_version",
            "--storage",
            storage,
            "--json",
        )
        assert res.code == 0, res.err
        dataset_id = res.json["data"]["id"]
        res = run_cli("add", "--files", src)
        assert res.code == 0 and res.out.strip() == "3 files added", res.err
        res = run_cli("add", "--links", links, "--dataset-folder", "linked")
        assert res.code == 0 and res.out.strip() == "2 files added", res.err
        res = run_cli("close", "--chunk-size", "1", "--json")  # 1 MiB: the 1.5 MB file is its own object
        assert res.code == 0, res.err
        upload = res.json["data"]["upload"]
        assert upload["storage"] == storage and upload["files"] == 3

        keys = sorted(o.key for o in memory.MemoryDriver(storage).list())
        assert [k.split("/")[0] for k in keys] == ["manifests", "objects", "packs"], keys
        assert not any(p.is_file() for p in env.storage.rglob("*"))  # the default folder storage is unused

        assert run_cli("cache", "clear").code == 0  # everything must come back through the driver
        res = run_cli("get", "--id", dataset_id, "--json")
        assert res.code == 0, res.err
        expected = dict(
            files, **{"linked/raw/one.csv": b"external one", "linked/raw/sub/two.csv": b"external two"}
        )
        assert read_tree(res.json["data"]["path"]) == expected
        res = run_cli("verify", "--id", dataset_id)
        assert res.code == 0, res.out + res.err
    finally:
        reset_services()
        memory.drop(storage)
        memory.drop(links)
