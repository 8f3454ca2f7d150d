"""Running totals of a client, and the wait that `flush` does on them.

`queued` counts messages accepted into the queue (the client bumps it under its own put
lock); `settled` counts those of them that were
delivered or dropped. `flush` waits until `settled` reaches what was queued when it began.
"""

from __future__ import annotations

import threading
import time
from typing import Any

REASONS = ("queue_full", "too_large", "gave_up", "rejected", "shutdown")


class Stats:
    def __init__(self, spool: bool = False) -> None:
        self._cond = threading.Condition(threading.Lock())
        self.queued = 0
        self.settled = 0
        self.delivered = 0
        self.retries = 0
        self.requests = 0
        self.dropped_by_reason = dict.fromkeys(REASONS + (("spool_full",) if spool else ()), 0)
        self.spooled = 0
        self.replayed = 0
        self.filtered = 0  # dropped on purpose by a before_send hook: not a loss

    def add_request(self, retry: bool) -> None:
        with self._cond:
            self.requests += 1
            if retry:
                self.retries += 1

    def add_delivered(self, n: int, from_queue: bool) -> None:
        with self._cond:
            self.delivered += n
            if from_queue:
                self.settled += n
                self._cond.notify_all()

    def add_spooled(self, n: int, from_queue: bool) -> None:
        with self._cond:
            self.spooled += n
            if from_queue:
                self.settled += n
                self._cond.notify_all()

    def add_replayed(self, n: int) -> None:
        with self._cond:
            self.replayed += n
            self.delivered += n

    def add_dropped(self, reason: str, n: int, from_queue: bool) -> None:
        with self._cond:
            self.dropped_by_reason[reason] += n
            if from_queue:
                self.settled += n
                self._cond.notify_all()

    def add_filtered(self) -> None:
        with self._cond:
            self.filtered += 1

    def wait_settled(self, target: int, timeout: float | None) -> bool:
        """Wait until `target` queued messages are settled; False if time ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.settled < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                # Wake now and then: a settle can race ahead of the `queued` it settles.
                self._cond.wait(0.5 if remaining is None else min(remaining, 0.5))
            return True

    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            return {
                "queued": self.queued,
                "delivered": self.delivered,
                "dropped": sum(self.dropped_by_reason.values()),
                "dropped_by_reason": dict(self.dropped_by_reason),
                "retries": self.retries,
                "requests": self.requests,
                "pending": max(self.queued - self.settled, 0),
                "spooled": self.spooled,
                "replayed": self.replayed,
                "filtered": self.filtered,
            }
