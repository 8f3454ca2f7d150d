"""The Django integration with real Django: AppConfig, settings, middleware (sync and async)."""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from typing import Any

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only",
        ALLOWED_HOSTS=["testserver", "shop.example"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["analytics.integrations.django"],
        MIDDLEWARE=[
            f"{__name__}.fake_auth",
            "analytics.integrations.django.middleware.AnalyticsMiddleware",
        ],
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()

from asgiref.sync import iscoroutinefunction  # noqa: E402
from django.apps import apps  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.test import AsyncClient, Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from django.utils.decorators import sync_and_async_middleware  # noqa: E402
from django.utils.functional import SimpleLazyObject  # noqa: E402
from helpers import is_uuid4  # noqa: E402

import analytics  # noqa: E402
from analytics.integrations import _common  # noqa: E402
from analytics.integrations.django.apps import AnalyticsConfig  # noqa: E402

SHOP = "/shop/?utm_source=news&utm_medium=email&utm_campaign=spring&utm_term=t&utm_content=c"
BROWSER = {
    "HTTP_USER_AGENT": "Mozilla/5.0 (Test)",
    "HTTP_REFERER": "https://mail.example/",
    "HTTP_ACCEPT_LANGUAGE": "nl-BE,nl;q=0.9",
}


# -- a fake authentication (no database) and the views ---------------------------------------


class FakeUser:
    is_authenticated = True

    def __init__(self, pk: str) -> None:
        self.pk = int(pk)


class Anonymous:
    is_authenticated = False
    pk = None


def _set_user(request: Any) -> None:
    uid = request.headers.get("X-Test-User")
    user = FakeUser(uid) if uid else Anonymous()
    how = request.headers.get("X-Test-How", "plain")
    if how == "lazy":  # as django.contrib.auth sets it: evaluated on first use
        request.user = SimpleLazyObject(lambda: user)
    elif how == "broken":  # an auth backend that fails on first use

        def fail() -> Any:
            raise LookupError("session store down")

        request.user = SimpleLazyObject(fail)
    elif how == "auser":  # Django >= 5.0 also sets an async getter

        async def auser() -> Any:
            return user

        request.user = SimpleLazyObject(lambda: user)
        request.auser = auser
    else:
        request.user = user


@sync_and_async_middleware
def fake_auth(get_response: Any) -> Any:
    """Sets `request.user` from the X-Test-User header, before AnalyticsMiddleware runs."""
    if iscoroutinefunction(get_response):

        async def async_middleware(request: Any) -> Any:
            _set_user(request)
            return await get_response(request)

        return async_middleware

    def middleware(request: Any) -> Any:
        _set_user(request)
        return get_response(request)

    return middleware


def shop(request: Any) -> JsonResponse:
    ok, msg = analytics.track(anonymous_id=request.GET.get("aid"), event="Viewed")
    return JsonResponse({"ok": ok, "messageId": msg["messageId"]})


def order(request: Any) -> JsonResponse:
    """The README's view: no ids, whoever the visitor is."""
    ok, msg = analytics.track(event="Order Completed", properties={"total": 9.5})
    return JsonResponse({"ok": ok, "messageId": msg["messageId"]})


async def aorder(request: Any) -> JsonResponse:
    ok, msg = analytics.track(event="Order Completed", properties={"total": 9.5})
    return JsonResponse({"ok": ok, "messageId": msg["messageId"]})


def visitor_from_header(request: Any) -> Any:
    """Named by dotted path in ANALYTICS["ANONYMOUS_ID_FROM_REQUEST"]."""
    return request.headers.get("X-Visitor")


def broken_visitor(request: Any) -> Any:
    raise KeyError("no visitor")


def whoami(request: Any) -> JsonResponse:
    current = analytics.current_scope()
    assert current is not None
    return JsonResponse({"user_id": current.user_id, "context": dict(current.context)})


gate: dict[str, Any] = {}


def meet(request: Any) -> JsonResponse:
    gate["barrier"].wait()  # both requests are inside their scopes now
    analytics.track(event="Met", properties={"ua": request.headers["User-Agent"]})
    return JsonResponse({})


async def ameet(request: Any) -> JsonResponse:
    gate["arrived"].append(1)
    if len(gate["arrived"]) == 2:
        gate["event"].set()
    await asyncio.wait_for(gate["event"].wait(), 5)
    analytics.track(event="AMet", properties={"ua": request.headers["User-Agent"]})
    return JsonResponse({})


def on_error_hook(error: Exception, batch: list[dict[str, Any]]) -> None:
    """Named by dotted path in ANALYTICS["ON_ERROR"]."""


urlpatterns = [
    path("shop/", shop),
    path("order/", order),
    path("aorder/", aorder),
    path("whoami/", whoami),
    path("meet/", meet),
    path("ameet/", ameet),
]


def ready() -> None:
    apps.get_app_config("analytics_django").ready()


def sent(collector: Any) -> list[dict[str, Any]]:
    assert analytics.flush(timeout=5)
    return collector.messages()


# -- the app and its settings ------------------------------------------------------------------


def test_the_app_config_is_found_from_the_module_name():
    config = apps.get_app_config("analytics_django")
    assert type(config) is AnalyticsConfig
    assert config.name == "analytics.integrations.django"
    from analytics.integrations.django import AnalyticsMiddleware
    from analytics.integrations.django.middleware import AnalyticsMiddleware as same

    assert AnalyticsMiddleware is same  # both paths work in MIDDLEWARE


def test_ready_configures_the_facade_and_is_idempotent(facade, collector):
    options = {
        "WRITE_KEY": "django-key",
        "HOST": collector.url,
        "SEND": True,
        "UPLOAD_SIZE": 7,
        "FLUSH_INTERVAL": 0.05,
        "TIMEOUT": 5,
        "ON_ERROR": f"{__name__}.on_error_hook",
        "SEND_IP": True,
    }
    with override_settings(ANALYTICS=options):
        ready()
        assert (analytics.write_key, analytics.host) == ("django-key", collector.url)
        assert (analytics.batch_size, analytics.upload_size, analytics.stub) == (7, 7, False)
        assert analytics.on_error is on_error_hook
        analytics.track("u", "Configured")
        client = analytics.default_client
        ready()  # Django may run ready() twice: same settings, same client
        analytics.track("u", "Again")
        assert analytics.default_client is client
    [request] = collector.wait_for_requests(1)
    assert analytics.flush(timeout=5)
    auth = base64.b64encode(b"django-key:").decode()
    assert {r.headers["Authorization"] for r in collector.snapshot()} == {f"Basic {auth}"}
    assert [m["event"] for m in collector.messages()] == ["Configured", "Again"]


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"WRITE_KYE": "typo"}, "WRITE_KYE"),
        ({"TIMEOUT": "fast"}, "TIMEOUT"),
        ({"BATCH_SIZE": 0}, "BATCH_SIZE"),
        ({"GZIP": "yes"}, "GZIP"),
        ({"HOST": "ftp://collector"}, "HOST"),
        ({"SEND": True, "STUB": True}, "STUB"),
        ({"ON_ERROR": "nowhere.at_all"}, "ON_ERROR"),
        ({"PROXIES": ["http://proxy"]}, "PROXIES"),
        ({"SEND_IP": 1}, "SEND_IP"),
        ({"TRUSTED_PROXY_COUNT": -1}, "TRUSTED_PROXY_COUNT"),
        (["WRITE_KEY"], "ANALYTICS"),
    ],
)
def test_a_wrong_setting_is_improperly_configured_by_name(facade, options, key):
    before = analytics.write_key
    with override_settings(ANALYTICS=options), pytest.raises(ImproperlyConfigured, match=key):
        ready()
    assert analytics.write_key == before  # nothing half-applied


def test_a_wrong_setting_fails_the_middleware_too():
    bad = override_settings(ANALYTICS={"TRUSTED_PROXY_COUNT": "2"})
    with bad, pytest.raises(ImproperlyConfigured, match="TRUSTED_PROXY_COUNT"):
        Client().get("/whoami/")


# -- what a request puts in its scope ------------------------------------------------------------


def test_an_event_carries_the_request_and_the_signed_in_user(facade, collector):
    response = Client().get(SHOP, HTTP_X_TEST_USER="42", **BROWSER)
    assert response.status_code == 200
    assert analytics.current_scope() is None  # closed when the request ended
    [msg] = sent(collector)
    assert msg["messageId"] == response.json()["messageId"]
    assert msg["userId"] == "42" and "anonymousId" not in msg
    ctx = msg["context"]
    assert ctx["ip"] == "127.0.0.1"
    assert ctx["userAgent"] == "Mozilla/5.0 (Test)"
    assert ctx["locale"] == "nl-BE"
    assert ctx["page"] == {
        "url": "http://testserver" + SHOP,
        "path": "/shop/",
        "search": SHOP[SHOP.index("?") :],
        "referrer": "https://mail.example/",
    }
    assert ctx["campaign"] == {
        "source": "news", "medium": "email", "name": "spring", "term": "t", "content": "c",
    }  # fmt: skip
    assert ctx["library"]["name"] == analytics.LIBRARY_NAME


def test_an_anonymous_request_has_no_user_id(facade, collector):
    Client().get("/shop/?aid=visitor-9", **BROWSER)
    [msg] = sent(collector)
    assert msg["anonymousId"] == "visitor-9" and "userId" not in msg
    assert msg["context"]["page"]["path"] == "/shop/"


def whoami_with(headers: dict[str, str], **options: Any) -> dict[str, Any]:
    with override_settings(ANALYTICS=options):
        response = Client().get("/whoami/", **headers)
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize("how", ["plain", "lazy", "auser"])
def test_the_user_id_in_sync_and_async_mode(how):
    headers = {"HTTP_X_TEST_USER": "8", "HTTP_X_TEST_HOW": how}
    assert whoami_with(headers)["user_id"] == "8"

    async def main() -> Any:
        response = await AsyncClient().get(
            "/whoami/", headers={"X-Test-User": "8", "X-Test-How": how}
        )
        return response.json()

    seen = asyncio.run(main())
    assert seen["user_id"] == "8"
    assert seen["context"]["ip"] == "127.0.0.1"


def test_user_id_from_request_can_be_turned_off():
    assert whoami_with({"HTTP_X_TEST_USER": "5"})["user_id"] == "5"
    assert whoami_with({"HTTP_X_TEST_USER": "5"}, USER_ID_FROM_REQUEST=False)["user_id"] is None


@pytest.mark.parametrize(
    ("trusted", "expected"),
    [(None, "127.0.0.1"), (0, "127.0.0.1"), (1, "10.0.0.7"), (2, "6.6.6.6"), (3, "127.0.0.1")],
)
def test_x_forwarded_for_is_read_only_behind_trusted_proxies(trusted, expected):
    options = {} if trusted is None else {"TRUSTED_PROXY_COUNT": trusted}
    seen = whoami_with({"HTTP_X_FORWARDED_FOR": "6.6.6.6, 10.0.0.7"}, **options)
    assert seen["context"]["ip"] == expected


def test_send_ip_false_leaves_the_ip_out():
    seen = whoami_with(BROWSER, SEND_IP=False)
    assert "ip" not in seen["context"]
    assert seen["context"]["userAgent"] == "Mozilla/5.0 (Test)"


def test_a_host_not_allowed_does_not_fail_the_request():
    seen = whoami_with({"HTTP_HOST": "evil.example"})
    assert seen["context"]["page"]["url"] == "/whoami/"  # the path only


# -- anonymous visitors ------------------------------------------------------------------------

AJS = "ajs_anonymous_id"


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_common, "_warned", set())  # each test sees its own first warning


def order_with(collector: Any, headers: dict[str, str], **options: Any) -> dict[str, Any]:
    with override_settings(ANALYTICS=options):
        response = Client().get("/order/", **headers)
    assert response.status_code == 200
    [msg] = [m for m in sent(collector) if m["messageId"] == response.json()["messageId"]]
    assert msg["event"] == "Order Completed"
    return msg  # type: ignore[no-any-return]


def test_a_signed_out_visitor_gets_a_fresh_anonymous_id(facade, collector):
    first = order_with(collector, BROWSER)
    assert "userId" not in first and is_uuid4(first["anonymousId"])
    assert first["context"]["page"]["path"] == "/order/"
    second = Client().get("/order/")
    assert second.status_code == 200
    ids = {m["anonymousId"] for m in sent(collector)}
    assert len(ids) == 2  # one per request


@pytest.mark.parametrize(
    ("cookie", "expected"),
    [
        ("%22abc-123%22", "abc-123"),  # as analytics.js writes it
        ("abc-123", "abc-123"),  # unquoted
        ("%22caf%C3%A9%20%5C%22x%5C%22%22", 'café "x"'),  # both layers, escapes and all
    ],
)
def test_analytics_js_cookie_is_the_anonymous_id(facade, collector, cookie, expected):
    msg = order_with(collector, {"HTTP_COOKIE": f"other=1; {AJS}={cookie}; last=2"})
    assert msg["anonymousId"] == expected and "userId" not in msg


def test_signed_in_has_the_user_id_and_the_cookie_beside_it(facade, collector):
    msg = order_with(collector, {"HTTP_X_TEST_USER": "42"})
    assert msg["userId"] == "42" and "anonymousId" not in msg
    msg = order_with(collector, {"HTTP_X_TEST_USER": "42", "HTTP_COOKIE": f"{AJS}=%22a-1%22"})
    assert (msg["userId"], msg["anonymousId"]) == ("42", "a-1")


def test_the_anonymous_id_getter_comes_after_the_cookie(facade, collector):
    getter = f"{__name__}.visitor_from_header"
    msg = order_with(collector, {"HTTP_X_VISITOR": "v-7"}, ANONYMOUS_ID_FROM_REQUEST=getter)
    assert msg["anonymousId"] == "v-7"
    msg = order_with(
        collector,
        {"HTTP_X_VISITOR": "v-7", "HTTP_COOKIE": f"{AJS}=%22c-1%22"},
        ANONYMOUS_ID_FROM_REQUEST=visitor_from_header,
    )
    assert msg["anonymousId"] == "c-1"


def test_a_failing_getter_is_a_warning_not_a_500(facade, collector, caplog):
    caplog.set_level(logging.WARNING, logger="analytics")
    for _ in range(2):
        msg = order_with(collector, {}, ANONYMOUS_ID_FROM_REQUEST=broken_visitor)
        assert is_uuid4(msg["anonymousId"])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "anonymous_id_getter" in warnings[0].getMessage()


def test_a_failing_user_is_a_warning_not_a_500(facade, collector, caplog):
    caplog.set_level(logging.WARNING, logger="analytics")
    msg = order_with(collector, {"HTTP_X_TEST_USER": "3", "HTTP_X_TEST_HOW": "broken"})
    assert "userId" not in msg and is_uuid4(msg["anonymousId"])
    assert any("LookupError" in r.getMessage() for r in caplog.records)


def test_an_async_signed_out_request_gets_an_anonymous_id(facade, collector):
    async def main() -> list[int]:
        client = AsyncClient()
        plain = await client.get("/aorder/")
        cookie = await client.get("/aorder/", headers={"Cookie": f"{AJS}=%22as-1%22"})
        user = await client.get("/aorder/", headers={"X-Test-User": "5", "X-Test-How": "auser"})
        return [plain.status_code, cookie.status_code, user.status_code]

    assert asyncio.run(main()) == [200, 200, 200]
    first, second, third = sent(collector)
    assert is_uuid4(first["anonymousId"]) and "userId" not in first
    assert second["anonymousId"] == "as-1"
    assert third["userId"] == "5" and "anonymousId" not in third


def test_a_wrong_anonymous_id_setting_is_named():
    bad = override_settings(ANALYTICS={"ANONYMOUS_ID_FROM_REQUEST": 3})
    with bad, pytest.raises(ImproperlyConfigured, match="ANONYMOUS_ID_FROM_REQUEST"):
        Client().get("/order/")


# -- concurrency -------------------------------------------------------------------------------


def test_two_concurrent_sync_requests_keep_their_own_scope(facade, collector):
    gate["barrier"] = threading.Barrier(2, timeout=5)
    statuses: list[int] = []

    def request(n: int) -> None:
        response = Client().get("/meet/", HTTP_X_TEST_USER=str(n), HTTP_USER_AGENT=f"ua-{n}")
        statuses.append(response.status_code)

    threads = [threading.Thread(target=request, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert statuses == [200, 200]
    messages = sent(collector)
    pairs = {(m["userId"], m["context"]["userAgent"], m["properties"]["ua"]) for m in messages}
    assert pairs == {("1", "ua-1", "ua-1"), ("2", "ua-2", "ua-2")}


def test_two_concurrent_async_requests_keep_their_own_scope(facade, collector):
    async def main() -> list[int]:
        gate["arrived"], gate["event"] = [], asyncio.Event()
        client = AsyncClient()
        responses = await asyncio.gather(
            *(
                client.get("/ameet/", headers={"X-Test-User": str(n), "User-Agent": f"ua-{n}"})
                for n in (1, 2)
            )
        )
        assert analytics.current_scope() is None
        return [r.status_code for r in responses]

    assert asyncio.run(main()) == [200, 200]
    messages = sent(collector)
    pairs = {(m["userId"], m["context"]["userAgent"], m["properties"]["ua"]) for m in messages}
    assert pairs == {("1", "ua-1", "ua-1"), ("2", "ua-2", "ua-2")}
    assert {m["context"]["page"]["url"] for m in messages} == {"http://testserver/ameet/"}


# -- every option of the table is a key of ANALYTICS --------------------------------------------


def test_the_spool_options_are_settings(facade, collector, tmp_path):
    spool = tmp_path / "django-spool.db"
    options = {"SPOOL_PATH": str(spool), "DURABLE": True, "SPOOL_MAX_BYTES": 10**6}
    with override_settings(ANALYTICS=options):
        ready()
    assert (analytics.spool_path, analytics.durable) == (str(spool), True)
    ok, msg = analytics.track("u", "Spooled")
    client = analytics.default_client
    assert ok and client is not None and client.durable is True
    assert client.settings.spool_path == str(spool) and client.settings.spool_max_bytes == 10**6
    assert spool.exists()
    assert [m["messageId"] for m in sent(collector)] == [msg["messageId"]]


def test_the_protocol_is_a_setting(facade):
    from analytics.atrack import ATrackClient

    with override_settings(ANALYTICS={"PROTOCOL": "atrack", "STUB": True}):
        ready()
    assert analytics.protocol == "atrack"
    analytics.track("u", "Over A-Track")
    assert type(analytics.default_client) is ATrackClient
    assert [m["event"] for m in analytics.default_client.sent] == ["Over A-Track"]


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"DURABLE": True}, "DURABLE"),
        ({"FSYNC": 1}, "FSYNC"),
        ({"PROTOCOL": "mqtt"}, "PROTOCOL"),
        ({"SPOOL_MAX_BYTES": 0}, "SPOOL_MAX_BYTES"),
    ],
)
def test_a_wrong_new_setting_is_improperly_configured_by_name(facade, options, key):
    before = analytics.spool_path
    with override_settings(ANALYTICS=options), pytest.raises(ImproperlyConfigured, match=key):
        ready()
    assert analytics.spool_path == before and analytics.protocol == "segment"
