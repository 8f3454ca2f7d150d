"""Hostile values never escape the call (issue 15, item 3): cycles and deep nesting are cut,
huge ints go as strings, a broken or sub-minute tzinfo is made UTC; the message arrives and
our own spec check (the bundled collector's) accepts it."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import zoneinfo
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

import pytest
from collector import strict_loads
from helpers import wait_until

from analytics import encode as enc
from analytics.collector import check, parse_iso8601
from analytics.log import Throttle

BACKENDS = ["json", "orjson"] if enc.orjson is not None else ["json"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest):
    enc.use_backend(request.param)
    yield request.param
    enc.use_backend(BACKENDS[-1])


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    """The value warnings' rate limit as new (another test may have used it up)."""
    monkeypatch.setattr(enc, "_odd_value", Throttle())
    caplog.set_level(logging.WARNING, logger="analytics")
    return caplog


def deliver(make_client: Any, collector: Any, **call: Any) -> dict[str, Any]:
    """One track through a real client to the loopback collector: the message as it arrived,
    after checking that our spec check accepts it."""
    client = make_client()
    ok, _ = client.track("u1", "Hostile", **call)
    assert ok
    assert client.flush(timeout=5)
    [msg] = collector.wait_for_messages(1)
    assert check(msg) is None, check(msg)
    return msg  # type: ignore[no-any-return]


def nested(depth: int, kind: type = dict) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"d": value} if kind is dict else [value]
    return value


def depth_of(value: Any) -> int:
    levels = 0
    while isinstance(value, (dict, list)):
        value = value["d"] if isinstance(value, dict) else value[0]
        levels += 1
    return levels


def bottom(value: Any) -> Any:
    while isinstance(value, (dict, list)):
        value = value["d"] if isinstance(value, dict) else value[0]
    return value


# -- cycles -----------------------------------------------------------------------------


def test_dict_that_contains_itself_is_sent_with_the_cycle_cut(make_client, collector, backend):
    props: dict[str, Any] = {"plan": "pro"}
    props["self"] = props
    inner: dict[str, Any] = {"n": 1}
    inner["again"] = inner
    props["inner"] = inner
    msg = deliver(make_client, collector, properties=props)
    assert msg["properties"] == {
        "plan": "pro",
        "self": enc.CIRCULAR,
        "inner": {"n": 1, "again": enc.CIRCULAR},
    }


def test_list_that_contains_itself_is_sent_with_the_cycle_cut(make_client, collector, backend):
    items: list[Any] = [1, 2]
    items.append(items)
    msg = deliver(make_client, collector, properties={"items": items}, context={"l": items})
    assert msg["properties"]["items"] == [1, 2, enc.CIRCULAR]
    assert msg["context"]["l"] == [1, 2, enc.CIRCULAR]


def test_the_same_dict_twice_is_not_a_cycle(make_client, collector):
    shared = {"a": 1}
    deep = nested(150)  # forces the careful copy, which must still tell the two apart
    msg = deliver(make_client, collector, properties={"x": shared, "y": [shared], "z": deep})
    assert msg["properties"]["x"] == {"a": 1}
    assert msg["properties"]["y"] == [{"a": 1}]


def test_a_cycle_logs_a_rate_limited_warning(make_client, collector, fresh_warnings):
    client = make_client()
    for _ in range(3):
        props: dict[str, Any] = {}
        props["me"] = props
        assert client.track("u1", "Cyclic", props)[0]
    assert client.flush(timeout=5)
    warned = [r for r in fresh_warnings.records if "circular" in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in fresh_warnings.records]
    assert warned[0].name == "analytics"


# -- depth ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [dict, list])
def test_nesting_deeper_than_the_limit_is_cut(make_client, collector, backend, kind):
    msg = deliver(make_client, collector, properties={"deep": nested(2000, kind), "ok": 1})
    deep = msg["properties"]["deep"]
    assert depth_of(deep) == enc.MAX_DEPTH
    assert bottom(deep) == enc.TOO_DEEP
    assert msg["properties"]["ok"] == 1


@pytest.mark.parametrize("kind", [dict, list])
def test_nesting_up_to_the_limit_is_sent_whole(make_client, collector, kind):
    msg = deliver(make_client, collector, properties={"deep": nested(enc.MAX_DEPTH, kind)})
    assert msg["properties"]["deep"] == nested(enc.MAX_DEPTH, kind)


def test_deep_nesting_logs_a_warning(make_client, collector, fresh_warnings):
    deliver(make_client, collector, context={"deep": nested(500)})
    assert any("nested deeper than 100" in r.getMessage() for r in fresh_warnings.records)


def test_encoder_alone_cuts_what_no_builder_copied(backend):
    """A message that skipped the builders' copy (built by hand): the encoder cuts too."""
    cyclic: dict[str, Any] = {}
    cyclic["me"] = cyclic
    body = strict_loads(enc.encode({"properties": {"deep": nested(5000), "c": cyclic}}))
    assert depth_of(body["properties"]["deep"]) == enc.MAX_DEPTH
    assert body["properties"]["c"] == {"me": enc.CIRCULAR}


# -- huge ints --------------------------------------------------------------------------


def test_int_over_the_str_digit_limit_is_sent_as_its_digits(make_client, collector, backend):
    huge = 7 * 10**5000 + 3
    msg = deliver(make_client, collector, properties={"n": huge, "small": 2**70, "k": {huge: 1}})
    props = msg["properties"]
    assert isinstance(props["n"], str)
    assert len(props["n"]) == 5001 and props["n"].startswith("7") and props["n"].endswith("3")
    assert props["small"] == 2**70  # a number still, as before
    assert list(props["k"]) == [props["n"]]


# -- timezones --------------------------------------------------------------------------


class Failing(tzinfo):
    def utcoffset(self, d: datetime | None) -> timedelta:
        raise RuntimeError("no offset today")

    def dst(self, d: datetime | None) -> timedelta | None:
        return None

    def tzname(self, d: datetime | None) -> str:
        return "FAIL"


class Silent(tzinfo):
    def utcoffset(self, d: datetime | None) -> timedelta | None:
        return None

    def dst(self, d: datetime | None) -> timedelta | None:
        return None


WHEN = datetime(2024, 3, 1, 12, 30, 0)


@pytest.mark.parametrize("tz", [Failing(), Silent()], ids=["raises", "none"])
def test_tzinfo_without_an_offset_is_taken_as_utc(make_client, collector, fresh_warnings, tz):
    msg = deliver(make_client, collector, timestamp=WHEN.replace(tzinfo=tz))
    assert msg["timestamp"] == "2024-03-01T12:30:00+00:00"
    assert any("taken as UTC" in r.getMessage() for r in fresh_warnings.records)


def test_tzinfo_without_an_offset_in_properties_with_either_backend():
    """In a subprocess: orjson 3.13 kills the process (SIGSEGV) on a tzinfo that raises."""
    script = textwrap.dedent(
        """
        import datetime as dt, json
        from analytics import encode, messages

        class Failing(dt.tzinfo):
            def utcoffset(self, d):
                raise RuntimeError("no offset today")

        class Silent(dt.tzinfo):
            def utcoffset(self, d):
                return None

        for backend in encode._BACKENDS:
            encode.use_backend(backend)
            for tz in (Failing(), Silent()):
                when = dt.datetime(2024, 3, 1, 12, 30, tzinfo=tz)
                msg = messages.track("u1", "E", {"at": when, "l": [when]})
                body = json.loads(encode.encode(msg))
                assert body["properties"]["at"] == "2024-03-01T12:30:00+00:00", body
                assert body["properties"]["l"] == ["2024-03-01T12:30:00+00:00"], body
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert done.stdout.strip() == "ok"


AMSTERDAM_1900 = datetime(1900, 6, 1, 12, 0, tzinfo=zoneinfo.ZoneInfo("Europe/Amsterdam"))


def test_offset_with_seconds_is_sent_in_utc_and_accepted(make_client, collector, backend):
    assert AMSTERDAM_1900.utcoffset() == timedelta(minutes=19, seconds=32)
    msg = deliver(
        make_client, collector, timestamp=AMSTERDAM_1900, properties={"at": AMSTERDAM_1900}
    )
    assert msg["timestamp"] == "1900-06-01T11:40:28+00:00"
    assert msg["properties"]["at"] == "1900-06-01T11:40:28+00:00"  # the same instant
    assert parse_iso8601(msg["timestamp"]) == AMSTERDAM_1900


def test_zoneinfo_offsets_of_whole_minutes_keep_their_offset(make_client, collector, backend):
    when = datetime(2024, 7, 1, 9, 0, tzinfo=zoneinfo.ZoneInfo("Asia/Kolkata"))
    msg = deliver(make_client, collector, timestamp=when, properties={"at": when})
    assert msg["timestamp"] == "2024-07-01T09:00:00+05:30"
    assert msg["properties"]["at"] == "2024-07-01T09:00:00+05:30"


def test_utc_and_naive_datetimes_are_sent_as_before(make_client, collector, backend):
    aware = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    msg = deliver(make_client, collector, properties={"a": aware, "n": aware.replace(tzinfo=None)})
    assert msg["properties"] == {"a": "2024-01-02T03:04:05+00:00", "n": "2024-01-02T03:04:05+00:00"}


def test_no_value_makes_a_call_raise(make_client, collector, errors):
    """All of the above in one call, with siblings: it arrives, nothing reported."""
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    client = make_client()
    props = {
        "c": cyclic,
        "deep": nested(3000, list),
        "huge": -(10**9000),
        "bad_tz": WHEN.replace(tzinfo=Failing()),
        "old": AMSTERDAM_1900,
        "fine": "kept",
    }
    assert client.track("u1", "Everything", props)[0]
    assert client.flush(timeout=5)
    [msg] = collector.wait_for_messages(1)
    assert check(msg) is None
    assert msg["properties"]["fine"] == "kept"
    assert msg["properties"]["huge"].startswith("-1000")
    assert wait_until(lambda: len(errors) == 0, timeout=0.5)


def test_cycle_in_a_context_merged_with_a_scope_is_cut(make_client, collector):
    import analytics

    ctx: dict[str, Any] = {"page": {"path": "/"}}
    ctx["page"]["up"] = ctx
    with analytics.scope(context={"app": {"name": "shop"}}):
        msg = deliver(make_client, collector, context=ctx, integrations={"l": nested(300, list)})
    assert msg["context"]["app"] == {"name": "shop"}
    assert msg["context"]["page"]["path"] == "/"
    assert enc.CIRCULAR in json_text(msg["context"]["page"]["up"])
    assert bottom(msg["integrations"]["l"]) == enc.TOO_DEEP


def json_text(value: Any) -> str:
    import json

    return json.dumps(value)
