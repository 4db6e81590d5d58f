"""Storage faults between the GCS driver and fake-gcs-server: 5xx answers, cut transfers, stalls.

Everything goes through the core's fault proxy on 127.0.0.1, and the checks are the core's
(both in clearml_data.testing.faults). Counts grow under ``tox -e reliability``.
"""

from __future__ import annotations

import gc
import os

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

pytestmark = [
    pytest.mark.reliability,
    # the SDK's HTTP library leaves a socket that was cut mid-transfer for the garbage collector
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

STALL = 0.4  # the read timeout the tests set; a stall lasts longer


@pytest.fixture(autouse=True)
def _sessions_dir_by_its_new_name(monkeypatch):
    """conftest.py sets the sessions folder under the variable's old name, which now warns."""
    folder = os.environ.get("CLEARML_DATA_GCS_SESSIONS_DIR")
    if folder:
        monkeypatch.delenv("CLEARML_DATA_GCS_SESSIONS_DIR")
        monkeypatch.setenv("CLEARML_DATA_GS_SESSIONS_DIR", folder)


def _env(attempts: int, read_timeout: float) -> dict[str, str]:
    return {
        "CLEARML_DATA_GS_MAX_ATTEMPTS": str(attempts),
        "CLEARML_DATA_GS_RETRY_BACKOFF": "0.01",
        "CLEARML_DATA_GS_RETRY_MAX_BACKOFF": "0.1",
        "CLEARML_DATA_GS_READ_TIMEOUT": str(read_timeout),
        "CLEARML_DATA_GS_CONNECT_TIMEOUT": "2",
    }


TARGET = FaultTarget("gcs", put=("POST|PUT", r"^/upload/"), get=("GET", r"alt=media|^/download/"), env=_env)


@pytest.fixture(autouse=True)
def _collect_cut_sockets():
    yield
    gc.collect()  # so those sockets are reported (and ignored) here, not in a later test


@pytest.fixture
def proxy(gcs_server):
    with FaultProxy(gcs_server.url) as p:
        yield p


def test_gcs_retries_until_the_bound(proxy, gcs_server, gcs_bucket, make_driver, monkeypatch, tmp_path):
    attempts = reliability_count(3, 5)
    for var, value in _env(attempts, STALL).items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    driver = make_driver(f"gs://{gcs_bucket}/p")
    direct = make_driver(f"gs://{gcs_bucket}/p", endpoint=gcs_server.url)
    counts = None if attempts == 3 else list(range(attempts + 2))
    figures = check_retry_bound(
        driver, direct, proxy, TARGET, attempts, tmp_path, standard_faults(STALL * 3), counts
    )
    report_figures("storage faults: gcs driver", attempts=attempts, **figures)


def test_gcs_workflow_under_faults(proxy, gcs_server, gcs_bucket, gcs_cli, core_env, monkeypatch, tmp_path):
    attempts = 4
    for var, value in _env(attempts, STALL).items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("CLEARML_DATA_GS_CHUNK_SIZE", "1MiB")  # the 3 MiB file: resumable, in pieces

    def use_proxy(on: bool) -> None:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url if on else gcs_server.url)
        reset_services()

    source = make_source(
        tmp_path / "src", small=reliability_count(30, 300), large_sizes=(300_000, 3 * 1024 * 1024)
    )
    figures = check_workflow(
        gcs_cli,
        TARGET,
        proxy,
        f"gs://{gcs_bucket}/ds",
        source,
        core_env.cache,
        use_proxy,
        attempts,
        rounds=reliability_count(1, 5),
        probability=0.25,
        faults=standard_faults(STALL * 3),
    )
    report_figures("storage faults: gcs workflow", **figures)
