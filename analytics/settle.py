"""The loss rule, in one place: every batch ends here, delivered, kept in the spool or
dropped, and is counted once. A message that will not be delivered for a passing reason
(an outage, a full queue, a shutdown) waits in the spool when there is one; anything else
that will not be delivered is logged, reported to `on_error` and counted by its reason.
`on_error` is never re-entered on its thread: what a call made inside it drops is counted
and logged, not reported to `on_error` again (of this client or any other).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from .errors import DeliveryError, QueueFull, SpoolFull
from .log import Throttle, logger
from .outcome import Batch, Fate, Origin, Outcome
from .spooling import SpoolKeeper
from .stats import Stats
from .typing import Message, OnError

# Reasons that pass (an outage, a full queue, a shutdown): with a spool they wait there.
PASSING = frozenset({"gave_up", "queue_full", "shutdown"})

# Set on a thread while an on_error runs there: a drop it causes is not reported to it again.
_in_on_error = threading.local()
_reentry_warning = Throttle()


class Settler:
    """Settles batches for one client in one process."""

    def __init__(
        self,
        stats: Stats,
        on_error: OnError | None,
        keeper: SpoolKeeper | None = None,
        max_queue_size: int = 0,
    ) -> None:
        self.stats = stats
        self.on_error = on_error
        self.keeper = keeper
        self.max_queue_size = max_queue_size  # named in the queue-full warning
        self._full_warning = Throttle()

    def settle(self, batch: Batch, outcome: Outcome) -> Fate:
        """What becomes of a batch that was sent (or could not be)."""
        if outcome.taken:
            return Fate.SETTLED
        if batch.origin is Origin.SPOOL:
            return self._settle_replayed(batch, outcome)
        if outcome.error is None:
            if self.keeper is not None:
                self.keeper.settled(batch.messages)
            self.stats.add_delivered(len(batch.items), batch.queued)
            return Fate.DELIVERED
        return self.lose(outcome.error, batch.messages, batch.queued, batch.items)

    def lose(
        self,
        error: DeliveryError,
        messages: Sequence[Message],
        queued: bool,
        items: Sequence[bytes] | None = None,
    ) -> Fate:
        """Messages that will not be delivered now: kept in the spool if the reason passes
        and there is one, else reported. `queued`: they were counted in `queued`; `items`:
        their encoded form, when the caller has it (so they are not encoded again)."""
        keeper = self.keeper
        if keeper is not None:
            if error.reason in PASSING and keeper.keep(messages, items):
                self._report_evicted()  # before the count that a flush waits on
                self.stats.add_spooled(len(messages), queued)
                return Fate.KEPT
            keeper.settled(messages)
        self.report(error, messages, queued)
        return Fate.DROPPED

    def report(self, error: DeliveryError, messages: Sequence[Message], queued: bool) -> None:
        """Log, report and count messages that will not be delivered: once each. Counted
        last, so that a flush waiting on the count returns after on_error ran."""
        if isinstance(error, QueueFull):
            self._full_warning.warn(
                "analytics queue is full (max_queue_size=%d); dropping", self.max_queue_size
            )
        else:
            logger.warning("dropped %d message(s): %s", len(messages), error)
        on_error = self.on_error
        if on_error is not None:
            if getattr(_in_on_error, "active", False):
                _reentry_warning.warn("a call made inside on_error was dropped; not reported")
            else:
                _in_on_error.active = True
                try:
                    on_error(error, list(messages))
                except Exception:
                    logger.exception("on_error raised; ignored")
                finally:
                    _in_on_error.active = False
        self.stats.add_dropped(error.reason, len(messages), queued)

    def _settle_replayed(self, batch: Batch, outcome: Outcome) -> Fate:
        keeper = self.keeper
        assert keeper is not None
        error = outcome.error
        if error is None:
            keeper.delete(batch)
            self.stats.add_replayed(len(batch.items))
            logger.debug("analytics: replayed %d spooled message(s)", len(batch.items))
            return Fate.DELIVERED
        if error.reason in PASSING:
            keeper.release(batch)  # still in the spool, for the next try
            return Fate.KEPT
        keeper.delete(batch)  # refused for good
        self.report(error, batch.dicts(), False)
        return Fate.DROPPED

    def _report_evicted(self) -> None:
        assert self.keeper is not None
        evicted = self.keeper.take_evicted()
        if evicted:
            error = SpoolFull(f"spool is over spool_max_bytes; {len(evicted)} oldest dropped")
            self.report(error, Batch(evicted, origin=Origin.SPOOL).dicts(), False)

    def after_replay(self) -> None:
        """What folding the journals of ended processes evicted, reported."""
        if self.keeper is not None:
            self._report_evicted()
