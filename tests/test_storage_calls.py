"""The calls policy: error mapping, the retry of transient reads, the budget, progress, capabilities."""

from __future__ import annotations

import errno
import sys
import threading
import time
from typing import ClassVar

import pytest

from clearml_data.errors import StorageError
from clearml_data.storage import RANGED_READS, DriverInfo, PluginManager, hookimpl
from clearml_data.storage.calls import TransferBudget, guard, mark_retried, retrying, storage_error
from clearml_data.storage.folder import FolderDriver, folder_path
from clearml_data.storage.toolkit import Option, positive_int


class _SchemeFolder(FolderDriver):
    """A folder driver for ``<scheme>:///path`` URLs."""

    def __init__(self, url, **options):
        super().__init__(url, **options)
        self.root = folder_path("file://" + url.split("://", 1)[1])


class FlakyFolder(_SchemeFolder):
    """A folder driver whose next reads fail as a network would (``failures`` of them)."""

    schemes = ("flaky",)
    declared_options = (Option("max_attempts", positive_int, 3),)
    failures: ClassVar[list[BaseException]] = []
    calls: ClassVar[list[str]] = []

    def _fail(self, name):
        FlakyFolder.calls.append(name)
        if FlakyFolder.failures:
            raise FlakyFolder.failures.pop(0)

    def stat(self, key):
        self._fail("stat")
        return super().stat(key)

    def read_range(self, key, offset, length):
        self._fail("read_range")
        return super().read_range(key, offset, length)

    def put_file(self, local_path, key, *, overwrite=True, callback=None):
        self._fail("put_file")
        super().put_file(local_path, key, overwrite=overwrite, callback=callback)


class OldFolder(_SchemeFolder):
    """A driver written before callbacks and ranged reads: no callback, no RANGED_READS."""

    schemes = ("old",)
    capabilities = frozenset()
    ranges: ClassVar[list[tuple]] = []

    def put_file(self, local_path, key, *, overwrite=True):
        super().put_file(local_path, key, overwrite=overwrite)

    def get_file(self, key, local_path):
        super().get_file(key, local_path)

    def read_range(self, key, offset, length):
        OldFolder.ranges.append((key, offset, length))
        raise AssertionError("the core reads whole objects of a driver without RANGED_READS")


class TwoWorkers(FolderDriver):
    default_max_workers = 2


class WrongScheme(_SchemeFolder):
    schemes = ("file", "nfs")


class _Plugin:
    @hookimpl
    def clearml_data_storage_drivers(self):
        return [
            DriverInfo("flaky", f"{__name__}:FlakyFolder"),
            DriverInfo("old", f"{__name__}:OldFolder"),
            DriverInfo("wrong", f"{__name__}:WrongScheme"),
        ]


@pytest.fixture
def pm(monkeypatch):
    monkeypatch.setitem(sys.modules, __name__, sys.modules[__name__])
    FlakyFolder.failures.clear()
    FlakyFolder.calls.clear()
    OldFolder.ranges.clear()
    manager = PluginManager(load_entry_points=False)
    manager.register(_Plugin(), "calls-test")
    yield manager
    manager.close()


@pytest.fixture
def stored(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 1000)
    return src


def test_storage_error_redacts_and_names_the_key():
    cause = PermissionError(errno.EACCES, "access denied (token=abcdef123456)")
    err = storage_error(cause, "s3://bucket/p?X-Amz-Signature=deadbeef", "packs/a.pack", doing="write")
    assert str(err).startswith("cannot write packs/a.pack to s3://bucket/p?") and "access denied" in str(err)
    assert "deadbeef" not in str(err) and "abcdef123456" not in str(err)
    assert err.key == "packs/a.pack" and "deadbeef" not in (err.url or "")
    missing = storage_error(FileNotFoundError(errno.ENOENT, "no such object"), "/data", "k", doing="read")
    assert str(missing).startswith("object k is missing from /data") and "verify" in str(missing)
    with pytest.raises(StorageError) as info:
        try:
            raise cause
        except OSError as exc:
            raise storage_error(exc, "/data", "k") from exc
    assert info.value.__cause__ is cause


def test_reads_are_retried_on_transient_errors_and_writes_are_not(pm, env, stored):
    driver = pm.driver("flaky:///" + str(env.root / "store"))
    assert type(driver) is FlakyFolder  # guarded in place: the plugin's class
    driver.put_file(str(stored), "a.bin")
    FlakyFolder.failures[:] = [TimeoutError("timed out"), ConnectionResetError("reset")]
    assert driver.read_range("a.bin", 0, 4) == bytes(range(4))
    assert FlakyFolder.calls[-3:] == ["read_range"] * 3
    FlakyFolder.failures[:] = [TimeoutError("1"), TimeoutError("2"), TimeoutError("3")]
    with pytest.raises(TimeoutError, match="3"):  # max_attempts (3) tries, then the driver's error
        driver.stat("a.bin")
    FlakyFolder.failures[:] = [TimeoutError("a put that timed out may have been done")]
    with pytest.raises(TimeoutError):
        driver.put_file(str(stored), "b.bin")
    FlakyFolder.failures[:] = [mark_retried(ConnectionError("botocore tried 8 times"))]
    FlakyFolder.calls.clear()
    with pytest.raises(ConnectionError):
        driver.stat("a.bin")
    assert FlakyFolder.calls == ["stat"]
    with pytest.raises(FileNotFoundError):  # builtin exceptions pass unchanged, never retried
        driver.stat("missing")


def test_retrying_counts_attempts():
    tries = []

    def fn():
        tries.append(1)
        raise ConnectionRefusedError("refused")

    with pytest.raises(ConnectionRefusedError):
        retrying(fn, attempts=2)
    assert len(tries) == 2


def test_the_budget_bounds_calls_of_every_driver_at_once(tmp_path, stored):
    budget = TransferBudget(2)
    drivers = [guard(FolderDriver(str(tmp_path / f"s{i}")), budget) for i in range(2)]
    for d in drivers:
        d.put_file(str(stored), "a.bin")
    assert budget.limit == 8  # grown to the drivers' default_max_workers
    budget = TransferBudget(1)
    drivers = [guard(TwoWorkers(str(tmp_path / f"s{i}")), budget) for i in range(2)]
    assert budget.limit == 2
    running, peak, lock = [0], [0], threading.Lock()
    slow_stat = FolderDriver.stat

    def stat(self, key):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return slow_stat(self, key)

    FolderDriver.stat = stat  # the guard finds the class's method at call time
    try:
        threads = [threading.Thread(target=drivers[i % 2].stat, args=("a.bin",)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        FolderDriver.stat = slow_stat
    assert peak[0] == 2
    assert drivers[0].get_bytes("a.bin") == stored.read_bytes()  # nested calls take no second permit


def test_a_driver_without_callbacks_or_ranged_reads_still_works(pm, env, stored, tmp_path):
    driver = pm.driver("old:///" + str(env.root / "store"))
    sent: list[int] = []
    driver.put_file(str(stored), "a.bin", callback=sent.append)
    assert sent == [stored.stat().st_size]  # the whole size, once it is stored
    got: list[int] = []
    driver.get_file("a.bin", str(tmp_path / "back"), callback=got.append)
    assert got == [stored.stat().st_size] and (tmp_path / "back").read_bytes() == stored.read_bytes()
    assert driver.read_range("a.bin", 300, 5) == stored.read_bytes()[300:305]
    assert driver.get_bytes("a.bin") == stored.read_bytes()
    assert OldFolder.ranges == []
    assert RANGED_READS not in driver.capabilities


def test_progress_reaches_a_driver_that_takes_it(pm, env, stored, tmp_path):
    driver = pm.driver("flaky:///" + str(env.root / "store"))
    sent: list[int] = []
    driver.put_file(str(stored), "a.bin", callback=sent.append)
    assert sum(sent) == stored.stat().st_size


def test_a_class_that_serves_other_schemes_is_a_warning(pm, env, caplog):
    pm.driver("wrong:///" + str(env.root / "store"))
    assert "that class serves file://, nfs://" in caplog.text
