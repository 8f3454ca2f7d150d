"""`proxies` (as requests takes them) and the proxy environment variables are honoured."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import analytics


class _Proxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.seen: list[str] = []


class _ProxyHandler(BaseHTTPRequestHandler):
    """Answers as the origin would; records the request line a proxy receives."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Proxy

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def proxy() -> Iterator[_Proxy]:
    server = _Proxy()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_proxies_option_routes_requests_through_the_proxy(proxy: _Proxy) -> None:
    url = f"http://127.0.0.1:{proxy.server_address[1]}"
    client = analytics.Client("KEY", host="http://collector.invalid", proxies={"http": url})
    try:
        client.track("u", "Via Proxy")
        assert client.flush(timeout=5) is True
        assert client.stats()["delivered"] == 1
    finally:
        client.shutdown(timeout=2)
    assert proxy.seen == ["http://collector.invalid/v1/batch"]


def test_proxy_environment_is_honoured(proxy: _Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = analytics.Client("KEY", host="http://collector.invalid")
    try:
        client.track("u", "Via Env Proxy")
        assert client.flush(timeout=5) is True
    finally:
        client.shutdown(timeout=2)
    assert proxy.seen == ["http://collector.invalid/v1/batch"]
