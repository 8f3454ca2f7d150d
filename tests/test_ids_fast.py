"""The hot path's id and timestamp: the text Python's own uuid and datetime give."""

from __future__ import annotations

import datetime as dt
import re
import uuid

from analytics import ids


def test_uuid4_is_a_version_4_uuid_as_str_gives_it() -> None:
    seen = set()
    for _ in range(2000):
        text = ids.uuid4()
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        seen.add(text)
    assert len(seen) == 2000


def test_now_is_iso8601_utc_with_microseconds_and_now() -> None:
    before = dt.datetime.now(dt.timezone.utc)
    text = ids.now_iso8601()
    after = dt.datetime.now(dt.timezone.utc)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", text)
    stamp = dt.datetime.fromisoformat(text)
    assert before - dt.timedelta(milliseconds=1) <= stamp <= after + dt.timedelta(milliseconds=1)


def test_now_reads_the_fraction_exactly() -> None:
    assert ids.now_iso8601(lambda: 1_700_000_000_999_999_999) == (
        "2023-11-14T22:13:20.999999+00:00"
    )
    assert ids.now_iso8601(lambda: 1_700_000_001_000_001_000).endswith(":21.000001+00:00")
