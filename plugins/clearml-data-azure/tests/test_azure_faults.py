"""Storage faults between the Azure driver and Azurite: 5xx answers, cut transfers, stalls.

Everything goes through the core's fault proxy on 127.0.0.1, and the checks are the core's
(both in clearml_data.testing.faults). Counts grow under ``tox -e reliability``.
"""

from __future__ import annotations

import gc

import pytest

from clearml_data.testing import reset_services
from clearml_data.testing.faults import (
    FaultProxy,
    FaultTarget,
    check_retry_bound,
    check_workflow,
    make_source,
    standard_faults,
)

from figures import reliability_count, report_figures

HOST = "devstoreaccount1.blob.core.windows.net"

pytestmark = [
    pytest.mark.reliability,
    # the SDK's HTTP library leaves a socket that was cut mid-transfer for the garbage collector
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

STALL = 0.4  # the read timeout the tests set; a stall lasts longer


def _env(attempts: int, read_timeout: float) -> dict[str, str]:
    return {
        "CLEARML_DATA_AZURE_MAX_ATTEMPTS": str(attempts),
        "CLEARML_DATA_AZURE_RETRY_BACKOFF": "0.01",
        "CLEARML_DATA_AZURE_READ_TIMEOUT": str(read_timeout),
        "CLEARML_DATA_AZURE_CONNECT_TIMEOUT": "2",
    }


TARGET = FaultTarget(
    "azure",
    put=("PUT", r"^/devstoreaccount1/[^?]+/[^?]+(\?comp=(block|blocklist)|$)"),
    get=("GET", r"^/devstoreaccount1/[^?]+/[^?]+$"),
    env=_env,
)


@pytest.fixture(autouse=True)
def _collect_cut_sockets():
    yield
    gc.collect()  # so those sockets are reported (and ignored) here, not in a later test


@pytest.fixture
def proxy(azurite):
    with FaultProxy(azurite.url) as p:
        yield p


@pytest.fixture
def connection_string(azure_env, azurite):
    """connection_string(through_proxy_url or None): Azurite's, optionally via another address."""
    return lambda url=None: azure_env.replace(azurite.url, url) if url else azure_env


def test_azure_retries_until_the_bound(
    proxy, azurite, new_container, make_driver, connection_string, monkeypatch, tmp_path
):
    attempts = reliability_count(3, 5)
    for var, value in _env(attempts, STALL).items():
        monkeypatch.setenv(var, value)
    ctr = new_container()
    driver = make_driver(f"azure://{HOST}/{ctr}/p", connection_string=connection_string(proxy.url))
    direct = make_driver(f"azure://{HOST}/{ctr}/p", connection_string=connection_string())
    counts = None if attempts == 3 else list(range(attempts + 2))
    figures = check_retry_bound(
        driver, direct, proxy, TARGET, attempts, tmp_path, standard_faults(STALL * 3), counts
    )
    report_figures("storage faults: azure driver", attempts=attempts, **figures)


def test_azure_workflow_under_faults(
    proxy, azurite, new_container, cli, core_env, connection_string, monkeypatch, tmp_path
):
    attempts = 4
    for var, value in _env(attempts, STALL).items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("CLEARML_DATA_AZURE_MULTIPART_THRESHOLD", "1MiB")  # the 3 MiB file: staged blocks
    monkeypatch.setenv("CLEARML_DATA_AZURE_PART_SIZE", "1MiB")

    def use_proxy(on: bool) -> None:
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string(proxy.url if on else None))
        reset_services()

    ctr = new_container()
    source = make_source(
        tmp_path / "src", small=reliability_count(30, 300), large_sizes=(300_000, 3 * 1024 * 1024)
    )
    figures = check_workflow(
        cli,
        TARGET,
        proxy,
        f"azure://{HOST}/{ctr}/ds",
        source,
        core_env.cache,
        use_proxy,
        attempts,
        rounds=reliability_count(1, 5),
        probability=0.25,
        faults=standard_faults(STALL * 3),
    )
    report_figures("storage faults: azure workflow", **figures)
