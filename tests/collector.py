"""A loopback HTTP collector for the tests: records every request, injects real faults.

The server listens on 127.0.0.1 (port 0 unless told otherwise), speaks HTTP/1.1 with
keep-alive, answers ``{}`` with 200 by default, and can be told to

* answer status S (optionally with a ``Retry-After`` header) to the next K requests,
* hang the next K requests (accept them, never answer until released or stopped),
* wait a delay before answering,
* not listen at all yet (``Collector.reserved()``), then listen on that same port later.

Every request is recorded *before* it is answered, so a synchronous sender finds its
request recorded by the time its call returns.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import socket
import threading
import time
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


def _reject_constant(name: str) -> Any:
    raise ValueError(f"body is not strict JSON: contains {name}")


def strict_loads(data: str | bytes) -> Any:
    """json.loads that refuses NaN, Infinity and -Infinity."""
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    return json.loads(data, parse_constant=_reject_constant)


class Recorded:
    """One request as the collector received it."""

    def __init__(
        self,
        method: str,
        path: str,
        headers: Message,
        raw: bytes,
        body: bytes,
        arrived: float,
        client_port: int,
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers  # case-insensitive .get / []
        self.raw = raw  # bytes as sent on the wire
        self.body = body  # gunzipped when Content-Encoding: gzip
        self.arrived = arrived  # time.monotonic() at arrival
        self.client_port = client_port
        self.status: int | None = None  # status answered (None: hung/not answered)
        try:
            self.count = len(strict_loads(body).get("batch", []))
        except Exception:
            self.count = 0

    @functools.cached_property
    def json(self) -> Any:
        """The decoded body, parsed as strict JSON (raises on NaN/Infinity)."""
        return strict_loads(self.body)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.json["batch"])

    @property
    def ids(self) -> list[str]:
        return [m["messageId"] for m in self.messages]

    def __repr__(self) -> str:
        return f"<Recorded {self.method} {self.path} n={self.count} status={self.status}>"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    collector: Collector


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes: without this, Nagle + delayed ACK stall each reply.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.collector._register(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_POST(self) -> None:
        self.server.collector._handle(self)

    do_GET = do_POST
    do_PUT = do_POST


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                handler.rfile.readline()
                break
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
        return b"".join(chunks)
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


class Collector:
    """A recording HTTP server on 127.0.0.1 with programmable faults."""

    def __init__(self, port: int = 0, start: bool = True) -> None:
        self.port = port
        self.requests: list[Recorded] = []
        self.max_in_flight = 0
        self.delay = 0.0
        self._in_flight = 0
        self._cond = threading.Condition()
        self._fault_status: int | None = None
        self._fault_left: int | None = 0  # None: forever
        self._retry_after: None | str | Callable[[], str] = None
        self._hang_left: int | None = 0  # None: forever
        self._release = threading.Event()
        self._stopped = threading.Event()
        self._connections: list[socket.socket] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    # ----------------------------------------------------------------- lifecycle
    @classmethod
    def reserved(cls) -> Collector:
        """A collector with a port on which nothing listens yet (connections refused)."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return cls(port=port, start=False)

    def start(self) -> None:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.collector = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Release every hung request, stop listening, close every open connection."""
        self._stopped.set()
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._cond:
            conns, self._connections = self._connections, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _register(self, conn: socket.socket) -> None:
        with self._cond:
            self._connections.append(conn)

    # -------------------------------------------------------------------- faults
    def fail(
        self,
        status: int,
        count: int | None = None,
        retry_after: None | str | Callable[[], str] = None,
    ) -> None:
        """Answer `status` to the next `count` requests (None: all of them), then 200."""
        with self._cond:
            self._fault_status = status
            self._fault_left = count
            self._retry_after = retry_after

    def hang(self, count: int | None = None) -> None:
        """Accept the next `count` requests (None: all) and never answer them until
        `release()`/`heal()`/`stop()`; they are then answered 200."""
        with self._cond:
            self._release = threading.Event()
            self._hang_left = count

    def release(self) -> None:
        """Answer every hung request (200) and stop hanging new ones."""
        with self._cond:
            self._hang_left = 0
            self._release.set()

    def heal(self) -> None:
        """Back to normal: no faults, no delay, hung requests released."""
        with self._cond:
            self._fault_left = 0
            self._fault_status = None
            self._retry_after = None
            self.delay = 0.0
        self.release()

    # ------------------------------------------------------------------- handler
    def _handle(self, h: _Handler) -> None:
        try:
            raw = _read_body(h)
        except (OSError, ValueError):
            h.close_connection = True
            return
        body = raw
        if h.headers.get("Content-Encoding", "").lower() == "gzip":
            try:
                body = gzip.decompress(raw)
            except OSError:
                body = b""
        rec = Recorded(
            h.command,
            h.path,
            h.headers,
            raw,
            body,
            time.monotonic(),
            h.client_address[1],
        )
        with self._cond:
            hang = self._hang_left is None or self._hang_left > 0
            if hang and self._hang_left is not None:
                self._hang_left -= 1
            release = self._release
            status, retry_after = 200, None
            if not hang and self._fault_status is not None and (
                self._fault_left is None or self._fault_left > 0
            ):
                status, retry_after = self._fault_status, self._retry_after
                if self._fault_left is not None:
                    self._fault_left -= 1
            delay = self.delay
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            self.requests.append(rec)
            self._cond.notify_all()
        try:
            if hang:
                release.wait()
                if self._stopped.is_set():
                    h.close_connection = True
                    return
            if delay:
                release.wait(delay)
            headers = []
            if retry_after is not None:
                value = retry_after() if callable(retry_after) else retry_after
                headers.append(("Retry-After", str(value)))
            payload = b"{}" if status == 200 else json.dumps({"error": f"fault {status}"}).encode()
            rec.status = status
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            for name, value in headers:
                h.send_header(name, value)
            h.end_headers()
            h.wfile.write(payload)
            h.wfile.flush()
        except OSError:
            h.close_connection = True
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    # ------------------------------------------------------------------- reading
    def snapshot(self) -> list[Recorded]:
        with self._cond:
            return list(self.requests)

    def batches(self) -> list[dict[str, Any]]:
        return [r.json for r in self.snapshot()]

    def messages(self) -> list[dict[str, Any]]:
        """All messages of all received batches, in arrival order (retries included)."""
        return [m for r in self.snapshot() for m in r.messages]

    def delivered_messages(self) -> list[dict[str, Any]]:
        """Messages of the batches that were answered 200."""
        return [m for r in self.snapshot() if r.status == 200 for m in r.messages]

    def message_count(self) -> int:
        with self._cond:
            return sum(r.count for r in self.requests)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[Recorded]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"collector got {len(self.requests)} requests, expected {n} "
                        f"within {timeout}s"
                    )
                self._cond.wait(left)
        return self.snapshot()

    def wait_for_messages(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(r.count for r in self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    got = sum(r.count for r in self.requests)
                    raise AssertionError(
                        f"collector got {got} messages, expected {n} within {timeout}s"
                    )
                self._cond.wait(left)
        return self.messages()

    def wait_answered(self, n: int, timeout: float = 5.0) -> None:
        """Wait until at least `n` requests have been answered (status set)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(1 for r in self.requests if r.status is not None) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"fewer than {n} requests answered in {timeout}s")
                self._cond.wait(left)
