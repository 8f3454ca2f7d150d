"""The local collector (`analytics.collector`): ingest, limits, spec checks, auth, storage,
read API, fault injection, and the `analytics-collector` process (signals, restart, key)."""

from __future__ import annotations

import gzip
import json
import signal
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _collector_helpers import KEY, KEY_TOKEN, CollectorProcess, get, http, post, run_cli

import analytics
from analytics.collector import Collector, basic_auth_key, check, key_hash, parse_iso8601


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Collector]:
    c = Collector(db=str(tmp_path / "collector.db")).start()
    yield c
    c.stop()


@pytest.fixture
def client(server: Collector) -> Iterator[analytics.Client]:
    c = analytics.Client(KEY, host=server.url, flush_interval=5, timeout=5)
    yield c
    c.shutdown(timeout=2)


def msg(kind: str = "track", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"type": kind, "messageId": str(uuid.uuid4()), "userId": "u1"}
    if kind == "track":
        base["event"] = "Clicked"
    if kind == "group":
        base["groupId"] = "g1"
    if kind == "alias":
        base["previousId"] = "anon-1"
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def db_rows(path: str, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# -- ingest through the library ----------------------------------------------------------


def test_library_messages_are_stored_and_read_back(
    server: Collector, client: analytics.Client
) -> None:
    client.identify("u1", {"plan": "pro"})
    client.page("u1", "Docs", "Install", {"path": "/install"})
    client.screen(anonymous_id="a1", name="Home")
    client.group("u1", "acme", {"seats": 5})
    client.alias("a1", "u1")
    client.track("u1", "Signed Up", {"n": 1})
    client.track("u2", "Signed Up", {"n": 2})
    assert client.flush(timeout=5)
    assert client.stats()["delivered"] == 7

    stats = get(server.url, "/v1/stats")
    assert stats["events"] == 7 and stats["rejected"] == 0
    assert stats["by_type"] == {
        "identify": 1, "track": 2, "page": 1, "screen": 1, "group": 1, "alias": 1,
    }  # fmt: skip
    assert stats["requests"]["by_status"] == {"200": 1}

    events = get(server.url, "/v1/events")
    assert [e["type"] for e in events][:2] == ["track", "track"]  # newest first
    assert events[0]["userId"] == "u2" and events[0]["properties"] == {"n": 2}
    assert "receivedAt" in events[0]
    assert [e["userId"] for e in get(server.url, "/v1/events?type=track&user_id=u1")] == ["u1"]
    assert len(get(server.url, "/v1/events?event=Signed%20Up&limit=1")) == 1
    assert get(server.url, "/v1/events?type=page")[0]["name"] == "Install"


def test_gzip_bodies_are_accepted(server: Collector) -> None:
    with analytics.Client(KEY, host=server.url, gzip=True, flush_interval=0.05) as c:
        for i in range(50):
            c.track("u1", "Tick", {"i": i})
        assert c.flush(timeout=5)
    assert server.stats()["by_type"]["track"] == 50


def test_single_message_endpoints_take_the_type_from_the_path(server: Collector) -> None:
    resp = post(server.url, "/v1/track", json_body={"userId": "u9", "event": "Opened"})
    assert resp.status_code == 200
    assert resp.json()["accepted"] == 1
    stored = server.events(user_id="u9")
    assert stored[0]["type"] == "track"
    uuid.UUID(stored[0]["messageId"])  # the collector named it, as Segment does

    resp = post(server.url, "/v1/identify", json_body={"type": "track", "userId": "u9"})
    assert resp.status_code == 200
    assert "does not match the endpoint" in resp.json()["rejected"][0]["reason"]
    for kind in ("identify", "page", "screen", "group", "alias"):
        body = {k: v for k, v in msg(kind).items() if k != "type"}
        assert post(server.url, f"/v1/{kind}", json_body=body).json()["accepted"] == 1


def test_batch_level_context_is_merged_under_each_message(server: Collector) -> None:
    body = {
        "batch": [msg(context={"ip": "1.2.3.4"}), msg(userId="u2")],
        "context": {"ip": "9.9.9.9", "locale": "fr"},
    }
    assert post(server.url, json_body=body).json()["accepted"] == 2
    by_user = {e["userId"]: e for e in server.events()}
    assert by_user["u1"]["context"] == {"ip": "1.2.3.4", "locale": "fr"}
    assert by_user["u2"]["context"] == {"ip": "9.9.9.9", "locale": "fr"}


# -- limits and the spec ----------------------------------------------------------------------


def test_body_over_500000_bytes_is_413_and_nothing_is_stored(server: Collector) -> None:
    filler = "x" * 20_000
    big = {"batch": [msg(properties={"f": filler}) for _ in range(26)]}
    raw = json.dumps(big).encode()
    assert len(raw) > 500_000
    assert post(server.url, body=raw).status_code == 413
    # the same body gzipped is small on the wire, but too large once unpacked
    resp = post(server.url, body=gzip.compress(raw), headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 413
    bomb = gzip.compress(b" " * 5_000_000)
    resp = post(server.url, body=bomb, headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 413
    assert server.stats()["events"] == 0 and server.stats()["rejected"] == 0
    # the server is still fine afterwards
    assert post(server.url, json_body={"batch": [msg()]}).json()["accepted"] == 1


def test_message_over_32kb_is_rejected_alone_and_kept(server: Collector) -> None:
    big = msg(properties={"blob": "y" * 33_000})
    body = {"batch": [msg(), big, msg()]}
    resp = post(server.url, json_body=body)
    assert resp.status_code == 200
    answer = resp.json()
    assert answer["accepted"] == 2
    assert answer["rejected"] == [
        {"index": 1, "messageId": big["messageId"], "reason": answer["rejected"][0]["reason"]}
    ]
    assert "over the limit of 32768 bytes" in answer["rejected"][0]["reason"]
    kept = get(server.url, "/v1/rejected")
    assert kept[0]["message"] == big and kept[0]["messageId"] == big["messageId"]
    assert server.stats()["events"] == 2


INVALID = [
    (msg(userId=None), "needs userId or anonymousId"),
    (msg(event=None), "track needs event"),
    (msg(event=""), "track needs event"),
    (msg("group", groupId=None), "group needs groupId"),
    (msg("alias", previousId=None), "alias needs previousId and userId"),
    (msg("alias", userId=None, anonymousId="a"), "alias needs previousId and userId"),
    (msg(type="purchase"), "is not one of"),
    (msg(type=None), "type is missing"),
    (msg(timestamp="last tuesday"), "not an ISO-8601"),
    (msg(timestamp="2024-02-30T10:00:00Z"), "not an ISO-8601"),
    (msg(timestamp=1700000000), "not an ISO-8601"),
    (msg(properties=[1, 2]), "properties must be a JSON object"),
    (msg(userId=True), "userId must be a string"),
    (msg(messageId=""), "messageId must be a non-empty string"),
    ("just a string", "must be a JSON object"),
]


def test_invalid_messages_are_reported_per_message_and_kept(server: Collector) -> None:
    good = msg()
    resp = post(server.url, json_body={"batch": [good] + [m for m, _ in INVALID]})
    assert resp.status_code == 200
    answer = resp.json()
    assert answer["accepted"] == 1
    reasons = {r["index"]: r["reason"] for r in answer["rejected"]}
    assert sorted(reasons) == list(range(1, len(INVALID) + 1))
    for i, (_, expected) in enumerate(INVALID, 1):
        assert expected in reasons[i], (i, reasons[i])
    assert server.stats()["rejected"] == len(INVALID)
    server.stop()  # the running collector holds its file exclusively
    rows = db_rows(server.store.path, "SELECT batch_index, reason, raw, received_at FROM rejected")
    assert len(rows) == len(INVALID)
    for index, reason, raw, received_at in rows:
        assert json.loads(raw) == INVALID[index - 1][0]
        assert reason == reasons[index] and received_at


@pytest.mark.parametrize(
    "body",
    [b"{nope", b'{"batch": [NaN]}', b"\xff\xfe", b"[]", b'{"batch": {}}', b'{"messages": []}'],
)
def test_bad_json_is_400_and_nothing_is_stored(server: Collector, body: bytes) -> None:
    resp = post(server.url, body=body)
    assert resp.status_code == 400
    assert resp.json()["error"]
    assert server.stats()["events"] == 0 and server.stats()["rejected"] == 0


def test_bad_gzip_is_400(server: Collector) -> None:
    resp = post(server.url, body=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 400 and "gzip" in resp.json()["error"]


# -- auth and the write key -------------------------------------------------------------------


def test_missing_or_bad_auth_is_401(server: Collector) -> None:
    body = {"batch": [msg()]}
    resp = post(server.url, json_body=body, key=None)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Basic")
    assert post(server.url, json_body=body, key="").status_code == 401
    resp = post(server.url, json_body=body, key=None, headers={"Authorization": f"Bearer {KEY}"})
    assert resp.status_code == 401
    assert server.stats()["events"] == 0


def test_write_key_allow_list() -> None:
    with Collector(db=":memory:", write_keys=["key-a", "key-b"]) as c:
        assert post(c.url, json_body={"batch": [msg()]}, key="key-c").status_code == 401
        assert post(c.url, json_body={"batch": [msg()]}, key="key-b").status_code == 200
        assert c.stats()["events"] == 1


def test_write_key_is_stored_only_as_a_short_hash(server: Collector, tmp_path: Path) -> None:
    assert post(server.url, json_body={"batch": [msg(), msg()]}).status_code == 200
    post(server.url, json_body={"batch": [msg(userId=None)]})  # one rejected row too
    server.stop()  # the running collector holds its file exclusively
    sources = db_rows(
        server.store.path, "SELECT source FROM events UNION SELECT source FROM rejected"
    )
    assert sources == [(key_hash(KEY),)] and len(key_hash(KEY)) == 12
    for f in tmp_path.iterdir():
        data = f.read_bytes()
        assert KEY.encode() not in data and KEY_TOKEN.encode() not in data, f.name


def test_basic_auth_parsing() -> None:
    assert basic_auth_key(f"Basic {KEY_TOKEN}") == KEY
    assert basic_auth_key(f"basic {KEY_TOKEN}") == KEY
    assert basic_auth_key("Basic !!!") is None
    assert basic_auth_key("Basic Og==") is None  # ":" -- an empty key
    assert basic_auth_key(None) is None


# -- idempotence ----------------------------------------------------------------------------


def test_duplicate_message_ids_are_stored_once(server: Collector) -> None:
    batch = [msg() for _ in range(5)]
    first = post(server.url, json_body={"batch": batch}).json()
    again = post(server.url, json_body={"batch": batch + [batch[0]]}).json()
    assert (first["accepted"], first["duplicates"]) == (5, 0)
    assert (again["accepted"], again["duplicates"]) == (6, 6)
    assert server.stats()["events"] == 5
    # deduplication is per source (write key), as Segment does it
    assert post(server.url, json_body={"batch": batch[:1]}, key="other").json()["duplicates"] == 0
    assert server.stats()["events"] == 6


def test_retried_batches_from_the_library_are_stored_once(tmp_path: Path) -> None:
    with Collector(db=str(tmp_path / "c.db"), fail_first=2, fail_status=503) as c:
        with analytics.Client(KEY, host=c.url, flush_interval=5) as client:
            for i in range(3):
                client.track("u1", "Retried", {"i": i})
            assert client.flush(timeout=10)
            assert client.stats()["delivered"] == 3 and client.stats()["retries"] == 2
        stats = c.stats()
        assert stats["events"] == 3
        assert stats["requests"]["by_status"] == {"200": 1, "503": 2}


# -- read API ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,status",
    [
        ("/v1/events?limit=0", 400),
        ("/v1/events?limit=lots", 400),
        ("/v1/events?type=purchase", 400),
        ("/v1/events?usr_id=u1", 400),
        ("/v1/nothing", 404),
        ("/", 200),
    ],
)
def test_read_api_answers(server: Collector, path: str, status: int) -> None:
    assert http.get(server.url + path, timeout=5).status_code == status


def test_unknown_endpoint_and_method(server: Collector) -> None:
    assert post(server.url, "/v1/other", json_body={}).status_code == 404
    assert http.put(server.url + "/v1/batch", data=b"{}", timeout=5).status_code == 405
    assert post(server.url, json_body={"batch": []}).status_code == 200  # still serving


def test_injected_failures_can_carry_retry_after() -> None:
    with Collector(fail_first=1, fail_status=503, retry_after=2.5) as c:
        resp = post(c.url, json_body={"batch": [msg()]})
        assert resp.status_code == 503 and resp.headers["Retry-After"] == "2.5"
        assert post(c.url, json_body={"batch": [msg()]}).status_code == 200


def test_delay_injection() -> None:
    with Collector(delay_ms=150) as c:
        resp = post(c.url, json_body={"batch": [msg()]})
        assert resp.status_code == 200 and resp.elapsed.total_seconds() >= 0.14


def test_stop_is_idempotent_and_refuses_restart() -> None:
    c = Collector().start()
    c.stop()
    c.stop()
    with pytest.raises(RuntimeError):
        c.start()


# -- the spec check alone --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["2024-03-01T09:30:00Z", "2024-03-01T09:30:00.123456+02:00", "2024-03-01 09:30",
     "2024-03-01", "2024-03-01T09:30:00.1-0530", "2024-03-01T09:30:00+00"],
)  # fmt: skip
def test_iso8601_accepted(text: str) -> None:
    assert parse_iso8601(text) is not None


@pytest.mark.parametrize(
    "text", ["2024-3-1", "2024-03-01T25:00:00Z", "01/03/2024", "2024-03-01T09:30:00+24:00", ""]
)
def test_iso8601_refused(text: str) -> None:
    assert parse_iso8601(text) is None


def test_what_the_library_sends_passes_the_check() -> None:
    with analytics.Client(stub=True) as c:
        c.track("u", "E", {"when": 1}, timestamp="2024-01-01T00:00:00Z")
        c.identify(anonymous_id=7)
        c.page("u", "Docs", "Home")
        c.screen("u", name="S")
        c.group("u", "g", {"n": 1})
        c.alias("a", "u")
        assert [check(m) for m in c.sent] == [None] * 6


# -- the collector as a process -------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_process_stops_cleanly_on_signal_and_never_shows_the_key(tmp_path: Path, sig: int) -> None:
    db = tmp_path / "events.db"
    with CollectorProcess(db, "--write-key", KEY, "--write-key", "spare-key") as proc:
        assert post(proc.url, json_body={"batch": [msg()]}).status_code == 200
        assert post(proc.url, json_body={"batch": [msg()]}, key="wrong").status_code == 401
        assert get(proc.url, "/v1/stats")["events"] == 1
        assert proc.stop(sig) == 0
    assert "POST /v1/batch 200" in proc.output  # the request log is on
    assert KEY not in proc.output and KEY_TOKEN not in proc.output
    for f in tmp_path.iterdir():
        assert KEY.encode() not in f.read_bytes(), f.name


def test_acknowledged_message_survives_a_crash_and_restart(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    m = msg(properties={"survives": True})
    with CollectorProcess(db, "--quiet") as first:
        assert post(first.url, json_body={"batch": [m]}).json()["accepted"] == 1
        first.kill()  # SIGKILL: no clean shutdown, yet the acknowledged message is on disk
    with CollectorProcess(db, "--quiet") as second:
        stored = get(second.url, f"/v1/events?message_id={m['messageId']}")
        assert len(stored) == 1 and stored[0]["properties"] == {"survives": True}
        assert post(second.url, json_body={"batch": [m]}).json()["duplicates"] == 1
        assert second.stop() == 0


def test_process_reports_a_port_in_use() -> None:
    with Collector() as taken:
        port = taken.url.rsplit(":", 1)[1]
        done = run_cli("collector", "--port", port, "--db", ":memory:", timeout=30)
    assert done.returncode == 1 and "cannot start" in done.stderr
