"""The call's size check without encoding (json backend): `encode.size_bound` is an upper
bound of the encoding's length, and messages it lets through are delivered as before."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone, tzinfo

import pytest

import analytics
from analytics import encode as enc
from analytics import messages

BACKENDS = ["json"] + (["orjson"] if enc.orjson is not None else [])
IST = timezone(timedelta(hours=5, minutes=30))
ODD = timezone(timedelta(minutes=19, seconds=32))  # seconds in the offset: made UTC


class Zone(tzinfo):  # a tzinfo of the caller's: its offset is a call to its code
    def utcoffset(self, when: datetime | None) -> timedelta:
        return timedelta(hours=1)


BOUNDED = {
    "ascii": "plain",
    "empty": "",
    "controls": "".join(chr(c) for c in range(32)) * 3,
    "quotes": '"\\' * 50,
    "astral": "🎉" * 40,
    "unicode": "zażółć 日本",
    "surrogate": "bad \ud800 text",
    "int": 42,
    "int_min": -(2**63),
    "int_max": 2**64 - 1,
    "float": -2.2250738585072014e-308,
    "nan": math.nan,
    "inf": -math.inf,
    "bools": [True, False],
    "none": None,
    "list": [1, "a", None, [], {}],
    "nested": {"a": {"b": [1, {"c": 2.5}]}},
    "utc": datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc),
    "naive": datetime(1, 1, 1),
    "offset": datetime(2024, 1, 2, 3, 4, 5, 1, tzinfo=IST),
    "odd_offset": datetime(1930, 1, 2, 3, 4, 5, 1, tzinfo=ODD),
    "date": date(2024, 1, 2),
    "uuid": uuid.UUID("0b7e5b1e-6a4c-4f6e-9a51-3f1f0e2d4c5b"),
    "library": messages.LIBRARY,
}
# What the bound does not know (or would have to call user code for): the call encodes.
UNKNOWN = {
    "bigint": 2**64,
    "tuple": (1, 2),
    "int_keys": {1: "one"},
    "object": object(),
    "bool_key": {True: 1},
    "zone": datetime(2024, 1, 2, tzinfo=Zone()),
    "deep": None,  # built in the test: dicts nested past MAX_DEPTH
}


def deep_or(name: str, values: dict[str, object]) -> dict[str, object]:
    value: dict[str, object] = {"value": values[name]}
    if name == "deep":
        for _ in range(enc.MAX_DEPTH + 2):
            value = {"d": value}
    return value


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    before = enc.BACKEND
    enc.use_backend(request.param)
    yield request.param
    enc.use_backend(before)


@pytest.mark.parametrize("name", sorted(BOUNDED))
def test_bound_is_at_least_the_encoding(backend: str, name: str) -> None:
    value = {"value": BOUNDED[name]}
    bound = enc.size_bound(value, 1 << 20)
    assert bound >= len(enc.encode(value)) > 0


def test_bound_of_a_whole_message_is_at_least_its_encoding(backend: str) -> None:
    msg = messages.track("u", "E", dict(BOUNDED), context={"ip": "1.2.3.4"})
    bound = enc.size_bound(msg, 1 << 20)
    assert bound >= len(enc.encode(msg))


@pytest.mark.parametrize("name", sorted(UNKNOWN))
def test_unknown_values_give_no_bound(name: str) -> None:
    value = deep_or(name, UNKNOWN)
    assert enc.size_bound(value, 1 << 20) == -1


def test_over_budget_gives_no_bound() -> None:
    assert enc.size_bound({"blob": "x" * 6000}, 32_768) == -1
    assert 0 < enc.size_bound({"blob": "x" * 5000}, 32_768) <= 32_768


def test_a_typical_track_is_bounded_without_encoding() -> None:
    msg = messages.track("user-1", "Order Completed", {"plan": "pro", "at": datetime.now()})
    assert 0 < enc.size_bound(msg, analytics.MAX_MESSAGE_BYTES) < analytics.MAX_MESSAGE_BYTES


@pytest.fixture
def json_backend() -> Iterator[None]:
    before = enc.BACKEND
    enc.use_backend("json")
    assert enc.BOUND_PAYS
    yield
    enc.use_backend(before)


def test_bounded_messages_are_delivered_as_before(json_backend, make_client, collector):
    client = make_client()
    sent = [client.track("u", "E", {"i": i, "at": datetime(2024, 1, 2)})[1] for i in range(20)]
    ok, near = client.track("u", "Near", {"blob": "x" * 31_000})  # bound over: encoded
    assert ok and client.flush(timeout=5)
    got = {m["messageId"]: m for m in collector.messages()}
    assert [got[m["messageId"]]["properties"]["i"] for m in sent] == list(range(20))
    assert got[sent[0]["messageId"]]["properties"]["at"] == "2024-01-02T00:00:00+00:00"
    assert got[near["messageId"]]["event"] == "Near"


def test_too_large_is_still_refused_with_the_bound(json_backend, make_client, errors):
    client = make_client()
    ok, _ = client.track("u", "Huge", {"blob": "x" * 40_000})
    assert ok is False
    [(error, _batch)] = errors.wait_for(1, timeout=2)
    assert isinstance(error, analytics.MessageTooLarge) and error.size > 32_768


@pytest.mark.parametrize("mode", ["sync_mode", "stub"])
def test_sync_and_stub_modes_with_the_bound(json_backend, make_client, collector, mode):
    client = make_client(**{mode: True})
    ok, msg = client.track("u", "E", {"a": 1})
    assert ok is True
    if mode == "stub":
        assert client.sent == [msg] and collector.requests == []
    else:
        assert collector.messages()[0]["messageId"] == msg["messageId"]


def test_shut_down_client_refuses_a_bounded_message(json_backend, make_client, errors):
    client = make_client()
    client.shutdown(timeout=5)
    ok, _ = client.track("u", "Late")
    assert ok is False
    [(error, _batch)] = errors.wait_for(1, timeout=2)
    assert isinstance(error, analytics.ClientShutdown)


def test_durable_client_writes_a_bounded_message_ahead(
    json_backend, make_client, collector, tmp_path
):
    client = make_client(spool_path=str(tmp_path / "spool.db"), durable=True)
    ok, msg = client.track("u", "Kept", {"a": 1})
    assert ok is True and client.flush(timeout=5)
    assert [m["messageId"] for m in collector.messages()] == [msg["messageId"]]


def test_only_the_library_s_own_encoding_is_bounded() -> None:
    segment = analytics.Client("k", stub=True)
    rudder = analytics.Client("k", stub=True, protocol="rudderstack", host="http://127.0.0.1:9")
    try:
        assert segment._bounded is True  # Segment's sender encodes with encode.encode
        assert rudder._bounded is False  # its encoding adds fields: the call encodes it
    finally:
        segment.shutdown(timeout=1)
        rudder.shutdown(timeout=1)


# -- the builders' bound: summed as they copy, by size_bound's rule ----------------------

SIZED = {
    "track": lambda f: messages.track_sized("u", "E", f, context=f, integrations=f),
    "identify": lambda f: messages.identify_sized("u", f, context=f, anonymous_id="a"),
    "page": lambda f: messages.page_sized("u", "Cat", "Name", f, integrations=f),
    "screen": lambda f: messages.screen_sized(None, None, "Name", f, anonymous_id="a"),
    "group": lambda f: messages.group_sized("u", "g", f, context=f),
    "alias": lambda f: messages.alias_sized("old", "new", context=f, integrations=f),
}


@pytest.mark.parametrize("builder", sorted(SIZED))
@pytest.mark.parametrize("name", sorted(BOUNDED))
def test_a_builder_s_bound_is_size_bound_s(json_backend, builder: str, name: str) -> None:
    msg, bound = SIZED[builder]({"value": BOUNDED[name], "n": {"s": "x", "i": 1}})
    assert bound == enc.size_bound(msg, 1 << 20)  # the same rule...
    assert bound >= len(enc.encode(msg)) > 0  # ...an upper bound


@pytest.mark.parametrize("builder", sorted(SIZED))
@pytest.mark.parametrize("name", sorted(UNKNOWN))
def test_a_builder_s_bound_of_odd_values_is_size_bound_s_of_its_copy(
    json_backend, builder: str, name: str
):
    msg, bound = SIZED[builder](deep_or(name, UNKNOWN))
    assert bound == enc.size_bound(msg, 1 << 20)  # -1, or what the copy made of it
    assert bound == -1 or bound >= len(enc.encode(msg))
    if name in ("bigint", "object", "int_keys", "bool_key", "deep"):
        assert bound == -1  # the call walks, then encodes


def test_with_orjson_the_builders_sum_no_bound() -> None:
    if enc.orjson is None:
        pytest.skip("orjson is not installed")
    before = enc.BACKEND
    enc.use_backend("orjson")  # the call encodes: a bound would be summed for nothing
    try:
        assert messages.track_sized("u", "E", {"a": 1})[1] == -1
    finally:
        enc.use_backend(before)


def test_a_builder_s_copy_is_the_copy_of_copy_mapping(json_backend) -> None:
    given = dict(BOUNDED, nested={"a": [{"b": BOUNDED["offset"]}]})
    msg, _bound = messages.track_sized("u", "E", given)
    assert msg["properties"] == messages.copy_mapping("properties", given)
    assert msg["properties"]["offset"].tzinfo is IST  # made `aware`, as the copy makes it
    assert msg["properties"]["odd_offset"].tzinfo is timezone.utc


def test_a_scope_s_message_is_walked(json_backend) -> None:
    with analytics.scope(context={"ip": "1.2.3.4"}):
        msg, bound = messages.track_sized("u", "E", {"a": 1})
    assert bound == -1 and msg["context"]["ip"] == "1.2.3.4"


def test_a_message_past_the_limit_by_its_builder_s_bound_is_encoded_at_the_call(
    json_backend, make_client, collector
):
    client = make_client()
    # ~5,500 bound-bytes of text each: the builder's bound passes 32 KB, the encoding does not
    ok, msg = client.track("u", "Wide", {f"k{i}": "y" * 900 for i in range(6)})
    assert ok is True and client.flush(timeout=5)
    assert [m["messageId"] for m in collector.messages()] == [msg["messageId"]]
