"""The collector speaks A-Track too (issue 17): `POST /init`, `/attributes`, `/event` with the
`x-a-track-key` header, stored beside the Segment messages with a `protocol`, visible at
/v1/events, /v1/stats and on the live page; an older database file is migrated."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

from _collector_helpers import KEY, CollectorProcess, get, http, post

import analytics
from analytics.collector import store

ATRACK_HEADERS = {"x-a-track-key": KEY, "Content-Type": "application/json"}


def test_an_atrack_client_is_stored_and_shown_beside_segment(tmp_path: Path) -> None:
    with CollectorProcess(tmp_path / "c.db", "--quiet", "--write-key", KEY) as p:
        client = analytics.Client(KEY, protocol="atrack", host=p.url, flush_interval=5)
        try:
            user = client.init(attributes={"plan": "pro"})
            client.track(event="Signed Up", properties={"n": 1})
            client.set_attributes({"seats": 3})
            assert client.flush(timeout=10)
            assert client.stats()["delivered"] == 3 and client.stats()["dropped"] == 0
        finally:
            client.shutdown(timeout=5)
        with analytics.Client(KEY, host=p.url) as segment:
            segment.track("u-seg", "Segment Event")
            assert segment.flush(timeout=10)

        atrack = get(p.url, "/v1/events?protocol=atrack")
        assert [e["type"] for e in atrack] == ["attributes", "event", "init"]  # newest first
        assert {e["uuid"] for e in atrack} == {user["uuid"]}
        assert all(e["protocol"] == "atrack" and e["messageId"] for e in atrack)
        attributes, event, init = atrack
        assert event["event"] == "Signed Up" and event["attributes"] == {"n": 1}
        assert event["timestamp"].endswith("Z") and event["receivedAt"]
        assert init["isNewUser"] is True and init["attributes"] == {"plan": "pro"}
        assert attributes["mode"] == "merge" and attributes["attributes"] == {"seats": 3}
        assert get(p.url, f"/v1/events?user_id={user['uuid']}&type=event")[0]["event"] == (
            "Signed Up"
        )
        (seg,) = get(p.url, "/v1/events?protocol=segment")
        assert seg["event"] == "Segment Event"

        stats = get(p.url, "/v1/stats")
        assert stats["events"] == 4
        assert stats["by_protocol"] == {"segment": 1, "atrack": 3}
        assert stats["atrack_by_type"] == {"init": 1, "attributes": 1, "event": 1}
        assert stats["by_type"]["track"] == 1

        page = http.get(p.url + "/", timeout=10).text
        for text in ("Signed Up", user["uuid"], "t-event", "t-init", "new user", "Segment Event"):
            assert text in page, text
        filtered = http.get(p.url + "/?type=event", timeout=10).text
        assert "Signed Up" in filtered and "Segment Event" not in filtered
        timeline = get(p.url, "/v1/timeline?minutes=5")
        assert sum(b["by_type"]["event"] for b in timeline["buckets"]) == 1
        assert p.stop() == 0


def test_atrack_needs_its_key_header(tmp_path: Path) -> None:
    with CollectorProcess(tmp_path / "c.db", "--quiet", "--write-key", KEY) as p:
        body = {"sdkVersion": "1", "uuid": "u1", "event": "E", "timestamp": "2026-01-01T00:00Z"}
        assert post(p.url, "/event", json_body=body, key=None).status_code == 401
        resp = post(p.url, "/event", json_body=body, key=None, headers={"x-a-track-key": "nope"})
        assert resp.status_code == 401
        assert "nope" not in resp.text and KEY not in resp.text
        assert post(p.url, "/event", json_body=body, key=None, headers=ATRACK_HEADERS).ok
        assert get(p.url, "/v1/stats")["by_protocol"]["atrack"] == 1


def test_a_bad_atrack_body_is_400_with_the_reason_and_kept(tmp_path: Path) -> None:
    with CollectorProcess(tmp_path / "c.db", "--quiet") as p:
        cases: list[tuple[str, Any, str]] = [
            ("/event", {"uuid": "u1", "timestamp": "2026-01-01T00:00Z"}, "event needs event"),
            ("/event", {"uuid": "u1", "event": "E", "timestamp": "soon"}, "ISO-8601"),
            ("/init", {"uuid": "u1", "isNewUser": "yes", "attributes": {}}, "isNewUser"),
            ("/attributes", {"uuid": "u1", "mode": "add", "attributes": {}}, "mode"),
            ("/attributes", {"uuid": "", "mode": "merge", "attributes": {}}, "uuid"),
            ("/init", [1, 2], "JSON object"),
        ]
        for path, body, reason in cases:
            resp = post(p.url, path, json_body=body, key=None, headers=ATRACK_HEADERS)
            assert resp.status_code == 400, (path, body)
            assert reason in resp.json()["error"], (reason, resp.json())
        rejected = get(p.url, "/v1/rejected")
        assert len(rejected) == len(cases)
        assert get(p.url, "/v1/stats")["events"] == 0


def test_an_existing_version_1_database_is_migrated(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript(
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL,
            message_id TEXT NOT NULL, type TEXT NOT NULL, user_id TEXT, anonymous_id TEXT,
            event TEXT, timestamp TEXT, received_at TEXT NOT NULL, raw TEXT NOT NULL,
            UNIQUE (source, message_id));
        CREATE TABLE rejected (
            id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL,
            batch_index INTEGER NOT NULL, message_id TEXT, reason TEXT NOT NULL,
            received_at TEXT NOT NULL, raw TEXT NOT NULL);
        PRAGMA user_version = 1;
        """
    )
    conn.execute(
        "INSERT INTO events (source, message_id, type, user_id, event, timestamp, received_at,"
        " raw) VALUES ('s', 'm1', 'track', 'u1', 'Old', '2025-06-01T12:30:00+02:00',"
        " '2026-01-01T00:00:00.000+00:00', ?)",
        ('{"type":"track","messageId":"m1","userId":"u1","event":"Old",'
         '"timestamp":"2025-06-01T12:30:00+02:00"}',),
    )  # fmt: skip
    conn.commit()
    conn.close()
    with CollectorProcess(db, "--quiet") as p:
        (old,) = get(p.url, "/v1/events?protocol=segment")
        assert old["event"] == "Old"
        body = {"uuid": "u2", "mode": "merge", "attributes": {"a": 1}, "sdkVersion": "1"}
        assert post(p.url, "/attributes", json_body=body, key=None, headers=ATRACK_HEADERS).ok
        assert get(p.url, "/v1/stats")["by_protocol"] == {"segment": 1, "atrack": 1}
        by_event = get(p.url, "/v1/timeline?by=event")
        (bucket,) = [b for b in by_event["buckets"] if b["total"]]
        assert bucket["start"].startswith("2025-06-01T10:30")  # the old row's own time, UTC
        assert p.stop() == 0
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION == 2
        rows = conn.execute("SELECT protocol, event_at FROM events ORDER BY id").fetchall()
    finally:
        conn.close()
    assert rows == [("segment", "2025-06-01T10:30:00.000+00:00"), ("atrack", None)]


def test_the_chart_by_event_time_spans_a_historical_import(tmp_path: Path) -> None:
    with CollectorProcess(tmp_path / "c.db", "--quiet") as p:
        batch = [
            {"type": "track", "userId": "u1", "event": "Imported", "messageId": str(uuid.uuid4()),
             "timestamp": f"2025-06-0{day}T0{hour}:15:00Z"}
            for day in (1, 3) for hour in (1, 2)
        ]  # fmt: skip
        assert post(p.url, json_body={"batch": batch}).json()["accepted"] == 4
        received = get(p.url, "/v1/timeline?minutes=60")
        assert sum(b["total"] for b in received["buckets"]) == 4  # all received this minute
        by_event = get(p.url, "/v1/timeline?by=event")
        assert by_event["by"] == "event" and by_event["unit"] == "hour"
        buckets = by_event["buckets"]
        assert buckets[0]["start"] == "2025-06-01T01:00Z"
        assert buckets[-1]["start"] == "2025-06-03T02:00Z"
        assert len(buckets) == 2 * 24 + 2
        assert [b["total"] for b in buckets if b["total"]] == [1, 1, 1, 1]
        assert http.get(p.url + "/v1/timeline?by=sent", timeout=10).status_code == 400
        page = http.get(p.url + "/?chart=event", timeout=10).text
        assert 'data-chart="event"' in page and 'id="chart-event"' in page
        assert "2025-06-01 01:15:00" in page  # the event-time column
        assert p.stop() == 0
