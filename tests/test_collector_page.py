"""The collector's live page over HTTP: `GET /` and its assets (content types, CSP, no
inline code), the JSON endpoints it polls (`/v1/timeline`, `distinct_users` in
`/v1/stats`), and escaping of hostile event data in every rendered view."""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from _collector_helpers import KEY, CollectorProcess, get, http, post

import analytics
from analytics.collector import Collector, Store, store

HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_USER = '"><script>alert(2)</script>'
HOSTILE_PROP = "</pre><script>alert(3)</script>"


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


def page(server: Collector, query: str = "") -> str:
    resp = http.get(server.url + "/" + query, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    return resp.text


def csp(headers: Any) -> dict[str, list[str]]:
    """The Content-Security-Policy header as {directive: [sources]}."""
    out = {}
    for part in headers["Content-Security-Policy"].split(";"):
        name, *sources = part.split()
        out[name] = sources
    return out


# -- the page and its assets --------------------------------------------------------------


def test_page_is_html_with_a_strict_csp(server: Collector) -> None:
    resp = http.get(server.url + "/", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    policy = csp(resp.headers)
    assert policy["default-src"] in (["'none'"], ["'self'"])
    assert policy["script-src"] == ["'self'"]  # no 'unsafe-inline', no nonce, nothing remote
    for sources in policy.values():
        for source in sources:
            assert source in ("'self'", "'none'"), source
    html = resp.text
    assert html.startswith("<!doctype html>")
    # No inline code for the policy to block: one external script, no handlers, no styles.
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/app.js" defer>']
    assert not re.search(r"\son[a-z]+\s*=", html)
    assert "style=" not in html and "<style" not in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing remote


@pytest.mark.parametrize(
    "path,content_type",
    [
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/app.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ],
)
def test_assets_are_served_by_the_collector(
    server: Collector, path: str, content_type: str
) -> None:
    resp = http.get(server.url + path, timeout=10)
    assert resp.status_code == 200 and resp.content
    assert resp.headers["Content-Type"] == content_type
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "http://" not in resp.text.replace("http://www.w3.org/", "")
    assert "https://" not in resp.text


def test_script_never_parses_data_as_html(server: Collector) -> None:
    script = http.get(server.url + "/app.js", timeout=10).text
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    assert "textContent" in script


def test_page_renders_events_counts_and_the_view_from_the_query(
    server: Collector, client: analytics.Client
) -> None:
    client.track("u1", "Signed Up", {"plan": "pro"})
    client.track("u2", "Signed Up")
    client.page(anonymous_id="anon-7", category="Docs", name="Install")
    client.track("u1", "Logged In")
    assert client.flush(timeout=5)
    post(server.url, json_body={"batch": [{"type": "track", "userId": "u3"}]})

    html = page(server)
    assert re.search(r'id="count-accepted">4<', html)
    assert re.search(r'id="count-rejected">1<', html)
    assert re.search(r'id="count-requests">2<', html)
    assert re.search(r'id="count-distinct-users">2<', html)
    names = re.findall(r'<span class="name">([^<]*)</span>', html)
    assert names == ["Logged In", "Docs \u00b7 Install", "Signed Up", "Signed Up"]
    assert '<span class="user anon">anon-7</span>' in html
    assert 'id="panel-rejected" role="tabpanel" hidden' in html

    shared = page(server, "?event=Signed+Up&user_id=u2&type=track")
    assert re.findall(r'<span class="name">([^<]*)</span>', shared) == ["Signed Up"]
    assert 'name="user_id" value="u2"' in shared and 'name="event" value="Signed Up"' in shared
    assert '<option value="track" selected>' in shared
    assert "latest 1 event where type = track, user_id = u2, event = Signed Up" in shared

    rejected = page(server, "?tab=rejected")
    assert 'id="panel-events" role="tabpanel" hidden' in rejected
    assert "track needs event (a non-empty string)" in rejected


def test_page_ignores_what_it_does_not_know(server: Collector) -> None:
    html = page(server, "?type=purchase&tab=nope&colour=red")
    assert '<option value="" selected>all</option>' in html
    assert 'id="panel-rejected" role="tabpanel" hidden' in html


# -- the JSON endpoints the page polls ----------------------------------------------------


def test_stats_count_distinct_users(server: Collector, client: analytics.Client) -> None:
    assert get(server.url, "/v1/stats")["distinct_users"] == 0
    for user in ("u1", "u2", "u1", 42):
        client.track(user, "Clicked")
    client.track(anonymous_id="a1", event="Clicked")  # anonymous: not a user
    assert client.flush(timeout=5)
    stats = get(server.url, "/v1/stats")
    assert stats["events"] == 5 and stats["distinct_users"] == 3


def test_timeline_counts_events_per_minute_by_type(
    server: Collector, client: analytics.Client
) -> None:
    client.track("u1", "A")
    client.track("u1", "B")
    client.identify("u1", {"plan": "pro"})
    assert client.flush(timeout=5)
    before = dt.datetime.now(dt.timezone.utc)
    timeline = get(server.url, "/v1/timeline?minutes=5")
    after = dt.datetime.now(dt.timezone.utc)
    assert timeline["minutes"] == 5
    assert timeline["types"] == [
        "identify", "track", "page", "screen", "group", "alias",  # Segment's
        "init", "attributes", "event",  # A-Track's
    ]  # fmt: skip
    buckets = timeline["buckets"]
    assert len(buckets) == 5
    assert buckets[-1]["minute"] in {t.strftime("%Y-%m-%dT%H:%MZ") for t in (before, after)}
    assert sorted(b["minute"] for b in buckets) == [b["minute"] for b in buckets]
    assert sum(b["by_type"]["track"] for b in buckets) == 2
    assert sum(b["by_type"]["identify"] for b in buckets) == 1
    assert sum(b["total"] for b in buckets) == 3
    assert all(b["total"] == sum(b["by_type"].values()) for b in buckets)
    assert len(get(server.url, "/v1/timeline")["buckets"]) == 60  # the default: an hour


@pytest.mark.parametrize("query", ["minutes=0", "minutes=1441", "minutes=ten", "days=1"])
def test_timeline_refuses_bad_parameters(server: Collector, query: str) -> None:
    resp = http.get(f"{server.url}/v1/timeline?{query}", timeout=10)
    assert resp.status_code == 400 and resp.json()["success"] is False


def test_timeline_puts_events_in_their_minute_and_drops_older_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = Store(":memory:")
    try:
        for when, event in (("10:05:59.999", "late"), ("10:59:00.000", "old"),
                            ("11:30:10.000", "a"), ("11:30:50.000", "b")):  # fmt: skip
            monkeypatch.setattr(store, "_now", lambda when=when: f"2025-01-02T{when}+00:00")
            message = {"type": "track", "messageId": str(uuid.uuid4()), "event": event}
            s.record("src", [message], [])
        now = dt.datetime(2025, 1, 2, 11, 58, 30, tzinfo=dt.timezone.utc)
        buckets = {b["minute"]: b["total"] for b in s.timeline(60, now=now)["buckets"]}
        assert len(buckets) == 60
        assert min(buckets) == "2025-01-02T10:59Z" and max(buckets) == "2025-01-02T11:58Z"
        assert buckets["2025-01-02T10:59Z"] == 1 and buckets["2025-01-02T11:30Z"] == 2
        assert sum(buckets.values()) == 3  # 10:05 is over an hour before
    finally:
        s.close()


# -- escaping ------------------------------------------------------------------------------


def test_hostile_event_data_is_escaped_in_every_view(
    server: Collector, client: analytics.Client
) -> None:
    client.track(HOSTILE_USER, HOSTILE, {"note": HOSTILE_PROP, HOSTILE: 1})
    client.page(anonymous_id=HOSTILE, category=HOSTILE_PROP, name=HOSTILE)
    assert client.flush(timeout=5)
    bad = {"type": "track", "userId": HOSTILE_USER, "properties": {"x": HOSTILE}}
    assert post(server.url, json_body={"batch": [bad]}).status_code == 200

    views = [
        "",
        "?tab=rejected",
        "?event=" + quote(HOSTILE),
        "?user_id=" + quote(HOSTILE_USER) + "&event=" + quote(HOSTILE),
    ]
    for query in views:
        html = page(server, query)
        for raw in (HOSTILE, HOSTILE_USER, HOSTILE_PROP, "<img", "<script>"):
            assert raw not in html, (query, raw)
        assert re.findall(r"<script[^>]*>", html) == ['<script src="/app.js" defer>']
    html = page(server, "?event=" + quote(HOSTILE))
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert 'value="&lt;img src=x onerror=alert(1)&gt;"' in html  # the filter echoed back
    assert "&lt;/pre&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in html  # in the full JSON

    resp = http.get(server.url + "/v1/events?event=" + quote(HOSTILE), timeout=10)
    assert resp.headers["Content-Type"] == "application/json"
    assert json.dumps(HOSTILE) in resp.text  # a JSON string, as sent
    (event,) = resp.json()
    assert event["event"] == HOSTILE and event["userId"] == HOSTILE_USER
    assert event["properties"] == {"note": HOSTILE_PROP, HOSTILE: 1}
    (rejected,) = get(server.url, "/v1/rejected")
    assert rejected["message"]["properties"]["x"] == HOSTILE


def test_collector_command_prints_the_page_url(tmp_path: Path) -> None:
    with CollectorProcess(tmp_path / "c.db", "--quiet") as proc:
        assert proc.stop(signal.SIGTERM) == 0
    assert f"open {proc.url}/ to see the events" in proc.output


@pytest.mark.parametrize(
    "path",
    ["/", "/?tab=rejected", "/app.js", "/app.css", "/favicon.svg", "/health", "/v1/stats",
     "/v1/events", "/v1/rejected", "/v1/timeline", "/v1/timeline?by=event"],
)  # fmt: skip
def test_head_is_answered_on_every_get_route(server: Collector, path: str) -> None:
    got = http.get(server.url + path, timeout=10)
    head = http.head(server.url + path, timeout=10)
    assert (got.status_code, head.status_code) == (200, 200)
    assert head.content == b""
    assert head.headers["Content-Type"] == got.headers["Content-Type"]
    if path in ("/app.js", "/app.css", "/favicon.svg", "/health", "/v1/events"):
        assert int(head.headers["Content-Length"]) == len(got.content)
    assert http.head(server.url + "/v1/nothing", timeout=10).status_code == 404
