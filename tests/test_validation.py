"""Programmer errors raise ValidationError on the caller's thread; valid odd ids are
accepted and sent as strings; the caller's dicts are never mutated."""

from __future__ import annotations

import copy
import types
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest

import analytics

UID = uuid.UUID("12345678-1234-4234-8234-123456789abc")

INVALID = [
    # missing ids
    ("track", {"event": "E"}),
    ("track", {"user_id": "", "event": "E"}),
    ("track", {"user_id": "", "anonymous_id": "", "event": "E"}),
    ("track", {"user_id": None, "anonymous_id": None, "event": "E"}),
    ("identify", {}),
    ("identify", {"traits": {"a": 1}}),
    ("page", {"name": "Home"}),
    ("screen", {"name": "Home"}),
    ("group", {"group_id": "g"}),
    # refused id types
    ("track", {"user_id": True, "event": "E"}),
    ("track", {"user_id": False, "event": "E"}),
    ("track", {"user_id": 1.5, "event": "E"}),
    ("track", {"user_id": 2.0, "event": "E"}),
    ("track", {"anonymous_id": 1.5, "event": "E"}),
    ("track", {"anonymous_id": True, "event": "E"}),
    ("track", {"user_id": ["u"], "event": "E"}),
    ("track", {"user_id": {"id": 1}, "event": "E"}),
    ("track", {"user_id": b"bytes", "event": "E"}),
    ("identify", {"user_id": object()}),
    ("group", {"user_id": "u", "group_id": True}),
    ("group", {"user_id": "u", "group_id": 1.5}),
    ("alias", {"previous_id": 1.5, "user_id": "u"}),
    ("alias", {"previous_id": "p", "user_id": False}),
    # track event
    ("track", {"user_id": "u"}),
    ("track", {"user_id": "u", "event": None}),
    ("track", {"user_id": "u", "event": 5}),
    ("track", {"user_id": "u", "event": {"name": "E"}}),
    ("track", {"user_id": "u", "event": ["E"]}),
    # group id
    ("group", {"user_id": "u"}),
    ("group", {"user_id": "u", "group_id": None}),
    ("group", {"user_id": "u", "group_id": ""}),
    # alias
    ("alias", {"user_id": "u"}),
    ("alias", {"previous_id": "", "user_id": "u"}),
    ("alias", {"previous_id": "p"}),
    ("alias", {"previous_id": "p", "user_id": ""}),
    # non-mapping traits/properties/context/integrations
    ("identify", {"user_id": "u", "traits": [("a", 1)]}),
    ("identify", {"user_id": "u", "traits": "a=1"}),
    ("group", {"user_id": "u", "group_id": "g", "traits": 5}),
    ("track", {"user_id": "u", "event": "E", "properties": [1, 2]}),
    ("track", {"user_id": "u", "event": "E", "properties": "p"}),
    ("page", {"user_id": "u", "properties": ["x"]}),
    ("screen", {"user_id": "u", "properties": 1}),
    ("track", {"user_id": "u", "event": "E", "context": "ctx"}),
    ("identify", {"user_id": "u", "context": ["ip"]}),
    ("alias", {"previous_id": "p", "user_id": "u", "context": 3}),
    ("track", {"user_id": "u", "event": "E", "integrations": ["All"]}),
    ("group", {"user_id": "u", "group_id": "g", "integrations": "All"}),
    # bad timestamps
    ("track", {"user_id": "u", "event": "E", "timestamp": "not a date"}),
    ("track", {"user_id": "u", "event": "E", "timestamp": 12345}),
    ("track", {"user_id": "u", "event": "E", "timestamp": 12345.5}),
    ("identify", {"user_id": "u", "timestamp": ["2020-01-01"]}),
    ("alias", {"previous_id": "p", "user_id": "u", "timestamp": object()}),
]


def _id(case):
    kind, kw = case
    return f"{kind}-" + ",".join(f"{k}={v!r}"[:30] for k, v in kw.items())


@pytest.mark.parametrize("kind, kwargs", INVALID, ids=[_id(c) for c in INVALID])
def test_invalid_call_raises_validation_error(make_client, collector, errors, kind, kwargs):
    client = make_client()
    with pytest.raises(analytics.ValidationError):
        getattr(client, kind)(**kwargs)
    assert client.flush(timeout=5) is True
    assert collector.requests == []
    assert client.stats()["queued"] == 0
    assert len(errors) == 0, "a programmer error is raised, not sent to on_error"


def test_validation_error_is_a_value_error():
    assert issubclass(analytics.ValidationError, ValueError)


VALID_IDS = [
    pytest.param({"user_id": 0}, {"userId": "0"}, id="user_id-zero"),
    pytest.param({"user_id": 42}, {"userId": "42"}, id="user_id-int"),
    pytest.param({"user_id": UID}, {"userId": str(UID)}, id="user_id-uuid"),
    pytest.param({"anonymous_id": 7}, {"anonymousId": "7"}, id="anonymous_id-int"),
    pytest.param({"anonymous_id": UID}, {"anonymousId": str(UID)}, id="anonymous_id-uuid"),
    pytest.param({"user_id": "", "anonymous_id": "a"}, {"anonymousId": "a"}, id="empty-user"),
]


@pytest.mark.parametrize("kwargs, expected", VALID_IDS)
def test_valid_ids_are_sent_as_strings(make_client, collector, kwargs, expected):
    client = make_client()
    ok, msg = client.track(event="E", **kwargs)
    assert ok is True
    assert client.flush(timeout=5)
    [received] = collector.messages()
    for key, value in expected.items():
        assert received[key] == value
        assert msg[key] == value


def test_group_id_int_and_previous_id_uuid_are_sent_as_strings(make_client, collector):
    client = make_client()
    assert client.group("u", 7)[0] is True
    assert client.alias(UID, 9)[0] is True
    assert client.flush(timeout=5)
    group, alias = collector.messages()
    assert group["groupId"] == "7"
    assert alias["previousId"] == str(UID) and alias["userId"] == "9"


def test_non_dict_mapping_is_accepted(make_client, collector):
    client = make_client()
    props = types.MappingProxyType({"plan": "pro"})
    assert client.track("u", "E", props)[0] is True
    assert client.flush(timeout=5)
    assert collector.messages()[0]["properties"] == {"plan": "pro"}


@pytest.mark.parametrize("write_key", [None, ""])
def test_client_without_write_key_is_refused_at_construction(collector, write_key):
    with pytest.raises(analytics.ValidationError):
        client = analytics.Client(write_key, host=collector.url)
        client.shutdown(timeout=2)


@pytest.mark.parametrize("write_key", [None, ""])
def test_stub_client_without_write_key_is_allowed(collector, write_key):
    client = analytics.Client(write_key, host=collector.url, stub=True)
    try:
        ok, msg = client.track("u", "E")
        assert ok is True and msg["event"] == "E"
    finally:
        assert client.shutdown(timeout=2) is True
    assert collector.requests == []


# ------------------------------------------------------------------ no mutation
def _payloads():
    nested = {"when": datetime(2020, 1, 1, tzinfo=timezone.utc), "price": Decimal("9.99"),
              "tags": {"a", "b"}, "pair": (1, 2), "deep": {"list": [1, {"x": float("nan")}]}}
    return {
        "properties": {"plan": "pro", "nested": nested, "uid": UID},
        "traits": {"email": "x@y.z", "nested": copy.deepcopy(nested)},
        "context": {"ip": "1.1.1.1", "library": {"name": "mine"}, "nested": {"k": [1, 2]}},
        "integrations": {"All": False, "Segment.io": {"opt": [1]}},
    }


def _snap(obj):
    # deepcopy, but NaN != NaN: compare through repr for a stable equality
    return repr(obj)


CALLS_USING = {
    "track": lambda c, p: c.track("u", "E", p["properties"], p["context"],
                                  integrations=p["integrations"]),
    "identify": lambda c, p: c.identify("u", p["traits"], p["context"],
                                        integrations=p["integrations"]),
    "page": lambda c, p: c.page("u", "C", "N", p["properties"], p["context"],
                                integrations=p["integrations"]),
    "screen": lambda c, p: c.screen("u", "C", "N", p["properties"], p["context"],
                                    integrations=p["integrations"]),
    "group": lambda c, p: c.group("u", "g", p["traits"], p["context"],
                                  integrations=p["integrations"]),
    "alias": lambda c, p: c.alias("p", "u", p["context"], integrations=p["integrations"]),
}


@pytest.mark.parametrize("kind", list(CALLS_USING))
def test_callers_dicts_are_never_mutated(make_client, collector, kind):
    client = make_client()
    payloads = _payloads()
    before = {k: _snap(v) for k, v in payloads.items()}
    ok, _ = CALLS_USING[kind](client, payloads)
    assert ok is True
    assert {k: _snap(v) for k, v in payloads.items()} == before
    assert client.flush(timeout=5)
    assert len(collector.messages()) == 1
    assert {k: _snap(v) for k, v in payloads.items()} == before, "mutated during delivery"


def test_validation_error_in_stub_mode_too(collector):
    with analytics.Client("k", host=collector.url, stub=True) as client:
        with pytest.raises(analytics.ValidationError):
            client.track(event="E")
        with pytest.raises(analytics.ValidationError):
            client.identify("u", traits=[1])
