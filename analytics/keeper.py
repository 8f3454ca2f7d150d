"""What a client does with its spool: write ahead (durable, through the journal), keep what
failed for a passing reason, and replay. Used only when `spool_path` is set; the files
themselves are spool.py and journal.py.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, Callable

from .batch import MAX_BATCH_BYTES
from .errors import APIError, DeliveryError, SpoolFull
from .journal import Journal, fold_orphans
from .log import logger
from .retry import is_retryable
from .spool import Spool
from .stats import Stats
from .transport import Sender

Message = dict[str, Any]
Report = Callable[[DeliveryError, Sequence[Message], bool], None]


class Keeper:
    def __init__(
        self,
        spool: Spool,
        stats: Stats,
        sender: Sender,
        report: Report,
        batch_size: int,
        durable: bool,
    ) -> None:
        self.spool = spool
        self.stats = stats
        self.sender = sender
        self.report = report
        self.batch_size = batch_size
        self.durable = durable
        self.journal = Journal(spool.path, spool.fsync) if durable else None
        self._next_fold = 0.0
        self._fold()  # what ended processes left is in the spool once the client is built

    def _fold(self) -> None:
        """Journals of ended processes into the spool: at start, then every 5 s at most."""
        self._next_fold = time.monotonic() + 5.0
        try:
            fold_orphans(self.spool.path, self._add_folded)
        except (OSError, sqlite3.Error):
            logger.exception("analytics: folding the journals of ended processes failed")

    def write_ahead(self, msg: Message, data: bytes) -> None:
        """Durable mode: the message is in this process's journal before the call ends."""
        assert self.journal is not None
        try:
            self.journal.append(msg["messageId"], data)
        except OSError:
            logger.exception("analytics: the journal write failed; the message is only in memory")

    def delivered(self, batch: Sequence[Message]) -> None:
        """Durable mode: delivered, so the journal's copies are done."""
        self._done(batch)

    def refused(self, batch: Sequence[Message]) -> None:
        """Refused for good: the journal's copies must not come back."""
        self._done(batch)

    def keep(self, batch: Sequence[Message], from_queue: bool) -> bool:
        """Keep messages for a later replay. False if the spool failed (then report them)."""
        try:
            pairs = [(m["messageId"], self.sender.encode(m)) for m in batch]
            self._report_evicted(self.spool.add(pairs))
        except sqlite3.Error:
            logger.exception("analytics: the spool write failed")
            return False
        self._done(batch)  # in the spool now: the journal's copies are done
        logger.info("analytics: %d message(s) kept in the spool for later", len(batch))
        self.stats.add_spooled(len(batch), from_queue)
        return True

    def replay_once(self) -> bool | None:
        """Send one batch from the spool: True if delivered (or refused for good), False if
        the collector still fails, None if nothing free is left."""
        if time.monotonic() >= self._next_fold:
            self._fold()
        rows = self.spool.claim(self.batch_size, MAX_BATCH_BYTES - 100)
        if not rows:
            return None
        items = [r.data for r in rows]
        ids = [r.id for r in rows]
        self.stats.add_request(retry=False)
        outcome = self.sender.send(items)
        if outcome.ok:
            self.spool.delete(ids)
            self.stats.add_replayed(len(rows))
            logger.debug("analytics: replayed %d spooled message(s)", len(rows))
            return True
        if is_retryable(outcome.status):
            self.spool.release(ids)
            return False
        self.spool.delete(ids)
        assert outcome.status is not None
        error = APIError(outcome.status, outcome.detail)
        self.report(error, [json.loads(d) for d in items], False)
        return True

    def replay_guarded(self) -> None:
        """One replay step that never raises (sync mode, on the caller's thread)."""
        try:
            self.replay_once()
        except Exception:
            logger.exception("analytics: replaying the spool failed")

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()

    def _done(self, batch: Sequence[Message]) -> None:
        if self.journal is not None:
            try:
                self.journal.done([m["messageId"] for m in batch])
            except OSError:
                logger.exception("analytics: the journal could not be updated")

    def _add_folded(self, pairs: list[tuple[str, bytes]]) -> None:
        self._report_evicted(self.spool.add(pairs))

    def _report_evicted(self, evicted: list[bytes]) -> None:
        if evicted:
            error = SpoolFull(f"spool is over spool_max_bytes; {len(evicted)} oldest dropped")
            self.report(error, [json.loads(d) for d in evicted], False)
