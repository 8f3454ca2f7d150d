"""What arrives at the collector: path, headers, body shape, per-type fields, ids,
context, integrations and timestamps."""

from __future__ import annotations

import base64
import copy
import gzip
import re
import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
from helpers import WRITE_KEY, instant, utc, wait_until

import analytics

# Each call in its plain form, with the fields it must put on the wire.
CALLS = {
    "track": (
        lambda c: c.track("u1", "Clicked", {"a": 1}),
        {"type": "track", "userId": "u1", "event": "Clicked", "properties": {"a": 1}},
    ),
    "identify": (
        lambda c: c.identify("u1", {"email": "a@b.c"}),
        {"type": "identify", "userId": "u1", "traits": {"email": "a@b.c"}},
    ),
    "page": (
        lambda c: c.page("u1", "Docs", "Install", {"path": "/install"}),
        {
            "type": "page",
            "userId": "u1",
            "category": "Docs",
            "name": "Install",
            "properties": {"path": "/install"},
        },
    ),
    "screen": (
        lambda c: c.screen("u1", "Settings", "Profile", {"tab": 2}),
        {
            "type": "screen",
            "userId": "u1",
            "category": "Settings",
            "name": "Profile",
            "properties": {"tab": 2},
        },
    ),
    "group": (
        lambda c: c.group("u1", "g1", {"plan": "pro"}),
        {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"plan": "pro"}},
    ),
    "alias": (
        lambda c: c.alias("old-id", "new-id"),
        {"type": "alias", "previousId": "old-id", "userId": "new-id"},
    ),
}

ALL_TYPES = list(CALLS)

TS = datetime(2021, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
CTX = {"ip": "10.0.0.1"}
INTEG = {"All": False, "Mixpanel": True}

# Every call with every argument given positionally, in the contract's order.
POSITIONAL = {
    "track": (
        lambda c: c.track("u", "Ev", {"p": 1}, dict(CTX), TS, "anon", dict(INTEG), "mid-t"),
        {"userId": "u", "event": "Ev", "properties": {"p": 1}, "anonymousId": "anon",
         "messageId": "mid-t"},
    ),
    "identify": (
        lambda c: c.identify("u", {"t": 1}, dict(CTX), TS, "anon", dict(INTEG), "mid-i"),
        {"userId": "u", "traits": {"t": 1}, "anonymousId": "anon", "messageId": "mid-i"},
    ),
    "page": (
        lambda c: c.page("u", "Cat", "Nm", {"p": 1}, dict(CTX), TS, "anon", dict(INTEG),
                         "mid-p"),
        {"userId": "u", "category": "Cat", "name": "Nm", "properties": {"p": 1},
         "anonymousId": "anon", "messageId": "mid-p"},
    ),
    "screen": (
        lambda c: c.screen("u", "Cat", "Nm", {"p": 1}, dict(CTX), TS, "anon", dict(INTEG),
                           "mid-s"),
        {"userId": "u", "category": "Cat", "name": "Nm", "properties": {"p": 1},
         "anonymousId": "anon", "messageId": "mid-s"},
    ),
    "group": (
        lambda c: c.group("u", "g", {"t": 1}, dict(CTX), TS, "anon", dict(INTEG), "mid-g"),
        {"userId": "u", "groupId": "g", "traits": {"t": 1}, "anonymousId": "anon",
         "messageId": "mid-g"},
    ),
    "alias": (
        lambda c: c.alias("prev", "u", dict(CTX), TS, dict(INTEG), "mid-a"),
        {"previousId": "prev", "userId": "u", "messageId": "mid-a"},
    ),
}


def library() -> dict:
    return {"name": analytics.LIBRARY_NAME, "version": analytics.VERSION}


def send_one(make_client, collector, call, **kw):
    client = make_client(**kw)
    ok, msg = call(client)
    assert ok is True
    assert client.flush(timeout=5) is True
    [received] = collector.wait_for_messages(1, timeout=2)
    return client, msg, received


# ------------------------------------------------------------------ request level
def test_batch_is_posted_to_v1_batch(make_client, collector):
    send_one(make_client, collector, CALLS["track"][0])
    [req] = collector.requests
    assert req.method == "POST"
    assert req.path == "/v1/batch"


def test_host_with_trailing_slash_still_posts_to_v1_batch(make_client, collector):
    send_one(make_client, collector, CALLS["track"][0], host=collector.url + "/")
    assert collector.requests[0].path == "/v1/batch"


@pytest.mark.parametrize("tail", ["", "/", "/v1", "/v1/", "/v1/batch", "/v1/batch/"])
def test_a_host_with_the_path_or_part_of_it_posts_to_v1_batch(make_client, collector, tail):
    client, msg, received = send_one(
        make_client, collector, CALLS["track"][0], host=collector.url + tail
    )
    assert client.url == collector.url + "/v1/batch"
    assert [r.path for r in collector.requests] == ["/v1/batch"]
    assert received["messageId"] == msg["messageId"]
    assert client.host == collector.url + tail  # the option as given


def test_client_url_is_read_only_and_follows_the_protocol():
    client = analytics.Client(WRITE_KEY, stub=True, host="https://events.eu1.segmentapis.com/v1")
    assert client.url == "https://events.eu1.segmentapis.com/v1/batch"
    assert analytics.Client(WRITE_KEY, stub=True).url == "https://api.segment.io/v1/batch"
    with pytest.raises(AttributeError):
        client.url = "https://elsewhere"  # type: ignore[misc]
    # Only the path's own parts are taken off: another path stays the base.
    other = analytics.Client(WRITE_KEY, stub=True, host="https://proxy.example/segment/v2")
    assert other.url == "https://proxy.example/segment/v2/v1/batch"
    assert client.shutdown(timeout=2) and other.shutdown(timeout=2)


def test_body_is_batch_list_and_sent_at(make_client, collector):
    send_one(make_client, collector, CALLS["track"][0])
    body = collector.requests[0].json
    assert set(body) >= {"batch", "sentAt"}
    assert isinstance(body["batch"], list) and len(body["batch"]) == 1
    sent_at = instant(body["sentAt"])
    assert sent_at.utcoffset() == timedelta(0), "sentAt must be in UTC"
    now = datetime.now(timezone.utc)
    assert abs((now - sent_at).total_seconds()) < 30


def test_content_type_is_application_json(make_client, collector):
    send_one(make_client, collector, CALLS["track"][0])
    ctype = collector.requests[0].headers["Content-Type"]
    assert ctype.split(";")[0].strip() == "application/json"


def test_authorization_is_basic_of_write_key_and_colon(make_client, collector):
    send_one(make_client, collector, CALLS["track"][0])
    expected = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    assert collector.requests[0].headers["Authorization"] == expected


def test_user_agent_is_library_name_and_version(make_client, collector):
    send_one(make_client, collector, CALLS["track"][0])
    expected = f"{analytics.LIBRARY_NAME}/{analytics.VERSION}"
    assert collector.requests[0].headers["User-Agent"] == expected


def test_gzip_on_sends_content_encoding_gzip_and_gzipped_body(make_client, collector):
    _, msg, received = send_one(make_client, collector, CALLS["track"][0], gzip=True)
    req = collector.requests[0]
    assert req.headers["Content-Encoding"] == "gzip"
    assert req.raw[:2] == b"\x1f\x8b"
    assert gzip.decompress(req.raw) == req.body
    assert received["messageId"] == msg["messageId"]


def test_gzip_off_sends_plain_json(make_client, collector):
    send_one(make_client, collector, CALLS["track"][0])
    req = collector.requests[0]
    assert (req.headers.get("Content-Encoding") or "identity").lower() != "gzip"
    assert req.raw == req.body and req.raw.lstrip()[:1] == b"{"


def test_each_client_posts_with_its_own_write_key(make_client, collector):
    a = make_client("key-source-a")
    b = make_client("key-source-b")
    a.track("ua", "A")
    b.track("ub", "B")
    assert a.flush(timeout=5) and b.flush(timeout=5)
    seen = {}
    for req in collector.requests:
        for m in req.messages:
            seen[m["userId"]] = req.headers["Authorization"]
    assert seen["ua"] == "Basic " + base64.b64encode(b"key-source-a:").decode()
    assert seen["ub"] == "Basic " + base64.b64encode(b"key-source-b:").decode()


# ------------------------------------------------------------------- per-type fields
@pytest.mark.parametrize("kind", ALL_TYPES)
def test_each_call_puts_its_type_fields_on_the_wire(make_client, collector, kind):
    call, expected = CALLS[kind]
    _, _, received = send_one(make_client, collector, call)
    for key, value in expected.items():
        assert received[key] == value, key


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_positional_order_is_segments(make_client, collector, kind):
    call, expected = POSITIONAL[kind]
    _, _, received = send_one(make_client, collector, call)
    for key, value in expected.items():
        assert received[key] == value, key
    assert received["context"]["ip"] == "10.0.0.1"
    assert received["integrations"] == INTEG
    assert instant(received["timestamp"]) == TS


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_returned_message_is_the_wire_message(make_client, collector, kind):
    call, _ = CALLS[kind]
    _, msg, received = send_one(make_client, collector, call)
    assert msg == received


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_wire_keys_are_camel_case(make_client, collector, kind):
    _, _, received = send_one(make_client, collector, POSITIONAL[kind][0])
    snake = [k for k in received if "_" in k]
    assert snake == []


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_context_library_is_always_present(make_client, collector, kind):
    _, _, received = send_one(make_client, collector, CALLS[kind][0])
    assert received["context"]["library"] == library()


def test_context_library_is_merged_into_a_copy_of_given_context(make_client, collector):
    context = {"ip": "1.2.3.4", "locale": "fr-FR", "library": {"name": "impostor", "v": 9}}
    before = copy.deepcopy(context)
    _, _, received = send_one(
        make_client, collector, lambda c: c.track("u", "E", context=context)
    )
    assert received["context"]["ip"] == "1.2.3.4"
    assert received["context"]["locale"] == "fr-FR"
    assert received["context"]["library"] == library()
    assert context == before, "the caller's context was mutated"


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_integrations_default_to_empty_dict(make_client, collector, kind):
    _, _, received = send_one(make_client, collector, CALLS[kind][0])
    assert received["integrations"] == {}


def test_integrations_given_are_sent(make_client, collector):
    _, _, received = send_one(
        make_client, collector,
        lambda c: c.track("u", "E", integrations={"All": False, "Amplitude": True}),
    )
    assert received["integrations"] == {"All": False, "Amplitude": True}


# ------------------------------------------------------------------------- ids
@pytest.mark.parametrize("kind", ALL_TYPES)
def test_message_id_is_a_uuid4_string_by_default(make_client, collector, kind):
    _, msg, received = send_one(make_client, collector, CALLS[kind][0])
    assert isinstance(received["messageId"], str)
    assert uuid.UUID(received["messageId"]).version == 4
    assert msg["messageId"] == received["messageId"]


def test_message_ids_are_unique_per_call(make_client, collector):
    client = make_client()
    for _ in range(50):
        client.track("u", "E")
    assert client.flush(timeout=5)
    ids = [m["messageId"] for m in collector.messages()]
    assert len(ids) == 50 and len(set(ids)) == 50


def test_given_message_id_is_kept(make_client, collector):
    _, _, received = send_one(
        make_client, collector, lambda c: c.track("u", "E", message_id="my-own-id")
    )
    assert received["messageId"] == "my-own-id"


def test_absent_anonymous_id_is_omitted(make_client, collector):
    _, msg, received = send_one(make_client, collector, lambda c: c.track("u", "E"))
    assert "anonymousId" not in received
    assert "anonymousId" not in msg


def test_absent_user_id_is_omitted(make_client, collector):
    _, _, received = send_one(
        make_client, collector, lambda c: c.track(event="E", anonymous_id="anon-1")
    )
    assert received["anonymousId"] == "anon-1"
    assert "userId" not in received


def test_both_ids_sent_when_both_given(make_client, collector):
    _, _, received = send_one(
        make_client, collector, lambda c: c.identify("u-9", anonymous_id="a-9")
    )
    assert received["userId"] == "u-9" and received["anonymousId"] == "a-9"


@pytest.mark.parametrize("kind", ["page", "screen"])
def test_page_and_screen_omit_name_and_category_when_not_given(make_client, collector, kind):
    _, _, received = send_one(make_client, collector, lambda c: getattr(c, kind)("u"))
    assert "name" not in received
    assert "category" not in received
    assert received["properties"] == {}


def test_track_properties_default_to_empty_dict(make_client, collector):
    _, _, received = send_one(make_client, collector, lambda c: c.track("u", "E"))
    assert received["properties"] == {}


@pytest.mark.parametrize("kind", ["identify", "group"])
def test_traits_default_to_empty_dict(make_client, collector, kind):
    call = (lambda c: c.identify("u")) if kind == "identify" else (lambda c: c.group("u", "g"))
    _, _, received = send_one(make_client, collector, call)
    assert received["traits"] == {}


# ------------------------------------------------------------------ timestamps
ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$")


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_default_timestamp_is_now_iso8601_with_utc_offset(make_client, collector, kind):
    before = datetime.now(timezone.utc)
    _, _, received = send_one(make_client, collector, CALLS[kind][0])
    after = datetime.now(timezone.utc)
    assert ISO_WITH_OFFSET.match(received["timestamp"]), received["timestamp"]
    ts = instant(received["timestamp"])
    assert before - timedelta(seconds=1) <= ts <= after + timedelta(seconds=1)


@pytest.mark.parametrize(
    "given, expected",
    [
        pytest.param(datetime(2020, 1, 2, 3, 4, 5), utc(2020, 1, 2, 3, 4, 5), id="naive-as-utc"),
        pytest.param(date(2020, 1, 2), utc(2020, 1, 2), id="date-as-midnight-utc"),
        pytest.param("2020-01-02T03:04:05+02:00", utc(2020, 1, 2, 1, 4, 5), id="iso-string"),
        pytest.param("2020-01-02T03:04:05Z", utc(2020, 1, 2, 3, 4, 5), id="iso-string-z"),
        pytest.param("2020-01-02T03:04:05", utc(2020, 1, 2, 3, 4, 5), id="naive-iso-string"),
        pytest.param("2020-01-02", utc(2020, 1, 2), id="date-only-iso-string"),
        pytest.param(
            datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5))),
            utc(2020, 1, 2, 8, 4, 5),
            id="aware-keeps-instant",
        ),
        pytest.param(
            datetime(2020, 6, 1, 12, 0, 0, 123000, tzinfo=timezone(timedelta(hours=9))),
            datetime(2020, 6, 1, 3, 0, 0, 123000, tzinfo=timezone.utc),
            id="aware-with-milliseconds",
        ),
    ],
)
def test_given_timestamp_keeps_its_instant(make_client, collector, given, expected):
    _, _, received = send_one(
        make_client, collector, lambda c: c.track("u", "E", timestamp=given)
    )
    assert ISO_WITH_OFFSET.match(received["timestamp"]), received["timestamp"]
    assert instant(received["timestamp"]) == expected


def test_background_delivery_needs_no_flush(make_client, collector):
    client = make_client(flush_interval=0.1)
    ok, msg = client.track("u", "E")
    assert ok
    assert wait_until(lambda: collector.message_count() >= 1, timeout=5)
    assert collector.messages()[0]["messageId"] == msg["messageId"]
