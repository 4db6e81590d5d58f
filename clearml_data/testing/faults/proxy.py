"""A fault-injecting HTTP proxy on 127.0.0.1, for testing storage drivers against real servers.

Put it in front of a test server (moto, fake-gcs-server, Azurite, ...) and point the SDK's
endpoint at ``proxy.url``; then tell it which requests to damage::

    with FaultProxy(server.url) as proxy:
        proxy.inject(Fault.http(503), method="PUT", times=2)     # two 503s, then pass
        proxy.inject(Fault.cut_response(after=1000), method="GET")  # body cut after 1000 bytes
        proxy.inject(Fault.cut_request(after=500), method="PUT")    # upload cut after 500 bytes
        proxy.inject(Fault.stall(seconds=5), path=r"alt=media")     # no bytes for 5 s
        proxy.random_faults(0.2, [Fault.http(500), Fault.cut_response(64)], seed=7)
        proxy.inject(Fault.flip_response(), method="GET", times=None)  # every download damaged

Rules are checked in the order they were added; the first one that matches a request and
has budget left decides its fault. ``proxy.log`` lists every request with the fault it got
(and its headers) and ``proxy.injected`` counts the faults. Each client connection gets its own upstream
connection, kept alive as long as the client keeps its own. Only loopback is ever used.

Faults:

- ``status``: answer with that HTTP status (500, 503, ...) without forwarding the request
  (its body is read and dropped first, so the client sees the answer, not a reset).
- ``cut_request``: forward the request head and ``after`` bytes of its body, then close both
  connections: the server sees a truncated upload, the client a dropped connection.
- ``cut_response``: forward the request, then only the response head and ``after`` bytes of
  its body (at most all but its last byte), then close the client's connection. An answer
  without a body (a PUT's 200) is dropped whole: the server acted, the client never hears.
- ``stall``: forward the request and ``after`` bytes of the response body (at most all but
  its last byte; none of a bodiless answer), then send nothing for ``seconds`` (longer than
  the client's read timeout) and close.
- ``flip_request`` / ``flip_response``: forward the request and its answer whole, with one
  bit inverted in the middle byte of the request body (an upload damaged on the way) or of a
  200 or 206 answer's body (a download damaged on the way). Only a body framed by
  Content-Length and at least ``min_size`` bytes long is damaged; any other passes
  untouched, and is then neither logged nor counted as a fault, nor uses up the rule.
"""

from __future__ import annotations

import random
import re
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"
_BUF = 64 * 1024
_MAX_HEAD = 64 * 1024
KINDS = ("status", "cut_request", "cut_response", "stall", "flip_request", "flip_response")


@dataclass(frozen=True)
class Fault:
    """One kind of damage done to one request."""

    kind: str
    status: int = 503
    after: int = 0  #: body bytes let through before a cut or stall
    seconds: float = 30.0  #: length of a stall
    min_size: int = 1  #: the shortest body a flip damages

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (one of {', '.join(KINDS)})")
        if self.after < 0 or self.seconds < 0:
            raise ValueError("after and seconds must not be negative")
        if self.min_size < 1:
            raise ValueError("min_size must be at least 1 (a flip needs a byte to damage)")

    @classmethod
    def http(cls, status: int = 503) -> Fault:
        return cls("status", status=status)

    @classmethod
    def cut_request(cls, after: int = 0) -> Fault:
        return cls("cut_request", after=after)

    @classmethod
    def cut_response(cls, after: int = 0) -> Fault:
        return cls("cut_response", after=after)

    @classmethod
    def stall(cls, seconds: float = 30.0, after: int = 0) -> Fault:
        return cls("stall", seconds=seconds, after=after)

    @classmethod
    def flip_request(cls, min_size: int = 1) -> Fault:
        return cls("flip_request", min_size=min_size)

    @classmethod
    def flip_response(cls, min_size: int = 1) -> Fault:
        return cls("flip_response", min_size=min_size)

    def __str__(self) -> str:
        if self.kind == "status":
            return f"HTTP {self.status}"
        if self.kind.startswith("flip_"):
            return f"{self.kind.replace('_', ' ')} bit (bodies of {self.min_size} B and more)"
        if self.kind == "stall":
            return f"stall {self.seconds:g} s after {self.after} B"
        return f"{self.kind.replace('_', ' ')} after {self.after} B"


@dataclass
class Rule:
    """Which requests get ``fault``: method and path are regular expressions (searched)."""

    fault: Fault
    method: str | None = None
    path: str | None = None
    times: int | None = 1  #: how many matching requests are hit; None: every one
    skip: int = 0  #: matching requests let through before the first hit
    probability: float = 1.0  #: chance that a matching request is hit (see ``seed``)
    seed: int | None = None
    hits: int = 0
    seen: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self):
        self._rng = random.Random(self.seed)

    def matches(self, method: str, target: str) -> bool:
        if self.method and not re.fullmatch(self.method, method, re.IGNORECASE):
            return False
        return not (self.path and not re.search(self.path, target))

    def take(self, method: str, target: str) -> bool:
        """Does this rule hit the request (and use up one of its ``times``)?"""
        if not self.matches(method, target):
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        self.seen += 1
        if self.seen <= self.skip:
            return False
        if self.probability < 1.0 and self._rng.random() >= self.probability:
            return False
        self.hits += 1
        return True

    @property
    def spent(self) -> bool:
        return self.times is not None and self.hits >= self.times


@dataclass
class LogEntry:
    method: str
    target: str
    fault: Fault | None
    #: the request's headers, names in lower case
    headers: dict[str, str] = field(default_factory=dict)


class _Closed(Exception):
    """The client or the server closed its connection."""


class _Conn:
    """A socket with a read buffer, for parsing HTTP/1.1 message framing."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def fill(self) -> None:
        data = self.sock.recv(_BUF)
        if not data:
            raise _Closed()
        self.buf += data

    def read_head(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > _MAX_HEAD:
                raise _Closed()
            self.fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return head + b"\r\n\r\n"

    def read_some(self, limit: int | None = None) -> bytes:
        if not self.buf:
            self.fill()
        n = len(self.buf) if limit is None else min(limit, len(self.buf))
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self.fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"


def _headers(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    values: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, _, v = line.partition(":")
            values[k.strip().lower()] = v.strip()
    return lines[0], values


def _body_frames(conn: _Conn, headers: dict[str, str], until_close: bool):
    """Yield the raw bytes of a message body as they arrive (framing kept as sent)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            line = conn.read_line()
            yield line
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    trailer = conn.read_line()
                    yield trailer
                    if trailer == b"\r\n":
                        return
            left = size + 2
            while left:
                data = conn.read_some(left)
                left -= len(data)
                yield data
        return
    if "content-length" in headers:
        left = int(headers["content-length"])
        while left:
            data = conn.read_some(left)
            left -= len(data)
            yield data
        return
    if until_close:
        while True:
            try:
                data = conn.read_some()
            except _Closed:
                return
            yield data


def _flip_offset(headers: dict[str, str], fault: Fault) -> int | None:
    """Where a flip damages this message's body: its middle byte, if it has one to damage."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return None
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        return None
    return length // 2 if length >= fault.min_size else None


def _flipped(data: bytes, at: int) -> bytes:
    damaged = bytearray(data)
    damaged[at] ^= 0x01
    return bytes(damaged)


def _send(sock: socket.socket, data: bytes) -> None:
    if data:
        sock.sendall(data)


def _close(sock: socket.socket | None, reset: bool = False) -> None:
    if sock is None:
        return
    try:
        if reset:  # RST instead of FIN: the peer sees "connection reset"
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        else:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class FaultProxy:
    """An HTTP/1.1 proxy on 127.0.0.1 in front of ``upstream`` that injects faults by rule."""

    def __init__(self, upstream: str, timeout: float = 120.0):
        parts = urlsplit(upstream if "://" in upstream else f"http://{upstream}")
        if parts.scheme != "http" or parts.hostname not in (LOOPBACK, "localhost"):
            raise ValueError(f"the fault proxy forwards plain http to loopback only, not {upstream!r}")
        self.upstream = (LOOPBACK, parts.port or 80)
        self.timeout = timeout
        self.rules: list[Rule] = []
        self.log: list[LogEntry] = []
        self.injected: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    # -- rules -----------------------------------------------------------------------------
    def inject(
        self,
        fault: Fault,
        method: str | None = None,
        path: str | None = None,
        times: int | None = 1,
        skip: int = 0,
    ) -> Rule:
        """Hit the next ``times`` matching requests (after ``skip``) with ``fault``."""
        rule = Rule(fault, method, path, times, skip)
        with self._lock:
            self.rules.append(rule)
        return rule

    def random_faults(
        self,
        probability: float,
        faults: list[Fault],
        seed: int | None = None,
        method: str | None = None,
        path: str | None = None,
        limit: int | None = None,
    ) -> list[Rule]:
        """Hit each matching request with probability ``probability``, with one of ``faults``
        chosen at random (reproducible with ``seed``); at most ``limit`` hits in all."""
        rng = random.Random(seed)
        share = probability / max(1, len(faults))
        rules = []
        for i, fault in enumerate(faults):
            # each rule sees only what the earlier ones let through: scale so the shares match
            p = share / max(1e-9, 1 - share * i)
            rules.append(
                Rule(fault, method, path, times=None, probability=min(1.0, p), seed=rng.randrange(2**32))
            )
        with self._lock:
            self.rules.extend(rules)
            self._limit = limit
        return rules

    def clear(self) -> None:
        """Drop every rule; faults injected so far stay counted."""
        with self._lock:
            self.rules.clear()
            self._limit = None

    _limit: int | None = None

    @property
    def total_injected(self) -> int:
        return sum(self.injected.values())

    def _choose(
        self, method: str, target: str, headers: dict[str, str]
    ) -> tuple[Fault | None, Callable[[], None]]:
        """The fault for this request, and a function that takes it back (a flip that found
        no body to damage)."""
        with self._lock:
            fault, chosen = None, None
            if self._limit is None or self.total_injected < self._limit:
                for rule in self.rules:
                    if rule.take(method, target):
                        fault, chosen = rule.fault, rule
                        break
            if fault is not None:
                self.injected[fault.kind] += 1
            entry = LogEntry(method, target, fault, headers)
            self.log.append(entry)

        def spare() -> None:
            with self._lock:
                if chosen is None or entry.fault is None:
                    return
                chosen.hits -= 1
                self.injected[entry.fault.kind] -= 1
                if not self.injected[entry.fault.kind]:
                    del self.injected[entry.fault.kind]
                entry.fault = None

        return fault, spare

    # -- running ---------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, 0))
        listener.listen(128)
        self._listener = listener
        self.port = listener.getsockname()[1]
        thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Close the listener and every connection (stalls end at once)."""
        self._stop.set()
        _close(self._listener)
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            _close(sock)
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _track(self, sock: socket.socket | None, add: bool = True) -> None:
        if sock is None:
            return
        with self._lock:
            (self._socks.add if add else self._socks.discard)(sock)

    def _accept(self) -> None:
        listener = self._listener
        while listener is not None and not self._stop.is_set():
            try:
                client, _addr = listener.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._track(client)
            thread = threading.Thread(
                target=self._serve, args=(client,), name="fault-proxy-conn", daemon=True
            )
            thread.start()
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)

    def _serve(self, client_sock: socket.socket) -> None:
        client = _Conn(client_sock)
        upstream: _Conn | None = None
        try:
            while not self._stop.is_set():
                head = client.read_head()
                request_line, headers = _headers(head)
                method, target = [*request_line.split(" "), "", ""][:2]
                fault, spare = self._choose(method, target, headers)
                if headers.get("expect", "").lower() == "100-continue":
                    if fault is not None and fault.kind == "status":
                        self._answer(client_sock, fault.status, method, close=True)
                        return
                    # answer it here; the server gets the body without having to ask for it
                    head = re.sub(rb"(?im)^expect:[^\r\n]*\r\n", b"", head)
                    _send(client_sock, b"HTTP/1.1 100 Continue\r\n\r\n")
                if fault is not None and fault.kind == "status":
                    for _ in _body_frames(client, headers, until_close=False):
                        pass
                    close = "close" in headers.get("connection", "").lower()
                    self._answer(client_sock, fault.status, method, close=close)
                    if close:
                        return
                    continue
                if upstream is None:
                    sock = socket.create_connection(self.upstream, timeout=self.timeout)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self._track(sock)
                    upstream = _Conn(sock)
                _send(upstream.sock, head)
                budget = fault.after if fault is not None and fault.kind == "cut_request" else None
                flip_at = None
                if fault is not None and fault.kind == "flip_request":
                    flip_at = _flip_offset(headers, fault)
                    if flip_at is None:
                        spare()
                        fault = None
                offset = 0
                for data in _body_frames(client, headers, until_close=False):
                    if flip_at is not None and offset <= flip_at < offset + len(data):
                        data = _flipped(data, flip_at - offset)
                    offset += len(data)
                    if budget is not None and len(data) >= budget:
                        _send(upstream.sock, data[:budget])
                        _close(upstream.sock, reset=True)
                        _close(client_sock, reset=True)
                        return
                    if budget is not None:
                        budget -= len(data)
                    _send(upstream.sock, data)
                if budget is not None:  # a body shorter than the cut point: cut before the answer
                    _close(upstream.sock, reset=True)
                    _close(client_sock, reset=True)
                    return
                keep_client, keep_upstream = self._relay_response(upstream, client_sock, method, fault, spare)
                if not keep_upstream:
                    _close(upstream.sock)
                    self._track(upstream.sock, add=False)
                    upstream = None
                if not keep_client:
                    return
        except (_Closed, OSError, ValueError):
            pass
        finally:
            _close(client_sock)
            self._track(client_sock, add=False)
            if upstream is not None:
                _close(upstream.sock)
                self._track(upstream.sock, add=False)

    def _relay_response(
        self,
        upstream: _Conn,
        client_sock: socket.socket,
        method: str,
        fault: Fault | None,
        spare: Callable[[], None],
    ) -> tuple[bool, bool]:
        """Pass one response on (damaged as ``fault`` says).

        Returns whether the client's and the server's connections can carry another request.
        """
        while True:
            head = upstream.read_head()
            status_line, headers = _headers(head)
            status = int(status_line.split(" ")[1])
            if status >= 200 or status == 101:
                break
            _send(client_sock, head)  # an interim 1xx answer
        no_body = method.upper() == "HEAD" or status in (204, 304)
        connection = headers.get("connection", "").lower()
        closing = "close" in connection or (
            status_line.startswith("HTTP/1.0") and "keep-alive" not in connection
        )
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = int(headers.get("content-length", "-1") or -1)
        budget = flip_at = None
        if fault is not None and fault.kind == "flip_response":
            if status in (200, 206) and not no_body:
                flip_at = _flip_offset(headers, fault)
            if flip_at is None:
                spare()
        if fault is not None and fault.kind in ("cut_response", "stall"):
            if no_body or length == 0:  # nothing to cut into: the client never gets the answer
                return self._damage(client_sock, fault)
            budget = fault.after
            if length > 0:
                budget = min(budget, length - 1)  # always short of the whole body
        _send(client_sock, head)
        if no_body:
            return True, not closing
        if budget == 0:
            return self._damage(client_sock, fault)
        offset = 0
        for data in _body_frames(upstream, headers, until_close=True):
            if flip_at is not None and offset <= flip_at < offset + len(data):
                data = _flipped(data, flip_at - offset)
            offset += len(data)
            if budget is not None and len(data) >= budget:
                _send(client_sock, data[:budget])
                return self._damage(client_sock, fault)
            if budget is not None:
                budget -= len(data)
            _send(client_sock, data)
        if fault is not None and fault.kind == "stall" and budget is not None:
            return self._damage(client_sock, fault)  # a stall after the last byte: no next answer
        framed = length != -1 or chunked  # else the body ended when the server closed
        return framed, framed and not closing

    def _damage(self, client_sock: socket.socket, fault: Fault | None) -> tuple[bool, bool]:
        if fault is not None and fault.kind == "stall":
            self._stop.wait(fault.seconds)
        _close(client_sock, reset=fault is not None and fault.kind == "cut_response")
        return False, False

    @staticmethod
    def _answer(client_sock: socket.socket, status: int, method: str, close: bool) -> None:
        reasons = {
            500: "Internal Server Error",
            502: "Bad Gateway",
            503: "Service Unavailable",
            504: "Gateway Timeout",
            429: "Too Many Requests",
            408: "Request Timeout",
        }
        body = f"injected fault: HTTP {status}\n".encode()
        head = (
            f"HTTP/1.1 {status} {reasons.get(status, 'Error')}\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            f"{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n"
        ).encode()
        _send(client_sock, head + (b"" if method.upper() == "HEAD" else body))
        if close:
            _close(client_sock)
