"""Secrets never show up in output, logs or the catalog.

Canary credentials sit in the environment (AWS keys, an Azure connection string's
AccountKey, a GCS credentials file: its path and its JSON) and in storage URLs
(user:password@, SAS-like query strings). Every command then runs with --verbose and
--debug against s3://, gs:// and azure:// storages on a loopback port where nothing
listens, so every storage call fails and every error path is taken. Afterwards not one
canary may appear in stdout, stderr, the log records or the bytes of the catalog files.

Then the same per credential channel (each variable a plugin reads, against a dead port and
a live emulator), for the scrubber on its own (every canary in every shape an SDK builds
around it), and for the CLI's log handler and error line, the last line of defence.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from clearml_data.testing import reset_services, run_cli, write_tree

from figures import reliability_count, report_figures

pytest.importorskip("clearml_data_s3", reason="the s3 plugin is not installed (plugins/clearml-data-s3)")
pytest.importorskip("clearml_data_gcs", reason="the gcs plugin is not installed (plugins/clearml-data-gcs)")
pytest.importorskip(
    "clearml_data_azure", reason="the azure plugin is not installed (plugins/clearml-data-azure)"
)

CANARIES = {
    "aws_key_id": "AKIACANARYKEYID7Q2W",
    "aws_secret": "awsSecretCanary0123456789abcdefghijklmnop",
    "aws_session": "awsSessionTokenCanary9f8e7d6c5b4a",
    "azure_key": base64.b64encode(b"azure-account-key-canary-4c1f-payload!").decode(),
    "azure_sas_env": "azureSasSigCanary5d2e",
    "gcs_path": "gcsCredPathCanary3b8a",
    "gcs_key_id": "gcsPrivateKeyIdCanary71ce",
    "url_password": "urlPasswordCanary6e4f",
    "url_sig": "urlSasSigCanary8b1c",
    "url_token": "urlTokenCanary2f7a",
}


def _service_account(token_uri: str) -> dict:
    """A service-account key file whose token endpoint is on loopback; its key is a canary too."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    body = "".join(pem.splitlines()[1:-1])
    CANARIES["gcs_private_key"] = body[100:160]
    return {
        "type": "service_account",
        "project_id": "canary-project",
        "private_key_id": CANARIES["gcs_key_id"],
        "private_key": pem,
        "client_email": "canary@canary-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }


def _dead_port() -> int:
    """A loopback port with nothing listening (bound once to pick it, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def canary_env(env, tmp_path, monkeypatch):
    port = _dead_port()
    dead = f"http://127.0.0.1:{port}"
    creds = tmp_path / f"{CANARIES['gcs_path']}.json"
    creds.write_text(json.dumps(_service_account(f"{dead}/token")))
    for var in list(os.environ):
        if var.startswith(
            ("AWS_", "AZURE_", "GOOGLE_", "CLEARML_DATA_S3_", "CLEARML_DATA_GCS_", "CLEARML_DATA_AZURE_")
        ) or var in ("STORAGE_EMULATOR_HOST", "GCLOUD_PROJECT"):
            monkeypatch.delenv(var, raising=False)
    values = {
        "AWS_ACCESS_KEY_ID": CANARIES["aws_key_id"],
        "AWS_SECRET_ACCESS_KEY": CANARIES["aws_secret"],
        "AWS_SESSION_TOKEN": CANARIES["aws_session"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "CLEARML_DATA_S3_MAX_ATTEMPTS": "1",
        "CLEARML_DATA_S3_CONNECT_TIMEOUT": "2",
        "AZURE_STORAGE_CONNECTION_STRING": f"DefaultEndpointsProtocol=http;AccountName=canaryacct;AccountKey={CANARIES['azure_key']};"
        f"BlobEndpoint={dead}/canaryacct;",
        "AZURE_STORAGE_SAS_TOKEN": f"sv=2024-01-01&sig={CANARIES['azure_sas_env']}",
        "CLEARML_DATA_AZURE_MAX_ATTEMPTS": "1",
        "CLEARML_DATA_AZURE_USE_IDENTITY": "false",
        "GOOGLE_APPLICATION_CREDENTIALS": str(creds),
        "GOOGLE_CLOUD_PROJECT": "canary-project",
        "NO_GCE_CHECK": "True",
        "CLEARML_DATA_GS_ENDPOINT": dead,
        "CLEARML_DATA_GS_RETRY_DEADLINE": "0.2",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    real_getaddrinfo = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):  # no name is ever looked up, no traffic leaves
        if host not in ("127.0.0.1", "localhost", "::1", None):
            off_loopback.append(host)
            raise socket.gaierror(socket.EAI_NONAME, f"test: {host} is not loopback")
        return real_getaddrinfo(host, *args, **kwargs)

    off_loopback: list[str] = []
    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    yield port
    assert off_loopback == []


class _Records(logging.Handler):
    """Every log record of every logger, formatted with its traceback."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record):
        self.lines.append(self.format(record))


def _hits(text: str) -> list[str]:
    return [name for name, value in CANARIES.items() if value in text]


def _scheme_urls(port: int) -> dict[str, str]:
    return {
        "s3": f"s3://127.0.0.1:{port}/canary-bucket/data",
        "gs": "gs://canary-bucket/data",
        "azure": "azure://canaryacct/canary-container/data",
    }


def _credential_urls(port: int) -> list[str]:
    """Storage URLs that carry a credential: each must be refused without repeating it."""
    pw, sig, tok = CANARIES["url_password"], CANARIES["url_sig"], CANARIES["url_token"]
    return [
        f"s3://AKIAX:{pw}@127.0.0.1:{port}/canary-bucket",
        f"s3://AKIAX:{pw}@canary-bucket/data",
        f"s3://canary-bucket/data?X-Amz-Signature={sig}&X-Amz-Security-Token={tok}",
        f"gs://user:{pw}@canary-bucket/data",
        f"gs://canary-bucket/data?token={tok}",
        f"azure://canaryacct/canary-container?sv=2024&sig={sig}",
        f"azure://canaryacct.blob.core.windows.net/canary-container/x?se=2030&sp=r&sig={sig}",
        f"azure://user:{pw}@canaryacct/canary-container",
        f"file://user:{pw}@localhost/tmp/x",
    ]


def _commands(scheme_url: str, draft: str, final: str, folder: Path, port: int) -> list[list[str]]:
    """Every clearml-data command, aimed at a storage where nothing answers."""
    cred = _credential_urls(port)
    out = folder.parent / "copy"
    return [
        ["create", "--project", "canary", "--name", "n", "--storage", scheme_url],
        ["add", "--id", draft, "--files", str(folder)],
        ["add", "--id", draft, "--links", f"{scheme_url}/external.bin"],
        ["add", "--id", draft, "--links", f"{scheme_url}/folder/"],
        *[["add", "--id", draft, "--links", u + "/x.bin"] for u in cred],
        ["remove", "--id", draft, "--files", "a.txt"],
        *[["remove", "--id", draft, "--files", u] for u in cred],
        ["upload", "--id", draft],
        ["upload", "--id", draft, "--storage", scheme_url + "/other"],
        *[["upload", "--id", draft, "--storage", u] for u in cred],
        ["close", "--id", draft],
        *[["close", "--id", draft, "--storage", u] for u in cred],
        ["sync", "--id", draft, "--folder", str(folder), "--skip-close"],
        ["sync", "--project", "canary", "--name", "synced", "--folder", str(folder), "--storage", scheme_url],
        *[["create", "--project", "canary", "--name", "bad", "--storage", u] for u in cred],
        ["list", "--id", final],
        ["search", "--not-only-completed"],
        ["verify", "--id", final],
        ["verify", "--id", final, "--filesize"],
        ["verify", "--id", final, "--folder", str(folder)],
        ["get", "--id", final],
        ["get", "--id", final, "--copy", str(out)],
        ["compare", "--source", final, "--target", final],
        ["squash", "--name", "sq", "--ids", final, "--storage", scheme_url],
        *[["squash", "--name", "sq2", "--ids", final, "--storage", u] for u in cred],
        ["set-description", "--id", final, "--description", "d"],
        ["publish", "--id", final],
        ["rename", "--project", "canary", "--name", "fin", "--new-name", "fin2"],
        ["move", "--project", "canary", "--name", "fin2", "--new-project", "canary2"],
        ["gc", "--storage", scheme_url, "--min-age", "0", "--delete"],
        ["catalog", "rebuild", "--storage", scheme_url],
        *[["catalog", "rebuild", "--storage", u] for u in cred],
        ["get", "--storage", scheme_url, "--id", "0" * 32],
        ["cache"],
        ["plugins"],
        ["doctor"],
        ["delete", "--id", final, "--force"],
        ["delete", "--id", draft],
    ]


def _final_in(env, scheme_url: str, folder: Path) -> str:
    """A final version made in folder storage, then pointed (catalog rows) at ``scheme_url``."""
    assert run_cli("create", "--project", "canary", "--name", "fin").code == 0
    fid = run_cli("--json", "search", "--not-only-completed").json["data"][-1]["id"]
    assert run_cli("add", "--id", fid, "--files", str(folder)).code == 0
    assert run_cli("close", "--id", fid).code == 0
    reset_services()
    with sqlite3.connect(env.catalog) as db:
        (storage,) = db.execute("SELECT storage FROM datasets WHERE id = ?", [fid]).fetchone()
        db.execute("UPDATE datasets SET storage = ? WHERE id = ?", [scheme_url, fid])
        db.execute("UPDATE objects SET storage = ? WHERE storage = ?", [scheme_url, storage])
    db.close()
    return fid


def _draft_in(env, scheme_url: str) -> str:
    """A draft whose storage is ``scheme_url``, where nothing may answer: made in folder
    storage, then pointed at it (``create --storage`` would refuse a storage it cannot write)."""
    created = run_cli("--json", "create", "--project", "canary", "--name", "draft")
    assert created.code == 0, created.err
    did = created.json["data"]["id"]
    reset_services()
    with sqlite3.connect(env.catalog) as db:
        db.execute("UPDATE datasets SET storage = ? WHERE id = ?", [scheme_url, did])
    db.close()
    return did


def _catalog_bytes(env) -> bytes:
    return b"".join(p.read_bytes() for p in Path(env.catalog).parent.glob(Path(env.catalog).name + "*"))


@pytest.mark.reliability
@pytest.mark.parametrize("scheme", ["s3", "gs", "azure"])
def test_no_canary_in_output_logs_or_catalog(scheme, env, canary_env, tmp_path):
    port = canary_env
    url = _scheme_urls(port)[scheme]
    folder = write_tree(tmp_path / "src", {"a.txt": "alpha", "sub/b.txt": "beta"})
    final = _final_in(env, url, folder)
    draft = _draft_in(env, url)
    handler = _Records()
    root = logging.getLogger()
    root.addHandler(handler)  # at the levels the CLI sets: --debug lowers only our own loggers
    transcript: list[str] = []
    failed = 0
    try:
        # CI: each command once, alternating text and --json; full: each command both ways
        variants = [["--verbose", "--debug"], ["--json", "--verbose", "--debug"]]
        for i, argv in enumerate(_commands(url, draft, final, folder, port)):
            for flags in (variants + variants)[i % 2 : i % 2 + reliability_count(1, 2)]:
                r = run_cli(*flags, *argv)
                failed += r.code != 0
                transcript += [r.out, r.err]
                assert "Traceback" not in r.err, (argv, r.err)
    finally:
        root.removeHandler(handler)
        reset_services()
    assert failed > 0  # the dead port was really tried
    places = {
        "output": "\n".join(transcript),
        "logs": "\n".join(handler.lines),
        "catalog": _catalog_bytes(env).decode("latin-1"),
    }
    hits = {where: _hits(text) for where, text in places.items()}
    if any(hits.values()):
        for where, text in places.items():
            for line in text.splitlines():
                if _hits(line):
                    print("HIT", where, line[:300])
    report_figures(
        "secrets",
        scheme=scheme,
        canaries=len(CANARIES),
        commands=len(transcript) // 2,
        hits=sum(len(h) for h in hits.values()),
    )
    assert hits == {"output": [], "logs": [], "catalog": []}


_CHILD = """
import json, sys
from clearml_data.cli import main
for argv in json.loads(sys.argv[1]):
    print("exit", main(["--verbose", "--debug", *argv]), file=sys.stderr)
"""


@pytest.mark.reliability
@pytest.mark.parametrize("scheme", ["s3", "gs", "azure"])
def test_no_canary_from_a_subprocess(scheme, env, canary_env, tmp_path):
    """The commands again in a real process: its own logging set-up, real stdout and stderr,
    and anything a thread or interpreter shutdown might print."""
    port = canary_env
    url = _scheme_urls(port)[scheme]
    folder = write_tree(tmp_path / "src", {"a.txt": "alpha", "sub/b.txt": "beta"})
    final = _final_in(env, url, folder)
    draft = _draft_in(env, url)
    commands = _commands(url, draft, final, folder, port)
    if reliability_count(1, 2) == 1:  # CI: the commands that talk to the storage
        commands = [c for c in commands if c[0] in ("add", "upload", "close", "get", "verify", "create")]
    p = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Traceback" not in p.stderr, p.stderr[-2000:]
    codes = [line for line in p.stderr.splitlines() if line.startswith("exit ")]
    assert len(codes) == len(commands) and "exit 1" in codes
    text = p.stdout + p.stderr + _catalog_bytes(env).decode("latin-1")
    hits = _hits(text)
    report_figures(
        "secrets",
        scheme=scheme,
        process="subprocess",
        canaries=len(CANARIES),
        commands=len(commands),
        hits=len(hits),
    )
    assert hits == []


# -- every credential channel, against dead and live loopback servers -------------------------
#
# Each case puts canaries into one variable a plugin reads (an endpoint URL with user:password@
# or a signed query string, a connection string, a key or token variable, a credentials file)
# and aims the plugin at a loopback port: one where nothing listens, or a real emulator (moto,
# fake-gcs-server, Azurite) that answers with its own errors. Every driver primitive and a
# share of the commands (all of them with CLEARML_DATA_RELIABILITY=full) then run; no canary
# may show up in an exception text, the output, a log record or the catalog.

LIVE = ("dead", "live")


def _channels(scheme: str, port: int, tmp_path: Path) -> dict[str, tuple[str, dict[str, str | None]]]:
    """{channel: (storage URL, variables to set (None: unset))} of one plugin."""
    pw, sig, tok = CANARIES["url_password"], CANARIES["url_sig"], CANARIES["url_token"]
    at = f"127.0.0.1:{port}"
    if scheme == "s3":
        return {
            "AWS_ENDPOINT_URL userinfo": (
                "s3://canary-bucket/data",
                {"AWS_ENDPOINT_URL": f"http://AKIAX:{pw}@{at}"},
            ),
            "AWS_ENDPOINT_URL_S3 userinfo": (
                "s3://canary-bucket/data",
                {"AWS_ENDPOINT_URL_S3": f"http://AKIAX:{pw}@{at}"},
            ),
            "AWS_ENDPOINT_URL_S3 query": (
                "s3://canary-bucket/data",
                {"AWS_ENDPOINT_URL_S3": f"http://{at}/?X-Amz-Security-Token={tok}&X-Amz-Signature={sig}"},
            ),
            "AWS_ENDPOINT_URL query": (
                "s3://canary-bucket/data",
                {"AWS_ENDPOINT_URL": f"http://{at}/?token={tok}&sig={sig}"},
            ),
            "AWS keys and session token": (
                f"s3://{at}/canary-bucket/data",
                {"CLEARML_DATA_S3_SECURE": "false"},
            ),
            "CLEARML_DATA_S3_ENDPOINT_URL query": (
                "s3://canary-bucket/data",
                {"CLEARML_DATA_S3_ENDPOINT_URL": f"http://{at}/?sig={sig}"},
            ),
            "CLEARML_DATA_S3_ENDPOINT_URL userinfo": (
                "s3://canary-bucket/data",
                {"CLEARML_DATA_S3_ENDPOINT_URL": f"http://AKIAX:{pw}@{at}"},
            ),
        }
    if scheme == "gs":
        return {
            "STORAGE_EMULATOR_HOST userinfo": (
                "gs://canary-bucket/data",
                {"STORAGE_EMULATOR_HOST": f"http://user:{pw}@{at}", "CLEARML_DATA_GCS_ENDPOINT": None},
            ),
            "STORAGE_EMULATOR_HOST query": (
                "gs://canary-bucket/data",
                {"STORAGE_EMULATOR_HOST": f"http://{at}/?token={tok}", "CLEARML_DATA_GCS_ENDPOINT": None},
            ),
            "CLEARML_DATA_GCS_ENDPOINT userinfo": (
                "gs://canary-bucket/data",
                {"CLEARML_DATA_GCS_ENDPOINT": f"http://user:{pw}@{at}"},
            ),
            "service-account JSON": (
                "gs://canary-bucket/data",
                {"CLEARML_DATA_GCS_ENDPOINT": f"http://{at}"},
            ),
        }
    key = CANARIES["azure_key"]
    return {
        "connection string AccountKey": (
            "azure://canaryacct/canary-container/data",
            {
                "AZURE_STORAGE_CONNECTION_STRING": f"DefaultEndpointsProtocol=http;AccountName=canaryacct;"
                f"AccountKey={key};BlobEndpoint=http://{at}/canaryacct;"
            },
        ),
        "connection string SharedAccessSignature": (
            "azure://canaryacct/canary-container/data",
            {
                "AZURE_STORAGE_CONNECTION_STRING": f"BlobEndpoint=http://{at}/canaryacct;"
                f"SharedAccessSignature=sv=2024-01-01&sr=c&sig={sig}"
            },
        ),
        "connection string endpoint userinfo": (
            "azure://canaryacct/canary-container/data",
            {
                "AZURE_STORAGE_CONNECTION_STRING": f"DefaultEndpointsProtocol=http;AccountName=canaryacct;"
                f"AccountKey={key};BlobEndpoint=http://user:{pw}@{at}/canaryacct;"
            },
        ),
        "AZURE_STORAGE_SAS_TOKEN": (
            "azure://canaryacct/canary-container/data",
            {
                "AZURE_STORAGE_CONNECTION_STRING": None,
                "CLEARML_DATA_AZURE_ACCOUNT_URL": f"http://{at}/canaryacct",
            },
        ),
        "AZURE_STORAGE_KEY": (
            "azure://canaryacct/canary-container/data",
            {
                "AZURE_STORAGE_CONNECTION_STRING": None,
                "AZURE_STORAGE_SAS_TOKEN": None,
                "AZURE_STORAGE_ACCOUNT": "canaryacct",
                "AZURE_STORAGE_KEY": key,
                "CLEARML_DATA_AZURE_ACCOUNT_URL": f"http://{at}/canaryacct",
            },
        ),
        "account URL userinfo": (
            "azure://canaryacct/canary-container/data",
            {
                "AZURE_STORAGE_CONNECTION_STRING": None,
                "CLEARML_DATA_AZURE_ACCOUNT_URL": f"http://user:{pw}@{at}/canaryacct",
            },
        ),
        "SAS token in the URL": (
            f"azure://canaryacct/canary-container/data?sv=2024&sig={sig}",
            {
                "AZURE_STORAGE_CONNECTION_STRING": None,
                "CLEARML_DATA_AZURE_ACCOUNT_URL": f"http://{at}/canaryacct",
            },
        ),
    }


CHANNEL_CASES = [(scheme, name) for scheme in ("s3", "gs", "azure") for name in _channels(scheme, 1, Path())]
#: full: every channel against a dead port and a live server; CI: each channel against one of
#: them, alternating, so that every plugin meets both
CHANNEL_PARAMS = [
    (scheme, name, where)
    for i, (scheme, name) in enumerate(CHANNEL_CASES)
    for where in LIVE
    if reliability_count(0, 1) or where == LIVE[i % 2]
]


_servers: dict[str, object] = {}


def _live_server(scheme: str, tmp_path_factory):
    """A real emulator of the scheme on loopback, started once per test module."""
    from clearml_data.testing.servers import emulator

    if scheme not in _servers:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["AZURITE_ACCOUNTS"] = f"canaryacct:{CANARIES['azure_key']}"
        _servers[scheme] = emulator(scheme, tmp_path_factory.mktemp(f"live-{scheme}"), env=env)
        _make_bucket(scheme, _servers[scheme].url)
    return _servers[scheme]


def _make_bucket(scheme: str, url: str) -> None:
    """canary-bucket (canary-container) on the live server, so that calls can also succeed."""
    if scheme == "s3":
        import boto3

        boto3.session.Session(
            aws_access_key_id="x", aws_secret_access_key="y", region_name="us-east-1"
        ).client("s3", endpoint_url=url).create_bucket(Bucket="canary-bucket")
    elif scheme == "gs":
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        storage.Client(
            project="p", credentials=AnonymousCredentials(), client_options={"api_endpoint": url}
        ).create_bucket("canary-bucket")
    else:
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient(
            f"{url}/canaryacct",
            credential={"account_name": "canaryacct", "account_key": CANARIES["azure_key"]},
        ).create_container("canary-container")


@pytest.fixture(scope="module", autouse=True)
def _stop_live_servers():
    yield
    for server in _servers.values():
        server.stop()
    _servers.clear()


def _channel_env(scheme, name, where, canary_env, tmp_path, tmp_path_factory, monkeypatch) -> str:
    port = canary_env if where == "dead" else _live_server(scheme, tmp_path_factory).port
    url, values = _channels(scheme, port, tmp_path)[name]
    for var, value in values.items():
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, value)
    return url


def _driver_errors(scheme: str, url: str, tmp_path: Path) -> list[str]:
    """Every primitive of the plugin's driver on ``url``: the text of each error it raised."""
    from clearml_data.storage import PluginManager

    src = tmp_path / "driver-src"
    src.write_bytes(b"x" * 1000)
    texts: list[str] = []
    try:
        driver = PluginManager().driver(url)
    except Exception as exc:  # refused: a URL or variable that holds a credential
        return [f"{type(exc).__name__}: {exc} {exc!r}"]
    calls = [
        lambda: driver.put_file(str(src), "objects/ab/abc"),
        lambda: driver.put_file(str(src), "objects/ab/abd", overwrite=False),
        lambda: driver.get_file("objects/ab/abc", str(tmp_path / "driver-out")),
        lambda: driver.read_range("objects/ab/abc", 0, 10),
        lambda: driver.stat("objects/ab/abc"),
        lambda: list(driver.list("objects/")),
        lambda: driver.delete("objects/ab/abc"),
        lambda: driver.exists("objects/ab/abc"),
        lambda: list(driver.list_unfinished("objects/")),
        lambda: repr(driver),
    ]
    try:
        for call in calls:
            try:
                texts.append(str(call()))
            except Exception as exc:
                texts.append(f"{type(exc).__name__}: {exc} {exc!r} {getattr(exc, 'filename', '')}")
    finally:
        driver.close()
    return texts


@pytest.mark.reliability
@pytest.mark.parametrize(
    "scheme,name,where", CHANNEL_PARAMS, ids=[f"{s}-{n}-{w}" for s, n, w in CHANNEL_PARAMS]
)
def test_no_canary_from_any_credential_channel(
    scheme, name, where, env, canary_env, tmp_path, tmp_path_factory, monkeypatch
):
    url = _channel_env(scheme, name, where, canary_env, tmp_path, tmp_path_factory, monkeypatch)
    port = canary_env  # the credential-bearing storage URLs of the commands point at the dead port
    folder = write_tree(tmp_path / "src", {"a.txt": "alpha", "sub/b.txt": "beta"})
    handler = _Records()
    root = logging.getLogger()
    root.addHandler(handler)
    transcript: list[str] = []
    raised: list[str] = []
    failed = 0
    try:
        transcript += _driver_errors(scheme, url, tmp_path)
        plain = url.split("?", 1)[0]  # a URL that carries a credential is refused, never stored
        final = _final_in(env, plain, folder)
        created = run_cli("--json", "create", "--project", "canary", "--name", "draft", "--storage", url)
        draft = created.json["data"]["id"] if created.code == 0 else _draft_in(env, plain)
        transcript += [created.out, created.err]
        commands = _commands(plain, draft, final, folder, port)
        case = CHANNEL_CASES.index((scheme, name)) * 2 + LIVE.index(where)
        step = reliability_count(18, 1)  # CI: every 18th command, a different share for each case
        for argv in commands[case % step :: step]:
            try:
                r = run_cli("--verbose", "--debug", *(["--json"] if case % 2 else []), *argv)
            except Exception as exc:  # --debug lets an unexpected error through: its text counts too
                raised.append(argv[0])
                failed += 1
                transcript.append("".join(traceback.format_exception(exc)))
                continue
            failed += r.code != 0
            transcript += [r.out, r.err]
            assert "Traceback" not in r.err, (argv, r.err)
    finally:
        root.removeHandler(handler)
        reset_services()
    places = {
        "output": "\n".join(transcript),
        "logs": "\n".join(handler.lines),
        "catalog": _catalog_bytes(env).decode("latin-1"),
    }
    hits = {where_: _hits(text) for where_, text in places.items()}
    for where_, text in places.items():
        for line in text.splitlines():
            if _hits(line):
                print("HIT", where_, line[:400])
    report_figures(
        "secrets",
        scheme=scheme,
        channel=name,
        server=where,
        canaries=len(CANARIES),
        outputs=len(transcript),
        failed=failed,
        raised=len(raised),
        hits=sum(len(h) for h in hits.values()),
    )
    assert failed > 0
    assert hits == {"output": [], "logs": [], "catalog": []}


# -- the scrubber itself, and the CLI's last line of defence ----------------------------------
def _shapes(secret: str) -> dict[str, str]:
    """Texts an SDK or a server might build around a secret."""
    from urllib.parse import quote

    return {
        "endpoint userinfo": f'Could not connect to the endpoint URL: "http://AKIAX:{secret}@127.0.0.1:9/b/k"',
        "encoded userinfo": f"http://user:{quote(secret, safe='')}@127.0.0.1:9/b",
        "userinfo without scheme": f"HTTPConnectionPool(host='u:{secret}@127.0.0.1', port=9)",
        "signed query": f"GET /c/b?sv=2024-01-01&se=2030&sig={secret}&sp=r HTTP/1.1",
        "amz query": f"/b/k?X-Amz-Credential=x&X-Amz-Signature={secret}&X-Amz-Security-Token={secret}",
        "token query": f"https://h/upload?upload_id={secret}&token={secret}",
        "connection string": f"DefaultEndpointsProtocol=http;AccountName=a;AccountKey={secret};BlobEndpoint=x",
        "sas pair": f"BlobEndpoint=http://h/a;SharedAccessSignature=sv=1&sig={secret}",
        "json field": f'{{"error": "invalid_grant", "refresh_token": "{secret}", "client_secret": "{secret}"}}',
        "authorization header": f"Authorization: Bearer {secret}",
        "sigv4 header": f"Authorization: AWS4-HMAC-SHA256 Credential=AKIAX/2024, Signature={secret}",
        "bearer": f"token rejected: Bearer {secret}",
        "pem": f"-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----",
    }


@pytest.mark.reliability
@pytest.mark.parametrize("known", [True, False], ids=["value-known", "shape-only"])
def test_scrubber_family(known, canary_env, monkeypatch):
    """Every canary in every shape: gone, whether its value is known (it sits in a credential
    variable) or only its shape gives it away. A bare value in prose goes only when known."""
    from clearml_data.storage.scrub import scrub

    if not known:
        for var in list(os.environ):
            if (
                var.startswith(("AWS_", "AZURE_", "GOOGLE_", "CLEARML_DATA_"))
                or var == "STORAGE_EMULATOR_HOST"
            ):
                monkeypatch.delenv(var)
    else:
        monkeypatch.setenv(
            "AWS_ENDPOINT_URL_S3",
            f"http://u:{CANARIES['url_password']}@127.0.0.1:9/?"
            f"sig={CANARIES['url_sig']}&token={CANARIES['url_token']}",
        )
    tried = 0
    missed = []
    for name, value in CANARIES.items():
        if known and name in ("gcs_path",):  # a path, not a secret: shown in messages on purpose
            continue
        texts = dict(_shapes(value))
        if "/" in value:  # a URL's userinfo holds no raw slash: only its encoded form is real
            del texts["endpoint userinfo"], texts["userinfo without scheme"]
        if known and name not in ("gcs_private_key",):
            texts["bare"] = f"unexpected answer {value} from the server"
        for shape, text in texts.items():
            tried += 1
            out = scrub(text)
            if value in out:
                missed.append((name, shape, out))
    report_figures("secrets", scrubber="known values" if known else "shapes", texts=tried, missed=len(missed))
    assert missed == []


_LOGGING_CHILD = """
import logging, sys
from clearml_data.cli import main
main(["--verbose", "--debug", "plugins"])          # the CLI's logging set-up, as in any command
for name, text in [("urllib3.connectionpool", sys.argv[1]), ("botocore.endpoint", sys.argv[2]),
                   ("clearml_data_s3.driver", sys.argv[3])]:
    logging.getLogger(name).warning("retrying after %s", text)
try:
    raise OSError(5, "failed: " + sys.argv[1])
except OSError:
    logging.getLogger("azure.core.pipeline").error("request failed", exc_info=True)
"""


@pytest.mark.reliability
def test_cli_log_handler_and_error_line_scrub(env, canary_env, monkeypatch):
    """What slips past a plugin still never reaches the terminal: the CLI's log handler and
    its final error line pass through the scrubber."""
    pw, sig = CANARIES["url_password"], CANARIES["url_sig"]
    texts = [
        f"http://u:{pw}@127.0.0.1:9/b?sig={sig}",
        f"AccountKey={CANARIES['azure_key']};",
        f"key {CANARIES['aws_secret']} refused",
    ]
    p = subprocess.run(
        [sys.executable, "-c", _LOGGING_CHILD, *texts],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "retrying after" in p.stderr and "request failed" in p.stderr
    log_hits = _hits(p.stdout + p.stderr)

    import importlib

    cli_main = importlib.import_module("clearml_data.cli.main")

    def leaky(ctx):
        raise OSError(5, f"cannot reach http://u:{pw}@127.0.0.1:9 (secret {CANARIES['aws_secret']})")

    monkeypatch.setitem(cli_main.COMMANDS, "doctor", leaky)
    outputs = [run_cli("doctor"), run_cli("--json", "doctor")]
    assert all(r.code == 1 for r in outputs)
    line_hits = _hits("".join(r.out + r.err for r in outputs))
    report_figures("secrets", log_records=4, error_lines=2, hits=len(log_hits) + len(line_hits))
    assert log_hits == [] and line_hits == []
