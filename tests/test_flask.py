"""The Flask extension with real Flask: per-app clients from config, a scope per request."""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

flask = pytest.importorskip("flask")

from helpers import is_uuid4  # noqa: E402

import analytics  # noqa: E402
from analytics.integrations import _common  # noqa: E402
from analytics.integrations.flask import Analytics  # noqa: E402

SHOP = "/shop?utm_source=news&utm_medium=email&utm_campaign=spring&utm_term=t&utm_content=c"
BROWSER = {
    "User-Agent": "Mozilla/5.0 (Test)",
    "Referer": "https://mail.example/",
    "Accept-Language": "nl-BE,nl;q=0.9",
}


def user_from_header() -> Any:
    """The test's stand-in for flask-login's current_user."""
    return flask.request.headers.get("X-Test-User")


class Apps:
    """Builds Flask apps aimed at the collector; shuts every app's client down afterwards."""

    def __init__(self, collector: Any) -> None:
        self.collector = collector
        self.built: list[Any] = []
        self.gate: dict[str, Any] = {}

    def make(self, ext: Analytics | None = None, **config: Any) -> tuple[Any, Analytics]:
        app = flask.Flask(f"app{len(self.built)}")
        app.config.update(
            ANALYTICS_WRITE_KEY="flask-key",
            ANALYTICS_HOST=self.collector.url,
            ANALYTICS_FLUSH_INTERVAL=0.05,
            ANALYTICS_TIMEOUT=5,
        )
        app.config.update({f"ANALYTICS_{k}": v for k, v in config.items()})
        ext = ext if ext is not None else Analytics(user_id_getter=user_from_header)
        ext.init_app(app)
        self.built.append(app)
        self.routes(app, ext)
        return app, ext

    def routes(self, app: Any, ext: Analytics) -> None:
        @app.get("/shop")
        def shop() -> Any:
            ok, msg = ext.track(anonymous_id=flask.request.args.get("aid"), event="Viewed")
            return {"ok": ok, "messageId": msg["messageId"]}

        @app.get("/whoami")
        def whoami() -> Any:
            current = analytics.current_scope()
            assert current is not None
            return {"user_id": current.user_id, "context": dict(current.context)}

        @app.get("/meet")
        def meet() -> Any:
            self.gate["barrier"].wait()  # both requests are inside their scopes now
            ext.track(event="Met", properties={"ua": flask.request.headers["User-Agent"]})
            return {}

        @app.get("/order")
        def order() -> Any:  # the README's view: the module, no ids
            ok, msg = analytics.track(event="Order Completed", properties={"app": app.name})
            return {"ok": ok, "messageId": msg["messageId"]}

        @app.get("/boom")
        def boom() -> Any:
            raise RuntimeError("view failed")

    def close(self) -> None:
        for app in self.built:
            Analytics.state(app).client.shutdown(timeout=2)


@pytest.fixture
def apps(collector: Any) -> Iterator[Apps]:
    factory = Apps(collector)
    yield factory
    factory.close()


def test_an_event_carries_the_request_and_the_user(apps, collector):
    app, ext = apps.make()
    response = app.test_client().get(SHOP, headers={"X-Test-User": "42", **BROWSER})
    assert response.status_code == 200
    assert analytics.current_scope() is None  # closed at teardown (same thread)
    with app.app_context():
        assert ext.flush(timeout=5)
    [msg] = collector.messages()
    assert msg["messageId"] == response.json["messageId"]
    assert msg["userId"] == "42" and "anonymousId" not in msg
    ctx = msg["context"]
    assert ctx["ip"] == "127.0.0.1"
    assert ctx["userAgent"] == "Mozilla/5.0 (Test)"
    assert ctx["locale"] == "nl-BE"
    assert ctx["page"] == {
        "url": "http://localhost" + SHOP,
        "path": "/shop",
        "search": SHOP[SHOP.index("?") :],
        "referrer": "https://mail.example/",
    }
    assert ctx["campaign"] == {
        "source": "news", "medium": "email", "name": "spring", "term": "t", "content": "c",
    }  # fmt: skip


def test_an_anonymous_request_has_no_user_id(apps, collector):
    app, ext = apps.make()
    app.test_client().get("/shop?aid=visitor-9")
    assert Analytics.state(app).client.flush(timeout=5)
    [msg] = collector.messages()
    assert msg["anonymousId"] == "visitor-9" and "userId" not in msg


def test_each_app_has_its_own_client_and_key(apps, collector):
    ext = Analytics(user_id_getter=user_from_header)  # one extension, two apps
    first, _ = apps.make(ext, WRITE_KEY="key-one")
    second, _ = apps.make(ext, WRITE_KEY="key-two", GZIP=True)
    assert Analytics.state(first).client is not Analytics.state(second).client
    assert first.extensions["analytics"].client.gzip is False
    for n in range(3):
        first.test_client().get("/shop", headers={"X-Test-User": f"one-{n}"})
        second.test_client().get("/shop", headers={"X-Test-User": f"two-{n}"})
    for app in (first, second):
        assert Analytics.state(app).client.flush(timeout=5)
    by_key: dict[str, set[str]] = {}
    for request in collector.snapshot():
        key = base64.b64decode(request.headers["Authorization"].split()[1]).decode()
        by_key.setdefault(key, set()).update(m["userId"] for m in request.messages)
    assert by_key == {
        "key-one:": {"one-0", "one-1", "one-2"},
        "key-two:": {"two-0", "two-1", "two-2"},
    }
    assert {r.headers.get("Content-Encoding") for r in collector.snapshot()} == {None, "gzip"}


def test_the_extension_outside_an_app_is_a_clear_error(apps):
    _, ext = apps.make()
    with pytest.raises(RuntimeError):
        ext.track("u", "Nowhere")


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"BATCHSIZE": 3}, "ANALYTICS_BATCHSIZE"),
        ({"TIMEOUT": "fast"}, "ANALYTICS_TIMEOUT"),
        ({"MAX_RETRIES": -1}, "ANALYTICS_MAX_RETRIES"),
        ({"UPLOAD_SIZE": 5, "BATCH_SIZE": 6}, "ANALYTICS_BATCH_SIZE"),
        ({"WRITE_KEY": None}, "ANALYTICS_WRITE_KEY"),
        ({"TRUSTED_PROXY_COUNT": 1.5}, "ANALYTICS_TRUSTED_PROXY_COUNT"),
    ],
)
def test_a_wrong_config_key_is_named(apps, config, key):
    with pytest.raises(analytics.ValidationError, match=key):
        apps.make(**config)


def test_stub_needs_no_write_key_and_init_app_runs_once_per_app(apps, collector):
    app, ext = apps.make(WRITE_KEY=None, SEND=False)
    app.test_client().get("/shop", headers={"X-Test-User": "s"})
    [kept] = Analytics.state(app).client.sent
    assert kept["userId"] == "s" and kept["context"]["ip"] == "127.0.0.1"
    with pytest.raises(RuntimeError, match="already"):
        ext.init_app(app)
    assert collector.snapshot() == []


def whoami(apps: Apps, headers: dict[str, str] | None = None, **config: Any) -> dict[str, Any]:
    app, _ = apps.make(**config)
    response = app.test_client().get("/whoami", headers=headers or {})
    assert response.status_code == 200
    return response.json  # type: ignore[no-any-return]


def test_user_id_from_request_can_be_turned_off(apps):
    assert whoami(apps, {"X-Test-User": "5"})["user_id"] == "5"
    assert whoami(apps, {"X-Test-User": "5"}, USER_ID_FROM_REQUEST=False)["user_id"] is None


@pytest.mark.parametrize(
    ("trusted", "expected"),
    [(None, "127.0.0.1"), (1, "10.0.0.7"), (2, "6.6.6.6"), (3, "127.0.0.1")],
)
def test_x_forwarded_for_is_read_only_behind_trusted_proxies(apps, trusted, expected):
    config = {} if trusted is None else {"TRUSTED_PROXY_COUNT": trusted}
    seen = whoami(apps, {"X-Forwarded-For": "6.6.6.6, 10.0.0.7"}, **config)
    assert seen["context"]["ip"] == expected


def test_send_ip_false_leaves_the_ip_out(apps):
    seen = whoami(apps, BROWSER, SEND_IP=False)
    assert "ip" not in seen["context"] and seen["context"]["userAgent"] == BROWSER["User-Agent"]


def test_a_failing_view_still_closes_the_scope(apps):
    app, _ = apps.make()
    assert app.test_client().get("/boom").status_code == 500
    assert analytics.current_scope() is None


def test_a_failing_user_id_getter_does_not_fail_the_request(apps):
    def broken() -> Any:
        raise LookupError("no session store")

    app, _ = apps.make(Analytics(user_id_getter=broken))
    response = app.test_client().get("/whoami", headers=BROWSER)
    assert response.status_code == 200 and response.json["user_id"] is None


def test_two_concurrent_requests_keep_their_own_scope(apps, collector):
    app, ext = apps.make()
    apps.gate["barrier"] = threading.Barrier(2, timeout=5)
    statuses: list[int] = []

    def request(n: int) -> None:
        response = app.test_client().get(
            "/meet", headers={"X-Test-User": str(n), "User-Agent": f"ua-{n}"}
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=request, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert statuses == [200, 200]
    assert Analytics.state(app).client.flush(timeout=5)
    pairs = {(m["userId"], m["context"]["userAgent"], m["properties"]["ua"])
             for m in collector.messages()}  # fmt: skip
    assert pairs == {("1", "ua-1", "ua-1"), ("2", "ua-2", "ua-2")}


def test_an_async_view_sees_the_scope(apps):
    pytest.importorskip("asgiref")
    app, _ = apps.make()

    @app.get("/async")
    async def async_view() -> Any:
        current = analytics.current_scope()
        return {"user_id": current.user_id if current else None}

    response = app.test_client().get("/async", headers={"X-Test-User": "7"})
    assert response.json == {"user_id": "7"}
    assert analytics.current_scope() is None


# -- every option of the table is a config key ------------------------------------------------


def test_the_spool_options_are_config_keys(apps, collector, tmp_path):
    spool = tmp_path / "flask-spool.db"
    app, _ = apps.make(SPOOL_PATH=str(spool), DURABLE=True, SPOOL_MAX_BYTES=10**6, FSYNC=False)
    client = Analytics.state(app).client
    assert client.durable is True and client.settings.spool_path == str(spool)
    assert client.settings.spool_max_bytes == 10**6
    assert spool.exists()
    response = app.test_client().get("/shop", headers={"X-Test-User": "spooled"})
    assert client.flush(timeout=5)
    assert [m["messageId"] for m in collector.messages()] == [response.json["messageId"]]


def test_the_protocol_is_a_config_key(apps):
    from analytics.atrack import ATrackClient

    app, _ = apps.make(PROTOCOL="atrack", STUB=True)
    client = Analytics.state(app).client
    assert type(client) is ATrackClient and client.stub is True
    app.test_client().get("/shop", headers={"X-Test-User": "a-track-user"})
    assert [m["userId"] for m in client.sent] == ["a-track-user"]


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"DURABLE": "yes", "SPOOL_PATH": "x.db"}, "ANALYTICS_DURABLE"),
        ({"DURABLE": True}, "ANALYTICS_DURABLE"),
        ({"PROTOCOL": "mqtt"}, "ANALYTICS_PROTOCOL"),
        ({"GZIP": "false"}, "ANALYTICS_GZIP"),
    ],
)
def test_a_wrong_new_option_is_named(apps, config, key):
    with pytest.raises(analytics.ValidationError, match=key):
        apps.make(**config)


# -- anonymous visitors, and the module's calls in an app ------------------------------------

AJS = "ajs_anonymous_id"


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_common, "_warned", set())  # each test sees its own first warning


def key_of(request: Any) -> str:
    return base64.b64decode(request.headers["Authorization"].split()[1]).decode()


def order(app: Any, collector: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """GET /order (a view calling the module's `analytics.track`); the event as it arrived."""
    client = app.test_client()
    headers = dict(headers or {})
    for pair in filter(None, headers.pop("Cookie", "").split("; ")):
        name, _, value = pair.partition("=")  # Werkzeug's client sends its own jar's cookies
        client.set_cookie(name, value)
    response = client.get("/order", headers=headers)
    assert response.status_code == 200, response.text
    with app.app_context():
        assert analytics.flush(timeout=5)  # the module's flush: this app's client
    wanted = response.json["messageId"]
    [msg] = [m for m in collector.messages() if m["messageId"] == wanted]
    return msg  # type: ignore[no-any-return]


def test_a_signed_out_visitor_gets_an_anonymous_id_and_the_apps_key(apps, collector):
    app, _ = apps.make()
    msg = order(app, collector)
    assert "userId" not in msg and is_uuid4(msg["anonymousId"])
    assert msg["properties"] == {"app": app.name}
    assert {key_of(r) for r in collector.snapshot()} == {"flask-key:"}
    assert analytics.write_key is None or analytics.write_key != "flask-key"


@pytest.mark.parametrize(("cookie", "expected"), [("%22abc-123%22", "abc-123"), ("abc", "abc")])
def test_analytics_js_cookie_is_the_anonymous_id(apps, collector, cookie, expected):
    app, _ = apps.make()
    msg = order(app, collector, {"Cookie": f"x=1; {AJS}={cookie}"})
    assert msg["anonymousId"] == expected and "userId" not in msg


def test_signed_in_has_the_user_id_and_the_cookie_beside_it(apps, collector):
    app, _ = apps.make()
    msg = order(app, collector, {"X-Test-User": "42"})
    assert msg["userId"] == "42" and "anonymousId" not in msg
    msg = order(app, collector, {"X-Test-User": "42", "Cookie": f"{AJS}=%22a-1%22"})
    assert (msg["userId"], msg["anonymousId"]) == ("42", "a-1")


def visitor_from_header(request: Any) -> Any:
    return request.headers.get("X-Visitor")


def test_the_anonymous_id_getter_by_keyword_or_config(apps, collector):
    app, _ = apps.make(Analytics(anonymous_id_getter=visitor_from_header))
    assert order(app, collector, {"X-Visitor": "v-1"})["anonymousId"] == "v-1"
    by_config, _ = apps.make(ANONYMOUS_ID_FROM_REQUEST=f"{__name__}.visitor_from_header")
    assert order(by_config, collector, {"X-Visitor": "v-2"})["anonymousId"] == "v-2"
    cookie_first = {"X-Visitor": "v-3", "Cookie": f"{AJS}=%22c-3%22"}
    assert order(by_config, collector, cookie_first)["anonymousId"] == "c-3"


def test_failing_getters_are_a_warning_not_a_500(apps, collector, caplog):
    def no_user() -> Any:
        raise RuntimeError("login manager down")

    def no_visitor(request: Any) -> Any:
        raise KeyError("visitor")

    caplog.set_level(logging.WARNING, logger="analytics")
    app, _ = apps.make(Analytics(user_id_getter=no_user, anonymous_id_getter=no_visitor))
    for _ in range(2):
        msg = order(app, collector)
        assert "userId" not in msg and is_uuid4(msg["anonymousId"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # once per getter and exception type, not once per request
    assert any("user_id_getter" in w and "RuntimeError" in w for w in warnings)
    assert any("anonymous_id_getter" in w and "KeyError" in w for w in warnings)


def test_module_calls_go_to_each_apps_client(apps, collector, facade):
    first, _ = apps.make(WRITE_KEY="key-one")
    second, _ = apps.make(WRITE_KEY="key-two")
    for _ in range(2):
        for app in (first, second):
            assert app.test_client().get("/order").status_code == 200
    with first.app_context():  # an app context without a request
        assert analytics.track("batch-job", "Job Ran")[0]
        assert analytics.flush(timeout=5)
    with second.app_context():
        assert analytics.flush(timeout=5)
    analytics.track("outside", "Module Default")  # no app context: the module's client
    assert analytics.flush(timeout=5)
    by_key: dict[str, list[str]] = {}
    for request in collector.snapshot():
        by_key.setdefault(key_of(request), []).extend(
            m["properties"].get("app", m["event"]) for m in request.messages
        )
    assert sorted(by_key["key-one:"]) == sorted([first.name, first.name, "Job Ran"])
    assert by_key["key-two:"] == [second.name, second.name]
    assert by_key[f"{facade.write_key}:"] == ["Module Default"]
    assert len(by_key) == 3
