"""Uploads cut off by a kill are found and aborted by ``gc``.

A writer killed during a large put leaves an unfinished upload behind: an S3 multipart
upload with its parts, a GCS resumable session, an Azure blob of only uncommitted blocks.
None is a visible object, but all hold (billed) bytes. For each cloud, against its real
emulator on loopback, a child process starts large puts and is SIGKILLed mid-upload; then
``gc`` lists every one of them in its dry run (and aborts none), keeps them while they are
younger than ``--min-age``, aborts them all with ``--delete``, and never touches an upload
under another prefix of the same bucket.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from clearml_data.testing import reset_services, run_cli
from clearml_data.testing.servers import emulator, unique_name

from figures import reliability_count, report_figures

pytestmark = pytest.mark.reliability

SCHEMES = ("s3", "gs", "azure")
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
MiB = 1024 * 1024
#: a file size that needs many parts, chunks or blocks at the sizes set below
SIZES = {"s3": 64 * MiB, "gs": 24 * MiB, "azure": 12 * MiB}

_CHILD = """
import sys
from clearml_data.storage import PluginManager
PluginManager().driver(sys.argv[1]).put_file(sys.argv[2], sys.argv[3])
"""

_servers: dict = {}


@pytest.fixture(scope="module", autouse=True)
def _stop_servers():
    yield
    for server in _servers.values():
        server.stop()
    _servers.clear()


@pytest.fixture
def cloud(request, env, monkeypatch, tmp_path_factory):
    """(scheme, bucket URL) on the scheme's emulator, with small parts so that puts take long."""
    scheme = request.param
    for var in list(os.environ):
        if (
            var.startswith(
                (
                    "AWS_",
                    "AZURE_",
                    "CLEARML_DATA_S3_",
                    "CLEARML_DATA_GCS_",
                    "CLEARML_DATA_GS_",
                    "CLEARML_DATA_AZURE_",
                    "GOOGLE_",
                )
            )
            or var == "STORAGE_EMULATOR_HOST"
        ):
            monkeypatch.delenv(var)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    if scheme not in _servers:
        _servers[scheme] = emulator(
            scheme,
            tmp_path_factory.mktemp(f"emulator-{scheme}"),
            env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        )
    server = _servers[scheme]
    bucket = unique_name("bkt")
    if scheme == "s3":
        for var, value in {
            "AWS_ACCESS_KEY_ID": "AKIATEST",
            "AWS_SECRET_ACCESS_KEY": "test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_ENDPOINT_URL_S3": server.url,
            "CLEARML_DATA_S3_MULTIPART_THRESHOLD": "5MiB",
            "CLEARML_DATA_S3_PART_SIZE": "5MiB",
            "CLEARML_DATA_S3_MAX_CONCURRENCY": "1",
        }.items():
            monkeypatch.setenv(var, value)
        import boto3

        client = boto3.session.Session().client("s3")
        client.create_bucket(Bucket=bucket)
        client.close()
        yield scheme, f"s3://{bucket}"
    elif scheme == "gs":
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
        monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test-project")
        monkeypatch.setenv("NO_GCE_CHECK", "True")
        monkeypatch.setenv("CLEARML_DATA_GS_CHUNK_SIZE", "256KiB")
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(
            project="test-project",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": server.url},
        )
        client.create_bucket(bucket)
        client.close()
        yield scheme, f"gs://{bucket}"
    else:
        conn = (
            f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={server.url}/devstoreaccount1;"
        )
        for var, value in {
            "AZURE_STORAGE_CONNECTION_STRING": conn,
            "CLEARML_DATA_AZURE_USE_IDENTITY": "0",
            "CLEARML_DATA_AZURE_MULTIPART_THRESHOLD": "1MiB",
            "CLEARML_DATA_AZURE_PART_SIZE": "64KiB",
            "CLEARML_DATA_AZURE_MAX_CONCURRENCY": "1",
        }.items():
            monkeypatch.setenv(var, value)
        from azure.storage.blob import BlobServiceClient

        with BlobServiceClient.from_connection_string(conn) as client:
            client.create_container(bucket)
        yield scheme, f"azure://devstoreaccount1.blob.core.windows.net/{bucket}"
    reset_services()


def _driver(url: str):
    from clearml_data.storage import PluginManager

    return PluginManager().driver(url)


def _kill_mid_upload(url: str, source, key: str, rng: random.Random) -> float:
    """Run a put of ``source`` at ``key`` in a child; SIGKILL it once the storage shows the
    upload started (and a random moment more). Returns how long the child ran."""
    driver = _driver(url)
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, url, str(source), key],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        while time.monotonic() - started < 60:
            if child.poll() is not None:
                pytest.fail(f"the put finished before it could be killed: {child.stderr.read()[-2000:]!r}")
            if any(u.key == key for u in driver.list_unfinished()):
                time.sleep(rng.uniform(0, 0.2))
                break
            time.sleep(0.01)
        else:
            pytest.fail("the put never showed up as an unfinished upload")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stderr.close()
        driver.close()
    return time.monotonic() - started


def _gc(url: str, *flags) -> dict:
    r = run_cli("--json", "--verbose", "gc", "--storage", url, *flags)
    assert r.code == 0, (r.out, r.err)
    return r.json["data"]


@pytest.mark.parametrize("cloud", SCHEMES, indirect=True)
def test_gc_aborts_uploads_cut_off_by_a_kill(cloud, tmp_path):
    scheme, bucket_url = cloud
    url, sibling = f"{bucket_url}/data", f"{bucket_url}/data-other"
    rng = random.Random(f"unfinished-{scheme}")
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(SIZES[scheme]))
    kills = reliability_count(2, 6)
    keys = [f"objects/{i:02x}/{unique_name('obj')}" for i in range(kills)]
    t0 = time.monotonic()
    for key in keys:
        _kill_mid_upload(url, source, key, rng)
    _kill_mid_upload(sibling, source, "objects/00/sibling", rng)  # another storage's upload
    kill_seconds = time.monotonic() - t0

    driver = _driver(url)
    try:
        found = sorted(driver.list_unfinished())
        assert sorted(u.key for u in found) == sorted(keys)
        assert not any(driver.exists(k) for k in keys)  # nothing became visible
        if scheme == "gs":
            _GCS_SESSIONS[:] = [
                r["uri"]
                for r in (_record(driver, e) for e in os.listdir(driver.sessions_dir))
                if r and r.get("name", "").startswith("data/")
            ]
            assert len(_GCS_SESSIONS) == kills and all(_gcs_session_alive(driver, u) for u in _GCS_SESSIONS)
    finally:
        driver.close()

    dry = _gc(url, "--min-age", "0")
    assert dry["dry_run"] and sorted(u["key"] for u in dry["unfinished"]) == sorted(keys)
    assert dry["aborted"] == []

    # younger than --min-age on the server's own clock: listed as too young, kept
    from clearml_data import api

    newest = max(u.started for u in found)
    kept = api.default_service().collect_garbage(url, delete=True, min_age=3600, now=newest + 60)
    assert kept.unfinished == [] and kept.unfinished_too_young == kills and kept.aborted == []

    done = _gc(url, "--min-age", "0", "--delete")
    assert sorted(done["aborted"]) == sorted(keys) and done["abort_failed"] == 0
    after = _gc(url, "--min-age", "0", "--delete")
    assert after["unfinished"] == [] and after["unfinished_too_young"] == 0

    driver, other = _driver(url), _driver(sibling)
    try:
        assert list(driver.list_unfinished()) == []
        assert [u.key for u in other.list_unfinished()] == ["objects/00/sibling"]  # untouched
        left = _leftovers(scheme, driver, keys)
    finally:
        driver.close()
        other.close()
    assert left == []
    report_figures(
        "unfinished uploads",
        scheme=scheme,
        kills=kills + 1,
        listed=len(found),
        aborted=len(done["aborted"]),
        kept_young=kept.unfinished_too_young,
        sibling_kept=1,
        kill_seconds=round(kill_seconds, 1),
    )


def _leftovers(scheme: str, driver, keys: list[str]) -> list[str]:
    """What the server still holds of the aborted uploads, asked behind the driver's back."""
    left = []
    if scheme == "s3":
        uploads = driver.client.list_multipart_uploads(Bucket=driver.bucket).get("Uploads") or []
        left = [u["Key"] for u in uploads if u["Key"].split("/", 1)[-1] in keys]
    elif scheme == "gs":  # the driver's records of its sessions, and the sessions themselves
        names = {driver.full_key(k) for k in keys}
        for entry in sorted(os.listdir(driver.sessions_dir)):
            record = _record(driver, entry)
            if record and record.get("bucket") == driver.bucket_name and record.get("name") in names:
                left.append(entry)
        left += [uri for uri in _GCS_SESSIONS if _gcs_session_alive(driver, uri)]
    else:
        from azure.core.exceptions import ResourceNotFoundError

        for key in keys:
            try:
                committed, uncommitted = driver._blob(key).get_block_list("all")
            except ResourceNotFoundError:
                continue
            if committed or uncommitted:
                left.append(key)
    return left


def _record(driver, entry: str) -> dict | None:
    try:
        with open(os.path.join(driver.sessions_dir, entry), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


#: session URIs of the killed GCS uploads, read from the driver's records before gc
_GCS_SESSIONS: list[str] = []


def _gcs_session_alive(driver, uri: str) -> bool:
    """Does the server still take bytes for this resumable session? (A status query: an
    empty PUT with ``Content-Range: bytes */*``; a cancelled session answers 4xx.)"""
    response = driver.client._http.request(
        "PUT", uri, headers={"Content-Range": "bytes */*"}, data=b"", timeout=30
    )
    return response.status_code in (200, 201, 308)


@pytest.mark.parametrize("cloud", ["gs", "azure"], indirect=True)
def test_gc_keeps_the_younger_of_two_uploads(cloud, tmp_path):
    """Two uploads cut off 1.5 s apart; --min-age between their ages aborts only the older.
    (moto reports one fixed start time for every multipart upload, so S3 is checked above
    on the server's clock instead.)"""
    scheme, bucket_url = cloud
    url = f"{bucket_url}/data"
    rng = random.Random(f"younger-{scheme}")
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(SIZES[scheme]))
    _kill_mid_upload(url, source, "objects/01/older", rng)
    time.sleep(1.5)
    _kill_mid_upload(url, source, "objects/02/younger", rng)
    driver = _driver(url)
    try:
        started = {u.key: u.started for u in driver.list_unfinished()}
    finally:
        driver.close()
    assert started["objects/01/older"] < started["objects/02/younger"]
    min_age = time.time() - (started["objects/01/older"] + started["objects/02/younger"]) / 2
    done = _gc(url, "--min-age", f"{min_age:.3f}", "--delete")
    assert done["aborted"] == ["objects/01/older"] and done["unfinished_too_young"] == 1
    driver = _driver(url)
    try:
        assert [u.key for u in driver.list_unfinished()] == ["objects/02/younger"]
    finally:
        driver.close()
    report_figures("unfinished uploads", scheme=scheme, older_aborted=1, younger_kept=1)
