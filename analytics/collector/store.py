"""SQLite storage of the collector: accepted events (deduplicated by source and messageId),
rejected messages with their reasons, and the read queries over both."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .validate import ATRACK_TYPES, MESSAGE_TYPES, parse_iso8601

SCHEMA_VERSION = 2
PROTOCOLS = ("segment", "atrack")
MAX_TIMELINE_MINUTES = 24 * 60

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    message_id TEXT NOT NULL,
    type TEXT NOT NULL,
    user_id TEXT,
    anonymous_id TEXT,
    event TEXT,
    timestamp TEXT,
    received_at TEXT NOT NULL,
    raw TEXT NOT NULL,
    protocol TEXT NOT NULL DEFAULT 'segment',
    event_at TEXT,
    UNIQUE (source, message_id)
);
CREATE INDEX IF NOT EXISTS events_by_type ON events (type, id);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, id);
CREATE INDEX IF NOT EXISTS events_by_received ON events (received_at);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    batch_index INTEGER NOT NULL,
    message_id TEXT,
    reason TEXT NOT NULL,
    received_at TEXT NOT NULL,
    raw TEXT NOT NULL
);
"""
# Columns added after version 1 (`_migrate` adds them to an older file), then their index.
_ADDED = (
    ("protocol", "TEXT NOT NULL DEFAULT 'segment'"),
    ("event_at", "TEXT"),
)
_LATER_INDEXES = "CREATE INDEX IF NOT EXISTS events_by_event_at ON events (event_at);"


class StoreError(RuntimeError):
    """The store cannot do what was asked (closed, file gone, disk failing); the message
    says why. The server answers 503 with it."""


class StoreClosed(StoreError):
    """The store was closed; nothing can be written or read any more."""


@dataclass(frozen=True)
class Rejection:
    """A message refused by the collector: its place in the request and why."""

    index: int
    message: Any
    reason: str

    @property
    def message_id(self) -> str | None:
        """The message's `messageId`, if it has a string one."""
        mid = self.message.get("messageId") if isinstance(self.message, dict) else None
        return mid if isinstance(mid, str) else None


def compact(value: Any) -> str:
    """Compact JSON text, as stored in the `raw` columns. A string that is not valid
    Unicode (a lone surrogate such as "\\ud800") is written as its JSON escape, so any
    message that came in as JSON can be stored."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    except RecursionError:
        return json.dumps("(not kept: nested too deeply to write back)")
    return text


def event_time(timestamp: Any) -> str | None:
    """A message's own `timestamp` in UTC as `received_at` is written (milliseconds, no
    offset), so the two sort and group alike; None when it has none or it is not ISO-8601."""
    when = parse_iso8601(timestamp) if isinstance(timestamp, str) else None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    try:
        return when.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")
    except (OverflowError, ValueError):
        return None


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _minute(moment: dt.datetime) -> str:
    """The minute of an aware datetime, in UTC, as `received_at` starts: YYYY-MM-DDTHH:MM."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


KINDS = (*MESSAGE_TYPES, *ATRACK_TYPES)
"""Every stored `type`: Segment's six, then A-Track's `init`, `attributes`, `event`."""
EVENT_TIME_UNITS = (("minute", 16), ("hour", 13), ("day", 10), ("month", 7))
"""The bucket sizes of the event-time chart and how much of an ISO time names one."""
MAX_EVENT_BUCKETS = 240


class Store:
    """One SQLite database (a file, or ":memory:"), safe to share between threads.

    Every write is one transaction; it has been committed (WAL, synchronous=FULL) when
    `record` returns. The file is held in exclusive locking mode: WAL then keeps its index
    in the process's memory instead of a shared-memory `-shm` map (a read-only or broken
    `-shm` file would otherwise kill the process with SIGBUS), and no other process can
    open the file while the collector runs. Before each write the store checks that its
    path still names the file it opened (`StoreError` if it was deleted or replaced).
    """

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._lock = threading.Lock()
        self._identity: tuple[str, int, int] | None = None
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")  # before WAL: no -shm map
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(_SCHEMA)
            _migrate(conn)
            conn.executescript(_LATER_INDEXES)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            if path not in ("", ":memory:"):
                where = os.path.abspath(path)
                st = os.stat(where)
                self._identity = (where, st.st_dev, st.st_ino)
        except (sqlite3.Error, OSError):
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    def __repr__(self) -> str:
        return f"<Store {self.path!r}{' closed' if self._conn is None else ''}>"

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreClosed("the collector's store is closed")
        return self._conn

    def _check_file(self) -> None:
        """StoreError if the database's path no longer names the file the store opened."""
        if self._identity is None:
            return
        where, dev, ino = self._identity
        try:
            st = os.stat(where)
        except FileNotFoundError:
            raise StoreError(
                f"the database file {self.path} was deleted while the collector ran;"
                " nothing more is stored: restart the collector"
            ) from None
        except OSError as exc:
            raise StoreError(f"cannot check the database file {self.path}: {exc}") from None
        if (st.st_dev, st.st_ino) != (dev, ino):
            raise StoreError(
                f"the database file {self.path} was replaced by another file while the"
                " collector ran; nothing more is stored: restart the collector"
            )

    def record(
        self,
        source: str,
        accepted: Sequence[dict[str, Any]],
        rejected: Sequence[Rejection],
        protocol: str = "segment",
    ) -> int:
        """Store one request's messages in one transaction; the number of accepted messages
        that were already stored (duplicates, stored once). `protocol` names the wire they
        came by; an A-Track message's user is its `uuid`.

        Raises `StoreError` (file gone or replaced, disk failing: the real error) or
        `StoreClosed`; nothing of the request is stored then."""
        now = _now()
        user_key = "uuid" if protocol == "atrack" else "userId"
        event_rows = [
            (
                source, str(m["messageId"]), m["type"], _text(m.get(user_key)),
                _text(m.get("anonymousId")), _text(m.get("event")), _text(m.get("timestamp")),
                now, compact(m), protocol, event_time(m.get("timestamp")),
            )
            for m in accepted
        ]  # fmt: skip
        rejected_rows = [
            (source, r.index, r.message_id, r.reason, now, compact(r.message)) for r in rejected
        ]
        with self._lock:
            db = self._db()
            self._check_file()
            try:
                db.execute("BEGIN IMMEDIATE")
                before = db.total_changes
                db.executemany(
                    "INSERT OR IGNORE INTO events (source, message_id, type, user_id,"
                    " anonymous_id, event, timestamp, received_at, raw, protocol, event_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    event_rows,
                )
                stored = db.total_changes - before
                db.executemany(
                    "INSERT INTO rejected (source, batch_index, message_id, reason,"
                    " received_at, raw) VALUES (?, ?, ?, ?, ?, ?)",
                    rejected_rows,
                )
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(db)
                raise StoreError(f"the database could not be written: {exc}") from exc
            except BaseException:
                self._rollback(db)
                raise
        return len(event_rows) - stored

    @staticmethod
    def _rollback(db: sqlite3.Connection) -> None:
        """End a failed transaction. SQLite may have rolled it back already (a full or
        failing disk): a second error here must not hide the first."""
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")

    def events(
        self,
        type: str | None = None,
        user_id: str | None = None,
        event: str | None = None,
        anonymous_id: str | None = None,
        message_id: str | None = None,
        protocol: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Stored messages, newest first, each with the `receivedAt` the collector gave it.
        An A-Track message's `user_id` is its `uuid`."""
        where, args = [], []
        for column, value in (
            ("type", type), ("user_id", user_id), ("event", event),
            ("anonymous_id", anonymous_id), ("message_id", message_id),
            ("protocol", protocol),
        ):  # fmt: skip
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT raw, received_at FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._db().execute(sql, [*args, limit]).fetchall()
        out = []
        for raw, received_at in rows:
            message = json.loads(raw)
            message["receivedAt"] = received_at
            out.append(message)
        return out

    def rejections(self, limit: int = 100) -> list[dict[str, Any]]:
        """Rejected messages, newest first: the message as received, the reason and when."""
        with self._lock:
            rows = (
                self._db()
                .execute(
                    "SELECT batch_index, message_id, reason, received_at, raw FROM rejected"
                    " ORDER BY id DESC LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
        return [
            {
                "index": index,
                "messageId": message_id,
                "reason": reason,
                "receivedAt": received_at,
                "message": json.loads(raw),
            }
            for index, message_id, reason, received_at, raw in rows
        ]

    def counts(self) -> dict[str, Any]:
        """Stored events (both protocols), Segment's by type (every type listed), A-Track's
        by type, by protocol, rejected messages, and the number of distinct users."""
        with self._lock:
            db = self._db()
            rows = db.execute("SELECT protocol, type, COUNT(*) FROM events GROUP BY 1, 2")
            by_kind = {(protocol, kind): int(n) for protocol, kind, n in rows}
            rejected = db.execute("SELECT COUNT(*) FROM rejected").fetchone()[0]
            users = db.execute("SELECT COUNT(DISTINCT user_id) FROM events").fetchone()[0]
        types = {kind: by_kind.get(("segment", kind), 0) for kind in MESSAGE_TYPES}
        atrack = {kind: by_kind.get(("atrack", kind), 0) for kind in ATRACK_TYPES}
        by_protocol = dict.fromkeys(PROTOCOLS, 0)
        for (protocol, _), n in by_kind.items():
            by_protocol[protocol] = by_protocol.get(protocol, 0) + n
        return {
            "events": sum(by_kind.values()),
            "by_type": types,
            "atrack_by_type": atrack,
            "by_protocol": by_protocol,
            "rejected": int(rejected),
            "distinct_users": int(users),
        }

    def timeline(
        self, minutes: int = 60, now: dt.datetime | None = None, by: str = "received"
    ) -> dict[str, Any]:
        """Events per bucket by type, oldest first, empty buckets as zeros.

        `by="received"`: per minute (UTC) received over the last `minutes` minutes, the
        current one included. `by="event"`: by the events' own timestamps (historical
        imports), over the whole span they cover, in minutes, hours, days or months:
        the smallest unit that needs at most `MAX_EVENT_BUCKETS` buckets."""
        if by == "event":
            return self._event_timeline()
        if by != "received":
            raise ValueError('by must be "received" or "event"')
        if not 1 <= minutes <= MAX_TIMELINE_MINUTES:
            raise ValueError(f"minutes must be from 1 to {MAX_TIMELINE_MINUTES}")
        end = (now or dt.datetime.now(dt.timezone.utc)).replace(second=0, microsecond=0)
        keys = [_minute(end - dt.timedelta(minutes=n)) for n in range(minutes - 1, -1, -1)]
        with self._lock:
            rows = (
                self._db()
                .execute(
                    "SELECT substr(received_at, 1, 16) AS minute, type, COUNT(*) FROM events"
                    " WHERE received_at >= ? GROUP BY minute, type",
                    (keys[0],),
                )
                .fetchall()
            )
        buckets = _bucketed(keys, rows)
        return {
            "by": "received",
            "unit": "minute",
            "minutes": minutes,
            "types": list(KINDS),
            "buckets": [
                {
                    "minute": key + "Z",
                    "start": key + "Z",
                    "total": sum(counts.values()),
                    "by_type": counts,
                }
                for key, counts in buckets.items()
            ],
        }

    def _event_timeline(self) -> dict[str, Any]:
        with self._lock:
            db = self._db()
            first, last = db.execute(
                "SELECT MIN(event_at), MAX(event_at) FROM events WHERE event_at IS NOT NULL"
            ).fetchone()
            unit, width, keys = "minute", 16, []
            if first is not None:
                for unit, size in EVENT_TIME_UNITS:
                    keys, width = _span(first, last, unit), size
                    if len(keys) <= MAX_EVENT_BUCKETS:
                        break
                rows = db.execute(
                    f"SELECT substr(event_at, 1, {width}) AS k, type, COUNT(*) FROM events"
                    " WHERE event_at IS NOT NULL GROUP BY k, type"
                ).fetchall()
            else:
                rows = []
        buckets = _bucketed(keys, rows)
        return {
            "by": "event",
            "unit": unit,
            "types": list(KINDS),
            "buckets": [
                {"start": _start(key, unit), "total": sum(c.values()), "by_type": c}
                for key, c in buckets.items()
            ],
        }

    def close(self) -> None:
        """Close the database (checkpointing the WAL). Later calls raise `StoreClosed`."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a version-1 file up to date: add the later columns, and the events' own time
    (`event_at`) for the rows already stored."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    missing = [(name, decl) for name, decl in _ADDED if name not in have]
    if not missing:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for name, decl in missing:
            conn.execute(f"ALTER TABLE events ADD COLUMN {name} {decl}")
        if any(name == "event_at" for name, _ in missing):
            rows = conn.execute("SELECT id, timestamp FROM events WHERE timestamp IS NOT NULL")
            conn.executemany(
                "UPDATE events SET event_at = ? WHERE id = ?",
                [(event_time(stamp), rid) for rid, stamp in rows.fetchall()],
            )
        conn.execute("COMMIT")
    except BaseException:
        Store._rollback(conn)
        raise


def _span(first: str, last: str, unit: str) -> list[str]:
    """The bucket keys (ISO prefixes) from the one holding `first` to the one holding `last`."""
    first_at, last_at = parse_iso8601(first), parse_iso8601(last)
    if first_at is None or last_at is None:  # never: the store wrote both
        return []
    start, end = _floor(first_at, unit), _floor(last_at, unit)
    keys: list[str] = []
    moment = start
    while moment <= end and len(keys) <= MAX_EVENT_BUCKETS:
        keys.append(moment.isoformat()[: dict(EVENT_TIME_UNITS)[unit]])
        try:
            moment = _next(moment, unit)
        except (OverflowError, ValueError):  # past year 9999
            break
    return keys


def _floor(moment: dt.datetime, unit: str) -> dt.datetime:
    moment = moment.replace(second=0, microsecond=0, tzinfo=None)
    if unit in ("hour", "day", "month"):
        moment = moment.replace(minute=0)
    if unit in ("day", "month"):
        moment = moment.replace(hour=0)
    if unit == "month":
        moment = moment.replace(day=1)
    return moment


def _next(moment: dt.datetime, unit: str) -> dt.datetime:
    if unit == "month":
        year, month = divmod(moment.month, 12)
        return moment.replace(year=moment.year + year, month=month + 1)
    step = {"minute": dt.timedelta(minutes=1), "hour": dt.timedelta(hours=1)}
    return moment + step.get(unit, dt.timedelta(days=1))


def _start(key: str, unit: str) -> str:
    """A bucket key as a full UTC time: "2025-06" -> "2025-06-01T00:00Z"."""
    filler = {"minute": "", "hour": ":00", "day": "T00:00", "month": "-01T00:00"}
    return key + filler[unit] + "Z"


def _bucketed(keys: list[str], rows: list[Any]) -> dict[str, dict[str, int]]:
    """Counts by type for each key, from (key, type, count) rows; other keys and types left out."""
    buckets = {key: dict.fromkeys(KINDS, 0) for key in keys}
    for key, kind, count in rows:
        if key in buckets and kind in buckets[key]:
            buckets[key][kind] = int(count)
    return buckets
