"""Driver options (environment, config file, keyword arguments), the toolkit and the base class."""

from __future__ import annotations

import sys
import threading
import time
from typing import ClassVar

import pytest

from clearml_data.errors import PluginError, UnsafePathError, UsageError
from clearml_data.storage import DriverInfo, PluginManager, StorageDriver, hookimpl
from clearml_data.storage.base import redact_text
from clearml_data.storage.folder import FolderDriver
from clearml_data.storage.toolkit import (
    Lazy,
    MiB,
    Option,
    choice,
    env_name,
    gather_options,
    in_parallel,
    optional,
    parse_bool,
    parse_size,
    positive_float,
    positive_int,
    resolve_options,
    transfer_options,
)


# -- parsers ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("8MiB", 8 * MiB),
        ("16M", 16 * MiB),
        ("1.5G", 1536 * MiB),
        ("4096", 4096),
        (" 2 kib ", 2048),
        (7, 7),
        ("0", 0),
    ],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["8 MeB", "lots", "-1", "", True, -3])
def test_parse_size_refuses(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


def test_parse_bool_and_positive_numbers():
    assert [parse_bool(v) for v in ("yes", "OFF", "1", "", True)] == [True, False, True, False, True]
    with pytest.raises(ValueError, match="true or false"):
        parse_bool("maybe")
    assert positive_int("12") == 12 and positive_float("0.5") == 0.5
    for parse, bad in (
        (positive_int, "0"),
        (positive_int, "1.5"),
        (positive_float, "-1"),
        (positive_float, "inf"),
        (positive_int, True),
    ):
        with pytest.raises(ValueError):
            parse(bad)


def test_choice_and_optional():
    mode = choice("path", "virtual")
    assert mode("path") == "path" and mode("") is None
    with pytest.raises(ValueError, match="use one of path, virtual, not 'dns'"):
        mode("dns")
    attempts = optional(positive_int)
    assert attempts("") is None and attempts(None) is None and attempts("4") == 4
    with pytest.raises(ValueError):
        attempts("0")


# -- option resolution --------------------------------------------------------------------
DECLARED = (
    *transfer_options(
        max_concurrency=4,
        part_size=8 * MiB,
        multipart_threshold=16 * MiB,
        max_attempts=5,
        connect_timeout=10.0,
        read_timeout=60.0,
    ),
    Option("endpoint_url", help="endpoint of a compatible server"),
    Option("secure", parse_bool, True, old_names=("use_tls",)),
)


def test_defaults_and_typed_values():
    opts = resolve_options("mem", DECLARED, {"part_size": "32MiB", "max_concurrency": "2"}, environ={})
    assert opts["part_size"] == 32 * MiB and opts["max_concurrency"] == 2
    assert opts["multipart_threshold"] == 16 * MiB and opts["endpoint_url"] is None and opts["secure"] is True
    # what the manager passes is typed already, and parses to itself
    assert resolve_options("mem", DECLARED, opts, environ={}) == opts


def test_precedence_keyword_then_environment_then_file():
    environ = {env_name("mem", "part_size"): "16MiB", env_name("mem", "max_attempts"): "3"}
    section = {"part_size": "64MiB", "read_timeout": "5", "max_attempts": "9"}
    values, sources = gather_options(
        "mem", DECLARED, {"max_attempts": 2}, environ=environ, section=section, section_source="/etc/c.ini"
    )
    assert values == {"part_size": 16 * MiB, "read_timeout": 5.0, "max_attempts": 2}
    assert sources["part_size"] == "$CLEARML_DATA_MEM_PART_SIZE"
    assert sources["read_timeout"] == "read_timeout in [storage.mem] in /etc/c.ini"


def test_a_bad_value_names_where_it_came_from():
    with pytest.raises(UsageError, match=r"^\$CLEARML_DATA_MEM_MAX_CONCURRENCY: max_concurrency = 'many'"):
        gather_options("mem", DECLARED, environ={"CLEARML_DATA_MEM_MAX_CONCURRENCY": "many"})
    with pytest.raises(UsageError, match=r"part_size in \[storage.mem\] in /c.ini: part_size = '8 MeB'"):
        gather_options("mem", DECLARED, environ={}, section={"part_size": "8 MeB"}, section_source="/c.ini")
    with pytest.raises(UsageError, match=r"unknown option\(s\) part_sise of \[storage.mem\]") as info:
        gather_options("mem", DECLARED, environ={}, section={"part_sise": "8MiB"})
    assert "part_size" in str(info.value)  # the hint lists the known names


def test_an_old_name_still_works_and_warns():
    with pytest.warns(DeprecationWarning, match="'use_tls'.*use 'secure'"):
        values, _ = gather_options("mem", DECLARED, environ={"CLEARML_DATA_MEM_USE_TLS": "no"})
    assert values == {"secure": False}


# -- delivery by the plugin manager -------------------------------------------------------
class OptionsDriver(StorageDriver):
    """A driver that records the options it was built with (nothing is stored)."""

    declared_options = DECLARED
    built: ClassVar[list[dict]] = []

    def __init__(self, url, **options):
        super().__init__(url, **options)
        OptionsDriver.built.append(dict(options))

    def put_file(self, local_path, key, *, overwrite=True, callback=None):
        raise NotImplementedError

    def get_file(self, key, local_path, *, callback=None):
        raise NotImplementedError

    def read_range(self, key, offset, length):
        raise NotImplementedError

    def stat(self, key):
        raise FileNotFoundError(key)

    def list(self, prefix=""):
        return iter(())

    def delete(self, key):
        raise FileNotFoundError(key)


class UrlOnlyDriver(OptionsDriver):
    declared_options = ()

    def __init__(self, url):  # a factory written before options existed
        StorageDriver.__init__(self, url)


class _Plugin:
    @hookimpl
    def clearml_data_storage_drivers(self):
        return [
            DriverInfo("mem", f"{__name__}:OptionsDriver"),
            DriverInfo("old", f"{__name__}:UrlOnlyDriver"),
        ]


@pytest.fixture
def pm(monkeypatch):
    monkeypatch.setitem(sys.modules, __name__, sys.modules[__name__])
    OptionsDriver.built.clear()
    manager = PluginManager(load_entry_points=False)
    manager.register(_Plugin(), "mem")
    yield manager
    manager.close()


def test_the_manager_passes_options_from_the_environment_and_the_config_file(pm, env, monkeypatch):
    (env.root / "config.ini").write_text(
        "[clearml-data]\n\n[storage.mem]\npart_size = 64MiB\n"
        "endpoint_url = http://127.0.0.1:9\nmax_attempts = 7\n"
    )
    monkeypatch.setenv("CLEARML_DATA_MEM_MAX_ATTEMPTS", "3")
    driver = pm.driver("mem://bucket")
    assert OptionsDriver.built == [
        {"part_size": 64 * MiB, "endpoint_url": "http://127.0.0.1:9", "max_attempts": 3}
    ]
    assert driver.options["max_attempts"] == 3 and driver.options["max_concurrency"] == 4


def test_nothing_set_means_the_url_alone(pm):
    pm.driver("mem://bucket")
    pm.driver("old://bucket")
    assert OptionsDriver.built == [{}]


def test_options_for_a_driver_that_declares_none_are_an_error(pm, env):
    (env.root / "config.ini").write_text("[storage.old]\npart_size = 8MiB\n")
    with pytest.raises(UsageError, match=r"the old:// storage driver takes no options, but \[storage.old\]"):
        pm.driver("old://bucket")


def test_a_bad_environment_value_is_a_usage_error_before_the_driver_is_built(pm, monkeypatch):
    monkeypatch.setenv("CLEARML_DATA_MEM_CONNECT_TIMEOUT", "soon")
    with pytest.raises(UsageError, match=r"CLEARML_DATA_MEM_CONNECT_TIMEOUT: connect_timeout = 'soon'"):
        pm.driver("mem://bucket")
    assert OptionsDriver.built == []


def test_a_broken_factory_signature_is_a_plugin_error(pm, monkeypatch):
    monkeypatch.setenv("CLEARML_DATA_OLD_PART_SIZE", "8MiB")  # ignored: the class declares nothing
    pm.driver("old://bucket")
    monkeypatch.setattr(UrlOnlyDriver, "declared_options", DECLARED)
    pm.close()
    with pytest.raises(PluginError, match="cannot be created"):
        pm.driver("old://bucket")


# -- base class and helpers ---------------------------------------------------------------
def test_full_key_checks_the_key_and_joins_the_prefix(tmp_path):
    driver = FolderDriver(str(tmp_path))
    assert driver.full_key("packs/a.pack") == "packs/a.pack"
    driver.prefix = "team/data"
    assert driver.full_key("packs/a.pack") == "team/data/packs/a.pack"
    for bad in ("", "/abs", "a/../b", "a\\b", "a//b"):
        with pytest.raises(UnsafePathError):
            driver.full_key(bad)
    driver.max_key_bytes = 20
    with pytest.raises(UnsafePathError, match="at most 20 bytes"):
        driver.full_key("é" * 6)  # 16 characters, 22 bytes with the prefix
    driver.max_key_bytes, driver.max_key_chars = None, 12
    with pytest.raises(UnsafePathError, match="at most 12 characters"):
        driver.full_key("abc")


def test_redact_text_hides_credentials(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMIK7MDENGbPxRfiCY")
    text = redact_text(
        "PUT https://user:pw@h/b?X-Amz-Signature=abc123 failed for wJalrXUtnFEMIK7MDENGbPxRfiCY"
    )
    assert "pw@" not in text and "abc123" not in text and "wJalrXUtnFEMIK7MDENGbPxRfiCY" not in text
    assert "failed for" in text


def test_in_parallel_keeps_order_bounds_threads_and_raises_the_first_failure():
    running, peak, lock = [0], [0], threading.Lock()

    def work(n):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        if n == 13:
            raise OSError("thirteen")
        return n * n

    assert in_parallel(work, range(12), max_workers=3) == [n * n for n in range(12)]
    assert 1 < peak[0] <= 3
    with pytest.raises(OSError, match="thirteen"):
        in_parallel(work, range(20), max_workers=4)
    assert running[0] == 0  # nothing still runs after the failure is raised


@pytest.mark.parametrize("size", [0, 1, 3 * MiB + 17])
def test_folder_driver_reports_progress_as_bytes_move(tmp_path, size):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * size)
    driver = FolderDriver(str(tmp_path / "storage"))
    sent: list[int] = []
    driver.put_file(str(src), "a/b.bin", callback=sent.append)
    got: list[int] = []
    driver.get_file("a/b.bin", str(tmp_path / "back.bin"), callback=got.append)
    assert sum(sent) == sum(got) == size
    assert all(n > 0 for n in sent + got)
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()


def test_lazy_makes_its_value_once():
    made = []
    lazy = Lazy(lambda: made.append(1) or object())
    assert lazy.peek() is None and made == []
    threads = [threading.Thread(target=lazy.get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    value = lazy.peek()
    assert made == [1] and value is lazy.get()
    assert lazy.take() is value and lazy.peek() is None


def test_renamed_options_move_old_names_to_todays(monkeypatch):
    from clearml_data.storage.toolkit import renamed_options

    renamed = {"block_mb": ("part_size", lambda v: int(v) * 1024), "endpoint": ("endpoint", str)}
    monkeypatch.setenv("OLD_X_ENDPOINT", "http://127.0.0.1:1")
    with pytest.warns(DeprecationWarning) as caught:
        got = renamed_options({"block_mb": "2", "endpoint": "kept"}, renamed, "xs", "OLD_X_")
    # the old keyword is converted; a same-named keyword is today's and stays as given
    assert got == {"part_size": 2048, "endpoint": "kept"}
    said = [str(w.message) for w in caught]
    assert any("option 'block_mb'" in m and "CLEARML_DATA_XS_PART_SIZE" in m for m in said)
    assert any("$OLD_X_ENDPOINT" in m for m in said)
    # today's variable wins over an old keyword
    monkeypatch.setenv("CLEARML_DATA_XS_PART_SIZE", "1MiB")
    with pytest.warns(DeprecationWarning):
        assert "part_size" not in renamed_options({"block_mb": "2"}, renamed, "xs", "OLD_X_")
    monkeypatch.delenv("CLEARML_DATA_XS_PART_SIZE")
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(ValueError, match="xs:// driver's option 'block_mb'"),
    ):
        renamed_options({"block_mb": "two"}, renamed, "xs", "OLD_X_")
