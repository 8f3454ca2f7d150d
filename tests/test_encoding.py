"""How values are encoded, as checked on the bytes the collector received."""

from __future__ import annotations

import enum
import importlib.util
import logging
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from collector import strict_loads
from dateutil.parser import isoparse
from helpers import wait_until


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Thing:
    def __str__(self) -> str:
        return "thing-as-str"


# Every test here runs with each fast path this machine has (orjson is the `fast` extra).
BACKENDS = ["json"] + (["orjson"] if importlib.util.find_spec("orjson") else [])


@pytest.fixture(autouse=True, params=BACKENDS)
def backend(request):
    from analytics import encode

    before = encode.BACKEND
    encode.use_backend(request.param)
    yield request.param
    encode.use_backend(before)


UID = uuid.UUID("0b7e5b1e-6a4c-4f6e-9a51-3f1f0e2d4c5b")


def send_props(make_client, collector, props):
    client = make_client()
    ok, _ = client.track("u", "Encoded", props)
    assert ok is True
    assert client.flush(timeout=5) is True
    [received] = collector.wait_for_messages(1, timeout=2)
    for req in collector.requests:  # every body is strict JSON
        strict_loads(req.body)
    return received["properties"]


def _same_instant_or_wallclock(text, value):
    parsed = isoparse(text)
    if parsed.tzinfo is None:
        return parsed == value.replace(tzinfo=None)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return parsed == value


@pytest.mark.parametrize(
    "value, check",
    [
        pytest.param(
            datetime(2020, 5, 6, 7, 8, 9, tzinfo=timezone.utc),
            lambda v: _same_instant_or_wallclock(v, datetime(2020, 5, 6, 7, 8, 9,
                                                             tzinfo=timezone.utc)),
            id="aware-datetime",
        ),
        pytest.param(
            datetime(2020, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=3))),
            lambda v: isoparse(v) == datetime(2020, 5, 6, 4, 8, 9, tzinfo=timezone.utc),
            id="aware-datetime-offset",
        ),
        pytest.param(
            datetime(2020, 5, 6, 7, 8, 9),
            lambda v: _same_instant_or_wallclock(v, datetime(2020, 5, 6, 7, 8, 9)),
            id="naive-datetime",
        ),
        pytest.param(date(2020, 5, 6), lambda v: isoparse(v).date() == date(2020, 5, 6),
                     id="date"),
        pytest.param(Decimal("1.10000000000000000001"),
                     lambda v: v == "1.10000000000000000001", id="decimal-precise"),
        pytest.param(Decimal("-0.5"), lambda v: v == "-0.5", id="decimal-negative"),
        pytest.param(UID, lambda v: v == str(UID), id="uuid"),
        pytest.param({3, 1, 2}, lambda v: isinstance(v, list) and sorted(v) == [1, 2, 3],
                     id="set"),
        pytest.param(frozenset({"a"}), lambda v: v == ["a"], id="frozenset"),
        pytest.param((1, "a", None), lambda v: v == [1, "a", None], id="tuple"),
        pytest.param(Color.RED, lambda v: v == "red", id="enum"),
        pytest.param(Level.HIGH, lambda v: v == 3, id="int-enum"),
        pytest.param(Thing(), lambda v: v == "thing-as-str", id="arbitrary-object"),
        pytest.param(float("nan"), lambda v: v is None, id="nan"),
        pytest.param(float("inf"), lambda v: v is None, id="inf"),
        pytest.param(float("-inf"), lambda v: v is None, id="-inf"),
        pytest.param(Decimal("NaN"), lambda v: v is None, id="decimal-nan"),
        pytest.param(10**30, lambda v: v == 10**30, id="big-int"),
        pytest.param(1.5, lambda v: v == 1.5, id="plain-float"),
    ],
)
def test_value_is_encoded(make_client, collector, value, check):
    props = send_props(make_client, collector, {"v": value, "sibling": "kept"})
    assert check(props["v"]), props["v"]
    assert props["sibling"] == "kept"


def test_arbitrary_object_logs_a_warning(make_client, collector, caplog):
    class FreshType:  # a type no other test has sent (a warning may be once per type)
        def __str__(self) -> str:
            return "fresh"

    caplog.set_level(logging.WARNING, logger="analytics")
    props = send_props(make_client, collector, {"v": FreshType()})
    assert props["v"] == "fresh"
    assert wait_until(
        lambda: any(
            r.levelno == logging.WARNING and r.name.startswith("analytics")
            for r in caplog.records
        ),
        timeout=2,
    ), "no warning logged for a value JSON cannot hold"


def test_nan_and_infinity_never_make_invalid_json(make_client, collector):
    props = send_props(
        make_client,
        collector,
        {"a": float("nan"), "b": [float("inf"), 1, float("-inf")], "c": {"d": Decimal("NaN")}},
    )
    assert props == {"a": None, "b": [None, 1, None], "c": {"d": None}}
    for req in collector.requests:
        body = req.body.decode()
        assert "NaN" not in body and "Infinity" not in body


def test_one_odd_value_never_drops_its_siblings(make_client, collector):
    props = send_props(
        make_client,
        collector,
        {
            "good": 1,
            "odd": Thing(),
            "list": [1, Thing(), float("nan"), Decimal("2.50"), {"when": date(2021, 1, 1)}],
            "nested": {"ok": "yes", "odd": object(), "set": {5}},
        },
    )
    assert props["good"] == 1
    assert props["odd"] == "thing-as-str"
    lst = props["list"]
    assert len(lst) == 5
    assert lst[0] == 1 and lst[1] == "thing-as-str" and lst[2] is None
    assert lst[3] == "2.50"
    assert isoparse(lst[4]["when"]).date() == date(2021, 1, 1)
    assert props["nested"]["ok"] == "yes"
    assert isinstance(props["nested"]["odd"], str) and props["nested"]["odd"]
    assert props["nested"]["set"] == [5]


def test_values_in_traits_context_and_integrations_are_encoded(make_client, collector):
    client = make_client()
    ok, _ = client.identify(
        "u",
        {"born": date(1990, 1, 2), "score": Decimal("0.1"), "tags": ("a",)},
        {"ip": "1.1.1.1", "weird": float("inf"), "uid": UID},
        integrations={"X": {"since": datetime(2020, 1, 1, tzinfo=timezone.utc)}},
    )
    assert ok
    assert client.flush(timeout=5)
    [m] = collector.messages()
    assert isoparse(m["traits"]["born"]).date() == date(1990, 1, 2)
    assert m["traits"]["score"] == "0.1"
    assert m["traits"]["tags"] == ["a"]
    assert m["context"]["weird"] is None
    assert m["context"]["uid"] == str(UID)
    assert isoparse(m["integrations"]["X"]["since"]) == datetime(2020, 1, 1, tzinfo=timezone.utc)


def test_odd_values_do_not_break_later_delivery(make_client, collector):
    client = make_client()
    client.track("u", "odd", {"v": Thing(), "n": float("nan")})
    client.track("u", "plain", {"v": 1})
    assert client.flush(timeout=5)
    events = [m["event"] for m in collector.messages()]
    assert events == ["odd", "plain"]


def test_without_orjson_the_json_module_encodes():
    """What a user without the `fast` extra gets (orjson hidden from a fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['orjson'] = None\n"
        "import datetime, analytics.encode as e\n"
        "print(e.BACKEND)\n"
        "print(e.encode({'t': datetime.datetime(2024, 1, 2), 'n': float('nan')}).decode())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split("\n")
    assert out[0] == "json"
    assert out[1] == '{"t":"2024-01-02T00:00:00+00:00","n":null}'
