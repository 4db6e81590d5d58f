"""gs:// driver behaviour beyond the conformance suite, against fake-gcs-server on loopback."""

from __future__ import annotations

import base64
import errno
import io
import json
import logging
import os
import subprocess
import sys
import threading

import google_crc32c
import pytest
import requests
import requests.adapters
import urllib3
from google.cloud.storage.retry import DEFAULT_RETRY
from requests.structures import CaseInsensitiveDict

from clearml_data.errors import MissingDependencyError, UsageError
from clearml_data.storage import CONDITIONAL_PUT, MULTIPART, RANGED_READS, StorageDriver
from clearml_data.storage.manager import PluginManager
from clearml_data.testing.servers import free_port, unique_name
from clearml_data_gcs import INSTALL_HINT
from clearml_data_gcs.driver import BucketNotFoundError, GCSDriver, parse_gs_url

MiB = 1024 * 1024
FAST_RETRY = DEFAULT_RETRY.with_delay(initial=0.01, maximum=0.05, multiplier=2)
CANARY = "CANARY-8c1f0e2d-secret"


@pytest.fixture(autouse=True)
def _sessions_dir_by_its_new_name(monkeypatch):
    """conftest.py sets the sessions folder under the variable's old name, which now warns."""
    folder = os.environ.get("CLEARML_DATA_GCS_SESSIONS_DIR")
    if folder:
        monkeypatch.delenv("CLEARML_DATA_GCS_SESSIONS_DIR")
        monkeypatch.setenv("CLEARML_DATA_GS_SESSIONS_DIR", folder)


def crc32c_b64(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


# ------------------------------------------------------------------ HTTP instrumentation
class Instrumented(requests.adapters.HTTPAdapter):
    """Records every request the SDK sends; can fail or corrupt chosen ones.

    ``fail(request) -> None | int | Exception``: a status code to answer instead of the
    server, or an exception to raise after (``after=True``) or instead of sending.
    """

    def __init__(self, fail=None, corrupt=None):
        super().__init__(pool_maxsize=64)
        self.requests: list[tuple[str, str, dict, bytes]] = []
        self.fail = fail
        self.corrupt = corrupt
        self.lock = threading.Lock()

    def send(self, request, **kwargs):
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, (bytes, bytearray)):
            body = b"<stream>"
        with self.lock:
            self.requests.append(
                (request.method, request.url, CaseInsensitiveDict(request.headers), bytes(body))
            )
        action = self.fail(request) if self.fail else None
        if isinstance(action, int):
            return self._fake_response(request, action)
        if isinstance(action, tuple) and action[0] == "after":
            super().send(request, **kwargs)  # the server did the work; the client never hears
            raise action[1]
        if isinstance(action, BaseException):
            raise action
        return super().send(request, **kwargs)

    def build_response(self, req, resp):
        if self.corrupt and self.corrupt(req):
            data = bytearray(resp.read(decode_content=False))
            if data:
                data[len(data) // 2] ^= 0x01
            resp = urllib3.HTTPResponse(
                body=io.BytesIO(bytes(data)),
                headers=resp.headers,
                status=resp.status,
                reason=resp.reason,
                preload_content=False,
                decode_content=False,
            )
        return super().build_response(req, resp)

    @staticmethod
    def _fake_response(request, status: int) -> requests.Response:
        r = requests.Response()
        r.status_code = status
        r.reason = "Service Unavailable" if status == 503 else "Error"
        r._content = json.dumps({"error": {"code": status, "message": "injected failure"}}).encode()
        r.headers["Content-Type"] = "application/json"
        r.request = request
        r.url = request.url
        return r

    def matching(self, method: str, *fragments: str):
        return [r for r in self.requests if r[0] == method and all(f in r[1] for f in fragments)]


def instrument(driver: GCSDriver, adapter: Instrumented) -> Instrumented:
    session = driver.client._http
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return adapter


def write(path, data: bytes) -> str:
    with open(path, "wb") as fh:
        fh.write(data)
    return str(path)


# ------------------------------------------------------------------------------- URLs
@pytest.mark.parametrize(
    "url, expected",
    [
        ("gs://bucket", ("bucket", "")),
        ("gs://bucket/", ("bucket", "")),
        ("gs://bucket/some/prefix", ("bucket", "some/prefix")),
        ("gs://bucket/some/prefix/", ("bucket", "some/prefix")),
        ("GS://bucket/x", ("bucket", "x")),
        ("gs://my.bucket.example/data sets/v1", ("my.bucket.example", "data sets/v1")),
        ("gs://b_1-2/ünï/код", ("b_1-2", "ünï/код")),
    ],
)
def test_url_forms(url, expected):
    assert parse_gs_url(url) == expected


@pytest.mark.parametrize(
    "url, message",
    [
        ("gs://", "no bucket"),
        ("gs:///prefix", "no bucket"),
        ("s3://bucket/prefix", "not a gs:// URL"),
        ("bucket/prefix", "not a gs:// URL"),
        ("gs://Bucket/x", "invalid bucket name"),
        ("gs://ab/x", "3-63"),
        ("gs://" + "a" * 64, "3-63"),
        ("gs://-bucket/x", "invalid bucket name"),
        ("gs://bucket:443/x", "invalid bucket name"),
        ("gs://192.168.1.1/x", "IP address"),
        ("gs://google-stuff/x", "goog"),
        ("gs://bucket/a//b", "empty"),
        ("gs://bucket/a/../b", "'..'"),
        ("gs://bucket/a\nb", "control character"),
    ],
)
def test_invalid_urls_raise_value_error(url, message):
    with pytest.raises(ValueError, match=message):
        parse_gs_url(url)
    with pytest.raises(ValueError):
        GCSDriver(url)


@pytest.mark.parametrize(
    "url",
    [
        f"gs://user:{CANARY}@bucket/prefix",
        f"gs://{CANARY}@bucket/prefix",
        f"gs://bucket/prefix?token={CANARY}",
        f"gs://bucket/prefix#{CANARY}",
    ],
)
def test_credentials_in_url_are_refused_without_echo(url):
    with pytest.raises(ValueError) as info:
        GCSDriver(url)
    assert CANARY not in str(info.value)
    with pytest.raises(UsageError) as info:  # through the core: a clean usage error
        PluginManager().driver(url)
    if "#" not in url:  # the core's redact_url keeps fragments (see the plugin's report)
        assert CANARY not in str(info.value)


def test_keys_are_joined_under_the_prefix(gcs_admin, gcs_bucket, make_driver, tmp_path):
    driver = make_driver(f"gs://{gcs_bucket}/some/prefix/")
    driver.put_bytes(b"x", "packs/ab/ab12.pack")
    assert gcs_admin.bucket(gcs_bucket).blob("some/prefix/packs/ab/ab12.pack").exists()
    root = make_driver(f"gs://{gcs_bucket}")
    assert root.get_bytes("some/prefix/packs/ab/ab12.pack") == b"x"
    assert [o.key for o in root.list("some/")] == ["some/prefix/packs/ab/ab12.pack"]
    for bad in ("", "/abs", "a//b", "a/../b", "a/", "a\x00b"):
        with pytest.raises(ValueError):
            driver.stat(bad)


def test_prefix_isolation(gcs_bucket, make_driver):
    one = make_driver(f"gs://{gcs_bucket}/team/p1")
    one_longer = make_driver(f"gs://{gcs_bucket}/team/p10")  # a string prefix of p1's names? no: p1/ vs p10/
    two = make_driver(f"gs://{gcs_bucket}/team/p2")
    for d, tag in ((one, b"1"), (one_longer, b"10"), (two, b"2")):
        d.put_bytes(tag, "shared/key")
        d.put_bytes(tag, f"own-{tag.decode()}")
    assert sorted(o.key for o in one.list()) == ["own-1", "shared/key"]
    assert sorted(o.key for o in one_longer.list()) == ["own-10", "shared/key"]
    assert sorted(o.key for o in two.list("")) == ["own-2", "shared/key"]
    assert one.get_bytes("shared/key") == b"1" and two.get_bytes("shared/key") == b"2"
    assert not one.exists("own-2") and not two.exists("own-1")
    one.delete("shared/key")
    assert two.get_bytes("shared/key") == b"2" and one_longer.get_bytes("shared/key") == b"10"


def test_missing_bucket_is_a_clear_error(make_driver, tmp_path):
    name = unique_name("missing")
    driver = make_driver(f"gs://{name}/prefix")
    src = write(tmp_path / "f", b"data")
    calls = [
        lambda: driver.put_file(src, "k"),
        lambda: driver.stat("k"),
        lambda: list(driver.list()),
        lambda: driver.get_file("k", str(tmp_path / "out")),
        lambda: driver.read_range("k", 0, 1),
        lambda: driver.delete("k"),
        lambda: driver.exists("k"),
    ]
    for call in calls:
        with pytest.raises(BucketNotFoundError) as info:
            call()
        assert isinstance(info.value, OSError) and not isinstance(info.value, FileNotFoundError)
        assert f"gs://{name}" in str(info.value) and "does not exist" in str(info.value)


def test_default_max_workers_and_capabilities():
    assert isinstance(GCSDriver.default_max_workers, int) and GCSDriver.default_max_workers >= 8
    assert {RANGED_READS, MULTIPART, CONDITIONAL_PUT} <= GCSDriver.capabilities
    assert GCSDriver.schemes == ("gs",)


def test_options_from_environment(monkeypatch):
    monkeypatch.setenv("CLEARML_DATA_GS_CHUNK_SIZE", "1.1MiB")
    monkeypatch.setenv("CLEARML_DATA_GS_MAX_CONCURRENCY", "3")
    monkeypatch.setenv("CLEARML_DATA_GS_PART_SIZE", "4M")
    d = GCSDriver("gs://bucket/p")
    assert d.chunk_size % (256 * 1024) == 0 and MiB <= d.chunk_size <= MiB + 256 * 1024
    assert d.max_workers == 3
    assert (d.slice_size, d.sliced_from) == (4 * MiB, 8 * MiB)  # sliced from two parts on, unless set
    assert GCSDriver("gs://bucket/p", multipart_threshold="5MiB").sliced_from == 5 * MiB
    assert GCSDriver("gs://bucket/p", max_concurrency=5).max_workers == 5  # a constructor option wins
    monkeypatch.setenv("CLEARML_DATA_GS_MAX_CONCURRENCY", "many")
    with pytest.raises(ValueError, match="CLEARML_DATA_GS_MAX_CONCURRENCY"):
        GCSDriver("gs://bucket/p")
    with pytest.raises(ValueError, match="max_concurency"):
        GCSDriver("gs://bucket/p", max_concurency=2)


def test_options_of_earlier_releases_still_work_and_warn(monkeypatch):
    monkeypatch.setenv("CLEARML_DATA_GCS_CHUNK_SIZE_MB", "2")
    monkeypatch.setenv("CLEARML_DATA_GCS_TIMEOUT", "7")
    with pytest.warns(DeprecationWarning) as caught:
        d = GCSDriver("gs://bucket/p", max_workers=5, download_slice_mb=2)
    assert (d.chunk_size, d.max_workers, d.slice_size, d.timeout) == (2 * MiB, 5, 2 * MiB, (10.0, 7.0))
    said = " ".join(str(w.message) for w in caught)
    assert "CLEARML_DATA_GCS_CHUNK_SIZE_MB" in said and "'max_concurrency'" in said
    assert "CLEARML_DATA_GS_READ_TIMEOUT" in said
    monkeypatch.setenv("CLEARML_DATA_GS_READ_TIMEOUT", "9")  # today's name wins
    with pytest.warns(DeprecationWarning):
        assert GCSDriver("gs://bucket/p").timeout == (10.0, 9.0)


# ------------------------------------------------------------------------ the plugin
def test_plugin_found_through_its_entry_point(gcs_env):
    pm = PluginManager()
    assert "gs" in pm.drivers
    assert pm.drivers["gs"].plugin == "gcs"
    assert pm.driver_class("gs") is GCSDriver
    try:
        driver = pm.driver("gs://some-bucket/prefix")
        assert type(driver) is GCSDriver and isinstance(driver, StorageDriver)
        assert pm.driver("gs://some-bucket/prefix") is driver
    finally:
        pm.close()
    assert any(
        r.name == "gcs" and r.package == "clearml-data-gcs" and r.status == "loaded" for r in pm.records
    )


def test_plugin_module_imports_without_the_sdk():
    code = (
        "import sys, clearml_data_gcs; "
        "assert 'google.cloud.storage' not in sys.modules, 'SDK imported eagerly'; "
        "print(clearml_data_gcs.clearml_data_storage_drivers()[0].factory)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "clearml_data_gcs.driver:GCSDriver"


def test_missing_sdk_gives_the_install_hint(monkeypatch):
    import clearml_data.storage.manager as manager

    real = manager.importlib.util.find_spec
    monkeypatch.setattr(
        manager.importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("google") else real(name, *a),
    )
    with pytest.raises(MissingDependencyError) as info:
        PluginManager().driver_class("gs")
    assert INSTALL_HINT in str(info.value)


# ----------------------------------------------------------------- secrets stay secret
def test_credentials_never_appear_in_repr_errors_or_logs(
    gcs_server, gcs_bucket, monkeypatch, tmp_path, caplog
):
    from google.oauth2.credentials import Credentials

    creds = Credentials(token=CANARY)  # sent as a bearer token; the emulator ignores it
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")  # use the explicit endpoint + credentials path
    caplog.set_level(logging.DEBUG)
    driver = GCSDriver(f"gs://{gcs_bucket}/p", endpoint=gcs_server.url, credentials=creds, retry=FAST_RETRY)
    dead = GCSDriver(
        f"gs://{gcs_bucket}/p",
        endpoint=f"http://127.0.0.1:{free_port()}",
        credentials=creds,
        retry=FAST_RETRY.with_timeout(0.5),
    )
    try:
        driver.put_bytes(b"x", "k")  # the path with credentials works
        assert driver.get_bytes("k") == b"x"
        messages = [repr(driver), str(driver.__dict__.get("url"))]
        for call in (
            lambda: driver.stat("missing"),
            lambda: dead.stat("k"),
            lambda: list(dead.list()),
            lambda: dead.put_bytes(b"x" * (9 * MiB), "big"),
        ):
            with pytest.raises(OSError) as info:
                call()
            messages.append(str(info.value))
            messages.append(repr(info.value))
        assert isinstance(info.value, (ConnectionError, TimeoutError))
    finally:
        driver.close()
        dead.close()
    text = "\n".join(messages) + "\n".join(r.getMessage() for r in caplog.records)
    assert CANARY not in text
    assert "upload_id" not in "\n".join(messages)


def test_error_messages_hide_upload_session_ids(gcs_bucket, make_driver, tmp_path):
    driver = make_driver(f"gs://{gcs_bucket}/p", chunk_size=1 * MiB, retry=FAST_RETRY.with_timeout(0.3))
    adapter = instrument(
        driver, Instrumented(fail=lambda r: 503 if r.method == "PUT" and "upload_id=" in r.url else None)
    )
    with pytest.raises(OSError) as info:
        driver.put_file(write(tmp_path / "big", os.urandom(9 * MiB)), "objects/big")
    assert adapter.matching("PUT", "upload_id=")
    assert "upload_id" not in str(info.value)
    assert "gs://" in str(info.value)


# ------------------------------------------------------------- large objects, checksums
def test_100_mib_object_uses_resumable_upload_and_sliced_download(gcs_bucket, make_driver, tmp_path):
    driver = make_driver(f"gs://{gcs_bucket}/big", chunk_size=32 * MiB)
    data = os.urandom(100 * MiB)
    src = write(tmp_path / "src", data)
    adapter = instrument(driver, Instrumented())
    driver.put_file(src, "objects/aa/big")

    starts = adapter.matching("POST", "uploadType=resumable")
    chunks = adapter.matching("PUT", "upload_id=")
    assert len(starts) == 1 and not adapter.matching("POST", "uploadType=multipart")
    assert len(chunks) == -(-len(data) // driver.chunk_size) >= 2  # several pieces, in order
    ranges = [r[2]["Content-Range"] for r in chunks]
    assert ranges[0] == f"bytes 0-{driver.chunk_size - 1}/{len(data)}"
    assert ranges[-1].endswith(f"-{len(data) - 1}/{len(data)}")
    # the provider checksum of the whole object travels with the last piece
    assert chunks[-1][2].get("x-goog-hash") == f"crc32c={crc32c_b64(data)}"
    assert driver.stat("objects/aa/big").size == len(data)

    adapter.requests.clear()
    out = tmp_path / "out"
    driver.get_file("objects/aa/big", str(out))
    gets = [r for r in adapter.requests if r[0] == "GET" and "alt=media" in r[1]]
    assert len(gets) == -(-len(data) // driver.slice_size) >= 2  # ranged GETs in parallel
    generation = driver.bucket.get_blob("big/objects/aa/big").generation  # all from one version of it
    assert all(
        f"generation={generation}" in r[1] and r[2].get("range", "").startswith("bytes=") for r in gets
    )
    assert out.read_bytes() == data
    mid = 50 * MiB + 123
    assert driver.read_range("objects/aa/big", mid, 1 * MiB) == data[mid : mid + MiB]
    assert driver.read_range("objects/aa/big", len(data) - 10, 100) == data[-10:]
    assert driver.read_range("objects/aa/big", len(data), 10) == b""


def test_small_uploads_send_their_crc32c(gcs_bucket, make_driver, tmp_path):
    driver = make_driver(f"gs://{gcs_bucket}/p")
    adapter = instrument(driver, Instrumented())
    data = os.urandom(1000)
    driver.put_file(write(tmp_path / "s", data), "small")
    (upload,) = adapter.matching("POST", "uploadType=multipart")
    assert f'"crc32c": "{crc32c_b64(data)}"'.encode() in upload[3]
    assert driver.bucket.get_blob("p/small").crc32c == crc32c_b64(data)


@pytest.mark.parametrize("size", [300_000, 40 * MiB])  # one download, and parallel slices
def test_corrupted_download_is_rejected(gcs_bucket, make_driver, tmp_path, size):
    driver = make_driver(f"gs://{gcs_bucket}/p", part_size=8 * MiB)
    data = os.urandom(size)
    driver.put_file(write(tmp_path / "s", data), "obj")
    instrument(driver, Instrumented(corrupt=lambda r: r.method == "GET" and "alt=media" in r.url))
    out = tmp_path / "out"
    with pytest.raises(OSError, match=r"(?i)checksum|crc32c") as info:
        driver.get_file("obj", str(out))
    assert not isinstance(info.value, FileNotFoundError)
    assert not out.exists()


# ------------------------------------------------------------------ retries, atomicity
def test_throttling_and_5xx_are_retried(gcs_bucket, make_driver, tmp_path):
    driver = make_driver(f"gs://{gcs_bucket}/p", retry=FAST_RETRY)
    failures = {"n": 0}

    def fail(request):
        if failures["n"] < 4:
            failures["n"] += 1
            return [429, 503, 500, 502][failures["n"] - 1]
        return None

    adapter = instrument(driver, Instrumented(fail=fail))
    driver.put_bytes(b"payload", "k")
    failures["n"] = 0
    assert driver.get_bytes("k") == b"payload"
    failures["n"] = 0
    assert [o.key for o in driver.list()] == ["k"]
    assert len(adapter.requests) >= 12 + 3


def test_retries_give_up_with_an_oserror(gcs_bucket, make_driver):
    driver = make_driver(f"gs://{gcs_bucket}/p", retry=FAST_RETRY.with_timeout(0.3))
    instrument(driver, Instrumented(fail=lambda r: 503))
    with pytest.raises(OSError) as info:
        driver.put_bytes(b"x", "k")
    assert not isinstance(info.value, FileNotFoundError)
    assert "gs://" in str(info.value)


def test_failed_resumable_upload_leaves_no_object(gcs_bucket, make_driver, tmp_path):
    driver = make_driver(f"gs://{gcs_bucket}/p", chunk_size=4 * MiB, retry=FAST_RETRY.with_timeout(0.3))
    data = os.urandom(13 * MiB)
    seen = {"puts": 0}

    def fail_last_piece(request):
        if request.method == "PUT" and "upload_id=" in request.url:
            seen["puts"] += 1
            if request.headers.get("Content-Range", "").endswith(f"-{len(data) - 1}/{len(data)}"):
                return requests.ConnectionError("connection reset by test")
        return None

    instrument(driver, Instrumented(fail=fail_last_piece))
    with pytest.raises(OSError):
        driver.put_file(write(tmp_path / "big", data), "objects/big", overwrite=False)
    assert seen["puts"] >= 4  # three pieces went up before the last one failed
    assert not driver.exists("objects/big")
    assert list(driver.list()) == []


def test_create_only_put_retried_after_its_own_success(gcs_bucket, make_driver, tmp_path):
    """The response to a successful create is lost; the SDK retries and gets 412: still ours."""
    driver = make_driver(f"gs://{gcs_bucket}/p", retry=FAST_RETRY)
    lost = {"n": 0}

    def lose_first_response(request):
        if request.method == "POST" and "uploadType=multipart" in request.url and lost["n"] == 0:
            lost["n"] += 1
            return ("after", requests.ConnectionError("response lost by test"))
        return None

    adapter = instrument(driver, Instrumented(fail=lose_first_response))
    driver.put_bytes(b"mine", "k", overwrite=False)  # no FileExistsError
    assert len(adapter.matching("POST", "uploadType=multipart", "ifGenerationMatch=0")) == 2
    assert driver.get_bytes("k") == b"mine"
    with pytest.raises(FileExistsError):
        driver.put_bytes(b"theirs", "k", overwrite=False)
    assert driver.get_bytes("k") == b"mine"


def test_large_create_only_put_conflicts(gcs_bucket, make_driver, tmp_path):
    # fake-gcs-server ignores ifGenerationMatch on resumable uploads: this passes through the
    # driver's own existence check (GCS itself also enforces the precondition)
    driver = make_driver(f"gs://{gcs_bucket}/p", chunk_size=4 * MiB)
    first = os.urandom(10 * MiB)
    driver.put_file(write(tmp_path / "a", first), "objects/x", overwrite=False)
    with pytest.raises(FileExistsError):
        driver.put_file(write(tmp_path / "b", os.urandom(10 * MiB)), "objects/x", overwrite=False)
    assert driver.read_range("objects/x", 0, 64) == first[:64]


def test_concurrent_large_gets(gcs_bucket, make_driver, tmp_path):
    driver = make_driver(f"gs://{gcs_bucket}/p", part_size=2 * MiB, max_concurrency=4)
    data = [os.urandom(9 * MiB + i) for i in range(4)]
    for i, d in enumerate(data):
        driver.put_file(write(tmp_path / f"s{i}", d), f"objects/{i}")
    errors = []

    def get(i):
        try:
            out = tmp_path / f"o{i}"
            driver.get_file(f"objects/{i % 4}", str(out))
            assert out.read_bytes() == data[i % 4]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=get, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_close_releases_the_client(gcs_bucket, make_driver):
    driver = make_driver(f"gs://{gcs_bucket}/p")
    driver.put_bytes(b"x", "k")
    session = driver.client._http
    driver.close()
    assert driver._client.take() is None  # nothing left to close
    assert not session.adapters["http://"].poolmanager.pools  # connections closed
    driver.close()  # twice is fine


def test_missing_credentials_are_a_permission_error(monkeypatch, tmp_path):
    from google.auth import exceptions as auth_exc

    import clearml_data_gcs.driver as mod

    def no_credentials(*a, **k):
        raise auth_exc.DefaultCredentialsError("Your default credentials were not found")

    monkeypatch.setattr(mod.storage, "Client", no_credentials)
    driver = GCSDriver("gs://bucket/p")
    with pytest.raises(PermissionError, match="GOOGLE_APPLICATION_CREDENTIALS") as info:
        driver.stat("k")
    assert info.value.errno == errno.EACCES


def test_forbidden_is_a_permission_error(gcs_bucket, make_driver):
    driver = make_driver(f"gs://{gcs_bucket}/p", retry=FAST_RETRY)
    instrument(driver, Instrumented(fail=lambda r: 403))
    with pytest.raises(PermissionError):
        driver.put_bytes(b"x", "k")
    with pytest.raises(PermissionError):
        driver.stat("k")


@pytest.mark.parametrize("size", [300_000, 20 * MiB])  # one download, and parallel ranged reads
def test_object_replaced_during_a_download_fails_it(gcs_admin, gcs_bucket, make_driver, tmp_path, size):
    driver = make_driver(f"gs://{gcs_bucket}/p", part_size=4 * MiB, retry=FAST_RETRY.with_timeout(0.5))
    driver.put_file(write(tmp_path / "s", os.urandom(size)), "obj")
    replaced = threading.Event()

    def replace_first(request):
        if request.method == "GET" and "alt=media" in request.url and not replaced.is_set():
            replaced.set()
            gcs_admin.bucket(gcs_bucket).blob("p/obj").upload_from_string(os.urandom(size))
        return None

    instrument(driver, Instrumented(fail=replace_first))
    out = tmp_path / "out"
    with pytest.raises(OSError):
        driver.get_file("obj", str(out))
    assert replaced.is_set()  # the old generation is gone: no mix of the two versions
    assert not out.exists()


@pytest.mark.parametrize("size", [9 * MiB + 5, 20 * MiB])  # resumable in 1 MiB pieces; one or sliced download
def test_progress_callbacks_count_every_byte_once(gcs_bucket, make_driver, tmp_path, size):
    driver = make_driver(
        f"gs://{gcs_bucket}/p", chunk_size=MiB, part_size=4 * MiB, multipart_threshold=16 * MiB
    )
    sent: list[int] = []
    driver.put_file(write(tmp_path / "s", os.urandom(size)), "obj", callback=sent.append)
    assert sum(sent) == size and len(sent) >= 2
    received: list[int] = []
    driver.get_file("obj", str(tmp_path / "out"), callback=received.append)
    assert sum(received) == size == (tmp_path / "out").stat().st_size
    small: list[int] = []
    driver.put_bytes(b"x" * 1000, "small")
    driver.get_file("small", str(tmp_path / "small"), callback=small.append)
    assert small and sum(small) == 1000
