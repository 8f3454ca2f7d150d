"""The README's FastAPI setup (the shipped ASGI middleware) in a real FastAPI app, via TestClient:
every event carries the request's context and the scope's user, and concurrent requests
(event-loop tasks and threadpool threads) never see each other's scope."""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

pytest.importorskip("fastapi")
if importlib.util.find_spec("httpx2") is None:  # newer Starlette prefers httpx2 over httpx
    pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

import analytics  # noqa: E402

_fastapi_app = pytest.importorskip("_fastapi_app")

CLIENT_ADDRESS = ("203.0.113.7", 50123)
CONCURRENT = 20


@pytest.fixture
def client_and_ip(facade):
    """A TestClient whose requests come from CLIENT_ADDRESS, and the ip the app will see."""
    _fastapi_app.gate.reset()
    try:
        client, ip = TestClient(_fastapi_app.app, client=CLIENT_ADDRESS), CLIENT_ADDRESS[0]
    except TypeError:  # Starlette < 0.44 has no `client=`: requests come from "testclient"
        client, ip = TestClient(_fastapi_app.app), "testclient"
    with client:
        yield client, ip


def by_n(messages: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for m in messages:
        n = m["properties"]["n"]
        assert n not in out, f"event {n} arrived twice"
        out[n] = m
    return out


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_recipe_puts_the_request_context_and_the_user_on_each_event(client_and_ip, collector, kind):
    client, ip = client_and_ip
    response = client.get(
        f"/{kind}/1?utm_source=news&utm_medium=email&utm_campaign=spring&page=2",
        headers={
            "X-User-Id": "user-1",
            "User-Agent": "probe/1",
            "Referer": "https://example.com/from",
            "Accept-Language": "fr-CH, fr;q=0.9, en;q=0.8",
        },
    )
    assert response.status_code == 200
    assert analytics.flush(timeout=5)
    assert analytics.current_scope() is None  # nothing leaked into the test's own context

    [m] = collector.messages()
    assert m["type"] == "track"
    assert m["event"] == f"{kind.capitalize()} Hit"
    assert m["userId"] == "user-1"
    assert "anonymousId" not in m or m["anonymousId"] is None
    c = m["context"]
    assert c["ip"] == ip
    assert c["userAgent"] == "probe/1"
    assert c["locale"] == "fr-CH"
    assert c["page"] == {
        "url": f"http://testserver/{kind}/1?utm_source=news&utm_medium=email"
        "&utm_campaign=spring&page=2",
        "path": f"/{kind}/1",
        "search": "?utm_source=news&utm_medium=email&utm_campaign=spring&page=2",
        "referrer": "https://example.com/from",
    }
    assert c["campaign"] == {"source": "news", "medium": "email", "name": "spring"}
    assert c["library"]["name"] == analytics.LIBRARY_NAME  # the scope merges under, not over


def test_concurrent_requests_never_see_each_others_scope(client_and_ip, collector):
    client, ip = client_and_ip

    def get(n: int) -> int:
        kind = "async" if n % 2 else "sync"
        response = client.get(
            f"/{kind}/{n}?hold={CONCURRENT}&utm_campaign=c{n}",
            headers={"X-User-Id": f"user-{n}", "User-Agent": f"probe/{n}"},
        )
        assert response.status_code == 200, response.text
        return int(response.json()["n"])

    with ThreadPoolExecutor(CONCURRENT) as pool:
        assert sorted(pool.map(get, range(CONCURRENT))) == list(range(CONCURRENT))
    # every request was inside its scopes at the same time before any of them tracked
    assert _fastapi_app.gate.peak == CONCURRENT
    assert analytics.flush(timeout=5)

    events = by_n(collector.messages())
    assert sorted(events) == list(range(CONCURRENT))
    sync_threads = set()
    for n, m in events.items():
        kind = "async" if n % 2 else "sync"
        assert m["event"] == f"{kind.capitalize()} Hit"
        assert m["userId"] == f"user-{n}"
        c = m["context"]
        assert c["userAgent"] == f"probe/{n}"
        assert c["page"]["path"] == f"/{kind}/{n}"
        assert (
            c["page"]["url"] == f"http://testserver/{kind}/{n}?hold={CONCURRENT}&utm_campaign=c{n}"
        )
        assert c["campaign"] == {"name": f"c{n}"}
        assert c["ip"] == ip
        if kind == "sync":
            sync_threads.add(m["properties"]["thread"])
    assert len(sync_threads) > 1  # the sync endpoints ran on several threadpool threads
