"""The optional on-disk spool: messages that could not be delivered yet wait here, in SQLite.

Several processes may share one file (WAL, a busy timeout); a process claims rows before it
sends them, so each is sent by one process at a time. A claim held by a process that died
is taken over. The spool never raises into the app: a file it cannot use is moved aside.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .log import logger
from .options import DEFAULTS

# Seconds between tries to replay the spool while the collector keeps failing.
REPLAY_INTERVAL = 5.0
# A claim older than this is free for others, even if its process still runs.
CLAIM_SECONDS = 300.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    data BLOB NOT NULL,
    size INTEGER NOT NULL,
    owner TEXT,
    claimed_at REAL
);
CREATE INDEX IF NOT EXISTS spool_owner ON spool (owner, message_id);
"""


@dataclass(frozen=True)
class Row:
    id: int
    data: bytes


class Spool:
    """One process's handle on a spool file. Thread-safe; reopen it after a fork."""

    def __init__(self, path: str, max_bytes: int = DEFAULTS.spool_max_bytes, fsync: bool = False):
        self.path = path
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.lock = threading.Lock()  # every use of the connection holds it (and so does fork)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._size = 0
        self._orphans: list[sqlite3.Connection] = []
        self._next_owner_check = 0.0
        self._db = self._open()

    # -- opening ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=5, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
        db.executescript(_SCHEMA)
        db.execute("SELECT count(*) FROM spool").fetchone()
        return db

    def _open(self) -> sqlite3.Connection:
        try:
            db = self._connect()
        except sqlite3.OperationalError:  # locked or unreadable: not a reason to move it
            raise
        except sqlite3.DatabaseError as exc:  # not a database, or a corrupt one
            aside = f"{self.path}.corrupt-{int(time.time())}"
            logger.error("analytics spool %s is unusable (%s); moved to %s", self.path, exc, aside)
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.replace(self.path + suffix, aside + suffix)
            db = self._connect()
        self._size = db.execute("SELECT total(size) FROM spool").fetchone()[0]
        return db

    def reopen_after_fork(self) -> None:
        """A forked child must not use its parent's connection, nor close it: closing could
        checkpoint the parent's WAL from under it. It is kept, unused, for good."""
        self._orphans.append(self._db)
        self._next_owner_check = 0.0
        self.lock = threading.Lock()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._db = self._open()

    def close(self) -> None:
        with self.lock:
            self._db.close()

    # -- writing ---------------------------------------------------------------------------

    def add(self, items: Sequence[tuple[str, bytes]]) -> list[bytes]:
        """Store (messageId, JSON) pairs, free for any process to send. Returns the JSON of
        the oldest messages evicted to stay under `max_bytes`."""
        rows = [(mid, data, len(data), None, None) for mid, data in items]
        with self.lock, self._transaction():
            self._db.executemany(
                "INSERT INTO spool (message_id, data, size, owner, claimed_at) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            self._size += sum(r[2] for r in rows)
            if self._size <= self.max_bytes:
                return []
            return self._evict()

    def _evict(self) -> list[bytes]:
        # Other processes write too: count again before dropping anything.
        self._size = self._db.execute("SELECT total(size) FROM spool").fetchone()[0]
        evicted: list[bytes] = []
        while self._size > self.max_bytes:
            # Only free rows: a claimed one is a message on its way.
            oldest = self._db.execute(
                "SELECT id, data, size FROM spool WHERE owner IS NULL ORDER BY id LIMIT 100"
            ).fetchall()
            if not oldest:
                break
            ids = []
            for rid, data, size in oldest:
                if self._size <= self.max_bytes:
                    break
                ids.append(rid)
                evicted.append(data)
                self._size -= size
            self._delete_ids(ids)
        return evicted

    def _delete_ids(self, ids: Sequence[int]) -> None:
        self._db.executemany("DELETE FROM spool WHERE id = ?", [(i,) for i in ids])

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One commit for a statement run over many rows (autocommit would make each row a
        transaction of its own: a hundred commits for a batch)."""
        if self._db.in_transaction:
            yield
            return
        # IMMEDIATE: the write lock up front, waiting out the busy timeout. A deferred
        # transaction that reads then writes fails at once if another process wrote between.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- claiming and settling -------------------------------------------------------------

    def claim(self, max_count: int, take: Callable[[bytes], object]) -> list[Row]:
        """Claim the oldest free messages, at most `max_count`, while `take(data)` (the
        batching rule: `Batcher.add`) accepts them; one is always claimed if any is free."""
        now = time.time()
        with self.lock:
            if now >= self._next_owner_check:  # a scan of owners: now and then, not per claim
                self._next_owner_check = now + 5.0
                self._free_dead_owners()
            # A plain read first: the usual answer is "nothing", and it takes no write lock.
            free = self._db.execute(
                "SELECT 1 FROM spool WHERE owner IS NULL OR claimed_at < ? LIMIT 1",
                (now - CLAIM_SECONDS,),
            ).fetchone()
            if free is None:
                return []
            self._db.execute("BEGIN IMMEDIATE")
            try:
                found = self._db.execute(
                    "SELECT id, data FROM spool WHERE owner IS NULL OR claimed_at < ? "
                    "ORDER BY id LIMIT ?",
                    (now - CLAIM_SECONDS, max_count),
                ).fetchall()
                rows: list[Row] = []
                for rid, data in found:
                    if not take(data) and rows:
                        break
                    rows.append(Row(rid, data))
                self._db.executemany(
                    "UPDATE spool SET owner = ?, claimed_at = ? WHERE id = ?",
                    [(self.owner, now, r.id) for r in rows],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return rows

    def _free_dead_owners(self) -> None:
        """Free the claims of processes on this host that no longer run."""
        host = socket.gethostname()
        owners = self._db.execute(
            "SELECT DISTINCT owner FROM spool WHERE owner IS NOT NULL AND owner != ?",
            (self.owner,),
        ).fetchall()
        for (owner,) in owners:
            parts = owner.split(":")
            if len(parts) == 3 and parts[0] == host and not alive(int(parts[1])):
                self._db.execute("UPDATE spool SET owner = NULL WHERE owner = ?", (owner,))

    def delete(self, ids: Sequence[int]) -> None:
        """Forget rows that were delivered (or refused for good)."""
        with self.lock, self._transaction():
            sizes = self._db.execute(
                f"SELECT total(size) FROM spool WHERE id IN ({_marks(ids)})", list(ids)
            ).fetchone()[0]
            self._delete_ids(ids)
            self._size -= sizes

    def release(self, ids: Sequence[int]) -> None:
        """Give claimed rows back, for a later try."""
        with self.lock, self._transaction():
            self._db.executemany(
                "UPDATE spool SET owner = NULL, claimed_at = NULL WHERE id = ?",
                [(i,) for i in ids],
            )


def _marks(ids: Sequence[int]) -> str:
    return ",".join("?" * len(ids))


def alive(pid: int) -> bool:
    """Whether a process of this host runs (when unsure: yes, so nothing of it is taken)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True
