"""Redirects of the batch URL: 301/302/303 are never followed (requests would turn the POST
into a body-less GET whose 200 looked delivered); 307/308 are followed with the body, to the
same origin only. A redirect not followed is a refusal: APIError, reported once, no retry.
Each against real loopback servers."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from collector import Collector
from helpers import WRITE_KEY

import analytics


class Redirector:
    """A loopback server that answers `status` with `Location: location` on any path but
    /moved/..., and 200 there, recording every request (method, path, headers, body)."""

    def __init__(self, status: int, location: str = "/moved/v1/batch") -> None:
        self.status = status
        self.location = location
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                owner.requests.append((self.command, self.path, dict(self.headers), body))
                if not self.path.startswith("/moved/"):
                    self.send_response(owner.status)
                    self.send_header("Location", owner.location)
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_POST = do_GET = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def redirector():
    servers: list[Redirector] = []

    def make(status: int, location: str = "/moved/v1/batch") -> Redirector:
        server = Redirector(status, location)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def _refused_once(client: Any, errors: Any, status: int) -> None:
    assert client.flush(timeout=5) is True
    [(error, batch)] = errors.wait_for(1)
    assert isinstance(error, analytics.APIError)
    assert error.status == status
    assert len(batch) == 1
    stats = client.stats()
    assert stats["delivered"] == 0
    assert stats["dropped_by_reason"]["rejected"] == 1
    assert stats["retries"] == 0


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_301_302_or_303_is_a_refusal_and_never_followed(
    status: int, redirector: Any, make_client: Any, errors: Any
) -> None:
    server = redirector(status)
    client = make_client(host=server.url)
    client.track("u1", "Redirected")
    _refused_once(client, errors, status)
    assert [(method, path) for method, path, _, _ in server.requests] == [("POST", "/v1/batch")]


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_301_302_or_303_is_refused_in_sync_mode_too(
    status: int, redirector: Any, make_client: Any, errors: Any
) -> None:
    server = redirector(status)
    client = make_client(host=server.url, sync_mode=True)
    ok, _ = client.track("u1", "Redirected")
    assert ok is False
    _refused_once(client, errors, status)
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [307, 308])
def test_a_307_or_308_to_the_same_origin_is_followed_with_the_body(
    status: int, redirector: Any, make_client: Any, errors: Any
) -> None:
    server = redirector(status, "/moved/v1/batch")
    client = make_client(host=server.url, gzip=False)
    _, msg = client.track("u1", "Moved")
    assert client.flush(timeout=5) is True
    assert [(method, path) for method, path, _, _ in server.requests] == [
        ("POST", "/v1/batch"),
        ("POST", "/moved/v1/batch"),
    ]
    _, _, headers, body = server.requests[1]
    assert headers["Authorization"] == server.requests[0][2]["Authorization"]
    assert msg["messageId"].encode() in body
    assert client.stats()["delivered"] == 1
    assert errors.calls == []


@pytest.mark.parametrize("status", [307, 308])
def test_a_307_or_308_to_another_origin_is_refused_without_the_key(
    status: int, redirector: Any, collector: Collector, make_client: Any, errors: Any
) -> None:
    server = redirector(status, collector.url + "/v1/batch")  # another port: another origin
    client = make_client(host=server.url)
    client.track("u1", "Elsewhere")
    _refused_once(client, errors, status)
    assert collector.snapshot() == []  # no request at all, so none with the key
    assert len(server.requests) == 1
    assert WRITE_KEY not in str(errors.calls[0][0])


def test_an_absolute_location_on_the_same_origin_is_followed(
    redirector: Any, make_client: Any, errors: Any
) -> None:
    server = redirector(308)
    server.location = server.url + "/moved/v1/batch"
    client = make_client(host=server.url)
    client.track("u1", "Moved")
    assert client.flush(timeout=5) is True
    assert client.stats()["delivered"] == 1
    assert [path for _, path, _, _ in server.requests] == ["/v1/batch", "/moved/v1/batch"]


def test_a_redirect_loop_is_refused_after_a_few_hops(
    redirector: Any, make_client: Any, errors: Any
) -> None:
    server = redirector(307, "/v1/batch")  # to itself, for ever
    client = make_client(host=server.url)
    client.track("u1", "Loop")
    _refused_once(client, errors, 307)
    assert 2 <= len(server.requests) <= 10


@pytest.mark.parametrize(("status", "location"), [(302, "/moved/event"), (307, None)])
def test_the_a_track_sender_follows_the_same_rule(
    status: int,
    location: str | None,
    redirector: Any,
    collector: Collector,
    make_client: Any,
    errors: Any,
) -> None:
    server = redirector(status, location or collector.url + "/event")
    client = make_client(host=server.url, protocol="atrack")
    client.track("u1", "Redirected")
    _refused_once(client, errors, status)
    assert len(server.requests) == 1
    assert collector.snapshot() == []
