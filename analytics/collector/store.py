"""SQLite storage of the collector: accepted events (deduplicated by source and messageId),
rejected messages with their reasons, and the read queries over both."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .validate import MESSAGE_TYPES

SCHEMA_VERSION = 1
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


class StoreClosed(RuntimeError):
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
    """Compact JSON text, as stored in the `raw` columns."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _minute(moment: dt.datetime) -> str:
    """The minute of an aware datetime, in UTC, as `received_at` starts: YYYY-MM-DDTHH:MM."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


class Store:
    """One SQLite database (a file, or ":memory:"), safe to share between threads.

    Every write is one transaction; it has been committed (WAL, synchronous=FULL) when
    `record` returns.
    """

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._lock = threading.Lock()
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    def __repr__(self) -> str:
        return f"<Store {self.path!r}{' closed' if self._conn is None else ''}>"

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreClosed("the collector's store is closed")
        return self._conn

    def record(
        self, source: str, accepted: Sequence[dict[str, Any]], rejected: Sequence[Rejection]
    ) -> int:
        """Store one request's messages in one transaction; the number of accepted messages
        that were already stored (duplicates, stored once)."""
        now = _now()
        event_rows = [
            (
                source, str(m["messageId"]), m["type"], _text(m.get("userId")),
                _text(m.get("anonymousId")), _text(m.get("event")), _text(m.get("timestamp")),
                now, compact(m),
            )
            for m in accepted
        ]  # fmt: skip
        rejected_rows = [
            (source, r.index, r.message_id, r.reason, now, compact(r.message)) for r in rejected
        ]
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                before = db.total_changes
                db.executemany(
                    "INSERT OR IGNORE INTO events (source, message_id, type, user_id,"
                    " anonymous_id, event, timestamp, received_at, raw)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    event_rows,
                )
                stored = db.total_changes - before
                db.executemany(
                    "INSERT INTO rejected (source, batch_index, message_id, reason,"
                    " received_at, raw) VALUES (?, ?, ?, ?, ?, ?)",
                    rejected_rows,
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return len(event_rows) - stored

    def events(
        self,
        type: str | None = None,
        user_id: str | None = None,
        event: str | None = None,
        anonymous_id: str | None = None,
        message_id: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Stored messages, newest first, each with the `receivedAt` the collector gave it."""
        where, args = [], []
        for column, value in (
            ("type", type), ("user_id", user_id), ("event", event),
            ("anonymous_id", anonymous_id), ("message_id", message_id),
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
        """Stored events by type (every type listed), their total, rejected messages, and
        the number of distinct `userId`s among the events."""
        with self._lock:
            db = self._db()
            by_type = dict(db.execute("SELECT type, COUNT(*) FROM events GROUP BY type"))
            rejected = db.execute("SELECT COUNT(*) FROM rejected").fetchone()[0]
            users = db.execute("SELECT COUNT(DISTINCT user_id) FROM events").fetchone()[0]
        types = {kind: int(by_type.get(kind, 0)) for kind in MESSAGE_TYPES}
        return {
            "events": sum(types.values()),
            "by_type": types,
            "rejected": int(rejected),
            "distinct_users": int(users),
        }

    def timeline(self, minutes: int = 60, now: dt.datetime | None = None) -> dict[str, Any]:
        """Events received per minute (UTC) by type over the last `minutes` minutes, the
        current one included: every minute listed, oldest first, empty ones as zeros."""
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
        buckets = {key: dict.fromkeys(MESSAGE_TYPES, 0) for key in keys}
        for minute, kind, count in rows:
            if minute in buckets and kind in buckets[minute]:
                buckets[minute][kind] = int(count)
        return {
            "minutes": minutes,
            "types": list(MESSAGE_TYPES),
            "buckets": [
                {"minute": key + "Z", "total": sum(counts.values()), "by_type": counts}
                for key, counts in buckets.items()
            ],
        }

    def close(self) -> None:
        """Close the database (checkpointing the WAL). Later calls raise `StoreClosed`."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
