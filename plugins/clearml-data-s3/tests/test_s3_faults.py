"""Storage faults between the S3 driver and moto: 5xx answers, cut transfers, stalls.

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

pytestmark = [
    pytest.mark.reliability,
    # the SDK's HTTP library leaves a socket that was cut mid-transfer for the garbage collector
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

STALL = 0.4  # the read timeout the tests set; a stall lasts longer


def _env(attempts: int, read_timeout: float) -> dict[str, str]:
    # botocore's standard mode backs off 50 ms * 2**n (1 s * 2**n when throttled): short already
    return {
        "CLEARML_DATA_S3_MAX_ATTEMPTS": str(attempts),
        "CLEARML_DATA_S3_READ_TIMEOUT": str(read_timeout),
        "CLEARML_DATA_S3_CONNECT_TIMEOUT": "2",
    }


TARGET = FaultTarget(
    "s3",
    put=("PUT|POST", r"^/bkt-[^/?]+/[^?]*(\?(partNumber|uploadId)|$)"),
    get=("GET", r"^/bkt-[^/?]+/[^?]+$"),
    env=_env,
)


@pytest.fixture(autouse=True)
def _collect_cut_sockets():
    yield
    gc.collect()  # so those sockets are reported (and ignored) here, not in a later test


@pytest.fixture
def proxy(moto_server):
    with FaultProxy(moto_server.url) as p:
        yield p


def test_s3_retries_until_the_bound(proxy, moto_server, bucket, make_driver, monkeypatch, tmp_path):
    attempts = reliability_count(3, 5)
    for var, value in _env(attempts, STALL).items():
        monkeypatch.setenv(var, value)
    direct = make_driver(f"s3://{bucket}/p", endpoint_url=moto_server.url)
    counts = None if attempts == 3 else list(range(attempts + 2))
    # a new client for each fault and count: botocore's standard retry mode gives each client a
    # quota (500 units; a retry costs 5, a timeout 10) and stops retrying once it is spent
    figures = check_retry_bound(
        lambda: make_driver(f"s3://{bucket}/p", endpoint_url=proxy.url),
        direct,
        proxy,
        TARGET,
        attempts,
        tmp_path,
        standard_faults(STALL * 3),
        counts,
    )
    report_figures("storage faults: s3 driver", attempts=attempts, **figures)


def test_s3_workflow_under_faults(proxy, moto_server, bucket, cli, core_env, monkeypatch, tmp_path):
    attempts = 4
    for var, value in _env(attempts, STALL).items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("CLEARML_DATA_S3_MULTIPART_THRESHOLD", "6MiB")  # the 7 MiB file: 2 parts

    def use_proxy(on: bool) -> None:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url if on else moto_server.url)
        reset_services()

    source = make_source(
        tmp_path / "src", small=reliability_count(30, 300), large_sizes=(300_000, 7 * 1024 * 1024)
    )
    figures = check_workflow(
        cli,
        TARGET,
        proxy,
        f"s3://{bucket}/ds",
        source,
        core_env.cache,
        use_proxy,
        attempts,
        rounds=reliability_count(1, 5),
        probability=0.5,
        faults=standard_faults(STALL * 3),
    )
    report_figures("storage faults: s3 workflow", **figures)
