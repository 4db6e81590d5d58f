"""Fixtures of the s3 plugin's tests: a real moto S3 server on 127.0.0.1 for the session.

Nothing but 127.0.0.1 is contacted: the credentials are fake and set explicitly, the
AWS config and credentials files are /dev/null, and the instance-metadata lookup is off.
Each test gets its own bucket, so tests never see each other's objects. ``core_env``, ``cli``
and ``make_driver`` come from clearml_data.testing.pytest (named in the repository's conftest).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from clearml_data.testing import CliResult, IsolatedEnv
from clearml_data.testing.servers import emulator, keep_loopback_off_proxies, unique_name

#: fake credentials; tests assert they never show up in output
ACCESS_KEY = "AKIACLEARMLDATACANARY"
SECRET_KEY = "clearml-data-s3-secret-canary-Zx9"

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # never probe an instance-metadata address
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
#: variables of the developer's machine that would change what the tests talk to
UNSET = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
    "AWS_CA_BUNDLE",
    "AWS_REQUEST_CHECKSUM_CALCULATION",
    "AWS_RESPONSE_CHECKSUM_VALIDATION",
)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """``python -m moto.server`` on a free loopback port, stopped (process group) at the end."""
    keep_loopback_off_proxies()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(FAKE_AWS_ENV)
    server = emulator("s3", tmp_path_factory.mktemp("moto"), env=env)
    yield server
    server.stop()


@pytest.fixture
def s3_env(moto_server, monkeypatch) -> dict[str, str]:
    """The environment boto3 needs to reach the test server, and nothing else."""
    for var in UNSET:
        monkeypatch.delenv(var, raising=False)
    for var in list(os.environ):
        if var.startswith("CLEARML_DATA_S3_"):
            monkeypatch.delenv(var)
    env = dict(FAKE_AWS_ENV, AWS_ENDPOINT_URL_S3=moto_server.url)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    for var in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in os.environ.get(var, "").split(",") if h]
        monkeypatch.setenv(var, ",".join(hosts + [h for h in ("127.0.0.1", "localhost") if h not in hosts]))
    return env


@pytest.fixture
def s3_client(s3_env):
    """A plain boto3 client on the test server, to look behind the driver's back."""
    import boto3

    client = boto3.session.Session().client("s3")
    yield client
    client.close()


@pytest.fixture
def bucket(s3_client) -> str:
    """A fresh, empty bucket."""
    name = unique_name("bkt")
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def driver_class(s3_env):
    """What ``make_driver(url, **options)`` opens: S3Driver, on the test server."""
    from clearml_data_s3.driver import S3Driver

    return S3Driver


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
def fake_keys() -> tuple[str, str]:
    """(access key id, secret key) that the tests' environment holds."""
    return ACCESS_KEY, SECRET_KEY
