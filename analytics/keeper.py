"""What a client does with its spool: write ahead (durable), keep what failed for a passing
reason, and replay. Used only when `spool_path` is set; the spool file itself is spool.py.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, Callable

from .batch import MAX_BATCH_BYTES
from .errors import APIError, DeliveryError, SpoolFull
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

    def write_ahead(self, msg: Message, data: bytes) -> None:
        """Durable mode: the message is on disk, owned by this process, before the call ends."""
        try:
            self._report_evicted(self.spool.add([(msg["messageId"], data)], own=True))
        except sqlite3.Error:
            logger.exception("analytics: the spool write failed; the message is only in memory")

    def delivered(self, batch: Sequence[Message]) -> None:
        """Durable mode: delivered, so the written-ahead copies go."""
        self._settle_own(batch, delivered=True)

    def refused(self, batch: Sequence[Message]) -> None:
        """Durable mode: refused for good, so the written-ahead copies must not replay."""
        if self.durable:
            self._settle_own(batch, delivered=True)

    def keep(self, batch: Sequence[Message], from_queue: bool) -> bool:
        """Keep messages for a later replay. False if the spool failed (then report them)."""
        try:
            if self.durable:  # already written ahead: free them for any process to replay
                self.spool.settle_own([m["messageId"] for m in batch], delivered=False)
            else:
                pairs = [(m["messageId"], self.sender.encode(m)) for m in batch]
                self._report_evicted(self.spool.add(pairs))
        except sqlite3.Error:
            logger.exception("analytics: the spool write failed")
            return False
        logger.info("analytics: %d message(s) kept in the spool for later", len(batch))
        self.stats.add_spooled(len(batch), from_queue)
        return True

    def replay_once(self) -> bool | None:
        """Send one batch from the spool: True if delivered (or refused for good), False if
        the collector still fails, None if nothing free is left."""
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

    def _settle_own(self, batch: Sequence[Message], delivered: bool) -> None:
        try:
            self.spool.settle_own([m["messageId"] for m in batch], delivered)
        except sqlite3.Error:
            logger.exception("analytics: the spool could not be updated")

    def _report_evicted(self, evicted: list[bytes]) -> None:
        if evicted:
            error = SpoolFull(f"spool is over spool_max_bytes; {len(evicted)} oldest dropped")
            self.report(error, [json.loads(d) for d in evicted], False)
