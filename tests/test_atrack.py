"""The A-Track protocol (analytics.atrack) against a loopback stand-in for its API.

Covers the seam (`Client(protocol="atrack")`), the headers, paths and payloads of every
call, geo routing, the identity helpers and their storage, the timestamp format, retries and
on_error (the core's policy, unchanged), and that the key never leaks.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from _atrack_server import ATrackServer, Request
from helpers import ErrorLog

import analytics
import analytics.retry
from analytics.atrack import (
    GEOS,
    ATrackClient,
    ATrackSender,
    FileStorage,
    MemoryStorage,
    UserStorage,
    host_for,
    utc_millis,
)

KEY = "pk_live_SECRET_4b7e19a2c3d8"
USER_AGENT = f"{analytics.LIBRARY_NAME}/{analytics.VERSION}"
Factory = Callable[..., ATrackClient]


@pytest.fixture
def server() -> Iterator[ATrackServer]:
    s = ATrackServer()
    yield s
    s.stop()


@pytest.fixture
def errors() -> ErrorLog:
    return ErrorLog()


@pytest.fixture
def make_client(server: ATrackServer, errors: ErrorLog) -> Iterator[Factory]:
    """Builds A-Track clients aimed at the server; shuts every one down afterwards."""
    clients: list[ATrackClient] = []

    def factory(key: str | None = KEY, **kw: Any) -> ATrackClient:
        kw.setdefault("host", server.url)
        kw.setdefault("on_error", errors)
        kw.setdefault("timeout", 5)
        kw.setdefault("backoff", analytics.Backoff(factor=0.001))  # retries at once
        client = analytics.Client(key, protocol="atrack", **kw)
        assert isinstance(client, ATrackClient)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.shutdown(timeout=2)


def sent(client: ATrackClient, server: ATrackServer, n: int = 1) -> list[Request]:
    """Flush and return the requests received so far (at least `n`)."""
    assert client.flush(timeout=5)
    return server.wait_for(n, timeout=5)


def only(client: ATrackClient, server: ATrackServer) -> Request:
    requests = sent(client, server, 1)
    assert len(requests) == 1, requests
    return requests[0]


# -- the seam, headers and payloads ----------------------------------------------------------


def test_client_with_protocol_atrack_is_an_atrack_client(
    make_client: Factory, server: ATrackServer
) -> None:
    client = make_client()
    assert type(client) is ATrackClient and isinstance(client, analytics.Client)
    assert client.batch_size == 1
    with pytest.raises(analytics.ValidationError, match="atrack"):
        ATrackClient(KEY, protocol="segment")
    positional = analytics.Client(KEY, server.url, protocol="atrack")  # host given positionally
    try:
        assert positional.host == server.url
    finally:
        positional.shutdown(timeout=1)


def test_every_request_carries_the_key_type_and_user_agent(
    make_client: Factory, server: ATrackServer
) -> None:
    client = make_client()
    client.init()
    client.track(event="E")
    for req in sent(client, server, 2):
        assert req.method == "POST"
        assert req.headers["x-a-track-key"] == KEY
        assert req.headers["Content-Type"] == "application/json"
        assert req.headers["User-Agent"] == USER_AGENT
        assert req.headers.get("Authorization") is None
        assert req.headers.get("Content-Encoding") is None


def test_init_registers_a_new_user(make_client: Factory, server: ATrackServer) -> None:
    client = make_client()
    result = client.init(attributes={"plan": "pro"}, context={"ip": "203.0.113.9"})
    assert result["isNewUser"] is True
    assert uuid.UUID(result["uuid"]).version == 4
    req = only(client, server)
    assert req.path == "/init"
    assert req.json == {
        "sdkVersion": analytics.VERSION,
        "uuid": result["uuid"],
        "isNewUser": True,
        "mode": "merge",
        "context": {"ip": "203.0.113.9"},
        "attributes": {"plan": "pro"},
        "profile": {},
    }


def test_identify_merges_traits_as_attributes(make_client: Factory, server: ATrackServer) -> None:
    client = make_client()
    client.identify("u1", {"email": "ada@example.com"}, context={"ip": "1.2.3.4"})
    req = only(client, server)
    assert req.path == "/attributes"
    assert req.json == {
        "sdkVersion": analytics.VERSION,
        "uuid": "u1",
        "mode": "merge",
        "attributes": {"email": "ada@example.com"},
        "profile": {},
    }


def test_track_posts_an_event(make_client: Factory, server: ATrackServer) -> None:
    client = make_client()
    when = dt.datetime(2026, 11, 23, 4, 5, 6, 789123, tzinfo=dt.timezone.utc)
    client.track("u1", "Order Completed", {"revenue": 39.95}, {"ip": "1.2.3.4"}, when)
    req = only(client, server)
    assert req.path == "/event"
    assert req.json == {
        "sdkVersion": analytics.VERSION,
        "uuid": "u1",
        "event": "Order Completed",
        "attributes": {"revenue": 39.95},
        "timestamp": "2026-11-23T04:05:06.789Z",
        "context": {"ip": "1.2.3.4"},  # the library's own context.library is dropped
    }


@pytest.mark.parametrize("kind", ["page", "screen"])
def test_page_and_screen_are_events_named_after_them(
    make_client: Factory, server: ATrackServer, kind: str
) -> None:
    client = make_client()
    getattr(client, kind)("u1", "Docs", "Quick start", {"path": "/docs"})
    req = only(client, server)
    assert req.path == "/event"
    body = req.json
    assert body["event"] == kind
    assert body["uuid"] == "u1"
    assert body["attributes"] == {"path": "/docs", "name": "Quick start", "category": "Docs"}


def test_group_merges_a_group_attribute(make_client: Factory, server: ATrackServer) -> None:
    client = make_client()
    client.group("u1", "acme", {"name": "Acme", "id": "not-the-group-id"})
    req = only(client, server)
    assert req.path == "/attributes"
    assert req.json["mode"] == "merge"
    assert req.json["attributes"] == {"group": {"id": "acme", "name": "Acme"}}


@pytest.mark.parametrize(("replace", "mode"), [(False, "merge"), (True, "replace")])
def test_set_attributes_merge_or_replace(
    make_client: Factory, server: ATrackServer, replace: bool, mode: str
) -> None:
    client = make_client()
    user = client.init()
    ok, msg = client.set_attributes({"plan": "team"}, replace=replace)
    assert ok and msg["mode"] == mode
    reqs = sent(client, server, 2)
    assert [r.path for r in reqs] == ["/init", "/attributes"]
    assert reqs[1].json == {
        "sdkVersion": analytics.VERSION,
        "uuid": user["uuid"],
        "mode": mode,
        "attributes": {"plan": "team"},
        "profile": {},
    }


def test_set_attributes_for_an_explicit_uuid_and_without_a_user(
    make_client: Factory, server: ATrackServer
) -> None:
    client = make_client()
    with pytest.raises(analytics.ValidationError, match="init"):
        client.set_attributes({"a": 1})
    client.set_attributes({"a": 1}, uuid=42)
    assert only(client, server).json["uuid"] == "42"


def test_alias_is_refused(make_client: Factory, server: ATrackServer) -> None:
    client = make_client()
    with pytest.raises(analytics.ValidationError, match="no alias"):
        client.alias("old", "new")
    stub = make_client(stub=True)
    with pytest.raises(analytics.ValidationError, match="no alias"):
        stub.alias("old", "new")
    with pytest.raises(analytics.ValidationError, match="no alias"):
        client._transport.encode({"type": "alias", "userId": "a", "previousId": "b"})
    assert client.flush(timeout=2)
    assert server.requests == [] and client.stats()["queued"] == 0


def test_one_message_per_request_whatever_batch_size(
    make_client: Factory, server: ATrackServer
) -> None:
    client = make_client(batch_size=50, flush_interval=5)
    assert client.batch_size == 1
    client.batch_size = 100  # ignored: there is no batch endpoint
    for i in range(5):
        client.track("u1", f"E{i}")
    reqs = sent(client, server, 5)
    assert [r.json["event"] for r in reqs] == [f"E{i}" for i in range(5)]
    assert client.stats()["requests"] == 5


def test_gzip(make_client: Factory, server: ATrackServer) -> None:
    client = make_client(gzip=True)
    client.track("u1", "E")
    req = only(client, server)
    assert req.headers["Content-Encoding"] == "gzip"
    assert req.raw[:2] == b"\x1f\x8b" and req.json["event"] == "E"


def test_values_use_the_library_value_table(make_client: Factory, server: ATrackServer) -> None:
    client = make_client()
    props = {
        "price": decimal.Decimal("19.99"),
        "at": dt.datetime(2026, 1, 2, 3, 4, 5),
        "nan": math.nan,
        "tags": ("a", "b"),
    }
    client.track("u1", "E", props)
    attrs = only(client, server).json["attributes"]  # strict JSON: NaN would fail to parse
    assert attrs == {
        "price": "19.99",
        "at": "2026-01-02T03:04:05+00:00",
        "nan": None,
        "tags": ["a", "b"],
    }


def test_stub_and_sync_modes(make_client: Factory, server: ATrackServer) -> None:
    stub = make_client(None, stub=True)
    assert stub.track("u1", "E")[0] is True
    assert [m["event"] for m in stub.sent] == ["E"]
    sync = make_client(sync_mode=True)
    ok, _ = sync.track("u1", "Synced")
    assert ok and [r.json["event"] for r in server.requests] == ["Synced"]


def test_key_is_required_and_write_key_is_accepted(make_client: Factory) -> None:
    with pytest.raises(analytics.ValidationError, match="public_key"):
        ATrackClient(None)
    with pytest.raises(analytics.ValidationError, match="public_key"):
        ATrackClient("")
    client = make_client(None, write_key=KEY)  # Segment's keyword name
    assert client._write_key == KEY


def test_context_from_request_goes_into_init(make_client: Factory, server: ATrackServer) -> None:
    build = getattr(analytics, "context_from_request", None)  # analytics.context: the setting
    if build is None:
        pytest.skip("analytics.context.context_from_request is not there yet")
    context = build(url="https://example.com/p?utm_source=news", ip="198.51.100.7")
    client = make_client()
    client.init(context=context)
    assert only(client, server).json["context"] == context


def test_scope_context_reaches_events_and_init(make_client: Factory, server: ATrackServer) -> None:
    client = make_client()
    with analytics.scope(context={"ip": "192.0.2.1"}):
        client.init(context={"locale": "en-GB"})
        client.track(event="Scoped")
    first, second = sent(client, server, 2)
    assert first.json["context"] == {"ip": "192.0.2.1", "locale": "en-GB"}
    assert second.json["context"] == {"ip": "192.0.2.1"}


# -- geo ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("geo", sorted(GEOS))
def test_geo_picks_the_host(geo: str) -> None:
    client = ATrackClient(KEY, geo=geo)  # never used to send: no request leaves the machine
    try:
        expected = f"https://{geo}.api.a-track.io"
        assert host_for(geo) == expected and client.host == expected
        assert client.url_for("/event") == expected + "/event"
        assert isinstance(client._transport, ATrackSender)
        assert client._transport.url_for("/event") == expected + "/event"
        assert client.geo == geo
    finally:
        client.shutdown(timeout=1)


def test_default_host_host_override_and_unknown_geo() -> None:
    default = ATrackClient(KEY)
    override = ATrackClient(KEY, geo="fra", host="http://127.0.0.1:9/")
    try:
        assert default.host == "https://api.a-track.io"
        assert override.url_for("/init") == "http://127.0.0.1:9/init"
    finally:
        default.shutdown(timeout=1)
        override.shutdown(timeout=1)
    for bad in ("mars", "NYC", "", 3):
        with pytest.raises(analytics.ValidationError, match="geo"):
            analytics.Client(KEY, protocol="atrack", geo=bad)  # type: ignore[call-arg]
    with pytest.raises(analytics.ValidationError, match="geo"):
        ATrackClient(KEY, geo="mars", host="http://127.0.0.1:9")


# -- identity ------------------------------------------------------------------------------


def test_init_twice_reuses_the_uuid(make_client: Factory, server: ATrackServer) -> None:
    client = make_client()
    assert client.get_user() is None
    first = client.init()
    second = client.init()
    assert second == {"uuid": first["uuid"], "isNewUser": False}
    assert client.get_user() == {"uuid": first["uuid"]}
    reqs = sent(client, server, 2)
    assert [r.json["isNewUser"] for r in reqs] == [True, False]
    assert {r.json["uuid"] for r in reqs} == {first["uuid"]}


def test_init_with_a_given_uuid(make_client: Factory, server: ATrackServer) -> None:
    client = make_client()
    given = uuid.uuid4()
    assert client.init(given) == {"uuid": str(given), "isNewUser": True}
    assert client.init(given) == {"uuid": str(given), "isNewUser": False}
    assert client.init("other")["isNewUser"] is True
    assert client.get_user() == {"uuid": "other"}
    client.clear_user()
    assert client.get_user() is None
    assert client.init()["uuid"] not in (str(given), "other")


def test_calls_without_ids_use_the_current_user(make_client: Factory, server: ATrackServer) -> None:
    client = make_client()
    with pytest.raises(analytics.ValidationError):
        client.track(event="before init")
    user = client.init()
    client.track(event="E")
    client.identify(traits={"a": 1})
    client.page(name="Home")
    client.screen(name="Main")
    client.group(group_id="g1")
    reqs = sent(client, server, 6)
    assert {r.json["uuid"] for r in reqs} == {user["uuid"]}


def test_anonymous_id_is_the_uuid_and_user_id_wins(
    make_client: Factory, server: ATrackServer
) -> None:
    client = make_client()
    client.init()  # a current user never overrides the ids a call gives
    client.track(event="anon", anonymous_id="anon-7")
    client.track("user-7", "both", anonymous_id="anon-7")
    with analytics.scope(anonymous_id="scoped-anon"):
        client.track(event="scoped")
    reqs = sent(client, server, 4)
    assert [r.json["uuid"] for r in reqs[1:]] == ["anon-7", "user-7", "scoped-anon"]


def test_file_storage_survives_a_new_client(
    make_client: Factory, server: ATrackServer, tmp_path: Any
) -> None:
    path = tmp_path / "user.json"
    first = make_client(storage=FileStorage(path))
    created = first.init()
    assert first.shutdown(timeout=5)
    assert json.loads(path.read_text()) == {"uuid": created["uuid"]}
    assert os.listdir(tmp_path) == ["user.json"]  # the temp file was renamed, not left behind

    second = make_client(storage=FileStorage(str(path)))
    assert second.get_user() == {"uuid": created["uuid"]}
    assert second.init() == {"uuid": created["uuid"], "isNewUser": False}
    second.track(event="After restart")
    reqs = sent(second, server, 3)
    assert [r.json["uuid"] for r in reqs] == [created["uuid"]] * 3


def test_file_storage_edge_cases(tmp_path: Any) -> None:
    store = FileStorage(tmp_path / "u.json")
    assert store.get() is None
    store.clear()  # nothing to clear: fine
    store.set({"uuid": "a", "extra": 1})
    store.set({"uuid": "b"})
    assert store.get() == {"uuid": "b"}
    (tmp_path / "u.json").write_text("{not json")
    assert store.get() is None
    with pytest.raises(analytics.ValidationError):
        store.set({"no": "uuid"})
    assert isinstance(store, UserStorage) and isinstance(MemoryStorage(), UserStorage)


READER = """
import sys
from analytics.atrack import FileStorage
store, bad = FileStorage(sys.argv[1]), 0
for _ in range(int(sys.argv[2])):
    user = store.get()
    bad += user is None or not user["uuid"].startswith("user-")
print(bad)
"""


def test_file_storage_is_safe_to_read_from_another_process(tmp_path: Any) -> None:
    path = str(tmp_path / "user.json")
    store = FileStorage(path)
    store.set({"uuid": "user-0"})
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, path, "2000"], stdout=subprocess.PIPE, text=True
    )
    writes, deadline = 0, time.monotonic() + 10
    try:
        while reader.poll() is None and time.monotonic() < deadline:
            writes += 1
            store.set({"uuid": f"user-{writes}", "pad": "x" * (writes % 500)})
        out, _ = reader.communicate(timeout=10)
    finally:
        reader.kill()
    assert out.strip() == "0" and writes > 0
    assert store.get() == {"uuid": f"user-{writes}", "pad": "x" * (writes % 500)}


def test_sender_refuses_more_than_one_message_per_request() -> None:
    sender = ATrackSender(KEY, "http://127.0.0.1:9", 5, None, False)
    try:
        outcome = sender.send([b"/event\n{}", b"/event\n{}"])
        assert outcome.status == 400 and not outcome.ok and "one message" in outcome.detail
    finally:
        sender.close()


def test_a_custom_storage_and_a_bad_one(make_client: Factory) -> None:
    class DictStorage:
        def __init__(self) -> None:
            self.user: dict[str, Any] | None = {"uuid": "from-db"}

        def get(self) -> dict[str, Any] | None:
            return self.user

        def set(self, user: dict[str, Any]) -> None:
            self.user = user

        def clear(self) -> None:
            self.user = None

    client = make_client(storage=DictStorage())
    assert client.init() == {"uuid": "from-db", "isNewUser": False}
    with pytest.raises(analytics.ValidationError, match="storage"):
        make_client(storage=object())


# -- timestamps ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2026-11-23T06:05:06.789999+02:00", "2026-11-23T04:05:06.789Z"),
        (dt.datetime(2026, 11, 23, 4, 5, 6), "2026-11-23T04:05:06.000Z"),
        (dt.date(2026, 11, 23), "2026-11-23T00:00:00.000Z"),
        ("2026-11-22T23:05:06-05:00", "2026-11-23T04:05:06.000Z"),
    ],
)
def test_event_timestamp_is_utc_with_milliseconds(
    make_client: Factory, server: ATrackServer, given: Any, expected: str
) -> None:
    client = make_client()
    client.track("u1", "E", timestamp=given)
    assert only(client, server).json["timestamp"] == expected


def test_default_timestamp_is_now_in_the_format() -> None:
    now = utc_millis(dt.datetime.now(dt.timezone.utc).isoformat())
    assert len(now) == len("2026-11-23T04:05:06.789Z") and now.endswith("Z")


# -- delivery: the core's policy, unchanged --------------------------------------------------


def test_503_then_200_is_retried_and_delivered(
    make_client: Factory, server: ATrackServer, errors: ErrorLog
) -> None:
    server.fail(503, count=1)
    client = make_client()
    client.track("u1", "E")
    reqs = sent(client, server, 2)
    assert [r.status for r in reqs] == [503, 200]
    assert reqs[0].json == reqs[1].json
    stats = client.stats()
    assert stats["delivered"] == 1 and stats["retries"] == 1 and stats["requests"] == 2
    assert len(errors) == 0


@pytest.mark.parametrize("seconds", ["0", "1"])
def test_429_honours_retry_after(
    make_client: Factory, server: ATrackServer, errors: ErrorLog, seconds: str
) -> None:
    server.fail(429, count=1, retry_after=seconds)
    client = make_client()
    client.track("u1", "E")
    first, second = sent(client, server, 2)
    assert (first.status, second.status) == (429, 200)
    assert second.arrived - first.arrived >= float(seconds) * 0.9
    assert client.stats()["retries"] == 1 and len(errors) == 0


def test_400_goes_to_on_error_once_without_retry(
    make_client: Factory, server: ATrackServer, errors: ErrorLog
) -> None:
    server.fail(400, count=1)
    client = make_client()
    ok, msg = client.track("u1", "Rejected")
    assert ok
    assert client.flush(timeout=5)
    (error, batch), *rest = errors.wait_for(1)
    assert rest == []
    assert isinstance(error, analytics.APIError) and error.status == 400
    assert batch == [msg]
    assert KEY not in str(error)  # the server echoed the key; it was scrubbed
    stats = client.stats()
    assert stats["requests"] == 1 and stats["retries"] == 0
    assert stats["dropped_by_reason"]["rejected"] == 1 and len(server.requests) == 1


def test_gives_up_after_max_retries(
    make_client: Factory, server: ATrackServer, errors: ErrorLog
) -> None:
    server.fail(500, count=10)
    client = make_client(max_retries=2)
    client.track("u1", "E")
    assert client.flush(timeout=5)
    (error, _), *rest = errors.wait_for(1)
    assert isinstance(error, analytics.RetriesExhausted) and rest == []
    assert client.stats()["requests"] == 3


def test_a_too_large_message_is_refused_like_segment(
    make_client: Factory, errors: ErrorLog
) -> None:
    client = make_client()
    ok, _ = client.track("u1", "Huge", {"blob": "x" * 40_000})
    assert not ok and isinstance(errors.errors[0], analytics.MessageTooLarge)


# -- the key never leaks ---------------------------------------------------------------------


def test_key_never_in_logs_or_reprs(
    make_client: Factory, server: ATrackServer, errors: ErrorLog, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="analytics")
    client = make_client(debug=True, max_retries=1)
    client.init()
    server.fail(503, count=1)
    client.track("u1", "retried")
    assert client.flush(timeout=5)
    server.fail(500, count=2)
    client.track("u1", "gave up")
    assert client.flush(timeout=5)
    server.fail(400, count=1)
    client.track("u1", "rejected")
    assert client.shutdown(timeout=5)
    client.track("u1", "after shutdown")
    assert len(errors.wait_for(3)) == 3
    assert any(r.name.startswith("analytics") for r in caplog.records)
    texts = [r.getMessage() for r in caplog.records] + [caplog.text]
    texts += [repr(client), str(client), repr(client._transport)]
    texts += [f"{e!s} {e!r}" for e in errors.errors]
    for text in texts:
        assert KEY not in text
