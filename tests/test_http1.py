"""The direct HTTP/1.1 path (analytics/http1.py behind transport.HttpPoster), against real
servers on 127.0.0.1: keep-alive and its limits, response framing, bounded reads, timeouts,
TLS, proxies (which keep requests' path) and fork."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import pytest
from helpers import WRITE_KEY, call_within, free_port, wait_child, wait_until

from analytics.transport import HttpPoster

TOKEN = base64.b64encode(f"{WRITE_KEY}:".encode()).decode("ascii")
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class Request:
    """One request as the raw server read it, and the number of its connection."""

    def __init__(self, line: str, headers: dict[str, str], body: bytes, conn: int) -> None:
        self.method, self.target, _ = line.split(" ", 2)
        self.headers = headers  # lower-case names
        self.body = body
        self.conn = conn


# What the server does with a request: the bytes to write back (or pieces of them, written
# one after the other) and whether to close the connection after them; None: never answer
# (until the server stops).
Answer = Callable[[Request], "tuple[bytes | Iterator[bytes], bool] | None"]


def answer_ok(request: Request) -> tuple[bytes, bool]:
    return OK, False


class RawServer:
    """A TCP server speaking HTTP as each test scripts it, counting the connections it
    accepts and recording every request before answering it."""

    def __init__(
        self, answer: Answer = answer_ok, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(32)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        name = f"[{host}]" if family == socket.AF_INET6 else host
        self.url = f"{'https' if tls else 'http'}://{name}:{self.port}"
        self.answer = answer
        self.tls = tls
        self.accepted = 0
        self.closed = 0  # connections the server has closed
        self.requests: list[Request] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with self._cond:
                number = self.accepted
                self.accepted += 1
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        try:
            conn.settimeout(None)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            reader = conn.makefile("rb")
            while not self._stop.is_set():
                line = reader.readline()
                if not line:
                    break
                headers = {}
                while True:
                    header = reader.readline().strip()
                    if not header:
                        break
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = reader.read(int(headers.get("content-length", "0")))
                request = Request(line.decode("latin-1").strip(), headers, body, number)
                with self._cond:
                    self.requests.append(request)
                    self._cond.notify_all()
                out = self.answer(request)
                if out is None:
                    self._stop.wait()
                    break
                data, close = out
                for piece in [data] if isinstance(data, bytes) else data:
                    conn.sendall(piece)
                if close:
                    break
        except OSError:
            pass
        finally:
            conn.close()
            with self._cond:
                self.closed += 1
                self._cond.notify_all()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
        with self._cond:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(answer: Answer = answer_ok, **kw: Any) -> RawServer:
        server = RawServer(answer, **kw)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def poster() -> Iterator[Callable[..., HttpPoster]]:
    made: list[HttpPoster] = []

    def make(base: str, timeout: float = 5, gzip: bool = False, **kw: Any) -> HttpPoster:
        p = HttpPoster(
            base, {"Authorization": f"Basic {TOKEN}"}, (WRITE_KEY, TOKEN), timeout,
            kw.get("proxies"), gzip,
        )  # fmt: skip
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def body(i: int = 0) -> bytes:
    return b'{"batch":[{"n":%d}]}' % i


# ---------------------------------------------------------------------------------- reuse


def test_posts_go_over_one_kept_alive_connection(serve, poster) -> None:
    server = serve()
    p = poster(server.url)
    replies = [p.post(server.url + "/v1/batch", body(i)) for i in range(5)]
    assert [r.status for r in replies] == [200] * 5
    assert server.accepted == 1
    assert [r.body for r in server.requests] == [body(i) for i in range(5)]


def test_a_clients_batches_go_over_one_connection(serve, make_client, errors) -> None:
    server = serve()
    client = make_client(host=server.url)
    for i in range(3):
        client.track("u", f"E{i}")
        assert client.flush(timeout=5)
    assert client.stats()["delivered"] == 3 and len(server.requests) == 3
    assert server.accepted == 1 and errors.calls == []


def test_the_request_carries_host_headers_and_length(serve, poster) -> None:
    server = serve()
    p = poster(server.url, gzip=True)
    assert p.post(server.url + "/v1/batch?x=1", body(7)).ok
    (request,) = server.requests
    assert request.method == "POST" and request.target == "/v1/batch?x=1"
    headers = request.headers
    assert headers["host"] == f"127.0.0.1:{server.port}"
    assert headers["authorization"] == f"Basic {TOKEN}"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("analytics-")
    assert headers["content-encoding"] == "gzip"
    assert int(headers["content-length"]) == len(request.body)
    assert gzip.decompress(request.body) == body(7)


def test_connection_close_in_the_answer_means_a_new_connection_next_time(serve, poster) -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
    server = serve(lambda r: (closing, True))
    p = poster(server.url)
    assert all(p.post(server.url + "/v1/batch", body(i)).ok for i in range(3))
    assert server.accepted == 3
    assert [r.conn for r in server.requests] == [0, 1, 2]


def test_an_http10_answer_without_keep_alive_is_not_reused(serve, poster) -> None:
    server = serve(lambda r: (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}", True))
    p = poster(server.url)
    assert p.post(server.url + "/v1/batch", body(1)).ok
    assert p.post(server.url + "/v1/batch", body(2)).ok
    assert server.accepted == 2


def test_an_idle_connection_the_server_closed_is_replaced_without_error(
    serve, make_client, errors
) -> None:
    # The server answers (keep-alive, no Connection: close) and then closes: an idle timeout.
    server = serve(lambda r: (OK, True))
    client = make_client(host=server.url, max_retries=0)
    client.track("u", "First")
    assert client.flush(timeout=5)
    assert wait_until(lambda: server.closed == 1)
    client.track("u", "Second")
    assert client.flush(timeout=5)
    assert errors.calls == []
    stats = client.stats()
    assert stats["delivered"] == 2 and stats["retries"] == 0
    events = [m["event"] for r in server.requests for m in analytics_batch(r)]
    assert events == ["First", "Second"]  # each delivered once
    assert server.accepted == 2


def analytics_batch(request: Request) -> list[dict[str, Any]]:
    return list(json.loads(request.body)["batch"])


def test_a_reused_connection_broken_before_the_answer_is_retried_once_on_a_new_one(
    serve, poster
) -> None:
    def answer(request: Request) -> tuple[bytes, bool]:
        if request.conn == 0 and len(server.requests) == 2:
            return b"", True  # the second request on the first connection: closed unanswered
        return OK, False

    server = serve(answer)
    p = poster(server.url)
    assert p.post(server.url + "/v1/batch", body(1)).ok
    reply = p.post(server.url + "/v1/batch", body(2))
    assert reply.ok, reply
    assert [(r.conn, r.body) for r in server.requests] == [(0, body(1)), (0, body(2)), (1, body(2))]


def test_a_fresh_connection_closed_without_an_answer_is_a_failure_not_resent(
    serve, poster
) -> None:
    server = serve(lambda r: (b"", True))
    p = poster(server.url)
    reply = p.post(server.url + "/v1/batch", body(1))
    assert reply.status is None
    assert reply.detail.startswith("ConnectionError") and "without an answer" in reply.detail
    assert len(server.requests) == 1


def test_threads_posting_at_once_each_get_their_own_answer(serve, poster) -> None:
    def echo(request: Request) -> tuple[bytes, bool]:
        time.sleep(0.001)  # a slow server, so that posts overlap
        return b"HTTP/1.1 500 E\r\nContent-Length: %d\r\n\r\n%s" % (
            len(request.body), request.body
        ), False  # fmt: skip

    server = serve(echo)
    p = poster(server.url)
    results: dict[int, str] = {}

    def run(t: int) -> None:
        for i in range(5):
            n = t * 10 + i
            results[n] = p.post(server.url + "/v1/batch", body(n)).detail

    threads = [threading.Thread(target=run, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {n: body(n).decode() for n in results} and len(results) == 30
    assert server.accepted <= 6


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_opens_its_own_connection(serve, poster) -> None:
    server = serve()
    p = poster(server.url)
    url = server.url + "/v1/batch"
    assert p.post(url, body(1)).ok
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            code = 0 if p.post(url, body(2)).ok else 2
        finally:
            os._exit(code)
    assert wait_child(pid, timeout=20) == 0
    assert p.post(url, body(3)).ok
    assert [(r.conn, r.body) for r in server.requests] == [(0, body(1)), (1, body(2)), (0, body(3))]


# -------------------------------------------------------------------------------- framing


def test_a_chunked_answer_is_read_and_the_connection_kept(serve, poster) -> None:
    chunked = (
        b"HTTP/1.1 500 E\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nbad \r\n5;x=y\r\nbatch\r\n0\r\nT: v\r\n\r\n"
    )
    server = serve(lambda r: (chunked, False))
    p = poster(server.url)
    first = p.post(server.url + "/v1/batch", body(1))
    second = p.post(server.url + "/v1/batch", body(2))
    assert (first.status, first.detail) == (500, "bad batch") == (second.status, second.detail)
    assert server.accepted == 1


def test_an_answer_without_length_is_read_to_the_close(serve, poster) -> None:
    server = serve(lambda r: (b"HTTP/1.1 503 Busy\r\n\r\ntry later", True))
    p = poster(server.url)
    first = p.post(server.url + "/v1/batch", body(1))
    assert (first.status, first.detail) == (503, "try later")
    assert p.post(server.url + "/v1/batch", body(2)).status == 503
    assert server.accepted == 2


def test_interim_answers_are_skipped(serve, poster) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    server = serve(lambda r: (interim + OK, False))
    p = poster(server.url)
    assert p.post(server.url + "/v1/batch", body(1)).status == 200
    assert p.post(server.url + "/v1/batch", body(2)).status == 200
    assert server.accepted == 1


def test_retry_after_and_location_are_read_whatever_their_case(serve, poster) -> None:
    def answer(request: Request) -> tuple[bytes, bool]:
        if request.target == "/v1/batch":
            moved = b"HTTP/1.1 307 Moved\r\nLOCATION: /v1/other\r\ncontent-length: 0\r\n\r\n"
            return moved, False
        return b"HTTP/1.1 429 Slow\r\nrEtRy-AfTeR: 7\r\nContent-Length: 0\r\n\r\n", False

    server = serve(answer)
    reply = poster(server.url).post(server.url + "/v1/batch", body(1))
    assert (reply.status, reply.retry_after) == (429, 7.0)
    assert [(r.target, r.body) for r in server.requests] == [
        ("/v1/batch", body(1)), ("/v1/other", body(1))
    ]  # fmt: skip


def test_a_redirect_loop_stops_after_max_redirects_requests(serve, poster) -> None:
    loop = b"HTTP/1.1 308 Again\r\nLocation: /v1/batch\r\nContent-Length: 0\r\n\r\n"
    server = serve(lambda r: (loop, False))
    reply = poster(server.url).post(server.url + "/v1/batch", body(1))
    assert reply.status == 308 and "more than 5 redirects" in reply.detail
    assert len(server.requests) == 5 and server.accepted == 1


def test_start_sends_at_once_and_the_reply_is_read_later(serve, poster) -> None:
    answer_now = threading.Event()

    def held(request: Request) -> tuple[bytes, bool]:
        answer_now.wait(10)
        return OK, False

    server = serve(held)
    p = poster(server.url)
    read = call_within(5, p.start, server.url + "/v1/batch", body(1))  # not waiting: sent
    assert wait_until(lambda: len(server.requests) == 1)
    assert server.requests[0].body == body(1)
    answer_now.set()
    assert call_within(5, read).status == 200
    assert p.start(server.url + "/v1/batch", body(2))().ok  # the connection went back
    assert server.accepted == 1


def test_start_against_a_refused_port_gives_a_failure_to_read(poster) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    read = poster(url).start(url + "/v1/batch", body(1))
    reply = read()
    assert reply.status is None and "refused" in reply.detail


def test_an_answer_with_bare_lf_line_ends_is_read(serve, poster) -> None:
    slow = b"HTTP/1.1 429 Slow\nRetry-After: 3\nContent-Length: 4\n\nslow"
    server = serve(lambda r: (slow, False))
    p = poster(server.url)
    replies = [p.post(server.url + "/v1/batch", body(i)) for i in range(2)]
    assert [(r.status, r.retry_after, r.detail) for r in replies] == [(429, 3.0, "slow")] * 2
    assert server.accepted == 1


def test_repeated_content_lengths_must_agree(serve, poster) -> None:
    agree = b"HTTP/1.1 500 E\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nno"
    differ = b"HTTP/1.1 500 E\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nnoo"
    server = serve(lambda r: (agree if r.target == "/agree" else differ, False))
    p = poster(server.url)
    assert p.post(server.url + "/agree", body(1)).detail == "no"
    reply = p.post(server.url + "/differ", body(1))
    assert reply.status is None and "bad Content-Length" in reply.detail


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (b"SPDY/3 nonsense\r\n\r\n", "not an HTTP answer"),
        (b"HTTP/1.1 \xb200 OK\r\nContent-Length: 0\r\n\r\n", "not an HTTP answer"),
        (b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", "not an HTTP status"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}xx\r\n", "its end of line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", "ended early"),
    ],
    ids=["protocol", "unicode-digit", "status-range", "length-digit", "length-sign",
         "chunk-size", "chunk-end", "short-body"],
)  # fmt: skip
def test_a_garbled_answer_is_a_failure_not_an_exception(serve, poster, answer, why) -> None:
    server = serve(lambda r: (answer, True))
    reply = poster(server.url).post(server.url + "/v1/batch", body(1))
    assert reply.status is None and reply.detail.startswith("ConnectionError")
    assert why in reply.detail


# ------------------------------------------------------------------------------ bounded


def _streaming(head: bytes, piece: bytes, total: int) -> Answer:
    """An answer of `head`, then `piece` again and again up to `total` bytes (or until the
    client goes away)."""

    def pieces() -> Iterator[bytes]:
        yield head
        for _ in range(total // len(piece)):
            yield piece

    return lambda request: (pieces(), True)


HUGE = 50 * 1024 * 1024


@pytest.mark.parametrize(
    ("head", "piece", "status", "detail"),
    [
        (b"HTTP/1.1 500 E\r\nContent-Length: %d\r\n\r\n" % HUGE, b"x" * 65536, 500, "x" * 200),
        (
            b"HTTP/1.1 500 E\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"10000\r\n" + b"x" * 65536 + b"\r\n",
            500,
            "x" * 200,
        ),
        (b"HTTP/1.1 500 E\r\n\r\n", b"x" * 65536, 500, "x" * 200),
        (b"HTTP/1.1 500 E\r\nX-Long: ", b"y" * 65536, None, "over 65536 bytes"),
        (b"HTTP/1.1 500 E\r\n", b"X-Many: z\r\n" * 6000, None, "more than 100 header lines"),
        (b"HTTP/1.1 ", b"9" * 65536, None, "over 65536 bytes"),
    ],
    ids=["content-length", "chunked", "to-close", "long-header", "many-headers", "status-line"],
)
def test_a_huge_answer_is_read_within_bounds(
    serve, poster, head: bytes, piece: bytes, status: int | None, detail: str
) -> None:
    server = serve(_streaming(head, piece, HUGE))
    p = poster(server.url)
    tracemalloc.start()
    try:
        started = time.monotonic()
        reply = call_within(20, p.post, server.url + "/v1/batch", body(1))
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, peak  # the server offered 50 MB
    assert elapsed < 10
    assert reply.status == status
    if status:
        assert reply.detail == detail
    else:
        assert reply.detail.startswith("ConnectionError") and detail in reply.detail
    again = p.post(server.url + "/v1/batch", body(2))
    assert (again.status, again.detail) == (reply.status, reply.detail)
    assert server.accepted == 2  # the half-read connection was not reused


# ----------------------------------------------------------------------------- timeouts


def test_a_server_that_never_answers_times_out(serve, poster) -> None:
    server = serve(lambda r: None)
    p = poster(server.url, timeout=0.5)
    started = time.monotonic()
    reply = call_within(10, p.post, server.url + "/v1/batch", body(1))
    assert time.monotonic() - started < 0.5 + 2
    assert reply.status is None
    assert reply.detail.startswith("ReadTimeout") and "timed out" in reply.detail


def test_a_client_against_a_silent_server_gives_up_and_flush_is_bounded(
    serve, make_client, errors
) -> None:
    server = serve(lambda r: None)
    client = make_client(host=server.url, timeout=0.5, max_retries=0)
    client.track("u", "Lost")
    started = time.monotonic()
    assert call_within(10, client.flush, timeout=5) is True
    assert time.monotonic() - started < 0.5 + 3
    (error, batch), = errors.wait_for(1)
    assert "timed out" in str(error) and [m["event"] for m in batch] == ["Lost"]
    assert client.stats()["dropped_by_reason"]["gave_up"] == 1


def test_a_refused_connection_is_a_connection_error(poster) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    reply = poster(url).post(url + "/v1/batch", body(1))
    assert reply.status is None
    assert reply.detail.startswith("ConnectionError") and "refused" in reply.detail


# ------------------------------------------------------------------------------ secrets


def test_the_write_key_never_reaches_the_detail(serve, poster) -> None:
    def echo(request: Request) -> tuple[bytes, bool]:
        text = f"key {WRITE_KEY} auth {request.headers['authorization']}".encode()
        if request.target == "/v1/batch":
            return b"HTTP/1.1 400 Bad\r\nContent-Length: %d\r\n\r\n%s" % (len(text), text), False
        return b"%s %s\r\n\r\n" % (text, text), True  # not even HTTP

    server = serve(echo)
    p = poster(server.url)
    bad = p.post(server.url + "/v1/batch", body(1))
    garbled = p.post(server.url + "/v1/other", body(1))
    for reply in (bad, garbled):
        assert WRITE_KEY not in reply.detail and TOKEN not in reply.detail
        assert "***" in reply.detail


# ------------------------------------------------------------------------------ proxies


def test_a_configured_proxy_takes_the_requests_path(serve, poster) -> None:
    origin = serve()
    proxy = serve()
    p = poster(origin.url, proxies={"http": proxy.url})
    assert p.post(origin.url + "/v1/batch", body(1)).ok
    assert origin.accepted == 0
    assert [r.target for r in proxy.requests] == [origin.url + "/v1/batch"]  # absolute: a proxy


def test_no_proxy_for_the_host_goes_direct(serve, poster, monkeypatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    origin = serve()
    assert poster(origin.url).post(origin.url + "/v1/batch", body(1)).ok
    assert [r.target for r in origin.requests] == ["/v1/batch"]


def test_an_ipv6_literal_host(serve, poster) -> None:
    try:
        server = serve(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    assert poster(server.url).post(server.url + "/v1/batch", body(1)).ok
    assert server.requests[0].headers["host"] == f"[::1]:{server.port}"


# ---------------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl binary")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


class _TlsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _TlsServer

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.bodies.append(data)
            self.server.ports.add(self.client_address[1])
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    bodies: list[bytes]
    ports: set[int]
    lock: threading.Lock

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client refusing our certificate is part of the tests


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[_TlsServer]:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = _TlsServer(("127.0.0.1", 0), _TlsHandler)
    server.bodies, server.ports, server.lock = [], set(), threading.Lock()
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _tls_url(server: _TlsServer) -> str:
    return f"https://127.0.0.1:{server.server_address[1]}"


def test_tls_with_the_ca_bundle_from_the_environment(
    tls_server, certificate, poster, monkeypatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))
    url = _tls_url(tls_server)
    p = poster(url)
    assert all(p.post(url + "/v1/batch", body(i)).ok for i in range(3))
    assert tls_server.bodies == [body(i) for i in range(3)]
    assert len(tls_server.ports) == 1  # kept alive


def test_tls_through_the_client_delivers_once(
    tls_server, certificate, make_client, errors, monkeypatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))
    client = make_client(host=_tls_url(tls_server))
    for i in range(3):
        client.track("u", f"T{i}")
    assert client.flush(timeout=10)
    assert errors.calls == [] and client.stats()["delivered"] == 3
    sent = [m["event"] for b in tls_server.bodies for m in json.loads(b)["batch"]]
    assert sorted(sent) == ["T0", "T1", "T2"]


def test_tls_with_the_default_bundle_refuses_a_self_signed_certificate(
    tls_server, poster, monkeypatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    url = _tls_url(tls_server)
    reply = poster(url).post(url + "/v1/batch", body(1))
    assert reply.status is None
    assert reply.detail.startswith("SSLError") and "CERTIFICATE_VERIFY_FAILED" in reply.detail
    assert tls_server.bodies == []


def test_a_client_reports_a_certificate_failure_and_gives_up(
    tls_server, make_client, errors, monkeypatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    client = make_client(host=_tls_url(tls_server), max_retries=0)
    client.track("u", "Untrusted")
    assert client.flush(timeout=10)
    (error, batch), = errors.wait_for(1)
    assert "CERTIFICATE_VERIFY_FAILED" in str(error) and len(batch) == 1
    stats = client.stats()
    assert stats["dropped_by_reason"]["gave_up"] == 1 and stats["delivered"] == 0
    assert tls_server.bodies == []
