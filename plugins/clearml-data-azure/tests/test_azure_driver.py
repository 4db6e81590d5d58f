"""azure:// driver behaviour beyond the conformance suite, against Azurite on 127.0.0.1."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import threading
from functools import partial

import pytest
import requests
import requests.adapters

from clearml_data.errors import MissingDependencyError, UsageError
from clearml_data.storage.manager import PluginManager
from clearml_data.testing.faults import Fault
from clearml_data.testing.servers import unique_name

MiB = 1024 * 1024
HOST = "devstoreaccount1.blob.core.windows.net"
CANARY_KEY = "Q0FOQVJZLWtleS1kby1ub3Qtc2hvdy1tZS0xMjM0NTY3ODkwYWJjZGVm" + "Y2FuYXJ5LWNhbmFyeQ=="
CANARY_SIG = "CANARYsignatureDoNotShow0123456789"


def _listed(driver) -> list:
    return list(driver.list(""))


class _BlockRequests(requests.adapters.HTTPAdapter):
    """Counts the Put Block requests a driver sends and, from the ``fail_from``-th on, fails
    them with a reset connection instead of sending them."""

    def __init__(self, fail_from: int | None = None):
        super().__init__(pool_maxsize=64)
        self.fail_from = fail_from
        self.staged = 0
        self.lock = threading.Lock()

    def send(self, request, **kwargs):
        if request.method == "PUT" and "comp=block&" in request.url + "&":
            with self.lock:
                self.staged += 1
                fail = self.fail_from is not None and self.staged >= self.fail_from
            if fail:
                raise requests.ConnectionError("connection reset by peer (injected)")
        return super().send(request, **kwargs)


def _count_blocks(driver, fail_from: int | None = None) -> _BlockRequests:
    driver._service_client()
    adapter = _BlockRequests(fail_from)
    driver._service._config.transport.session.mount("http://", adapter)
    return adapter


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.fixture
def clean_env(monkeypatch):
    """No Azure credentials or endpoints from the outside world."""
    for var in list(os.environ):
        if var.startswith(("AZURE_", "CLEARML_DATA_AZURE_")) or var in ("IDENTITY_ENDPOINT", "MSI_ENDPOINT"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("CLEARML_DATA_AZURE_USE_IDENTITY", "0")


# -- URLs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url, account, container, prefix, host",
    [
        ("azure://acct1.blob.core.windows.net/ctr", "acct1", "ctr", "", "acct1.blob.core.windows.net"),
        ("azure://acct1.blob.core.windows.net/ctr/", "acct1", "ctr", "", "acct1.blob.core.windows.net"),
        (
            "azure://acct1.blob.core.windows.net/ctr/a/b",
            "acct1",
            "ctr",
            "a/b/",
            "acct1.blob.core.windows.net",
        ),
        (
            "azure://acct1.blob.core.windows.net/ctr/a/b/",
            "acct1",
            "ctr",
            "a/b/",
            "acct1.blob.core.windows.net",
        ),
        (
            "AZURE://Acct1.Blob.Core.Windows.Net/my-ctr-2/Data",
            "acct1",
            "my-ctr-2",
            "Data/",
            "acct1.blob.core.windows.net",
        ),
        ("azure://acct1/ctr/datasets", "acct1", "ctr", "datasets/", "acct1.blob.core.windows.net"),
        (
            "azure://acct1.blob.core.chinacloudapi.cn/ctr/x",
            "acct1",
            "ctr",
            "x/",
            "acct1.blob.core.chinacloudapi.cn",
        ),
        (
            "azure://acct1.blob.core.windows.net/ctr/with%20space/ü",
            "acct1",
            "ctr",
            "with space/ü/",
            "acct1.blob.core.windows.net",
        ),
        ("azure://acct1.blob.core.windows.net/$root", "acct1", "$root", "", "acct1.blob.core.windows.net"),
    ],
)
def test_url_forms(url, account, container, prefix, host):
    from clearml_data_azure.urls import parse_url

    loc = parse_url(url)
    assert (loc.account, loc.container, loc.prefix, loc.host) == (account, container, prefix, host)
    assert parse_url(loc.url) == loc  # the canonical form parses to the same place
    assert not loc.url.endswith("/")


@pytest.mark.parametrize(
    "url, words",
    [
        ("s3://bucket/key", "not an azure:// URL"),
        ("azure://", "no storage account"),
        ("azure://acct1.blob.core.windows.net", "no container"),
        ("azure://acct1.blob.core.windows.net/", "no container"),
        ("azure://Bad_Account.blob.core.windows.net/ctr", "not a valid storage account name"),
        ("azure://ab/ctr", "not a valid storage account name"),
        ("azure://acct1.blob.core.windows.net/Bad_Container", "not a valid container name"),
        ("azure://acct1.blob.core.windows.net/a--b", "not a valid container name"),
        ("azure://acct1.file.core.windows.net/ctr", "must be <account>.blob.core.windows.net"),
        ("azure://127.0.0.1:10000/ctr", "takes no port"),
        ("azure://acct1.blob.core.windows.net/ctr/a//b", "empty, '.' or '..' component"),
        ("azure://acct1.blob.core.windows.net/ctr/../other", "empty, '.' or '..' component"),
        (
            f"azure://acct1.blob.core.windows.net/ctr/p?sv=2020-02-10&sig={CANARY_SIG}",
            "AZURE_STORAGE_SAS_TOKEN",
        ),
        (f"azure://acct1:{CANARY_KEY}@acct1.blob.core.windows.net/ctr", "credentials do not belong"),
    ],
)
def test_invalid_urls_are_value_errors(url, words, clean_env):
    from clearml_data_azure.driver import AzureBlobDriver
    from clearml_data_azure.urls import parse_url

    with pytest.raises(ValueError) as info:
        parse_url(url)
    assert words in str(info.value)
    for secret in (CANARY_KEY, CANARY_SIG):
        assert secret not in str(info.value)
    with pytest.raises(ValueError):
        AzureBlobDriver(url)
    if url.startswith("azure://"):
        pm = PluginManager()
        try:  # through the plugin manager: one clean UsageError (a ValueError)
            with pytest.raises(UsageError) as info:
                pm.driver(url)
            assert CANARY_KEY not in str(info.value) and CANARY_SIG not in str(info.value)
        finally:
            pm.close()


# -- the plugin -----------------------------------------------------------------------------
def test_found_through_its_entry_point(clean_env):
    from clearml_data.storage import CONDITIONAL_PUT, MULTIPART, RANGED_READS
    from clearml_data_azure.driver import AzureBlobDriver

    pm = PluginManager()
    try:
        assert "azure" in pm.drivers
        record = pm.drivers["azure"]
        assert record.plugin == "azure"
        assert record.info.factory == "clearml_data_azure.driver:AzureBlobDriver"
        assert any(
            r.name == "azure" and r.package == "clearml-data-azure" and r.status == "loaded"
            for r in pm.records
        )
        assert pm.driver_class("azure") is AzureBlobDriver
        driver = pm.driver(f"azure://{HOST}/ctr/prefix")
        assert type(driver) is AzureBlobDriver
        assert pm.driver(f"azure://{HOST}/ctr/prefix") is driver
    finally:
        pm.close()
    assert AzureBlobDriver.capabilities == {RANGED_READS, MULTIPART, CONDITIONAL_PUT}
    assert isinstance(AzureBlobDriver.default_max_workers, int) and AzureBlobDriver.default_max_workers >= 8


def test_plugin_module_imports_without_the_sdk(tmp_path):
    """Without azure-storage-blob the plugin still loads and the core names what to install."""
    code = (
        "import sys\n"
        "sys.modules['azure'] = None  # as if the SDK were not installed\n"
        "import clearml_data_azure\n"
        "from clearml_data.errors import MissingDependencyError\n"
        "from clearml_data.storage.manager import PluginManager\n"
        "pm = PluginManager()\n"
        "assert [r for r in pm.records if r.name == 'azure'][0].status == 'loaded'\n"
        "try:\n"
        "    pm.driver('azure://acct1.blob.core.windows.net/ctr')\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    raise SystemExit('no MissingDependencyError')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    env["CLEARML_DATA_CATALOG"] = str(tmp_path / "catalog.db")
    proc = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "azure-storage-blob" in proc.stdout


def test_missing_sdk_gives_the_install_hint(monkeypatch, clean_env):
    monkeypatch.setitem(sys.modules, "azure", None)
    pm = PluginManager()
    try:
        with pytest.raises(MissingDependencyError) as info:
            pm.driver_class("azure")
        assert "pip install" in info.value.install_hint and "azure-storage-blob" in info.value.install_hint
    finally:
        pm.close()


# -- where credentials and endpoints come from ----------------------------------------------------
def test_connection_string_with_blob_endpoint_serves_its_account(clean_env, monkeypatch):
    from clearml_data_azure.driver import AzureBlobDriver

    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={CANARY_KEY};"
        "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;",
    )
    d = AzureBlobDriver(f"azure://{HOST}/ctr/p")
    assert (d.endpoint, d.credential_source) == ("http://127.0.0.1:1/devstoreaccount1", "connection string")
    other = AzureBlobDriver("azure://otheracct.blob.core.windows.net/ctr/p")  # not this account's string
    assert (other.endpoint, other.credential_source) == (
        "https://otheracct.blob.core.windows.net",
        "anonymous",
    )
    for drv in (d, other):
        assert CANARY_KEY not in repr(drv) and CANARY_KEY not in repr(vars(drv).get("options"))


def test_sas_connection_string_without_account_name(clean_env, monkeypatch):
    from clearml_data_azure.driver import AzureBlobDriver

    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        f"BlobEndpoint=https://acct1.blob.core.windows.net/;SharedAccessSignature=sv=2020&sig={CANARY_SIG}",
    )
    d = AzureBlobDriver("azure://acct1.blob.core.windows.net/ctr")
    assert (d.endpoint, d.credential_source) == ("https://acct1.blob.core.windows.net", "connection string")
    assert CANARY_SIG not in repr(d)


def test_development_storage_shortcut(clean_env, monkeypatch):
    from clearml_data_azure.driver import AzureBlobDriver

    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true")
    d = AzureBlobDriver(f"azure://{HOST}/ctr")
    assert d.endpoint == "http://127.0.0.1:10000/devstoreaccount1"


def test_account_key_and_sas_token_variables(clean_env, monkeypatch):
    from clearml_data_azure.driver import AzureBlobDriver

    monkeypatch.setenv("AZURE_STORAGE_KEY", CANARY_KEY)
    assert AzureBlobDriver("azure://acct1/ctr").credential_source == "AZURE_STORAGE_KEY"
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", "otheracct")  # the key is another account's
    assert AzureBlobDriver("azure://acct1/ctr").credential_source == "anonymous"
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", f"?sv=2020&sig={CANARY_SIG}")
    d = AzureBlobDriver("azure://acct1/ctr")
    assert d.credential_source == "AZURE_STORAGE_SAS_TOKEN"
    assert d.scrub(f"GET /ctr/k?sv=2020&sig={CANARY_SIG} failed") == "GET /ctr/k?*** failed"
    assert d.scrub(f"GET /ctr/k?comp=list&sig={CANARY_SIG}&sv=2020") == "GET /ctr/k?comp=list&sig=***&sv=***"


def test_account_url_override(clean_env, monkeypatch):
    from clearml_data_azure.driver import AzureBlobDriver

    monkeypatch.setenv("CLEARML_DATA_AZURE_ACCOUNT_URL", "http://127.0.0.1:1/{account}/")
    assert AzureBlobDriver("azure://acct1/ctr").endpoint == "http://127.0.0.1:1/acct1"
    monkeypatch.setenv("CLEARML_DATA_AZURE_ACCOUNT_URL", f"http://127.0.0.1:1/acct1?sig={CANARY_SIG}")
    with pytest.raises(ValueError) as info:
        AzureBlobDriver("azure://acct1/ctr")
    assert CANARY_SIG not in str(info.value)


def test_bad_tunable_is_a_clear_value_error(clean_env, monkeypatch):
    from clearml_data_azure.driver import AzureBlobDriver

    with pytest.raises(ValueError, match=r"unknown option.*max_concurency"):
        AzureBlobDriver("azure://acct1/ctr", max_concurency=4)
    d = AzureBlobDriver("azure://acct1/ctr", account_key=CANARY_KEY, max_concurrency=2, part_size="1MiB")
    assert (d.options["max_concurrency"], d.block_size) == (2, MiB) and d.credential_source == "account key"
    assert CANARY_KEY not in repr(d.options) and "account_key" not in d.options

    monkeypatch.setenv("CLEARML_DATA_AZURE_MAX_CONCURRENCY", "lots")
    with pytest.raises(ValueError, match="CLEARML_DATA_AZURE_MAX_CONCURRENCY"):
        AzureBlobDriver("azure://acct1/ctr")


def test_options_of_earlier_releases_still_work_and_warn(clean_env, monkeypatch):
    from clearml_data_azure.driver import AzureBlobDriver

    monkeypatch.setenv("CLEARML_DATA_AZURE_BLOCK_SIZE_MB", "2")
    monkeypatch.setenv("CLEARML_DATA_AZURE_CONNECTION_TIMEOUT", "3")
    with pytest.warns(DeprecationWarning) as caught:
        d = AzureBlobDriver("azure://acct1/ctr", retries=0, single_put_size_mb=1)
    assert (d.block_size, d.connection_timeout, d.retries, d.single_put_size) == (2 * MiB, 3.0, 0, MiB)
    said = " ".join(str(w.message) for w in caught)
    assert "CLEARML_DATA_AZURE_BLOCK_SIZE_MB" in said and "'max_attempts'" in said
    assert "CLEARML_DATA_AZURE_PART_SIZE" in said
    monkeypatch.setenv("CLEARML_DATA_AZURE_PART_SIZE", "3MiB")  # today's name wins
    with pytest.warns(DeprecationWarning):
        assert AzureBlobDriver("azure://acct1/ctr").block_size == 3 * MiB


# -- against Azurite ------------------------------------------------------------------------------
def test_keys_live_under_the_url_prefix(new_container, make_driver, service_client):
    ctr = new_container()
    driver = make_driver(f"azure://{HOST}/{ctr}/some/prefix/")
    driver.put_bytes(b"pack", "packs/ab/ab12.pack")
    names = [b.name for b in service_client.get_container_client(ctr).list_blobs()]
    assert names == ["some/prefix/packs/ab/ab12.pack"]
    assert [o.key for o in driver.list("")] == ["packs/ab/ab12.pack"]
    root = make_driver(f"azure://{HOST}/{ctr}")  # the container root
    assert [o.key for o in root.list("")] == ["some/prefix/packs/ab/ab12.pack"]
    assert root.get_bytes("some/prefix/packs/ab/ab12.pack") == b"pack"


def test_prefix_isolation(new_container, make_driver):
    ctr = new_container()
    one = make_driver(f"azure://{HOST}/{ctr}/data")
    two = make_driver(f"azure://{HOST}/{ctr}/data2")
    three = make_driver(f"azure://{HOST}/{ctr}/other/deeper")
    one.put_bytes(b"1", "k/x")
    two.put_bytes(b"2", "k/x")
    three.put_bytes(b"3", "k/y")
    assert [(o.key, o.size) for o in one.list("")] == [("k/x", 1)]
    assert [o.key for o in two.list("")] == ["k/x"]
    assert [o.key for o in three.list("k/")] == ["k/y"]
    assert (one.get_bytes("k/x"), two.get_bytes("k/x")) == (b"1", b"2")
    assert not one.exists("k/y")
    one.delete("k/x")
    assert two.get_bytes("k/x") == b"2"
    with pytest.raises(FileNotFoundError):
        two.delete("k/y")


def test_missing_container_is_file_not_found(make_driver, tmp_path):
    name = unique_name("gone")
    driver = make_driver(f"azure://{HOST}/{name}/p")
    src = _write(tmp_path / "src", b"x" * 100)
    for action in (
        lambda: driver.put_file(src, "k"),
        lambda: driver.stat("k"),
        lambda: driver.get_file("k", str(tmp_path / "out")),
        lambda: driver.read_range("k", 0, 1),
        lambda: list(driver.list("")),
        lambda: driver.delete("k"),
    ):
        with pytest.raises(FileNotFoundError) as info:
            action()
        assert "container" in str(info.value) or "no such object" in str(info.value)
    with pytest.raises(FileNotFoundError, match=f"container '{name}' does not exist"):
        driver.put_file(src, "k")
    assert not (tmp_path / "out").exists()


def test_credentials_never_shown(azurite, make_driver, new_container, monkeypatch, caplog, tmp_path):
    """A wrong key (refused by Azurite) and a SAS for a dead port: no secret in repr, errors or logs."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("CLEARML_DATA_AZURE_MAX_ATTEMPTS", "1")
    ctr = new_container()
    src = _write(tmp_path / "src", os.urandom(9 * MiB))  # a block upload, too
    seen: list[str] = []
    wrong_key = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={CANARY_KEY};"
        f"BlobEndpoint={azurite.url}/devstoreaccount1;"
    )
    dead_sas = f"BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;SharedAccessSignature=sv=2020-02-10&ss=b&sig={CANARY_SIG}"
    for conn, expected in ((wrong_key, PermissionError), (dead_sas, ConnectionError)):
        driver = make_driver(f"azure://{HOST}/{ctr}/p", connection_string=conn)
        seen.append(repr(driver))
        for action in (
            partial(driver.stat, "k"),
            partial(_listed, driver),
            partial(driver.put_file, src, "k"),
            partial(driver.put_bytes, b"x", "k", overwrite=False),
            partial(driver.get_bytes, "k"),
        ):
            with pytest.raises(expected) as info:
                action()
            err = info.value
            seen += [str(err), repr(err), repr(err.args), str(err.strerror)]
            assert err.__cause__ is None and err.__suppress_context__
    seen.append(caplog.text)
    text = "\n".join(seen)
    assert "credentials from: connection string" in text  # says where to look, not what it is
    for secret in (CANARY_KEY, CANARY_SIG, CANARY_KEY[:20]):
        assert secret not in text


def test_100_mib_goes_up_in_blocks_and_comes_back(azure_url, make_driver, tmp_path):
    data = os.urandom(MiB) * 100
    src = _write(tmp_path / "big", data)
    driver = make_driver(azure_url)
    sent = _count_blocks(driver)
    driver.put_file(src, "objects/big", overwrite=False)
    blocks = driver.committed_blocks("objects/big")
    assert blocks == 13 == sent.staged  # 100 MiB in 8 MiB blocks: a Put Block List, not a Put Blob
    assert driver.content_md5("objects/big") is None  # checked block by block, no whole-object MD5
    assert driver.stat("objects/big").size == len(data)
    out = tmp_path / "out"
    driver.get_file("objects/big", str(out))
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    for offset, length in ((0, 100), (8 * MiB - 10, 20), (33 * MiB + 5, 9 * MiB), (len(data) - 7, 100)):
        assert driver.read_range("objects/big", offset, length) == data[offset : offset + length]
    assert driver.read_range("objects/big", len(data), 10) == b""
    with pytest.raises(FileExistsError):
        driver.put_file(src, "objects/big", overwrite=False)


def test_small_object_is_one_put_blob_with_service_md5(azure_url, make_driver):
    driver = make_driver(azure_url)
    sent = _count_blocks(driver)
    driver.put_bytes(b"small" * 1000, "packs/s.pack")
    assert driver.committed_blocks("packs/s.pack") == 0 and sent.staged == 0
    assert driver.content_md5("packs/s.pack") == hashlib.md5(b"small" * 1000).digest()


def test_checksums_are_sent_and_requested(fault_proxy, via_proxy, new_container, make_driver, tmp_path):
    ctr = new_container()
    driver = make_driver(f"azure://{HOST}/{ctr}/p", connection_string=via_proxy)
    data = os.urandom(20 * MiB)
    driver.put_file(_write(tmp_path / "big", data), "big")
    driver.put_bytes(b"s" * 1000, "small")
    assert driver.read_range("big", 5, 6 * MiB) == data[5 : 5 + 6 * MiB]
    driver.get_file("big", str(tmp_path / "out"))
    puts = [
        (e.target, e.headers)
        for e in fault_proxy.log
        if e.method == "PUT" and "restype=container" not in e.target
    ]
    gets = [(e.target, e.headers) for e in fault_proxy.log if e.method == "GET" and "comp=" not in e.target]
    assert puts and all("content-md5" in h for p, h in puts if "comp=blocklist" not in p)
    assert any("comp=block&" in p for p, h in puts)  # staged blocks, each with its MD5
    assert gets and all(h.get("x-ms-range-get-content-md5") == "true" for p, h in gets)


@pytest.mark.parametrize("validate", [True, False])
def test_corrupted_download_is_refused(
    validate, fault_proxy, via_proxy, new_container, make_driver, tmp_path, monkeypatch
):
    monkeypatch.setenv("CLEARML_DATA_AZURE_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("CLEARML_DATA_AZURE_RETRY_BACKOFF", "0.01")
    ctr = new_container()
    driver = make_driver(f"azure://{HOST}/{ctr}/p", connection_string=via_proxy, validate_content=validate)
    data = os.urandom(MiB)
    driver.put_bytes(data, "obj")
    # one bit of each blob download over 100 bytes (not of listings or properties)
    fault_proxy.inject(Fault.flip_response(min_size=101), method="GET", path=r"^(?!.*comp=)", times=None)
    if validate:
        with pytest.raises(OSError, match="MD5 mismatch"):
            driver.read_range("obj", 0, len(data))
        with pytest.raises(OSError, match="MD5 mismatch"):
            driver.get_file("obj", str(tmp_path / "out"))
        assert not (tmp_path / "out").exists()
    else:  # the negative control: the proxy really damages what it passes on
        assert driver.read_range("obj", 0, len(data)) != data


@pytest.mark.parametrize("size", [MiB, 20 * MiB])
def test_corrupted_upload_is_refused_and_invisible(
    size, fault_proxy, via_proxy, new_container, make_driver, tmp_path, monkeypatch
):
    monkeypatch.setenv("CLEARML_DATA_AZURE_MAX_ATTEMPTS", "1")
    ctr = new_container()
    driver = make_driver(f"azure://{HOST}/{ctr}/p", connection_string=via_proxy)
    src = _write(tmp_path / "src", os.urandom(size))
    flip = Fault.flip_request(min_size=101)  # one bit of each upload body over 100 bytes
    fault_proxy.inject(flip, method="PUT", times=None)
    with pytest.raises(OSError, match=r"MD5|block list"):
        driver.put_file(src, "obj")
    fault_proxy.clear()
    assert not driver.exists("obj") and list(driver.list("")) == []
    if size == MiB:  # negative control: without Content-MD5 the damaged body is stored
        plain = make_driver(f"azure://{HOST}/{ctr}/p", connection_string=via_proxy, validate_content=False)
        fault_proxy.inject(flip, method="PUT", times=None)
        plain.put_file(src, "obj")
        fault_proxy.clear()
        assert plain.get_bytes("obj") != (tmp_path / "src").read_bytes()


def test_server_busy_is_retried(fault_proxy, via_proxy, new_container, make_driver, monkeypatch):
    monkeypatch.setenv("CLEARML_DATA_AZURE_RETRY_BACKOFF", "0.01")
    ctr = new_container()
    patient = make_driver(f"azure://{HOST}/{ctr}/p", connection_string=via_proxy, max_attempts=4)
    fault_proxy.inject(Fault.http(503), times=3)
    patient.put_bytes(b"payload", "k")
    assert fault_proxy.injected["status"] == 3 and patient.get_bytes("k") == b"payload"
    impatient = make_driver(f"azure://{HOST}/{ctr}/p", connection_string=via_proxy, max_attempts=1)
    fault_proxy.inject(Fault.http(503), times=1)
    with pytest.raises(OSError, match="HTTP 503") as info:
        impatient.stat("k")
    assert not isinstance(info.value, (FileNotFoundError, PermissionError))


def test_failed_block_upload_leaves_nothing(azure_url, make_driver, tmp_path):
    driver = make_driver(azure_url, max_attempts=1)
    src = _write(tmp_path / "big", os.urandom(40 * MiB))
    sent = _count_blocks(driver, fail_from=3)
    with pytest.raises(ConnectionError):
        driver.put_file(src, "objects/big")
    assert sent.staged >= 3
    assert not driver.exists("objects/big")
    assert list(driver.list("")) == []
    sent.fail_from = None
    driver.put_file(src, "objects/big", overwrite=False)  # nothing half-made is in the way
    assert driver.get_bytes("objects/big") == (tmp_path / "big").read_bytes()


def test_source_changing_size_is_not_committed(azure_url, make_driver, tmp_path, monkeypatch):
    driver = make_driver(azure_url)
    src = tmp_path / "grows"
    src.write_bytes(os.urandom(20 * MiB))
    # the file grew after its size was taken
    monkeypatch.setattr(driver, "_source_size", lambda path: 19 * MiB)
    with pytest.raises(OSError, match="changed size"):
        driver.put_file(str(src), "obj")
    monkeypatch.setattr(driver, "_source_size", lambda path: 5)
    with pytest.raises(OSError, match="changed size"):
        driver.put_file(str(src), "small")
    assert not driver.exists("obj") and not driver.exists("small")


@pytest.mark.parametrize("overwrite", [False, True])
def test_concurrent_large_writers_of_one_key(overwrite, azure_url, make_driver, tmp_path):
    """Block uploads racing for one key: create-only has one winner; overwrite all succeed, unmixed."""
    driver = make_driver(azure_url)
    blobs = [os.urandom(MiB) * 10 + bytes([i]) for i in range(4)]
    sources = [_write(tmp_path / f"s{i}", b) for i, b in enumerate(blobs)]
    outcomes: dict[int, str] = {}

    def put(i):
        try:
            driver.put_file(sources[i], "race/big", overwrite=overwrite)
            outcomes[i] = "won"
        except FileExistsError:
            outcomes[i] = "lost"
        except BaseException as exc:  # reported below
            outcomes[i] = repr(exc)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = driver.get_bytes("race/big")
    assert stored in blobs
    if overwrite:
        assert sorted(outcomes.values()) == ["won"] * 4
    else:
        assert sorted(outcomes.values()) == ["lost"] * 3 + ["won"]
        winner = next(i for i, o in outcomes.items() if o == "won")
        assert stored == blobs[winner]


def test_empty_object_and_ranges_past_the_end(azure_url, make_driver, tmp_path):
    driver = make_driver(azure_url)
    driver.put_bytes(b"", "empty")
    assert driver.read_range("empty", 0, 10) == b""
    driver.get_file("empty", str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == b""
    driver.put_bytes(b"0123456789", "ten")
    assert driver.read_range("ten", 10, 5) == b"" and driver.read_range("ten", 50, 5) == b""
    assert driver.read_range("ten", 3, 0) == b""
    with pytest.raises(FileNotFoundError):
        driver.read_range("nope", 0, 0)


def test_close_releases_the_client(azure_url, make_driver):
    driver = make_driver(azure_url)
    driver.put_bytes(b"x", "k")
    assert driver._service is not None
    driver.close()
    driver.close()  # twice is fine
    assert driver._service is None
    with pytest.raises(OSError, match="closed"):
        driver.stat("k")


@pytest.mark.parametrize("size", [1000, 20 * MiB])  # one Put Blob; staged blocks and chunked reads
def test_progress_callbacks_count_every_byte_once(azure_url, make_driver, tmp_path, size):
    driver = make_driver(azure_url)
    sent: list[int] = []
    driver.put_file(_write(tmp_path / "s", os.urandom(size)), "obj", callback=sent.append)
    assert sum(sent) == size and (len(sent) >= 2 or size < MiB)
    received: list[int] = []
    driver.get_file("obj", str(tmp_path / "out"), callback=received.append)
    assert sum(received) == size == (tmp_path / "out").stat().st_size
    assert len(received) >= 2 or size < MiB


def test_more_blocks_than_a_blob_may_have_get_larger_blocks(azure_url, make_driver, tmp_path, monkeypatch):
    import clearml_data_azure.driver as module

    monkeypatch.setattr(module, "MAX_BLOCKS", 4)  # as a file of 50,001 blocks would do
    driver = make_driver(azure_url, part_size="1MiB", multipart_threshold="1MiB")
    data = os.urandom(10 * MiB + 3)
    driver.put_file(_write(tmp_path / "big", data), "objects/big", overwrite=False)
    assert driver.committed_blocks("objects/big") == 4  # blocks of ceil(size / 4), not 11 of 1 MiB
    assert driver.get_bytes("objects/big") == data
    with pytest.raises(FileExistsError):
        driver.put_file(str(tmp_path / "big"), "objects/big", overwrite=False)
