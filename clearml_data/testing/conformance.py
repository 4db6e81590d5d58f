"""The storage driver conformance suite, for built-in and third-party drivers alike.

Subclass :class:`DriverConformance` in a test module and provide a ``driver`` fixture
that returns a driver on a fresh, empty location::

    import pytest
    from clearml_data.testing.conformance import DriverConformance

    class TestMyDriver(DriverConformance):
        @pytest.fixture
        def driver(self, tmp_path):
            return MyDriver("my://bucket/prefix-for-this-test")

Needs pytest. Class attributes tune the sizes (``LARGE_SIZE``, ``LIST_COUNT``) for
drivers whose servers are slow.

A read-only driver (a web server) sets ``READ_ONLY = True`` and overrides :meth:`seed` to
place the objects a test reads where the driver finds them (in the folder its server
serves); the write tests then check that every write is refused with ``PermissionError`` and
changes nothing. A driver whose store cannot be listed sets ``LISTS = False``: the listing
tests then check that ``list`` raises an ``OSError`` instead.
"""

from __future__ import annotations

import os
import threading

import pytest

from ..storage.base import ObjectInfo, StorageDriver


def _write(path, data: bytes) -> str:
    with open(path, "wb") as fh:
        fh.write(data)
    return str(path)


def _in_threads(fn, n: int) -> None:
    """Run fn(0) .. fn(n-1) at once, each in its own thread, and wait for all."""
    threads = [threading.Thread(target=fn, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class DriverConformance:
    """Every behaviour the service relies on. Tests take ``driver`` and pytest's ``tmp_path``."""

    #: an object at least this big exercises multipart / chunked transfers
    LARGE_SIZE = 24 * 1024 * 1024
    #: more than one page of listing results on every provider (S3 and Azure page at 1000-5000)
    LIST_COUNT = 1100
    #: the driver refuses writes (put_file, put_bytes, delete) with PermissionError
    READ_ONLY = False
    #: the driver can list by prefix
    LISTS = True

    def seed(self, driver: StorageDriver, objects: dict[str, bytes], tmp_path) -> None:
        """Make ``objects`` ({key: bytes}) readable through ``driver``. By default the driver's
        own ``put_bytes``; a read-only driver's test module writes them where its store reads."""
        for key, data in objects.items():
            driver.put_bytes(data, key)

    def _writes(self) -> None:
        if self.READ_ONLY:
            pytest.skip("a read-only driver (test_writes_are_refused covers it)")

    def _lists(self, driver: StorageDriver) -> bool:
        if not self.LISTS:
            with pytest.raises(OSError):
                list(driver.list(""))
            return False
        return True

    def test_is_a_storage_driver(self, driver):
        assert isinstance(driver, StorageDriver)

    def test_round_trip(self, driver: StorageDriver, tmp_path):
        data = os.urandom(100_000)
        if self.READ_ONLY:
            self.seed(driver, {"objects/ab/abc": data}, tmp_path)
        else:
            driver.put_file(_write(tmp_path / "src", data), "objects/ab/abc")
        out = tmp_path / "out"
        driver.get_file("objects/ab/abc", str(out))
        assert out.read_bytes() == data
        assert driver.stat("objects/ab/abc").size == len(data)
        assert driver.exists("objects/ab/abc")

    def test_bytes_round_trip_and_empty_object(self, driver: StorageDriver, tmp_path):
        self.seed(driver, {"small/one": b"hello", "small/empty": b""}, tmp_path)
        assert driver.get_bytes("small/one") == b"hello"
        assert driver.get_bytes("small/empty") == b""
        assert driver.stat("small/empty").size == 0

    def test_ranged_reads(self, driver: StorageDriver, tmp_path):
        data = bytes(range(256)) * 40
        self.seed(driver, {"packs/r.pack": data, "packs/empty.pack": b""}, tmp_path)
        assert driver.read_range("packs/r.pack", 0, 10) == data[:10]
        assert driver.read_range("packs/r.pack", 1000, 2345) == data[1000:3345]
        assert driver.read_range("packs/r.pack", len(data) - 5, 5) == data[-5:]
        assert driver.read_range("packs/r.pack", len(data) - 5, 100) == data[-5:]  # short at the end
        assert driver.read_range("packs/r.pack", len(data), 10) == b""  # at the end (HTTP 416 on some stores)
        assert driver.read_range("packs/r.pack", len(data) + 100, 10) == b""  # past the end
        assert driver.read_range("packs/empty.pack", 0, 10) == b""  # Azure answers 416 here

    def test_missing_keys_raise_file_not_found(self, driver: StorageDriver, tmp_path):
        with pytest.raises(FileNotFoundError):
            driver.stat("nope/missing")
        with pytest.raises(FileNotFoundError):
            driver.get_file("nope/missing", str(tmp_path / "x"))
        assert not (tmp_path / "x").exists()  # no empty file left behind
        with pytest.raises(FileNotFoundError):
            driver.read_range("nope/missing", 0, 1)
        with pytest.raises(PermissionError if self.READ_ONLY else FileNotFoundError):
            driver.delete("nope/missing")
        assert not driver.exists("nope/missing")

    def test_list_by_prefix(self, driver: StorageDriver, tmp_path):
        self.seed(driver, {key: key.encode() for key in ("a/1", "a/2", "ab/3", "b/4")}, tmp_path)
        if not self._lists(driver):
            return
        assert sorted(o.key for o in driver.list("a/")) == ["a/1", "a/2"]
        assert sorted(o.key for o in driver.list("a")) == ["a/1", "a/2", "ab/3"]
        assert sorted(o.key for o in driver.list("")) == ["a/1", "a/2", "ab/3", "b/4"]
        assert list(driver.list("zzz/")) == []
        sizes = {o.key: o.size for o in driver.list("")}
        assert sizes["ab/3"] == 4
        assert all(isinstance(o, ObjectInfo) for o in driver.list(""))

    def test_listing_pages(self, driver: StorageDriver, tmp_path):
        if not self._lists(driver):
            return
        if self.READ_ONLY:
            self.seed(driver, {f"many/{i:05}": b"x" for i in range(self.LIST_COUNT)}, tmp_path)
        else:
            src = _write(tmp_path / "one", b"x")
            for i in range(self.LIST_COUNT):
                driver.put_file(src, f"many/{i:05}")
        keys = [o.key for o in driver.list("many/")]
        assert len(keys) == self.LIST_COUNT == len(set(keys))

    def test_writes_are_refused(self, driver: StorageDriver, tmp_path):
        if not self.READ_ONLY:
            pytest.skip("the driver writes")
        self.seed(driver, {"ro/obj": b"kept"}, tmp_path)
        with pytest.raises(PermissionError):
            driver.put_file(_write(tmp_path / "src", b"new"), "ro/obj")
        with pytest.raises(PermissionError):
            driver.put_bytes(b"new", "ro/new", overwrite=False)
        with pytest.raises(PermissionError):
            driver.delete("ro/obj")
        assert driver.get_bytes("ro/obj") == b"kept"
        assert not driver.exists("ro/new")

    def test_overwrite_and_create_only(self, driver: StorageDriver):
        self._writes()
        driver.put_bytes(b"first", "k/obj")
        driver.put_bytes(b"second", "k/obj")  # overwrite is the default
        assert driver.get_bytes("k/obj") == b"second"
        with pytest.raises(FileExistsError):
            driver.put_bytes(b"third", "k/obj", overwrite=False)
        assert driver.get_bytes("k/obj") == b"second"
        driver.put_bytes(b"new", "k/fresh", overwrite=False)
        assert driver.get_bytes("k/fresh") == b"new"

    def test_concurrent_create_only_has_one_winner(self, driver: StorageDriver, tmp_path):
        self._writes()
        sources = [_write(tmp_path / f"s{i}", f"writer {i}".encode() * 1000) for i in range(8)]
        outcomes: list[str] = []
        lock = threading.Lock()

        def put(i):
            try:
                driver.put_file(sources[i], "race/key", overwrite=False)
                result = f"won {i}"
            except FileExistsError:
                result = "lost"
            with lock:
                outcomes.append(result)

        _in_threads(put, 8)
        winners = [o for o in outcomes if o.startswith("won")]
        assert len(winners) == 1 and outcomes.count("lost") == 7
        i = int(winners[0].split()[1])
        assert driver.get_bytes("race/key") == f"writer {i}".encode() * 1000

    def test_concurrent_writers_of_distinct_keys(self, driver: StorageDriver, tmp_path):
        self._writes()
        errors: list[BaseException] = []

        def put(i):
            try:
                driver.put_bytes(os.urandom(10_000) + bytes([i]), f"par/{i}")
            except BaseException as exc:  # noqa: BLE001 - collected, and asserted in the test thread
                errors.append(exc)

        _in_threads(put, 16)
        assert not errors
        assert sorted(o.key for o in driver.list("par/")) == sorted(f"par/{i}" for i in range(16))

    def test_failed_upload_is_never_visible(self, driver: StorageDriver, tmp_path):
        self._writes()
        with pytest.raises(OSError):
            driver.put_file(str(tmp_path / "does-not-exist"), "fail/key")
        assert not driver.exists("fail/key")
        assert [o.key for o in driver.list("fail/")] == []

    def test_delete(self, driver: StorageDriver):
        self._writes()
        driver.put_bytes(b"x", "d/1")
        driver.delete("d/1")
        assert not driver.exists("d/1")
        assert [o.key for o in driver.list("d/")] == []

    def test_unicode_keys(self, driver: StorageDriver, tmp_path):
        key = "uni/ünïcødé ✓/файл 名前.bin"
        self.seed(driver, {key: b"u"}, tmp_path)
        assert driver.get_bytes(key) == b"u"
        if self._lists(driver):
            assert [o.key for o in driver.list("uni/")] == [key]

    def test_large_object(self, driver: StorageDriver, tmp_path):
        data = os.urandom(1024 * 1024) * (self.LARGE_SIZE // (1024 * 1024))
        if self.READ_ONLY:
            self.seed(driver, {"objects/big": data}, tmp_path)
        else:
            driver.put_file(_write(tmp_path / "big", data), "objects/big")
        assert driver.stat("objects/big").size == len(data)
        out = tmp_path / "big.out"
        driver.get_file("objects/big", str(out))
        assert out.read_bytes() == data
        mid = len(data) // 2
        assert driver.read_range("objects/big", mid, 4096) == data[mid : mid + 4096]

    # -- unfinished uploads (drivers whose interrupted puts leave something behind) -------------
    def abandon_upload(self, driver: StorageDriver, key: str, tmp_path) -> bool:
        """Start an upload of ``key`` and leave it unfinished, as a killed writer does; return
        False (the default) for a driver whose puts leave nothing behind. Test modules of
        drivers that implement ``list_unfinished`` override this."""
        return False

    def test_unfinished_uploads(self, driver: StorageDriver, tmp_path):
        assert list(driver.list_unfinished("")) == []  # a fresh location has none
        if not self.abandon_upload(driver, "unfinished/ab/one", tmp_path):
            return
        found = list(driver.list_unfinished("unfinished/"))
        assert [u.key for u in found] == ["unfinished/ab/one"]
        assert [u.key for u in driver.list_unfinished("")] == ["unfinished/ab/one"]
        assert list(driver.list_unfinished("other/")) == []
        assert found[0].upload_id and (found[0].started is None or found[0].started > 0)
        assert not driver.exists("unfinished/ab/one")  # never a visible object
        assert [o.key for o in driver.list("unfinished/")] == []
        driver.abort_unfinished(found[0])
        assert list(driver.list_unfinished("")) == []
        driver.abort_unfinished(found[0])  # gone already: no error
        driver.put_bytes(b"after", "unfinished/ab/one")  # the key is free for a real put
        assert driver.get_bytes("unfinished/ab/one") == b"after"
        assert list(driver.list_unfinished("")) == []
