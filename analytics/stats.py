"""Running totals of a client, the wait that `flush` does on them, and the `FlushReport`
that `flush_report` makes of them.

`queued` counts messages accepted into the queue (the client bumps it under its own put
lock); `settled` counts those of them that were
delivered or dropped. `flush` waits until `settled` reaches what was queued when it began.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

REASONS = ("queue_full", "too_large", "gave_up", "rejected", "shutdown")
_COUNTED = ("queued", "delivered", "spooled", "dropped", "filtered")


@dataclass(frozen=True)
class FlushReport:
    """What became of the messages since the previous report (or since the client was
    built): truthy, like `flush()`, when everything queued before the flush was settled in
    time. `pending` is what is still queued or in flight now."""

    complete: bool
    queued: int = 0
    delivered: int = 0  # accepted by the collector (2xx), spool replays included
    spooled: int = 0  # kept in the spool, to be sent later
    dropped: int = 0  # reported to on_error: rejected (4xx, a wrong key), gave up, too large...
    dropped_by_reason: Mapping[str, int] | None = None
    pending: int = 0
    filtered: int = 0  # dropped on purpose by a before_send hook: not in `dropped`

    def __bool__(self) -> bool:
        return self.complete

    def __add__(self, other: FlushReport) -> FlushReport:
        reasons = dict(self.dropped_by_reason or {})
        for reason, n in (other.dropped_by_reason or {}).items():
            reasons[reason] = reasons.get(reason, 0) + n
        counts = {name: getattr(self, name) + getattr(other, name) for name in _COUNTED}
        return FlushReport(
            self.complete and other.complete,
            dropped_by_reason=reasons,
            pending=self.pending + other.pending,
            **counts,
        )


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
        self._reported: dict[str, Any] = {"dropped_by_reason": {}}  # at the last report
        self._report_lock = threading.Lock()

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

    def report(self, complete: bool) -> FlushReport:
        """The change since the previous report; the next one starts from here."""
        with self._report_lock:  # not _cond: snapshot() takes that one
            now = self.snapshot()
            last, self._reported = self._reported, now
        before = last["dropped_by_reason"]
        return FlushReport(
            complete,
            dropped_by_reason={
                r: n - before.get(r, 0) for r, n in now["dropped_by_reason"].items()
            },
            pending=now["pending"],
            **{name: now[name] - last.get(name, 0) for name in _COUNTED},
        )
