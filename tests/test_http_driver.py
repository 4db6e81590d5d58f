"""The read-only http(s) driver, on a web server the tests start on 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clearml_data.errors import StorageError
from clearml_data.storage import PluginManager, StorageDriver
from clearml_data.storage.http import HttpDriver
from clearml_data.testing.conformance import DriverConformance
from clearml_data.testing.httpserver import FileServer
from clearml_data.testing.servers import keep_loopback_off_proxies

keep_loopback_off_proxies()


def _place(root, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        path = os.path.join(root, *key.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    with FileServer(root) as server:
        yield server


class TestHttpConformance(DriverConformance):
    READ_ONLY = True
    LISTS = False
    LARGE_SIZE = 4 * 1024 * 1024

    @pytest.fixture
    def driver(self, served):
        self.root = served.root
        # through the plugin manager, as the service gets it: guarded (retries, budget)
        return PluginManager().driver(served.url + "/base")

    def seed(self, driver, objects, tmp_path):
        _place(os.path.join(self.root, "base"), objects)


class TestLesserServers(DriverConformance):
    """A server that ignores Range and refuses HEAD: reads still give exactly what was asked."""

    READ_ONLY = True
    LISTS = False
    LARGE_SIZE = 2 * 1024 * 1024

    @pytest.fixture
    def driver(self, tmp_path):
        root = tmp_path / "plain"
        root.mkdir()
        self.root = str(root)
        with FileServer(root, ranges=False, head=False) as server:
            yield PluginManager().driver(server.url)

    def seed(self, driver, objects, tmp_path):
        _place(self.root, objects)


def test_both_schemes_are_built_in():
    pm = PluginManager(load_entry_points=False)
    assert {"http", "https"} <= set(pm.drivers)
    assert pm.driver_class("https") is HttpDriver


def test_ranged_reads_ask_for_the_range_only(served):
    _place(served.root, {"p/big.pack": bytes(range(256)) * 4096})
    driver = PluginManager().driver(served.url)
    assert driver.read_range("p/big.pack", 1000, 10) == (bytes(range(256)) * 4096)[1000:1010]
    assert served.requests[-1] == ("GET", "/p/big.pack", "bytes=1000-1009")
    assert driver.stat("p/big.pack").size == 256 * 4096
    assert served.requests[-1][0] == "HEAD"


def test_transient_errors_are_retried(served, tmp_path):
    _place(served.root, {"f.bin": b"payload"})
    driver = PluginManager().driver(served.url)
    served.fail_next(2, 503)
    out = tmp_path / "out"
    driver.get_file("f.bin", str(out))
    assert out.read_bytes() == b"payload"
    assert [r[0] for r in served.requests] == ["GET", "GET", "GET"]
    served.fail_next(3, 502)  # three tries in all, then the error
    with pytest.raises(ConnectionError):
        driver.stat("f.bin")


def test_errors_map_onto_builtin_exceptions(served):
    driver = PluginManager().driver(served.url)
    served.fail_next(1, 403)
    with pytest.raises(PermissionError):
        driver.stat("anything")
    served.fail_next(1, 418)
    with pytest.raises(OSError, match="418"):
        driver.stat("anything")


def test_writes_name_the_scheme(served, tmp_path):
    driver: StorageDriver = HttpDriver(served.url)
    with pytest.raises(PermissionError, match=r"http:// storage is read-only"):
        driver.put_bytes(b"x", "k")
    assert served.requests == []  # refused before any request


def test_credentials_go_in_a_header_and_never_in_text(served):
    _place(served.root, {"secret.txt": b"s"})
    driver = HttpDriver(f"http://alice:hunter2@{served.url[len('http://') :]}")
    assert driver.get_bytes("secret.txt") == b"s"
    assert "hunter2" not in repr(driver) and "hunter2" not in driver.object_url("secret.txt")


def test_unreachable_server_is_a_connection_error():
    from clearml_data.testing.servers import free_port

    driver = HttpDriver(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(ConnectionError):
        driver.stat("x")


def test_a_storage_on_http_is_refused_at_upload(served, tmp_path, monkeypatch):
    """A dataset version cannot be stored on a web server: the error names the scheme."""
    from clearml_data import Dataset
    from clearml_data.testing import isolate

    isolate(tmp_path / "env", monkeypatch)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    ds = Dataset.create(dataset_name="n", dataset_project="p", output_uri=served.url + "/store")
    ds.add_files(src)
    with pytest.raises(StorageError, match=r"http:// storage is read-only"):
        ds.upload(show_progress=False)


def test_a_single_file_on_a_web_server_is_an_external_file(served, tmp_path, monkeypatch):
    from clearml_data import Dataset
    from clearml_data.testing import isolate

    isolate(tmp_path / "env", monkeypatch)
    _place(served.root, {"d/a.txt": b"hello"})
    ds = Dataset.create(dataset_name="links", dataset_project="p")
    assert ds.add_external_files(served.url + "/d/a.txt") == 1
    ds.finalize(auto_upload=True)
    copy = Dataset.get(dataset_id=ds.id).get_local_copy()
    assert (Path(copy) / "a.txt").read_bytes() == b"hello"
    other = Dataset.create(dataset_name="folder", dataset_project="p")
    with pytest.raises(StorageError, match=r"http:// servers cannot be listed"):
        other.add_external_files(served.url + "/d/")
