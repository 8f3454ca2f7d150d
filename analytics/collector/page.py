"""The collector's live web page (`GET /`): server-rendered HTML of the latest events, the
rejected messages and the totals, which the page's script (`/app.js`) then keeps up to date
by polling the read API. Everything is served by the collector; nothing remote is loaded.

Every value that comes from a message is HTML-escaped here; the script builds its DOM with
`textContent`. The Content-Security-Policy allows scripts, styles and fetches from the
collector itself only, so inline scripts and inline event handlers never run.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from ..version import VERSION
from .validate import ATRACK_TYPES, MESSAGE_TYPES, parse_iso8601

LIMIT = 100
"""Events (and rejected messages) the page lists: the newest ones."""
POLL_MS = 1500
"""How often the page's script polls the read API, in milliseconds."""
FILTERS = ("type", "user_id", "event")
"""The event filters the page offers, as named in its query string and in `/v1/events`."""
TABS = ("events", "rejected")
CHARTS = ("received", "event")
"""The chart's modes: per minute received (the last hour), or by the events' own time."""
KINDS = (*MESSAGE_TYPES, *ATRACK_TYPES)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""The page's Content-Security-Policy: only the collector's own script, style and API."""
HTML_TYPE = "text/html; charset=utf-8"

_ASSETS = {
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}


def security_headers() -> list[tuple[str, str]]:
    """Headers sent with the page and its assets (`X-Content-Type-Options: nosniff` goes
    with every answer of the collector)."""
    return [
        ("Content-Security-Policy", CSP),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-store"),
    ]


def is_asset(path: str) -> bool:
    """Whether `path` names one of the page's static files."""
    return path in _ASSETS


@functools.cache
def asset(path: str) -> tuple[str, bytes]:
    """The content type and bytes of a static file of the page (`/app.js`, ...).

    Raises KeyError for an unknown path and OSError if the package was installed without
    its `static/` files."""
    name, content_type = _ASSETS[path]
    data = resources.files(__package__).joinpath("static").joinpath(name).read_bytes()
    return content_type, data


@dataclass(frozen=True)
class View:
    """What the page shows: the event filters and the open tab, from its query string."""

    filters: dict[str, str] = field(default_factory=dict)
    tab: str = "events"
    chart: str = "received"

    @classmethod
    def from_query(cls, query: Mapping[str, Sequence[str]]) -> View:
        """The view a query string asks for; unknown names and invalid values are ignored."""
        filters: dict[str, str] = {}
        for name in FILTERS:
            values = query.get(name) or [""]
            value = values[-1]
            if value and (name != "type" or value in KINDS):
                filters[name] = value
        tab = (query.get("tab") or ["events"])[-1]
        chart = (query.get("chart") or ["received"])[-1]
        return cls(
            filters, tab if tab in TABS else "events", chart if chart in CHARTS else "received"
        )

    def href(self, tab: str, chart: str | None = None) -> str:
        """A link to this view with tab `tab` (and chart mode `chart`, else this one's)."""
        params = dict(self.filters)
        if tab != "events":
            params["tab"] = tab
        if (chart or self.chart) != "received":
            params["chart"] = chart or self.chart
        return "/?" + urlencode(params) if params else "/"


# -- what one message shows (app.js has the same rules) -----------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def label(message: Any) -> str:
    """The name column of an event: a track's event, a page's or screen's name (after its
    category), a group's groupId, an alias's previousId; empty for an identify. From
    A-Track: an event's name, an init's "new user" or "returning user", an attributes'
    mode."""
    if not isinstance(message, dict):
        return ""
    kind = message.get("type")
    if kind == "track" or kind == "event":
        return _text(message.get("event"))
    if kind == "init" and message.get("protocol") == "atrack":
        return "new user" if message.get("isNewUser") is True else "returning user"
    if kind == "attributes" and message.get("protocol") == "atrack":
        return _text(message.get("mode"))
    if kind in ("page", "screen"):
        parts = [_text(message.get(k)) for k in ("category", "name")]
        return " \u00b7 ".join(p for p in parts if p)
    if kind == "group":
        return _text(message.get("groupId"))
    if kind == "alias":
        return _text(message.get("previousId"))
    return ""


def who(message: Any) -> tuple[str, bool]:
    """The user column: the userId (an A-Track message's uuid), else the anonymousId (then
    True: anonymous)."""
    if not isinstance(message, dict):
        return "", False
    user = _text(message.get("uuid" if message.get("protocol") == "atrack" else "userId"))
    if user:
        return user, False
    return _text(message.get("anonymousId")), True


def short_time(received_at: Any, today: str) -> str:
    """HH:MM:SS (UTC) of a `receivedAt`, with its date in front when it is not `today`."""
    text = _text(received_at)
    if len(text) < 19:
        return text
    clock = text[11:19]
    return clock if text[:10] == today else f"{text[:10]} {clock}"


def event_time(timestamp: Any) -> str:
    """A message's own `timestamp` in UTC as `receivedAt` is written, or "" (none, or not
    ISO-8601): what the event-time column shows (app.js: the same with Date)."""
    when = parse_iso8601(timestamp) if isinstance(timestamp, str) else None
    if when is None:
        return ""
    try:
        return when.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")
    except (OverflowError, ValueError):
        return ""


# -- rendering ----------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(_text(value), quote=True)


def _keys(items: Sequence[Any], parts: Sequence[str]) -> list[str]:
    """Row keys, the same as app.js makes: fields joined by "|", "#n" on a repeat."""
    seen: dict[str, int] = {}
    out = []
    for item in items:
        base = "|".join(_text(item.get(p)) if isinstance(item, dict) else "" for p in parts)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.append(base if n == 0 else f"{base}#{n}")
    return out


def _json_block(value: Any) -> str:
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False)
    except RecursionError:  # the indenting encoder recurses in Python: deep but valid JSON
        text = json.dumps(value, ensure_ascii=False)
    return f"<pre>{html.escape(text)}</pre>"


def _event_rows(events: Sequence[dict[str, Any]], today: str) -> str:
    rows = []
    for key, m in zip(_keys(events, ("messageId", "receivedAt")), events):
        kind = _text(m.get("type"))
        name = label(m)
        user, anonymous = who(m)
        received = m.get("receivedAt")
        stamp, at = m.get("timestamp"), event_time(m.get("timestamp"))
        at_cell = (
            f'<time class="at" datetime="{_e(at)}" title="event time: {_e(stamp)}">'
            f"{_e(short_time(at, today))}</time>"
            if at
            else '<span class="at none">-</span>'
        )
        rows.append(
            f'<li data-key="{_e(key)}"><details><summary>'
            f'<time datetime="{_e(received)}" title="{_e(received)}">'
            f"{_e(short_time(received, today))}</time>"
            f"{at_cell}"
            f'<span class="type t-{_e(kind)}">{_e(kind)}</span>'
            f'<span class="name{"" if name else " none"}">{_e(name or "-")}</span>'
            f'<span class="user{" anon" if anonymous else ""}">{_e(user)}</span>'
            f"</summary>{_json_block(m)}</details></li>"
        )
    return "\n".join(rows)


def _rejected_rows(rejected: Sequence[dict[str, Any]], today: str) -> str:
    rows = []
    for key, r in zip(_keys(rejected, ("receivedAt", "index", "messageId")), rejected):
        received = r.get("receivedAt")
        rows.append(
            f'<li data-key="{_e(key)}"><details><summary>'
            f'<time datetime="{_e(received)}" title="{_e(received)}">'
            f"{_e(short_time(received, today))}</time>"
            f'<span class="reason">{_e(r.get("reason"))}</span>'
            f'<span class="mid">{_e(r.get("messageId") or "no messageId")}</span>'
            f"</summary>{_json_block(r.get('message'))}</details></li>"
        )
    return "\n".join(rows)


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "-"


def _summary(shown: int, filters: Mapping[str, str]) -> str:
    what = f"latest {shown} event{'' if shown == 1 else 's'}"
    if filters:
        what += " where " + ", ".join(f"{k} = {v}" for k, v in filters.items())
    return what


def render(
    stats: Mapping[str, Any],
    events: Sequence[dict[str, Any]],
    rejected: Sequence[dict[str, Any]],
    view: View,
    now: dt.datetime | None = None,
) -> str:
    """The whole page for `view`: totals from `stats` (as `/v1/stats` gives them), the
    newest `events` (already filtered) and `rejected` messages."""
    today = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%d")
    requests = stats.get("requests") or {}
    counts = [
        ("accepted", stats.get("events")),
        ("rejected", stats.get("rejected")),
        ("requests", requests.get("total")),
        ("distinct-users", stats.get("distinct_users")),
    ]
    chosen = view.filters.get("type", "")
    on_events = view.tab == "events"
    parts = {
        "version": _e(VERSION),
        "chart": _e(view.chart),
        "poll_ms": str(POLL_MS),
        "limit": str(LIMIT),
        "counts": "".join(
            f'<div><span class="n" id="count-{name}">{_count(value)}</span>'
            f'<span class="label">{name.replace("-", " ")}</span></div>'
            for name, value in counts
        ),
        "legend": "".join(
            f'<span class="key"><span class="swatch t-{k}"></span>{k}</span>' for k in KINDS
        ),
        "chart_title": _e(CHART_TITLES[view.chart]),
        "chart_modes": "".join(_chart_link(view, mode, title) for mode, title in CHART_MODES),
        "tab_events": _tab_link(view, "events", "Events"),
        "tab_rejected": _tab_link(
            view,
            "rejected",
            "Rejected",
            f' <span class="badge" id="badge-rejected">{_count(stats.get("rejected"))}</span>',
        ),
        "events_hidden": "" if on_events else " hidden",
        "rejected_hidden": " hidden" if on_events else "",
        "type_options": "".join(
            f'<option value="{k}"{" selected" if k == chosen else ""}>{k or "all"}</option>'
            for k in ("", *KINDS)
        ),
        "user_id": _e(view.filters.get("user_id", "")),
        "event": _e(view.filters.get("event", "")),
        "summary": _e(_summary(len(events), view.filters)),
        "event_rows": _event_rows(events, today),
        "events_empty_hidden": " hidden" if events else "",
        "rejected_rows": _rejected_rows(rejected, today),
        "rejected_empty_hidden": " hidden" if rejected else "",
    }
    return _PAGE.format(**parts)


CHART_MODES = (("received", "received"), ("event", "event time"))
CHART_TITLES = {
    "received": "Events per minute by type, last hour (UTC)",
    "event": "Events by their own timestamp, by type (UTC)",
}


def _chart_link(view: View, mode: str, title: str) -> str:
    pressed = "true" if view.chart == mode else "false"
    return (
        f'<a href="{_e(view.href(view.tab, mode))}" id="chart-{mode}" data-chart="{mode}"'
        f' aria-pressed="{pressed}">{_e(title)}</a>'
    )


def _tab_link(view: View, name: str, title: str, extra: str = "") -> str:
    active = view.tab == name
    selected = "true" if active else "false"
    css = ' class="active"' if active else ""
    return (
        f'<a href="{_e(view.href(name))}" id="tab-{name}" role="tab"'
        f' aria-selected="{selected}"{css}>{title}{extra}</a>'
    )


# Placeholders are filled by `render`, each with HTML it has escaped.
_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>analytics collector</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body data-poll-ms="{poll_ms}" data-limit="{limit}" data-chart="{chart}">
<header>
<h1>analytics collector <small>{version}</small></h1>
<p id="status" role="status">server-rendered; live updates need JavaScript</p>
</header>
<main>
<section class="counts" aria-label="totals">{counts}</section>
<section class="chart">
<div class="chart-head"><h2 id="chart-title">{chart_title}</h2>
<p class="modes" aria-label="chart by">by {chart_modes}</p></div>
<svg id="chart" viewBox="0 0 720 150" role="img" aria-label="events per minute by type"></svg>
<p class="legend">{legend}</p>
</section>
<nav class="tabs" role="tablist">
{tab_events}
{tab_rejected}
</nav>
<section id="panel-events" role="tabpanel"{events_hidden}>
<form id="filters" method="get" action="/">
<label>type <select name="type">{type_options}</select></label>
<label>user id <input name="user_id" value="{user_id}" autocomplete="off"
 spellcheck="false"></label>
<label>event <input name="event" value="{event}" placeholder="exact name" autocomplete="off"
 spellcheck="false"></label>
<button type="submit">Apply</button>
<a href="/" id="clear">Clear</a>
</form>
<p class="summary" id="events-summary">{summary}</p>
<div class="rows-head"><span class="h-time">received (UTC)</span>
<span class="h-at">event time</span><span class="h-type">type</span>
<span class="h-name">event / name</span><span class="h-user">user</span></div>
<ol id="events" class="rows">
{event_rows}
</ol>
<p class="empty" id="events-empty"{events_empty_hidden}>No events yet.</p>
</section>
<section id="panel-rejected" role="tabpanel"{rejected_hidden}>
<p class="summary">Messages the collector refused, newest first, with the reason.</p>
<div class="rows-head rejected"><span>time (UTC)</span><span>reason</span>
<span>messageId</span></div>
<ol id="rejected" class="rows rejected">
{rejected_rows}
</ol>
<p class="empty" id="rejected-empty"{rejected_empty_hidden}>Nothing rejected.</p>
</section>
</main>
</body>
</html>
"""
