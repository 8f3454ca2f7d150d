"""The Segment spec is written once (`analytics.spec`): the builders (the call side) and the
collector's check (the wire side, also `analytics import`) agree on every rule, and every
ISO-8601 timestamp is read by the one parser."""

from __future__ import annotations

import ast
import datetime as dt
import itertools
import uuid
from pathlib import Path
from typing import Any

import pytest
from dateutil.parser import isoparse

import analytics
from analytics import messages, spec
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
    assert check(wire_message("track", {"timestamp": text})) is None


@pytest.mark.parametrize("text", ISO_REFUSED)
def test_iso8601_refused_everywhere(text: str) -> None:
    assert spec.parse_iso8601(text) is None
    reason = check(wire_message("track", {"timestamp": text}))
    assert reason is not None and "not an ISO-8601 date-time" in reason


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


def test_the_collector_reads_timestamps_with_the_spec_parser() -> None:
    assert collector_parse_iso8601 is spec.parse_iso8601


def test_spec_imports_nothing_above_it() -> None:
    tree = ast.parse((PACKAGE / "spec.py").read_text(encoding="utf-8"))
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            inside.add(node.module)
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("analytics") for a in node.names)
    assert inside == {"encode", "errors", "ids"}
