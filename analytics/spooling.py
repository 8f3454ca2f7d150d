"""What a client does with its spool file: write ahead (durable mode, through the journal),
keep what failed for a passing reason, and hand out spooled batches to replay. It decides
nothing about loss (settle.py does) and sends nothing (delivery.py does).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from .batch import Batcher
from .errors import ValidationError
from .journal import Journal, fold_orphans
from .log import logger
from .options import Settings
from .outcome import Batch, Origin
from .spool import Spool
from .typing import Message

# Seconds between looks for the journals of ended processes.
FOLD_INTERVAL = 5.0


class SpoolKeeper:
    def __init__(self, spool: Spool, encode: Any, batch_size: int, durable: bool) -> None:
        self.spool = spool
        self.encode = encode
        self.batch_size = batch_size
        self.journal = Journal(spool.path, spool.fsync) if durable else None
        self._evicted: list[bytes] = []  # dropped to stay under spool_max_bytes, unreported
        self._next_fold = 0.0
        self._fold()  # what ended processes left is in the spool once the client is built

    def _fold(self) -> None:
        """Journals of ended processes into the spool: at start, then every 5 s at most."""
        self._next_fold = time.monotonic() + FOLD_INTERVAL
        try:
            fold_orphans(self.spool.path, self._add)
        except (OSError, sqlite3.Error):
            logger.exception("analytics: folding the journals of ended processes failed")

    def write_ahead(self, msg: Message, data: bytes) -> None:
        """Durable mode: the message is in this process's journal before the call ends."""
        if self.journal is None:
            return
        try:
            self.journal.append(msg["messageId"], data)
        except OSError:
            logger.exception("analytics: the journal write failed; the message is only in memory")

    def settled(self, batch: Sequence[Message]) -> None:
        """Delivered or refused for good: the journal's copies are done."""
        if self.journal is not None:
            try:
                self.journal.done([m["messageId"] for m in batch])
            except OSError:
                logger.exception("analytics: the journal could not be updated")

    def keep(self, batch: Sequence[Message], items: Sequence[bytes] | None = None) -> bool:
        """Keep messages (and their encoded `items`, if known) for a later replay. False if
        the spool failed (report them then)."""
        if items is None:
            items = [self.encode(m) for m in batch]
        try:
            self._add([(m["messageId"], data) for m, data in zip(batch, items)])
        except sqlite3.Error:
            logger.exception("analytics: the spool write failed")
            return False
        self.settled(batch)  # in the spool now: the journal's copies are done
        logger.info("analytics: %d message(s) kept in the spool for later", len(batch))
        return True

    def claim(self) -> Batch | None:
        """The oldest free spooled messages as one batch (by the batching rule), claimed for
        this process; None when nothing is free."""
        if time.monotonic() >= self._next_fold:
            self._fold()
        batcher = Batcher(self.batch_size)
        rows = self.spool.claim(self.batch_size, batcher.add)
        if not rows:
            return None
        return Batch([r.data for r in rows], origin=Origin.SPOOL, rows=[r.id for r in rows])

    def delete(self, batch: Batch) -> None:
        self.spool.delete(batch.rows)

    def release(self, batch: Batch) -> None:
        self.spool.release(batch.rows)

    def take_evicted(self) -> list[bytes]:
        """The messages evicted since the last call (the oldest, to stay under the limit)."""
        evicted, self._evicted = self._evicted, []
        return evicted

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()

    def _add(self, pairs: list[tuple[str, bytes]]) -> None:
        self._evicted += self.spool.add(pairs)


def open_spool(settings: Settings) -> Spool | None:
    """The spool file a client was given. ValidationError if it cannot be used; None (and
    an error logged) if another process holds it locked for longer than the busy timeout."""
    path = str(settings.spool_path)
    try:
        return Spool(path, settings.spool_max_bytes, settings.fsync)
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            raise ValidationError(f"cannot use spool_path {path!r}: {exc}") from None
        logger.error("analytics: spool %r unusable (%s); memory only", path, exc)
        return None
    except (OSError, sqlite3.Error) as exc:
        raise ValidationError(f"cannot use spool_path {path!r}: {exc}") from None
