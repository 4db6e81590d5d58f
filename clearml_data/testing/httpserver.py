"""A web server on 127.0.0.1 that serves a folder, in a thread of the test process.

    with FileServer(folder) as server:
        url = server.url + "/data.csv"

It answers ``GET`` (with ``Range: bytes=a-b``, ``bytes=a-`` and ``bytes=-n``: 206, or 416
past the end) and ``HEAD`` with ``Content-Length`` and ``Last-Modified``, and refuses every
other method with 405. Switches make it behave like lesser servers: ``ranges=False`` ignores
``Range`` (200 with the whole file), ``head=False`` answers ``HEAD`` with 405, and
``fail_next(n, status)`` answers the next ``n`` requests with ``status`` (503: a transient
error). ``requests`` records (method, path, Range header) of every request served.
"""

from __future__ import annotations

import email.utils
import os
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from ..paths import safe_join
from .servers import LOOPBACK

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class FileServer:
    """Serve ``root`` over HTTP on a free loopback port until :meth:`stop`."""

    def __init__(self, root: str | os.PathLike, *, ranges: bool = True, head: bool = True):
        self.root = os.fspath(root)
        self.ranges = ranges
        self.head = head
        self.requests: list[tuple[str, str, str | None]] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((LOOPBACK, 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` requests with ``status`` (and no body)."""
        with self._lock:
            self._failures.extend([status] * n)

    def _take_failure(self) -> int | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def start(self) -> FileServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="http-file-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet: tests read .requests
            pass

        def _path(self) -> str | None:
            rel = unquote(urlsplit(self.path).path).lstrip("/")
            try:
                path = safe_join(server.root, rel)
            except ValueError:
                return None
            return path if os.path.isfile(path) else None

        def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _serve(self, body: bool) -> None:
            server.requests.append((self.command, self.path, self.headers.get("Range")))
            failure = server._take_failure()
            if failure is not None:
                self._empty(failure)
                return
            if not body and not server.head:
                self._empty(HTTPStatus.METHOD_NOT_ALLOWED)
                return
            path = self._path()
            if path is None:
                self._empty(HTTPStatus.NOT_FOUND)
                return
            size = os.path.getsize(path)
            start, end, status = 0, size - 1, HTTPStatus.OK
            wanted = self.headers.get("Range")
            if wanted and server.ranges and body:
                m = _RANGE.match(wanted.strip())
                if m and (m.group(1) or m.group(2)):
                    first, last = m.group(1), m.group(2)
                    if first:
                        start, end = int(first), min(int(last), size - 1) if last else size - 1
                    else:  # the last n bytes
                        start = max(0, size - int(last))
                    if start >= size:
                        self._empty(
                            HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, {"Content-Range": f"bytes */{size}"}
                        )
                        return
                    status = HTTPStatus.PARTIAL_CONTENT
            length = max(0, end - start + 1)
            self.send_response(status)
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes" if server.ranges else "none")
            self.send_header("Last-Modified", email.utils.formatdate(os.path.getmtime(path), usegmt=True))
            if status == HTTPStatus.PARTIAL_CONTENT:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if body and length:
                with open(path, "rb") as fh:
                    fh.seek(start)
                    left = length
                    while left:
                        block = fh.read(min(left, 1 << 20))
                        if not block:
                            break
                        try:
                            self.wfile.write(block)
                        except (BrokenPipeError, ConnectionResetError):
                            return  # the client read what it wanted and went away
                        left -= len(block)

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def _refuse(self) -> None:
            server.requests.append((self.command, self.path, None))
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self._empty(HTTPStatus.METHOD_NOT_ALLOWED)

        do_PUT = do_POST = do_DELETE = _refuse

    return Handler
