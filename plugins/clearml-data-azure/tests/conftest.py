"""Fixtures for the azure:// driver tests: a real Azurite blob server on 127.0.0.1.

Azurite 3.35.0 comes from npm (the repository root's package.json / package-lock.json,
installed with ``npm ci``); clearml_data.testing.servers.emulator runs it as
``node .../azurite/dist/src/blob/main.js``, never through npx. Set ``AZURITE_MAIN`` to use
another main.js. Nothing but 127.0.0.1 is
contacted: the well-known development account is set explicitly, azure-identity is
switched off, and loopback is kept off any HTTP proxy. ``core_env``, ``cli`` and ``make_driver``
come from clearml_data.testing.pytest (named in the repository's conftest).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest

from clearml_data.testing import CliResult, IsolatedEnv
from clearml_data.testing.faults import FaultProxy
from clearml_data.testing.servers import emulator, keep_loopback_off_proxies, unique_name

#: Azurite's published development account (a well-known value, not a secret)
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
HOST = f"{ACCOUNT}.blob.core.windows.net"

#: environment variables that could point the driver anywhere but the test server
_FOREIGN_ENV = (
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "CLEARML_DATA_AZURE_ACCOUNT_URL",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "IDENTITY_ENDPOINT",
    "MSI_ENDPOINT",
)

keep_loopback_off_proxies()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """A running Azurite blob service on 127.0.0.1 for the whole session."""
    workdir = tmp_path_factory.mktemp("azurite")
    server = emulator("azure", workdir)
    yield server
    server.stop()
    shutil.rmtree(workdir / "data", ignore_errors=True)  # hundreds of MiB of test blobs


def connection_string(server_url: str, key: str = ACCOUNT_KEY) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};"
        f"BlobEndpoint={server_url}/{ACCOUNT};"
    )


@pytest.fixture
def azure_env(azurite, monkeypatch):
    """Point azure:// URLs for devstoreaccount1 at Azurite, and at nothing else."""
    for var in _FOREIGN_ENV:
        monkeypatch.delenv(var, raising=False)
    for var in list(os.environ):
        if var.startswith("CLEARML_DATA_AZURE_"):
            monkeypatch.delenv(var)
    conn = connection_string(azurite.url)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", conn)
    monkeypatch.setenv("CLEARML_DATA_AZURE_USE_IDENTITY", "0")  # never probe a metadata endpoint
    return conn


@pytest.fixture
def service_client(azure_env):
    """A plain SDK client on Azurite, to look at what the driver wrote."""
    from azure.storage.blob import BlobServiceClient

    client = BlobServiceClient.from_connection_string(azure_env)
    yield client
    client.close()


@pytest.fixture
def new_container(service_client):
    """make() -> the name of a fresh, empty container."""

    def make() -> str:
        name = unique_name("ctr")
        service_client.create_container(name)
        return name

    return make


@pytest.fixture
def azure_url(new_container):
    """An azure:// URL (ClearML's form) on a fresh container, with a prefix."""
    return f"azure://{HOST}/{new_container()}/some/prefix"


@pytest.fixture
def driver_class(azure_env):
    """What ``make_driver(url, **options)`` opens: AzureBlobDriver, on Azurite."""
    from clearml_data_azure.driver import AzureBlobDriver

    return AzureBlobDriver


# -- the core's environment, for the CLI workflow tests (clearml_data.testing.pytest) --------
@pytest.fixture
def core_env(clearml_data_env: IsolatedEnv) -> IsolatedEnv:
    """Own catalog, default storage, cache, state and config for one test."""
    return clearml_data_env


@pytest.fixture
def cli(clearml_data_cli: Callable[..., CliResult]) -> Callable[..., CliResult]:
    """Run ``clearml-data`` in-process: cli("add", "--files", "x") -> CliResult."""
    return clearml_data_cli


@pytest.fixture
def fault_proxy(azurite, azure_env):
    """A FaultProxy (clearml_data.testing.faults) in front of Azurite."""
    with FaultProxy(azurite.url) as proxy:
        yield proxy


@pytest.fixture
def via_proxy(fault_proxy) -> str:
    """A connection string that reaches Azurite through ``fault_proxy``."""
    return connection_string(fault_proxy.url)
