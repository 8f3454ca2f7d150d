"""The Segment spec is written once (`analytics.spec`): the builders (the call side) and the
collector's check (the wire side, also `analytics import`) agree on every rule, and every
ISO-8601 timestamp is read by the one parser."""

from __future__ import annotations

import ast
import datetime as dt
import inspect
import itertools
import json
import types
import uuid
from pathlib import Path
from typing import Any

import pytest
from dateutil.parser import isoparse

import analytics
from analytics import cli, messages, spec
from analytics.atrack import utc_millis
from analytics.collector import parse_iso8601 as collector_parse_iso8601
from analytics.collector.validate import check

PACKAGE = Path(analytics.__file__).parent
UTC = dt.timezone.utc
UID = uuid.UUID("12345678-1234-4234-8234-123456789abc")
MISSING = object()  # an argument not given at all

# A valid call of each type; a case changes some of its arguments.
BASE: dict[str, dict[str, Any]] = {
    "identify": {"user_id": "u"},
    "track": {"user_id": "u", "event": "E"},
    "page": {"user_id": "u"},
    "screen": {"user_id": "u"},
    "group": {"user_id": "u", "group_id": "g"},
    "alias": {"previous_id": "p", "user_id": "u"},
}
WIRE_KEY = {
    "user_id": "userId", "anonymous_id": "anonymousId", "group_id": "groupId",
    "previous_id": "previousId", "message_id": "messageId",
}  # fmt: skip
CALL_NAME = {wire: call for call, wire in WIRE_KEY.items()}


def call_kwargs(kind: str, changes: dict[str, Any]) -> dict[str, Any]:
    kwargs = {**BASE[kind], **changes}
    return {k: v for k, v in kwargs.items() if v is not MISSING}


def wire_message(kind: str, changes: dict[str, Any]) -> dict[str, Any]:
    """The message a wire client would send for the same call (JSON values only)."""
    return {"type": kind, **{WIRE_KEY.get(k, k): v for k, v in call_kwargs(kind, changes).items()}}


def build(kind: str, changes: dict[str, Any]) -> dict[str, Any]:
    return getattr(messages, kind)(**call_kwargs(kind, changes))


def case_id(case: tuple[str, dict[str, Any]]) -> str:
    kind, changes = case
    shown = ",".join(f"{k}={'-' if v is MISSING else repr(v)}"[:32] for k, v in changes.items())
    return f"{kind}-{shown}"


# -- what both sides accept, and what both refuse ------------------------------------------

ACCEPTED = [
    ("track", {"user_id": 0}),
    ("track", {"user_id": 42}),
    ("track", {"user_id": MISSING, "anonymous_id": 7}),
    ("track", {"user_id": "", "anonymous_id": "a"}),
    ("track", {"event": " "}),
    ("track", {"properties": {"a": [1, {"b": None}]}, "message_id": "m-1"}),
    ("identify", {"traits": {}, "context": {"ip": "1.1.1.1"}, "integrations": {"All": False}}),
    ("page", {"name": "Home", "category": "Docs", "properties": {"p": 1}}),
    ("page", {"name": ""}),
    ("page", {"name": None, "category": None}),
    ("screen", {"name": "S"}),
    ("screen", {"category": "C"}),
    ("group", {"group_id": 7, "traits": {"n": 1}}),
    ("alias", {"previous_id": 9, "user_id": 0}),
    ("alias", {"timestamp": "2024-03-01T09:30:00Z"}),
]

# Each refused case names first the argument it is refused for.
REFUSED = [
    # no identity
    ("identify", {"user_id": MISSING}),
    ("track", {"user_id": ""}),
    ("track", {"user_id": "", "anonymous_id": ""}),
    ("page", {"user_id": None, "anonymous_id": None}),
    ("screen", {"user_id": MISSING, "name": "S"}),
    ("group", {"user_id": MISSING}),
    # ids of the wrong type
    ("track", {"user_id": True}),
    ("track", {"user_id": False}),
    ("track", {"user_id": 1.5}),
    ("identify", {"user_id": 2.0}),
    ("identify", {"user_id": ["u"]}),
    ("page", {"user_id": {"id": 1}}),
    ("track", {"anonymous_id": 1.5}),
    ("screen", {"anonymous_id": True}),
    ("group", {"group_id": True}),
    ("group", {"group_id": 1.5}),
    ("alias", {"previous_id": 1.5}),
    ("alias", {"user_id": False}),
    ("track", {"message_id": True}),
    ("identify", {"message_id": 1.5}),
    # required fields
    ("track", {"event": MISSING}),
    ("track", {"event": None}),
    ("track", {"event": ""}),
    ("track", {"event": 5}),
    ("track", {"event": True}),
    ("track", {"event": {"name": "E"}}),
    ("track", {"event": ["E"]}),
    ("group", {"group_id": MISSING}),
    ("group", {"group_id": None}),
    ("group", {"group_id": ""}),
    ("alias", {"previous_id": MISSING}),
    ("alias", {"previous_id": ""}),
    ("alias", {"user_id": MISSING}),
    ("alias", {"user_id": ""}),
    # name and category: a str when given
    ("page", {"name": 5}),
    ("page", {"name": 1.5}),
    ("page", {"name": True}),
    ("page", {"name": ["Home"]}),
    ("page", {"name": {"x": 1}}),
    ("page", {"category": 5}),
    ("screen", {"name": 5}),
    ("screen", {"category": False}),
    # mapping fields
    ("identify", {"traits": [["a", 1]]}),
    ("identify", {"traits": "a=1"}),
    ("group", {"traits": 5}),
    ("track", {"properties": [1, 2]}),
    ("track", {"properties": "p"}),
    ("page", {"properties": ["x"]}),
    ("screen", {"properties": 1}),
    ("track", {"context": "ctx"}),
    ("identify", {"context": ["ip"]}),
    ("alias", {"context": 3}),
    ("track", {"integrations": ["All"]}),
    ("group", {"integrations": "All"}),
    # timestamps that are not ISO-8601 strings (the strings: the ISO-8601 table below)
    ("track", {"timestamp": "not a date"}),
    ("track", {"timestamp": 12345}),
    ("track", {"timestamp": 12345.5}),
    ("identify", {"timestamp": ["2020-01-01"]}),
    ("alias", {"timestamp": True}),
]


@pytest.mark.parametrize(("kind", "changes"), ACCEPTED, ids=[case_id(c) for c in ACCEPTED])
def test_what_the_builder_accepts_the_collector_accepts(kind: str, changes: dict[str, Any]) -> None:
    built = build(kind, changes)
    assert check(built) is None
    assert check(wire_message(kind, changes)) is None


@pytest.mark.parametrize(("kind", "changes"), REFUSED, ids=[case_id(c) for c in REFUSED])
def test_what_the_builder_refuses_the_collector_refuses_for_the_same_field(
    kind: str, changes: dict[str, Any]
) -> None:
    field = next(iter(changes))
    with pytest.raises(analytics.ValidationError) as raised:
        build(kind, changes)
    assert field in str(raised.value)
    reason = check(wire_message(kind, changes))
    assert reason is not None
    assert WIRE_KEY.get(field, field) in reason


# What JSON cannot hold (a UUID, a datetime, a Mapping that is not a dict) is accepted at the
# call and sent as what the collector accepts.
CALL_ONLY = [
    ("track", {"user_id": UID}),
    ("track", {"user_id": MISSING, "anonymous_id": UID}),
    ("group", {"group_id": UID}),
    ("alias", {"previous_id": UID}),
    ("track", {"message_id": 5}),
    ("track", {"message_id": UID}),
    ("track", {"properties": types.MappingProxyType({"plan": "pro"})}),
    ("identify", {"traits": types.MappingProxyType({})}),
    ("track", {"timestamp": dt.datetime(2024, 3, 1, 9, 30)}),
    ("track", {"timestamp": dt.datetime(2024, 3, 1, 9, 30, tzinfo=dt.timezone.max)}),
    ("page", {"timestamp": dt.date(2024, 3, 1)}),
    ("page", {"name": type("Text", (str,), {})("Home")}),
    ("track", {"event": type("Text", (str,), {})("E")}),
]


@pytest.mark.parametrize(("kind", "changes"), CALL_ONLY, ids=[case_id(c) for c in CALL_ONLY])
def test_python_values_are_sent_as_what_the_collector_accepts(
    kind: str, changes: dict[str, Any]
) -> None:
    assert check(build(kind, changes)) is None


def test_the_table_of_types_is_the_builders() -> None:
    """Each type's own keys are what its builder sends when given everything."""
    assert tuple(spec.KINDS) == spec.MESSAGE_TYPES
    everything = {
        "anonymous_id": "a", "event": "E", "name": "N", "category": "C", "group_id": "g",
        "properties": {"p": 1}, "traits": {"t": 1},
    }  # fmt: skip
    common = {"type", "messageId", "timestamp", "context", "integrations", *spec.IDENTITY}
    for kind, rules in spec.KINDS.items():
        params = inspect.signature(getattr(messages, kind)).parameters
        built = build(kind, {k: v for k, v in everything.items() if k in params})
        assert built["type"] == kind
        assert set(built) - common == set(rules.fields) - common, kind
        assert check(built) is None


@pytest.mark.parametrize(
    ("kind", "key"), [(kind, key) for kind, r in spec.KINDS.items() for key in r.required]
)
def test_every_required_key_is_required_by_both(kind: str, key: str) -> None:
    with pytest.raises(analytics.ValidationError):
        build(kind, {CALL_NAME.get(key, key): MISSING})
    reason = check(wire_message(kind, {CALL_NAME.get(key, key): MISSING}))
    assert reason is not None and key in reason


@pytest.mark.parametrize("kind", [k for k, r in spec.KINDS.items() if r.identified])
def test_every_identified_type_needs_an_identity_on_both_sides(kind: str) -> None:
    with pytest.raises(analytics.ValidationError, match="user_id or an anonymous_id"):
        build(kind, {"user_id": MISSING})
    assert check(wire_message(kind, {"user_id": MISSING})) == f"{kind} needs userId or anonymousId"


# -- page and screen: name and category -----------------------------------------------------


@pytest.mark.parametrize("call", ["page", "screen"])
@pytest.mark.parametrize("field", ["name", "category"])
def test_a_name_or_category_that_is_not_a_str_is_refused_at_the_call(
    make_client: Any, collector: Any, errors: Any, call: str, field: str
) -> None:
    client = make_client()
    with pytest.raises(analytics.ValidationError, match=f"{field} must be a str, not int"):
        getattr(client, call)("u", **{field: 5})
    assert client.flush(timeout=5) is True
    assert client.stats()["queued"] == 0 and collector.requests == []
    assert len(errors) == 0


def test_page_with_a_number_for_a_name_raises() -> None:
    with analytics.Client("k", stub=True) as client:
        with pytest.raises(ValueError, match="name must be a str"):
            client.page("u", name=5)
        assert client.sent == []
        ok, msg = client.page("u", "Docs", "Home")
        assert ok and (msg["category"], msg["name"]) == ("Docs", "Home")


# -- ISO-8601: one parser for the builders, the collector and A-Track -----------------------


def at(*args: int, offset: float = 0) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.timezone(dt.timedelta(hours=offset)))


ISO_ACCEPTED = [
    ("2024-03-01T09:30:00Z", at(2024, 3, 1, 9, 30)),
    ("2024-03-01t09:30z", at(2024, 3, 1, 9, 30)),
    ("2024-03-01T09:30:00.123456+02:00", at(2024, 3, 1, 9, 30, 0, 123456, offset=2)),
    ("2024-03-01T09:30:00.123Z", at(2024, 3, 1, 9, 30, 0, 123000)),
    ("2024-03-01 09:30", at(2024, 3, 1, 9, 30)),
    ("2024-03-01", at(2024, 3, 1)),
    ("2024-03-01T09:30:00", at(2024, 3, 1, 9, 30)),
    ("2024-03-01T09:30:00.1-0530", at(2024, 3, 1, 9, 30, 0, 100000, offset=-5.5)),
    ("2024-03-01T09:30:00+00", at(2024, 3, 1, 9, 30)),
    ("2024-03-01T09:30+01", at(2024, 3, 1, 9, 30, offset=1)),
    ("2024-03-01T09:30:00-00:00", at(2024, 3, 1, 9, 30)),
    ("2024-03-01T09:30:00,5+01:00", at(2024, 3, 1, 9, 30, 0, 500000, offset=1)),
    ("2024-03-01T09:30:00.123456789Z", at(2024, 3, 1, 9, 30, 0, 123456)),
    ("2024-03-01T23:59:59+23:59", at(2024, 3, 1, 23, 59, 59, offset=23 + 59 / 60)),
    ("2024-02-29T12:00:00Z", at(2024, 2, 29, 12)),
]
ISO_REFUSED = [
    "", "2024-3-1", "01/03/2024", "last tuesday", "yesterday", "not a date",
    "2024-02-30T10:00:00Z", "2023-02-29", "2024-13-01", "0000-01-01",
    "2024-03-01T25:00:00Z", "2024-03-01T24:00:00Z", "2024-03-01T23:59:60Z",
    "2024-03-01T09:30:00+24:00", "2024-03-01T09:30:00+05:60", "2024-03-01T09:30:00+05:30:00",
    "2024", "2024-03", "20240301", "2024-W09-5", "2024-061", "2024-03-01T09",
    "2024-03-01T0930", "2024-03-01X09:30", "2024-03-01T09:30:00.1234567890Z",
    "２０２４-03-01", " 2024-03-01", "2024-03-01T09:30:00Z\n", "2024-03-01T09:30:00 +05:00",
    "2024-03-01T09:30:00UTC", "2024-03-01Z", "2024-03-01T09:30:00.Z",
]  # fmt: skip


@pytest.mark.parametrize(("text", "instant"), ISO_ACCEPTED, ids=[t for t, _ in ISO_ACCEPTED])
def test_iso8601_accepted_everywhere_as_the_same_instant(text: str, instant: dt.datetime) -> None:
    parsed = spec.parse_iso8601(text)
    assert parsed == instant and parsed.utcoffset() == instant.utcoffset()
    assert type(parsed.tzinfo) is dt.timezone
    assert messages.track("u", "E", timestamp=text)["timestamp"] == instant.isoformat()
    assert check(wire_message("track", {"timestamp": text})) is None
    millis = instant.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")
    assert utc_millis(text) == millis + "Z"


@pytest.mark.parametrize("text", ISO_REFUSED)
def test_iso8601_refused_everywhere(text: str) -> None:
    assert spec.parse_iso8601(text) is None
    with pytest.raises(analytics.ValidationError, match="not an ISO-8601 date-time"):
        messages.track("u", "E", timestamp=text)
    reason = check(wire_message("track", {"timestamp": text}))
    assert reason is not None and "not an ISO-8601 date-time" in reason
    with pytest.raises(analytics.ValidationError, match="not ISO-8601"):
        utc_millis(text)


def test_the_common_forms_are_read_as_dateutil_reads_them() -> None:
    """parse_iso8601 reads what isoformat() and toISOString() write with the standard
    library; on every such string it must give dateutil's answer (or refuse with it)."""
    dates = ["2024-03-01", "2024-02-29", "2023-02-29", "2024-12-31", "0001-01-01", "2024-04-31"]
    times = ["00:00:00", "09:30:15", "23:59:59"]
    fractions = ["", ".000", ".123", ".999999", ".000001"]
    offsets = ["", "Z", "+00:00", "-00:00", "+02:00", "-05:30", "+23:59", "-23:59"]
    for d, t, f, o in itertools.product(dates, times, fractions, offsets):
        text = f"{d}T{t}{f}{o}"
        try:
            expected: dt.datetime | None = isoparse(text)
        except ValueError:
            expected = None
        if expected is not None and expected.tzinfo is None:
            expected = expected.replace(tzinfo=UTC)
        parsed = spec.parse_iso8601(text)
        assert parsed == expected, text
        if parsed is not None and expected is not None:
            assert parsed.utcoffset() == expected.utcoffset(), text


def test_utc_millis_refuses_an_instant_past_what_utc_can_write() -> None:
    assert spec.parse_iso8601("9999-12-31T23:00:00-05:00") is not None
    with pytest.raises(analytics.ValidationError, match="not ISO-8601"):
        utc_millis("9999-12-31T23:00:00-05:00")


def test_there_is_one_iso8601_parser() -> None:
    assert collector_parse_iso8601 is spec.parse_iso8601
    readers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if "isoparse" in text or "fromisoformat" in text:
            readers.append(path.relative_to(PACKAGE).as_posix())
    assert readers == ["spec.py"]


def test_spec_imports_nothing_above_it() -> None:
    tree = ast.parse((PACKAGE / "spec.py").read_text(encoding="utf-8"))
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            inside.add(node.module)
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("analytics") for a in node.names)
    assert inside == {"encode", "errors", "ids"}


# -- analytics import: one rule set per line -----------------------------------------------


def test_every_message_the_check_accepts_is_replayed_without_error() -> None:
    lines = [wire_message(kind, changes) for kind, changes in ACCEPTED]
    lines += [wire_message("track", {"timestamp": text}) for text, _ in ISO_ACCEPTED]
    with analytics.Client("k", stub=True) as client:
        for line in lines:
            assert check(line) is None
            ok, sent = cli.replay(client, line)
            assert ok and check(sent) is None, line


def test_a_dry_run_rejects_the_lines_a_real_import_rejects() -> None:
    rows = [wire_message(kind, changes) for kind, changes in ACCEPTED + REFUSED]
    lines = [json.dumps(row).encode() for row in rows]
    dry = cli.run_import(lines, None, cli.ImportReport("dry", dry_run=True))
    client = analytics.Client("k", stub=True)
    real = cli.run_import(lines, client, cli.ImportReport("real"))
    assert len(dry.rejected) == len(REFUSED)
    assert real.rejected == dry.rejected
    assert real.sent == dry.valid == len(ACCEPTED)
    for (lineno, reason), (_, changes) in zip(dry.rejected, REFUSED):
        field = next(iter(changes))
        assert lineno > len(ACCEPTED) and WIRE_KEY.get(field, field) in reason
