"""What the s3 driver does beyond the conformance suite, against a real moto server."""

from __future__ import annotations

import base64
import gc
import hashlib
import os
import subprocess
import sys
import threading
import traceback

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ResponseStreamingError

from clearml_data.errors import MissingDependencyError, UsageError
from clearml_data.storage import CONDITIONAL_PUT, MULTIPART, RANGED_READS, StorageDriver
from clearml_data.storage.manager import PluginManager
from clearml_data.testing.servers import free_port, unique_name
from clearml_data_s3.driver import S3Driver, S3Location, parse_s3_url

MiB = 1024 * 1024


def b64sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


class _Raw:
    """The raw body of a canned HTTP response."""

    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_kw):
        yield self.body


def canned(status: int, code: str = "", message: str = "") -> AWSResponse:
    body = (
        (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error>"
        ).encode()
        if code
        else b""
    )
    return AWSResponse("http://127.0.0.1/", status, {"Content-Type": "application/xml"}, _Raw(body))


def inject(driver: S3Driver, operation: str, responses: list[AWSResponse]) -> list[int]:
    """Answer the next calls of ``operation`` with ``responses`` instead of the server's."""
    sent = []

    def before_send(request, **_kw):
        sent.append(1)
        if responses:
            return responses.pop(0)
        return None

    driver.client.meta.events.register(f"before-send.s3.{operation}", before_send)
    return sent


def headers_of(driver: S3Driver, operation: str) -> list[dict]:
    seen: list[dict] = []
    driver.client.meta.events.register(
        f"before-send.s3.{operation}",
        lambda request, **_kw: seen.append(
            {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
        ),
    )
    return seen


def uploads_in_progress(s3_client, bucket: str) -> list:
    return s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads") or []


# -- URLs and options ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "url, expected",
    [
        ("s3://bucket", S3Location("bucket", "", None)),
        ("s3://bucket/", S3Location("bucket", "", None)),
        ("s3://bucket/some/prefix", S3Location("bucket", "some/prefix", None)),
        ("s3://bucket/some/prefix/", S3Location("bucket", "some/prefix", None)),
        ("S3://my.bucket-1/x", S3Location("my.bucket-1", "x", None)),
        ("  s3://bucket/datasets  ", S3Location("bucket", "datasets", None)),
        ("s3://minio.local:9000/bucket/p/q", S3Location("bucket", "p/q", "minio.local:9000")),
        ("s3://[::1]:9000/bkt", S3Location("bkt", "", "[::1]:9000")),
    ],
)
def test_url_forms(url, expected):
    assert parse_s3_url(url) == expected


@pytest.mark.parametrize(
    "url, message",
    [
        ("s3://", "no bucket"),
        ("s3:///prefix", "no bucket"),
        ("s3://host:9000", "no bucket"),
        ("gs://bucket/x", "not an s3:// URL"),
        ("bucket/x", "not an s3:// URL"),
        ("s3://ab", "invalid S3 bucket name"),
        ("s3://-bucket", "invalid S3 bucket name"),
        ("s3://bu cket/x", "invalid S3 bucket name"),
        ("s3://a..b/x", "invalid S3 bucket name"),
        ("s3://bucket/a/../b", "'..'"),
        ("s3://bucket/a//b", "empty"),
        ("s3://bucket/x?versionId=1", "no query"),
        ("s3://bucket/x#frag", "no query"),
        ("s3://127.0.0.1/bucket", "IP address"),
        ("s3://host:99999/bucket", "invalid host:port"),
        ("s3://host:port/bucket", "invalid host:port"),
        ("s3://bucket/a\nb", "control characters"),
    ],
)
def test_invalid_urls_are_refused_clearly(url, message):
    with pytest.raises(ValueError, match=message):
        S3Driver(url)


def test_credentials_in_the_url_are_refused_and_not_echoed(fake_keys):
    ACCESS_KEY, SECRET_KEY = fake_keys
    with pytest.raises(ValueError) as info:
        S3Driver(f"s3://{ACCESS_KEY}:{SECRET_KEY}@bucket/x")
    assert "credential" in str(info.value)
    assert SECRET_KEY not in str(info.value) and ACCESS_KEY not in str(info.value)
    with pytest.raises(UsageError) as info:  # through the core, as `--storage` would
        PluginManager().driver(f"s3://{ACCESS_KEY}:{SECRET_KEY}@bucket/x")
    assert SECRET_KEY not in str(info.value)


def test_options_from_keywords_environment_and_defaults(fake_keys, monkeypatch):
    ACCESS_KEY, SECRET_KEY = fake_keys
    for var in (
        "CLEARML_DATA_S3_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL",
        "AWS_MAX_ATTEMPTS",
    ):
        monkeypatch.delenv(var, raising=False)
    driver = S3Driver("s3://bucket/x")
    assert (driver.options["multipart_threshold"], driver.options["part_size"]) == (16 * MiB, 8 * MiB)
    assert (driver.algorithm, driver.max_attempts, driver.options["max_concurrency"]) == ("SHA256", 8, 16)
    monkeypatch.setenv("CLEARML_DATA_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("CLEARML_DATA_S3_PART_SIZE", "10MiB")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    driver = S3Driver("s3://bucket/x", multipart_threshold="32M", checksum_algorithm="off")
    assert driver.endpoint_url == "http://127.0.0.1:9000"
    assert (driver.options["multipart_threshold"], driver.options["part_size"]) == (32 * MiB, 10 * MiB)
    assert driver.max_attempts == 3 and driver.algorithm is None
    assert (
        S3Driver("s3://bucket/x", endpoint_url="https://r2.example:443").endpoint_url
        == "https://r2.example:443"
    )
    monkeypatch.setenv("CLEARML_DATA_S3_MAX_ATTEMPTS", "5")  # the plugin's variable wins over AWS's
    assert S3Driver("s3://bucket/x").max_attempts == 5
    with pytest.raises(ValueError, match=r"unknown option.*aws_secret_access_key of the s3 driver"):
        S3Driver("s3://bucket/x", aws_secret_access_key="no")
    with pytest.raises(ValueError, match="at least 5 MiB"):
        S3Driver("s3://bucket/x", part_size="1MiB")
    monkeypatch.setenv("CLEARML_DATA_S3_MAX_CONCURRENCY", "lots")
    with pytest.raises(ValueError, match="CLEARML_DATA_S3_MAX_CONCURRENCY: max_concurrency = 'lots'"):
        S3Driver("s3://bucket/x")
    monkeypatch.delenv("CLEARML_DATA_S3_MAX_CONCURRENCY")
    with pytest.raises(ValueError, match="checksum_algorithm"):
        S3Driver("s3://bucket/x", checksum_algorithm="MD5")
    with pytest.raises(ValueError, match="must not hold credentials"):
        S3Driver("s3://bucket/x", endpoint_url=f"https://{ACCESS_KEY}:{SECRET_KEY}@host")


def test_the_old_part_size_name_still_works_and_warns(monkeypatch):
    for var in ("CLEARML_DATA_S3_PART_SIZE", "CLEARML_DATA_S3_MULTIPART_CHUNKSIZE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.warns(DeprecationWarning, match="'multipart_chunksize'.*use 'part_size'"):
        driver = S3Driver("s3://bucket/x", multipart_chunksize="12MiB")
    assert driver.options["part_size"] == 12 * MiB
    monkeypatch.setenv("CLEARML_DATA_S3_MULTIPART_CHUNKSIZE", "6MiB")
    with pytest.warns(
        DeprecationWarning, match=r"\$CLEARML_DATA_S3_MULTIPART_CHUNKSIZE.*CLEARML_DATA_S3_PART_SIZE"
    ):
        driver = PluginManager().driver("s3://bucket/y")
    assert driver.options["part_size"] == 6 * MiB


def test_options_from_the_config_file(core_env, monkeypatch):
    for var in ("CLEARML_DATA_S3_PART_SIZE", "CLEARML_DATA_S3_MAX_ATTEMPTS", "CLEARML_DATA_S3_REGION"):
        monkeypatch.delenv(var, raising=False)
    (core_env.root / "config.ini").write_text(
        "[storage.s3]\npart_size = 32MiB\nmax_attempts = 4\nregion = eu-west-3\n"
    )
    monkeypatch.setenv("CLEARML_DATA_S3_MAX_ATTEMPTS", "2")  # the environment wins over the file
    pm = PluginManager()
    try:
        driver = pm.driver("s3://bucket/z")
        assert (driver.options["part_size"], driver.max_attempts, driver.options["region"]) == (
            32 * MiB,
            2,
            "eu-west-3",
        )
        (core_env.root / "config.ini").write_text("[storage.s3]\npart_size = huge\n")
        with pytest.raises(
            UsageError, match=r"part_size in \[storage.s3\] in .*config.ini: part_size = 'huge'"
        ):
            pm.driver("s3://bucket/other")
    finally:
        pm.close()


def test_host_port_urls_pick_the_endpoint(monkeypatch):
    for var in (
        "CLEARML_DATA_S3_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL",
        "CLEARML_DATA_S3_SECURE",
    ):
        monkeypatch.delenv(var, raising=False)
    assert S3Driver("s3://minio.local:9000/b1b/p").endpoint_url == "https://minio.local:9000"
    assert S3Driver("s3://minio.local:9000/b1b/p", secure=False).endpoint_url == "http://minio.local:9000"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://minio.local:9000/")
    assert S3Driver("s3://minio.local:9000/b1b/p").endpoint_url == "http://minio.local:9000"


def test_class_attributes():
    assert S3Driver.schemes == ("s3",)
    assert S3Driver.capabilities == {RANGED_READS, MULTIPART, CONDITIONAL_PUT}
    assert isinstance(S3Driver.default_max_workers, int) and S3Driver.default_max_workers >= 8
    assert issubclass(S3Driver, StorageDriver)


# -- the plugin --------------------------------------------------------------------------
def test_found_through_its_entry_point(s3_env, bucket):
    pm = PluginManager()
    try:
        assert "s3" in pm.drivers
        record = pm.drivers["s3"]
        assert record.plugin == "s3" and record.info.factory == "clearml_data_s3.driver:S3Driver"
        assert any(
            r.name == "s3" and r.package == "clearml-data-s3" and r.status == "loaded" for r in pm.records
        )
        assert pm.driver_class("s3") is S3Driver
        driver = pm.driver(f"s3://{bucket}/via/manager")
        assert type(driver) is S3Driver and driver.prefix == "via/manager"
        driver.put_bytes(b"ok", "k")
        assert driver.get_bytes("k") == b"ok"
    finally:
        pm.close()


def test_missing_sdk_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(MissingDependencyError) as info:
        PluginManager().driver_class("s3")
    assert "pip install clearml-data-s3" in str(info.value)


def test_plugin_module_imports_without_the_sdk():
    code = (
        "import sys; sys.modules['boto3'] = None; sys.modules['botocore'] = None\n"
        "import clearml_data_s3\n"
        "[info] = clearml_data_s3.clearml_data_storage_drivers()\n"
        "print(info.scheme, info.factory, info.requires)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["s3", "clearml_data_s3.driver:S3Driver", "('boto3',", "'botocore')"]


# -- layout and isolation ------------------------------------------------------------------
def test_keys_land_under_the_prefix(make_driver, bucket, s3_client):
    driver = make_driver(f"s3://{bucket}/some/prefix/")
    driver.put_bytes(b"pack", "packs/ab/ab12.pack")
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["some/prefix/packs/ab/ab12.pack"]
    assert [o.key for o in driver.list("")] == ["packs/ab/ab12.pack"]
    assert [o.key for o in driver.list("packs/ab/")] == ["packs/ab/ab12.pack"]
    with pytest.raises(ValueError):
        driver.put_bytes(b"x", "../escape")
    with pytest.raises(ValueError):
        driver.put_bytes(b"x", "/absolute")


def test_prefixes_of_one_bucket_are_isolated(make_driver, bucket):
    one = make_driver(f"s3://{bucket}/one")
    other = make_driver(f"s3://{bucket}/one-more")
    root = make_driver(f"s3://{bucket}")
    one.put_bytes(b"first", "k")
    other.put_bytes(b"second", "k")
    other.put_bytes(b"only here", "x/y")
    assert [o.key for o in one.list()] == ["k"]
    assert sorted(o.key for o in other.list()) == ["k", "x/y"]
    assert one.get_bytes("k") == b"first" and other.get_bytes("k") == b"second"
    assert not one.exists("x/y")
    one.delete("k")
    assert other.get_bytes("k") == b"second"
    assert sorted(o.key for o in root.list()) == ["one-more/k", "one-more/x/y"]


def test_a_missing_bucket_is_a_clear_file_not_found(make_driver, tmp_path):
    driver = make_driver(f"s3://{unique_name('gone')}/p")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        driver.put_bytes(b"x", "k")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(driver.list())
    with pytest.raises(FileNotFoundError):
        driver.stat("k")
    with pytest.raises(FileNotFoundError):
        driver.get_file("k", str(tmp_path / "out"))
    assert os.listdir(tmp_path) == []


# -- large objects ---------------------------------------------------------------------------
def test_100_mib_goes_up_in_parallel_parts_and_comes_back_identical(make_driver, bucket, s3_client, tmp_path):
    driver = make_driver(f"s3://{bucket}/big")
    data = os.urandom(100 * MiB)
    src = write(tmp_path / "src", data)
    inflight, peak, calls = [0], [0], []
    lock = threading.Lock()

    def before(**_kw):
        with lock:
            inflight[0] += 1
            peak[0] = max(peak[0], inflight[0])
            calls.append(1)

    def after(**_kw):
        with lock:
            inflight[0] -= 1

    events = driver.client.meta.events
    events.register("before-call.s3.UploadPart", before)
    events.register("after-call.s3.UploadPart", after)
    part_headers = headers_of(driver, "UploadPart")
    driver.put_file(src, "objects/big")

    parts = -(-len(data) // (8 * MiB))  # 13 parts of 8 MiB
    assert len(calls) == parts and peak[0] > 1
    head = s3_client.head_object(Bucket=bucket, Key="big/objects/big", ChecksumMode="ENABLED")
    md5s = b"".join(hashlib.md5(data[i : i + 8 * MiB]).digest() for i in range(0, len(data), 8 * MiB))
    assert head["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-{parts}"'
    assert head["ContentLength"] == len(data)
    # every part carried its SHA-256 for the server to check
    assert sorted(h["x-amz-checksum-sha256"] for h in part_headers) == sorted(
        b64sha256(data[i : i + 8 * MiB]) for i in range(0, len(data), 8 * MiB)
    )
    assert uploads_in_progress(s3_client, bucket) == []

    ranged = headers_of(driver, "GetObject")
    out = tmp_path / "out"
    driver.get_file("objects/big", str(out))
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert len(ranged) == parts and all(h.get("range", "").startswith("bytes=") for h in ranged)
    edge = 8 * MiB - 10  # across the first part boundary
    assert driver.read_range("objects/big", edge, 20) == data[edge : edge + 20]
    assert driver.read_range("objects/big", len(data) - 3, 100) == data[-3:]
    assert sorted(os.listdir(tmp_path)) == ["out", "src"]  # no temporary file left


def test_a_failed_multipart_upload_leaves_nothing(make_driver, bucket, s3_client, tmp_path):
    driver = make_driver(f"s3://{bucket}/p", multipart_threshold="5MiB", part_size="5MiB", max_attempts=1)
    src = write(tmp_path / "src", os.urandom(12 * MiB))
    inject(driver, "UploadPart", [canned(400, "InvalidPart", "no")])
    with pytest.raises(OSError):
        driver.put_file(src, "k")
    assert not driver.exists("k")
    assert uploads_in_progress(s3_client, bucket) == []
    inject(driver, "CompleteMultipartUpload", [canned(500, "InternalError", "oops")])
    with pytest.raises(OSError, match="InternalError"):
        driver.put_file(src, "k")
    assert not driver.exists("k")
    assert uploads_in_progress(s3_client, bucket) == []
    driver.put_file(src, "k")  # nothing injected any more
    assert driver.stat("k").size == 12 * MiB


def test_create_only_puts_are_decided_by_the_servers_if_none_match(make_driver, bucket, s3_client, tmp_path):
    driver = make_driver(f"s3://{bucket}/p", multipart_threshold="5MiB", part_size="5MiB")
    first = write(tmp_path / "first", b"1" * (11 * MiB))
    second = write(tmp_path / "second", b"2" * (11 * MiB))
    driver.put_file(first, "k", overwrite=False)
    driver._exists = lambda full, key: False  # skip the HEAD: the server's If-None-Match must refuse
    puts = headers_of(driver, "PutObject")
    with pytest.raises(FileExistsError):
        driver.put_file(second, "k", overwrite=False)
    assert [h["if-none-match"] for h in puts] == ["*"]  # one PUT, above the multipart threshold too
    assert driver.read_range("k", 0, 3) == b"111"
    assert uploads_in_progress(s3_client, bucket) == []


def test_create_only_race_has_one_winner_and_losers_upload_nothing(make_driver, bucket, s3_client, tmp_path):
    driver = make_driver(f"s3://{bucket}/p", multipart_threshold="5MiB", part_size="5MiB")
    sources = [write(tmp_path / f"s{i}", bytes([i]) * (11 * MiB)) for i in range(4)]
    created = []
    driver.client.meta.events.register("before-call.s3.PutObject", lambda **_kw: created.append(1))
    outcomes: list[str] = []

    def put(i):
        try:
            driver.put_file(sources[i], "race", overwrite=False)
            outcomes.append(f"won {i}")
        except FileExistsError:
            outcomes.append("lost")

    threads = [threading.Thread(target=put, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(winners) == 1 and outcomes.count("lost") == 3
    i = int(winners[0].split()[1])
    assert driver.read_range("race", 11 * MiB - 4, 4) == bytes([i]) * 4
    assert len(created) == 1 and uploads_in_progress(s3_client, bucket) == []
    assert driver._key_locks == {}


# -- checksums -----------------------------------------------------------------------------
def test_uploads_carry_a_checksum_the_server_records(make_driver, bucket, s3_client):
    driver = make_driver(f"s3://{bucket}/p")
    sent = headers_of(driver, "PutObject")
    driver.put_bytes(b"hello", "k")
    assert sent[0]["x-amz-checksum-sha256"] == b64sha256(b"hello")
    head = s3_client.head_object(Bucket=bucket, Key="p/k", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == b64sha256(b"hello")


def test_checksums_can_be_turned_off_for_stores_that_reject_them(make_driver, bucket):
    driver = make_driver(f"s3://{bucket}/p", checksum_algorithm="off")
    sent = headers_of(driver, "PutObject")
    driver.put_bytes(b"hello", "k")
    assert not any(h.startswith("x-amz-checksum") or h == "x-amz-sdk-checksum-algorithm" for h in sent[0])
    assert driver.get_bytes("k") == b"hello"


def test_a_wrong_checksum_fails_the_download(make_driver, bucket, s3_client, tmp_path):
    # moto stores whatever checksum the client claims: an object whose bytes do not match it
    s3_client.put_object(
        Bucket=bucket,
        Key="p/bad",
        Body=b"hello",
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=b64sha256(b"other"),
    )
    driver = make_driver(f"s3://{bucket}/p")
    with pytest.raises(OSError, match="checksum mismatch"):
        driver.get_file("bad", str(tmp_path / "out"))
    assert os.listdir(tmp_path) == []


class Flipped:
    """A raw HTTP body whose first byte arrives flipped (corruption in transit)."""

    def __init__(self, raw):
        self.raw, self.first = raw, True

    def read(self, amt=None):
        data = self.raw.read(amt)
        if self.first and data:
            self.first = False
            data = bytes([data[0] ^ 1]) + data[1:]
        return data

    def __getattr__(self, name):
        return getattr(self.raw, name)


def corrupt_gets(driver: S3Driver, times: int, only_range: str | None = None) -> list[int]:
    done = []

    def flip(parsed, **_kw):
        wanted = only_range is None or parsed.get("ContentRange", "").startswith(only_range)
        if len(done) < times and "Body" in parsed and wanted:
            done.append(1)
            parsed["Body"]._raw_stream = Flipped(parsed["Body"]._raw_stream)

    driver.client.meta.events.register("after-call.s3.GetObject", flip)
    return done


def test_large_downloads_are_ranged_gets_pinned_to_the_etag(make_driver, bucket, s3_client, tmp_path):
    driver = make_driver(f"s3://{bucket}/p", multipart_threshold="5MiB", part_size="5MiB", max_concurrency=2)
    data = os.urandom(15 * MiB + 1)  # 4 ranges of 5 MiB, the last of one byte
    driver.put_file(write(tmp_path / "src", data), "k")
    etag = s3_client.head_object(Bucket=bucket, Key="p/k")["ETag"]
    gets = headers_of(driver, "GetObject")
    out = tmp_path / "out"
    driver.get_file("k", str(out))
    assert out.read_bytes() == data
    assert sorted(h["range"] for h in gets) == sorted(
        [f"bytes={i * 5 * MiB}-{(i + 1) * 5 * MiB - 1}" for i in range(3)] + [f"bytes={15 * MiB}-"]
    )
    assert {h["if-match"] for h in gets} == {etag}  # never bytes of two versions in one file


def test_progress_callbacks_see_every_byte(make_driver, bucket, tmp_path):
    driver = make_driver(f"s3://{bucket}/p", multipart_threshold="5MiB", part_size="5MiB")
    data = os.urandom(12 * MiB + 5)
    for overwrite in (True, False):  # a multipart upload, and one create-only PUT
        sent: list[int] = []
        driver.put_file(
            write(tmp_path / "src", data), f"k{overwrite}", overwrite=overwrite, callback=sent.append
        )
        assert sum(sent) == len(data)
    got: list[int] = []
    driver.get_file("kTrue", str(tmp_path / "out"), callback=got.append)
    assert sum(got) == len(data) and len(got) > 3  # as the ranges arrive, not once at the end
    assert (tmp_path / "out").read_bytes() == data


def test_whole_objects_corrupted_in_transit_are_caught_by_botocore(make_driver, bucket, tmp_path):
    driver = make_driver(f"s3://{bucket}/p")
    driver.put_bytes(b"hello world", "k")
    flips = corrupt_gets(driver, 100)
    with pytest.raises(OSError, match="checksum mismatch"):
        driver.get_file("k", str(tmp_path / "out"))
    assert len(flips) == 1 and os.listdir(tmp_path) == []  # the core hashes what it gets, too


# -- errors, retries, secrets ----------------------------------------------------------------
def test_throttling_and_5xx_are_retried(make_driver, bucket):
    driver = make_driver(f"s3://{bucket}/p", max_attempts=3)
    sent = inject(
        driver,
        "PutObject",
        [canned(503, "SlowDown", "Reduce your request rate."), canned(500, "InternalError", "oops")],
    )
    driver.put_bytes(b"x", "k")
    assert len(sent) == 3 and driver.get_bytes("k") == b"x"
    inject(driver, "PutObject", [canned(503, "SlowDown", "Reduce your request rate.")] * 3)
    with pytest.raises(OSError, match="busy") as info:
        driver.put_bytes(b"y", "k")
    assert info.value.errno == 11 and driver.get_bytes("k") == b"x"


def test_auth_errors_are_permission_errors(make_driver, bucket):
    driver = make_driver(f"s3://{bucket}/p")
    inject(driver, "HeadObject", [canned(403)])
    with pytest.raises(PermissionError):
        driver.stat("k")
    inject(
        driver,
        "PutObject",
        [
            canned(
                403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
            )
        ],
    )
    with pytest.raises(PermissionError, match="InvalidAccessKeyId"):
        driver.put_bytes(b"x", "k")


def test_no_credentials_is_a_permission_error(make_driver, bucket, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    driver = make_driver(f"s3://{bucket}/p")
    with pytest.raises(PermissionError, match="no usable AWS credentials"):
        driver.stat("k")
    public = make_driver(f"s3://{bucket}/p", anonymous=True)  # unsigned requests still work
    with pytest.raises(FileNotFoundError):
        public.stat("k")


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # the cut body's socket waits for the collector
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_body_cut_off_midway_is_read_again(make_driver, bucket, tmp_path):
    driver = make_driver(f"s3://{bucket}/p", multipart_threshold="5MiB", part_size="5MiB")
    data = os.urandom(11 * MiB)
    driver.put_file(write(tmp_path / "src", data), "k")
    cuts = [0]

    class Cut:
        def __init__(self, body):
            self.body = body

        def iter_chunks(self, size):
            yield self.body.read(1000)
            raise ResponseStreamingError(error="connection reset by peer")

        def read(self, amt=None):
            self.body.read(10)
            raise ResponseStreamingError(error="connection reset by peer")

        def close(self):
            self.body.close()

    def cut_once(parsed, **_kw):
        if cuts[0] < 3 and "Body" in parsed:
            cuts[0] += 1
            parsed["Body"] = Cut(parsed["Body"])

    driver.client.meta.events.register("after-call.s3.GetObject", cut_once)
    out = tmp_path / "out"
    driver.get_file("k", str(out))
    assert cuts[0] == 3 and out.read_bytes() == data
    cuts[0] = 2
    assert driver.read_range("k", 100, 50) == data[100:150]
    gc.collect()


def test_no_secret_in_reprs_or_errors(fake_keys, make_driver, bucket, tmp_path):
    ACCESS_KEY, SECRET_KEY = fake_keys
    texts = []
    driver = make_driver(f"s3://{bucket}/p")
    texts.append(repr(driver))
    dead = make_driver(
        f"s3://{bucket}/p", endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=1, connect_timeout=2
    )
    texts.append(repr(dead))
    failures = [
        lambda: driver.stat("missing"),
        lambda: make_driver(f"s3://{unique_name('gone')}/p").put_bytes(b"x", "k"),
        lambda: dead.put_bytes(b"x", "k"),
        lambda: dead.get_file("k", str(tmp_path / "o")),
    ]
    inject(
        driver,
        "PutObject",
        [canned(403, "SignatureDoesNotMatch", "The request signature we calculated does not match")],
    )
    failures.append(lambda: driver.put_bytes(b"x", "k"))
    kinds = []
    for fail in failures:
        with pytest.raises(OSError) as info:
            fail()
        kinds.append(type(info.value))
        texts.append(str(info.value))
        texts.append("".join(traceback.format_exception(info.value)))
    assert kinds == [
        FileNotFoundError,
        FileNotFoundError,
        ConnectionRefusedError,
        ConnectionRefusedError,
        PermissionError,
    ]
    for text in texts:
        assert SECRET_KEY not in text and ACCESS_KEY not in text


# -- concurrency and lifecycle ---------------------------------------------------------------
def test_one_driver_from_many_threads(make_driver, bucket, monkeypatch):
    made = []
    real = S3Driver._make_client

    def counting(self):
        made.append(1)
        return real(self)

    monkeypatch.setattr(S3Driver, "_make_client", counting)
    driver = make_driver(f"s3://{bucket}/p")
    errors = []
    barrier = threading.Barrier(32)

    def work(i):
        try:
            barrier.wait()
            payload = os.urandom(1000) + bytes([i])
            driver.put_bytes(payload, f"t/{i}")
            assert driver.get_bytes(f"t/{i}") == payload
            assert driver.read_range(f"t/{i}", 1000, 1) == bytes([i])
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(made) == 1
    assert len(list(driver.list("t/"))) == 32


def test_close_releases_the_client(make_driver, bucket, tmp_path):
    driver = make_driver(f"s3://{bucket}/p", multipart_threshold="5MiB", part_size="5MiB")
    driver.put_file(write(tmp_path / "src", os.urandom(6 * MiB)), "k")
    assert driver._client.peek() is not None and driver._transfers.peek() is not None
    driver.close()
    assert driver._client.peek() is None and driver._transfers.peek() is None
    driver.close()  # twice is fine


def test_server_side_encryption_option(make_driver, bucket, s3_client):
    driver = make_driver(f"s3://{bucket}/p", sse="AES256")
    sent = headers_of(driver, "PutObject")
    driver.put_bytes(b"x", "k")
    assert sent[0]["x-amz-server-side-encryption"] == "AES256"
    assert s3_client.head_object(Bucket=bucket, Key="p/k")["ServerSideEncryption"] == "AES256"


def test_endpoint_from_the_plugin_variable_and_host_port_urls(moto_server, s3_env, bucket, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("CLEARML_DATA_S3_ENDPOINT_URL", moto_server.url)
    driver = S3Driver(f"s3://{bucket}/env")
    try:
        driver.put_bytes(b"via env", "k")
        assert driver.get_bytes("k") == b"via env"
    finally:
        driver.close()
    monkeypatch.delenv("CLEARML_DATA_S3_ENDPOINT_URL")
    driver = S3Driver(f"s3://127.0.0.1:{moto_server.port}/{bucket}/hostport", secure=False)
    try:
        assert driver.endpoint_url == moto_server.url
        driver.put_bytes(b"via url", "k")
        assert driver.get_bytes("k") == b"via url"
        assert [o.key for o in driver.list()] == ["k"]
    finally:
        driver.close()
