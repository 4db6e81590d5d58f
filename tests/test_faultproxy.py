"""The fault proxy (clearml_data.testing.faults) against a small HTTP server on loopback."""

from __future__ import annotations

import http.client
import http.server
import os
import socket
import threading
import time

import pytest

from clearml_data.testing.faults import Fault, FaultProxy

BODY = os.urandom(200_000)


class _Store:
    def __init__(self):
        self.objects: dict[str, bytes] = {}
        self.incomplete = 0
        self.requests = 0


@pytest.fixture
def upstream():
    """GET /x returns BODY (``/chunked`` in chunks), PUT stores a complete body only."""
    store = _Store()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            store.requests += 1
            if self.path.startswith("/chunked"):
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(BODY), 50_000):
                    part = BODY[i : i + 50_000]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.write(b"0\r\n\r\n")
                return
            data = store.objects.get(self.path, BODY)
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_HEAD(self):
            store.requests += 1
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()

        def do_PUT(self):
            store.requests += 1
            length = int(self.headers["Content-Length"])
            try:
                data = self.rfile.read(length)
            except OSError:  # reset by the peer
                data = b""
            if len(data) != length:  # the client went away mid-body: store nothing
                store.incomplete += 1
                self.close_connection = True
                return
            store.objects[self.path] = data
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    store.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield store
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(upstream):
    with FaultProxy(upstream.url) as p:
        yield p


def conn(proxy, timeout=10.0) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=timeout)


def test_passes_requests_through_on_one_kept_alive_connection(proxy, upstream):
    c = conn(proxy)
    for _ in range(3):
        c.request("GET", "/x")
        assert c.getresponse().read() == BODY
    c.request("PUT", "/obj", body=b"payload")
    r = c.getresponse()
    r.read()
    assert r.status == 201 and upstream.objects["/obj"] == b"payload"
    c.request("GET", "/chunked")
    assert c.getresponse().read() == BODY
    c.request("HEAD", "/x")
    r = c.getresponse()
    assert r.status == 200 and r.read() == b""
    c.close()
    assert [e.method for e in proxy.log] == ["GET"] * 3 + ["PUT", "GET", "HEAD"]
    assert proxy.total_injected == 0


def test_error_status_for_the_next_n_matching_requests(proxy, upstream):
    proxy.inject(Fault.http(503), method="GET", path=r"^/x", times=2)
    proxy.inject(Fault.http(500), method="PUT")
    c = conn(proxy)
    statuses = []
    for _ in range(3):
        c.request("GET", "/x")
        r = c.getresponse()
        r.read()
        statuses.append(r.status)
    c.request("PUT", "/obj", body=b"x" * 1000)  # the body is drained: the connection stays usable
    r = c.getresponse()
    r.read()
    statuses.append(r.status)
    c.request("GET", "/other")
    r = c.getresponse()
    r.read()
    statuses.append(r.status)
    c.close()
    assert statuses == [503, 503, 200, 500, 200]
    assert "/obj" not in upstream.objects
    assert proxy.injected == {"status": 3}
    assert [str(e.fault) if e.fault else None for e in proxy.log] == [
        "HTTP 503",
        "HTTP 503",
        None,
        "HTTP 500",
        None,
    ]


def test_skip_lets_the_first_matches_through(proxy):
    proxy.inject(Fault.http(500), path="/x", skip=2, times=1)
    got = []
    for _ in range(4):
        c = conn(proxy)
        c.request("GET", "/x")
        got.append(c.getresponse().status)
        c.close()
    assert got == [200, 200, 500, 200]


@pytest.mark.parametrize("path", ["/x", "/chunked"])
def test_cut_response_delivers_a_prefix_then_drops_the_connection(proxy, path):
    proxy.inject(Fault.cut_response(after=1000))
    c = conn(proxy)
    c.request("GET", path)
    r = c.getresponse()
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        r.read()
    c.close()
    c = conn(proxy)  # the next request is whole again
    c.request("GET", path)
    assert c.getresponse().read() == BODY
    c.close()


def test_cut_response_never_delivers_the_whole_body(proxy, upstream):
    upstream.objects["/small"] = b"0123456789"
    proxy.inject(Fault.cut_response(after=10_000))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = b""
        try:
            while chunk := s.recv(65536):
                raw += chunk
        except ConnectionResetError:
            pass
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Content-Length: 10" in head and body == b"012345678"


def test_cut_request_leaves_the_server_a_truncated_upload(proxy, upstream):
    proxy.inject(Fault.cut_request(after=5000), method="PUT")
    c = conn(proxy)
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected, BrokenPipeError)):
        c.request("PUT", "/big", body=os.urandom(100_000))
        c.getresponse()
    c.close()
    deadline = time.monotonic() + 5
    while not upstream.incomplete and time.monotonic() < deadline:
        time.sleep(0.01)
    assert upstream.incomplete == 1 and "/big" not in upstream.objects
    assert proxy.injected == {"cut_request": 1}


def test_expect_continue_is_answered_and_faults_still_apply(proxy, upstream):
    proxy.inject(Fault.http(503), method="PUT", times=1)
    statuses = []
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            s.sendall(b"PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            first = s.recv(65536)
            if first.startswith(b"HTTP/1.1 100"):
                s.sendall(b"hello")
                first = s.recv(65536)
            statuses.append(int(first.split(b" ")[1]))
    assert statuses == [503, 201] and upstream.objects["/e"] == b"hello"


def _one_bit_apart(a: bytes, b: bytes) -> list[tuple[int, int]]:
    """[(offset, a ^ b)] of every byte where a and b differ."""
    assert len(a) == len(b)
    return [(i, x ^ y) for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]


def test_flip_request_damages_one_bit_of_each_upload_body(proxy, upstream):
    proxy.inject(Fault.flip_request(min_size=101), method="PUT", times=None)
    c = conn(proxy)
    for name, body in (("/big", BODY), ("/tiny", b"t" * 100)):
        c.request("PUT", name, body=body)
        r = c.getresponse()
        r.read()
        assert r.status == 201  # the server accepts the damaged body as if it were whole
    c.close()
    assert _one_bit_apart(upstream.objects["/big"], BODY) == [(len(BODY) // 2, 1)]
    assert upstream.objects["/tiny"] == b"t" * 100  # under min_size: passed untouched
    # only the damaged upload counts as a fault
    assert proxy.injected == {"flip_request": 1}
    assert [str(e.fault) if e.fault else None for e in proxy.log] == [
        "flip request bit (bodies of 101 B and more)",
        None,
    ]


@pytest.mark.parametrize("path", ["/x", "/chunked"])
def test_flip_response_damages_one_bit_of_each_download_body(proxy, path):
    rule = proxy.inject(Fault.flip_response(), method="GET", times=1)
    c = conn(proxy)
    c.request("GET", path)
    first = c.getresponse().read()
    c.request("GET", path)
    second = c.getresponse().read()
    c.close()
    assert second == BODY  # times=1: the next download is whole again
    if path == "/x":
        assert _one_bit_apart(first, BODY) == [(len(BODY) // 2, 1)]
        assert proxy.injected == {"flip_response": 1}
    else:  # no Content-Length: nothing to aim at; the bodies pass untouched, the rule stays unused
        assert first == BODY and proxy.total_injected == 0 and rule.hits == 0


def test_flip_response_leaves_bodiless_and_error_answers_alone(proxy, upstream):
    proxy.inject(Fault.flip_response(), times=None)
    c = conn(proxy)
    c.request("HEAD", "/x")
    r = c.getresponse()
    assert r.status == 200 and r.read() == b""
    c.request("PUT", "/obj", body=b"payload")  # a 201 answer without a body
    r = c.getresponse()
    r.read()
    c.close()
    assert r.status == 201 and upstream.objects["/obj"] == b"payload"
    assert proxy.total_injected == 0 and all(e.fault is None for e in proxy.log)


def test_the_log_keeps_each_request_s_headers(proxy):
    c = conn(proxy)
    c.request("GET", "/x", headers={"X-Ms-Range-Get-Content-Md5": "true"})
    c.getresponse().read()
    c.close()
    assert proxy.log[0].headers["x-ms-range-get-content-md5"] == "true"


def test_stall_outlasts_the_client_timeout_and_stop_ends_it(upstream):
    p = FaultProxy(upstream.url).start()
    p.inject(Fault.stall(seconds=60, after=100))
    c = conn(p, timeout=0.3)
    c.request("GET", "/x")
    r = c.getresponse()
    with pytest.raises((TimeoutError, socket.timeout)):
        r.read()
    c.close()
    started = time.monotonic()
    p.stop()
    assert time.monotonic() - started < 10  # a stalled connection does not keep the proxy alive


def test_random_faults_are_reproducible_and_bounded(upstream):
    def run(seed):
        with FaultProxy(upstream.url) as p:
            p.random_faults(0.5, [Fault.http(500), Fault.http(503)], seed=seed, limit=15)
            out = []
            for _ in range(60):
                c = conn(p)
                c.request("GET", "/x")
                r = c.getresponse()
                r.read()
                out.append(r.status)
                c.close()
            return out, p.total_injected

    first, n = run(11)
    again, _ = run(11)
    assert first == again and n == 15 == sum(s != 200 for s in first)
    assert {500, 503} <= set(first)


def test_only_loopback_http_upstreams():
    with pytest.raises(ValueError):
        FaultProxy("http://example.com:80")
    with pytest.raises(ValueError):
        FaultProxy("https://127.0.0.1:443")
    with pytest.raises(ValueError):
        Fault("explode")
    with pytest.raises(ValueError):
        Fault.flip_request(min_size=0)
