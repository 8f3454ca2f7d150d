"""A loopback stand-in for A-Track's API, for tests/test_atrack.py.

A `ThreadingHTTPServer` on 127.0.0.1 (port 0) speaking HTTP/1.1 with keep-alive. It records
every request (method, path, headers, JSON body, arrival time) before answering, answers
``{}`` with 200 by default, and can be told to answer status S (with an optional
`Retry-After`) to the next K requests. Each response goes out in one write, and Nagle is off,
so keep-alive requests never wait on delayed ACKs. A non-2xx body echoes the key header, so
tests can check that the client scrubs it from error text.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_REASONS = {200: "OK", 400: "Bad Request", 429: "Too Many Requests", 503: "Unavailable"}


class Request:
    """One request as the server received it."""

    def __init__(
        self, method: str, path: str, headers: Message, raw: bytes, arrived: float
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers  # case-insensitive .get()
        self.raw = raw  # as sent on the wire
        self.body = gzip.decompress(raw) if headers.get("Content-Encoding") == "gzip" else raw
        self.arrived = arrived  # time.monotonic()
        self.status: int | None = None

    @property
    def json(self) -> Any:
        """The body as strict JSON (NaN and Infinity refused)."""
        return json.loads(self.body, parse_constant=_refuse)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path} status={self.status}>"


def _refuse(name: str) -> Any:
    raise ValueError(f"body is not strict JSON: {name}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: ATrackServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        req = Request(self.command, self.path, self.headers, raw, time.monotonic())
        status, retry_after = self.server.owner._record(req)
        body = b"{}"
        if status != 200:
            echoed = self.headers.get("x-a-track-key", "")
            body = json.dumps({"error": f"fault {status}", "key": echoed}).encode()
        head = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        if retry_after is not None:
            head.append(f"Retry-After: {retry_after}")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body)

    do_GET = do_POST
    do_PUT = do_POST


class ATrackServer:
    """The recording server; `url` is its base URL (give it to the client as `host`)."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._cond = threading.Condition()
        self._status = 200
        self._left = 0
        self._retry_after: str | None = None
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def fail(self, status: int, count: int, retry_after: str | None = None) -> None:
        """Answer `status` (with `Retry-After: retry_after` if given) to the next `count`
        requests, then 200 again."""
        with self._cond:
            self._status, self._left, self._retry_after = status, count, retry_after

    def _record(self, req: Request) -> tuple[int, str | None]:
        with self._cond:
            status, retry_after = 200, None
            if self._left > 0:
                self._left -= 1
                status, retry_after = self._status, self._retry_after
            req.status = status
            self.requests.append(req)
            self._cond.notify_all()
        return status, retry_after

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Request]:
        """Wait until `n` requests arrived (AssertionError after `timeout`); all of them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"got {len(self.requests)} requests, expected {n}")
                self._cond.wait(left)
            return list(self.requests)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
