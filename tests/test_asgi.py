"""The shipped ASGI middleware with real Starlette and FastAPI apps (TestClient): ids for every
visitor, the request's context, websocket and lifespan untouched, getters that fail."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

pytest.importorskip("starlette")
if importlib.util.find_spec("httpx2") is None:  # newer Starlette prefers httpx2 over httpx
    pytest.importorskip("httpx")

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route, WebSocketRoute  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocket  # noqa: E402

import analytics  # noqa: E402
from analytics.errors import OptionError  # noqa: E402
from analytics.integrations import _common  # noqa: E402
from analytics.integrations.asgi import AnalyticsMiddleware  # noqa: E402

AJS = "ajs_anonymous_id"
seen: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_common, "_warned", set())  # each test sees its own first warning
    seen.clear()


def is_uuid4(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parsed = uuid.UUID(value)
    return parsed.version == 4 and str(parsed) == value


async def order(request: Request) -> JSONResponse:
    """The README's view: no ids, whoever the visitor is."""
    ok, msg = analytics.track(event="Order Completed", properties={"total": 9.5})
    return JSONResponse({"messageId": msg["messageId"]})


def sync_order(request: Request) -> JSONResponse:  # run on Starlette's threadpool
    ok, msg = analytics.track(event="Order Completed", properties={"total": 1})
    return JSONResponse({"messageId": msg["messageId"]})


async def echo(websocket: WebSocket) -> None:
    seen["ws_scope"] = analytics.current_scope()
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    seen["startup_scope"] = analytics.current_scope()
    seen["started"] = True
    yield
    seen["stopped"] = True


def user_from_header(scope: Any) -> Any:
    return Request(scope).headers.get("x-user")


def starlette_app(**options: Any) -> Starlette:
    app = Starlette(
        routes=[
            Route("/order", order),
            Route("/sync-order", sync_order),
            WebSocketRoute("/ws", echo),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(AnalyticsMiddleware, **options)
    return app


def event(client: TestClient, path: str = "/order", **kwargs: Any) -> dict[str, Any]:
    response = client.get(path, **kwargs)
    assert response.status_code == 200, response.text
    assert analytics.flush(timeout=5)
    return response.json()  # type: ignore[no-any-return]


def arrived(collector: Any, answer: dict[str, Any]) -> dict[str, Any]:
    [msg] = [m for m in collector.messages() if m["messageId"] == answer["messageId"]]
    assert msg["event"] == "Order Completed"
    return msg  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", ["/order", "/sync-order"])
def test_a_signed_out_visitor_gets_a_fresh_anonymous_id(facade, collector, path):
    with TestClient(starlette_app(user_id_getter=user_from_header)) as client:
        first = arrived(collector, event(client, path, headers={"User-Agent": "probe/1"}))
        second = arrived(collector, event(client, path))
    assert "userId" not in first and is_uuid4(first["anonymousId"])
    assert is_uuid4(second["anonymousId"]) and second["anonymousId"] != first["anonymousId"]
    assert first["context"]["userAgent"] == "probe/1"
    assert first["context"]["page"]["path"] == path
    auth = base64.b64decode(collector.snapshot()[0].headers["Authorization"].split()[1])
    assert auth.decode() == f"{facade.write_key}:"


@pytest.mark.parametrize(
    ("cookie", "expected"), [("%22abc-123%22", "abc-123"), ("abc-123", "abc-123")]
)
def test_analytics_js_cookie_is_the_anonymous_id(facade, collector, cookie, expected):
    with TestClient(starlette_app()) as client:
        msg = arrived(collector, event(client, headers={"Cookie": f"a=1; {AJS}={cookie}"}))
    assert msg["anonymousId"] == expected and "userId" not in msg


def test_signed_in_has_the_user_id_and_the_cookie_beside_it(facade, collector):
    with TestClient(starlette_app(user_id_getter=user_from_header)) as client:
        alone = arrived(collector, event(client, headers={"X-User": "u-1"}))
        both = arrived(
            collector, event(client, headers={"X-User": "u-1", "Cookie": f"{AJS}=%22a-1%22"})
        )
    assert alone["userId"] == "u-1" and "anonymousId" not in alone
    assert (both["userId"], both["anonymousId"]) == ("u-1", "a-1")


def test_the_anonymous_id_getter_comes_after_the_cookie(facade, collector):
    def visitor(scope: Any) -> Any:
        return Request(scope).headers.get("x-visitor")

    with TestClient(starlette_app(anonymous_id_getter=visitor)) as client:
        by_getter = arrived(collector, event(client, headers={"X-Visitor": "v-1"}))
        by_cookie = arrived(
            collector, event(client, headers={"X-Visitor": "v-1", "Cookie": f"{AJS}=c-1"})
        )
    assert (by_getter["anonymousId"], by_cookie["anonymousId"]) == ("v-1", "c-1")


def test_failing_getters_are_a_warning_not_a_500(facade, collector, caplog):
    def no_user(scope: Any) -> Any:
        raise RuntimeError("auth down")

    def wrong_type(scope: Any) -> Any:
        return 1.5  # not an id

    caplog.set_level(logging.WARNING, logger="analytics")
    app = starlette_app(user_id_getter=no_user, anonymous_id_getter=wrong_type)
    with TestClient(app) as client:
        for _ in range(2):
            msg = arrived(collector, event(client))
            assert "userId" not in msg and is_uuid4(msg["anonymousId"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # once per getter and exception type
    assert any("user_id_getter" in w and "RuntimeError" in w for w in warnings)
    assert any("anonymous_id_getter" in w and "ValidationError" in w for w in warnings)


def test_the_request_context(facade, collector):
    url = "/order?utm_source=news&utm_campaign=spring"
    headers = {
        "User-Agent": "probe/2",
        "Referer": "https://example.com/from",
        "Accept-Language": "fr-CH, fr;q=0.9",
        "X-Forwarded-For": "6.6.6.6, 198.51.100.4",
    }
    with TestClient(starlette_app(trusted_proxy_count=1)) as client:
        behind = arrived(collector, event(client, url, headers=headers))["context"]
    with TestClient(starlette_app(send_ip=False)) as client:
        no_ip = arrived(collector, event(client, url, headers=headers))["context"]
    assert behind["ip"] == "198.51.100.4"
    assert behind["userAgent"] == "probe/2" and behind["locale"] == "fr-CH"
    assert behind["page"] == {
        "url": "http://testserver" + url,
        "path": "/order",
        "search": "?utm_source=news&utm_campaign=spring",
        "referrer": "https://example.com/from",
    }
    assert behind["campaign"] == {"source": "news", "name": "spring"}
    assert "ip" not in no_ip and no_ip["userAgent"] == "probe/2"


def test_websocket_and_lifespan_pass_through(facade):
    with TestClient(starlette_app()) as client:
        assert seen["started"] is True and seen["startup_scope"] is None
        with client.websocket_connect("/ws") as ws:
            ws.send_text("ping")
            assert ws.receive_text() == "ping"
    assert seen["ws_scope"] is None and seen["stopped"] is True


def test_other_scopes_reach_the_app_as_they_came():
    calls: list[tuple[Any, Any, Any]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        calls.append((scope, receive, send))

    async def receive() -> dict[str, Any]:
        return {}

    async def send(message: Any) -> None:
        pass

    middleware = AnalyticsMiddleware(inner)
    for kind in ("websocket", "lifespan"):
        original = {"type": kind, "headers": [(b"cookie", b"ajs_anonymous_id=x")]}
        given = dict(original)
        asyncio.run(middleware(given, receive, send))
        assert calls[-1] == (given, receive, send) and given == original  # same objects, unchanged
    assert len(calls) == 2


def test_a_wrong_option_is_named_at_startup():
    with pytest.raises(OptionError, match="trusted_proxy_count"):
        AnalyticsMiddleware(lambda *a: None, trusted_proxy_count=-1)  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="user_id_getter"):
        AnalyticsMiddleware(lambda *a: None, user_id_getter="no.such.module")  # type: ignore[arg-type]


def test_fastapi_through_the_middleware(facade, collector):
    pytest.importorskip("fastapi")
    import _fastapi_app

    with TestClient(_fastapi_app.app) as client:
        anonymous = arrived(collector, event(client))
        signed_in = arrived(
            collector, event(client, headers={"X-User-Id": "f-1", "Cookie": f"{AJS}=%22f-a%22"})
        )
    assert "userId" not in anonymous and is_uuid4(anonymous["anonymousId"])
    assert (signed_in["userId"], signed_in["anonymousId"]) == ("f-1", "f-a")
