"""Fixtures for the azure:// driver tests: a real Azurite blob server on 127.0.0.1.

Azurite 3.35.0 comes from npm (the repository root's package.json / package-lock.json,
installed with ``npm ci``); it is run as ``node .../azurite/dist/src/blob/main.js``, never
through npx. Set ``AZURITE_MAIN`` to use another main.js. Nothing but 127.0.0.1 is
contacted: the well-known development account is set explicitly, azure-identity is
switched off, and loopback is kept off any HTTP proxy.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from clearml_data.testing import isolate, reset_services, run_cli
from clearml_data.storage.testserver import LoopbackServer, keep_loopback_off_proxies, unavailable, unique_name

HERE = Path(__file__).resolve().parent
AZURITE_VERSION = "3.35.0"
#: Azurite's published development account (a well-known value, not a secret)
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
HOST = f"{ACCOUNT}.blob.core.windows.net"

#: environment variables that could point the driver anywhere but the test server
_FOREIGN_ENV = (
    "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN", "CLEARML_DATA_AZURE_ACCOUNT_URL", "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST",
    "IDENTITY_ENDPOINT", "MSI_ENDPOINT",
)

keep_loopback_off_proxies()


def azurite_main() -> Path | None:
    """Azurite's blob main.js: $AZURITE_MAIN, else node_modules in the repository root above us."""
    env = os.environ.get("AZURITE_MAIN")
    if env:
        return Path(env) if Path(env).is_file() else None
    for base in (HERE, *HERE.parents):
        candidate = base / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
        if candidate.is_file():
            return candidate
        if (base / ".git").exists() or (base / "tox.ini").is_file():
            break  # the repository root: do not wander into other projects
    return None


def azurite_version(main_js: Path) -> str:
    try:
        pkg = main_js.parents[3] / "package.json"
        return json.loads(pkg.read_text())["version"]
    except (OSError, ValueError, KeyError, IndexError):
        return "?"


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """A running Azurite blob service on 127.0.0.1 for the whole session."""
    main_js, node = azurite_main(), shutil.which("node")
    if main_js is None:
        unavailable("Azurite not found: run `npm ci` in the repository root (package.json pins "
                    f"azurite {AZURITE_VERSION}) or set AZURITE_MAIN")
    if node is None:
        unavailable("node is not on PATH (needed to run Azurite)")
    workdir = tmp_path_factory.mktemp("azurite")
    data = workdir / "data"
    argv = lambda port: [  # noqa: E731
        node, str(main_js), "--blobHost", "127.0.0.1", "--blobPort", str(port),
        "--location", str(data), "--silent", "--loose",
        "--disableTelemetry",     # Azurite reports usage off the machine otherwise
        "--skipApiVersionCheck",  # the SDK speaks a newer x-ms-version than Azurite 3.35 knows
    ]
    server = LoopbackServer("azurite", argv, probe_path=f"/{ACCOUNT}?comp=list", workdir=workdir)
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        unavailable(f"Azurite ({main_js}) did not start: {exc}")
    server.version = azurite_version(main_js)
    yield server
    server.stop()
    shutil.rmtree(data, ignore_errors=True)  # hundreds of MiB of test blobs


def connection_string(server_url: str, key: str = ACCOUNT_KEY) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};"
            f"BlobEndpoint={server_url}/{ACCOUNT};")


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
def make_driver(azure_env):
    """make(url, **options) -> an AzureBlobDriver, closed at teardown."""
    from clearml_data_azure.driver import AzureBlobDriver

    made = []

    def make(url: str, **options):
        driver = AzureBlobDriver(url, **options)
        made.append(driver)
        return driver

    yield make
    for driver in made:
        driver.close()


# -- the core's environment, as tests/conftest.py sets it up -----------------------------------
@pytest.fixture
def core_env(tmp_path, monkeypatch):
    """Own catalog, default storage, cache, state and config for one test; services closed after."""
    e = isolate(tmp_path / "clearml-data-env", monkeypatch)
    yield e
    reset_services()


@pytest.fixture
def cli(core_env):
    """Run ``clearml-data`` in-process: cli("add", "--files", "x") -> CliResult."""
    return run_cli


# -- a fault-injecting proxy in front of Azurite -------------------------------------------------
class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of Azurite that can damage or refuse traffic.

    ``mode``: None (pass through), "flip-request" (flip one bit in each PUT body over 100
    bytes), "flip-response" (flip one bit in each blob GET body over 100 bytes).
    ``fail_next``: answer that many requests with 503 Server Busy without forwarding them.
    """

    def __init__(self, target_port: int):
        import http.client
        import http.server
        import threading

        self.target_port = target_port
        self.mode: str | None = None
        self.fail_next = 0
        self.failed = 0
        self.requests: list[tuple[str, str, dict]] = []
        lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with lock:
                    proxy.requests.append((self.command, self.path, dict(self.headers.items())))
                    refuse = proxy.fail_next > 0
                    if refuse:
                        proxy.fail_next -= 1
                        proxy.failed += 1
                if refuse:
                    msg = b"<?xml version='1.0'?><Error><Code>ServerBusy</Code><Message>busy</Message></Error>"
                    self.send_response(503, "Server Busy")
                    self.send_header("x-ms-error-code", "ServerBusy")
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(msg)
                    return
                if proxy.mode == "flip-request" and self.command == "PUT" and len(body) > 100:
                    body = _flip(body)
                conn = http.client.HTTPConnection("127.0.0.1", proxy.target_port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body if (body or self.command == "PUT") else None,
                             headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if (proxy.mode == "flip-response" and self.command == "GET" and resp.status in (200, 206)
                        and "comp=" not in self.path and len(data) > 100):
                    data = _flip(data)
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "keep-alive"):
                        self.send_header(k, v)
                self.send_header("Content-Length", resp.getheader("Content-Length", "0")
                                 if self.command == "HEAD" else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="fault-proxy", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def _flip(data: bytes) -> bytes:
    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 0x01
    return bytes(damaged)


@pytest.fixture
def fault_proxy(azurite, azure_env):
    """A FaultProxy in front of Azurite; ``.connection_string`` reaches Azurite through it."""
    proxy = FaultProxy(azurite.port)
    proxy.connection_string = connection_string(proxy.url)
    yield proxy
    proxy.close()
