"""Sends one batch with the retry policy and says what came of it, as an `Outcome`.

Shared by the consumer thread, sync mode and spool replay, so all follow the same policy.
It settles nothing (settle.py does). Waits between tries are on an Event, so a shutdown
interrupts them at once.

Two time bounds (Segment 2.4's), each on one batch and on a monotonic clock: once
`max_total_backoff` seconds have passed since the batch's first failure that asked for no
wait, the next such failure gives it up; and a wait a `Retry-After` asks for is not begun if
it would end more than `max_rate_limit` seconds after the batch was first so answered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Callable

from .errors import APIError, ClientShutdown, DeliveryError, RetriesExhausted
from .log import logger
from .options import DEFAULTS
from .outcome import DELIVERED, TAKEN, Batch, Outcome
from .protocols import ReadReply, Reply, Sender
from .retry import backoff_waits, is_retryable
from .stats import Stats

Waits = Callable[[], Iterator[float]]  # the backoff policy: a fresh series of waits per batch
Clock = Callable[[], float]  # monotonic seconds


@dataclass(frozen=True)
class Attempt:
    """A batch whose first try was sent (`read` gives its reply), or not sent because a
    shutdown began (`read` None)."""

    batch: Batch
    read: ReadReply | None


def _raised(exc: Exception) -> Reply:
    logger.exception("analytics: the sender raised; taken as a network error")
    return Reply(None, detail=f"the sender raised {type(exc).__name__}")


class Delivery:
    def __init__(
        self,
        sender: Sender,
        stats: Stats,
        max_retries: int,
        abort: threading.Event,
        waits: Waits = backoff_waits,
        *,
        max_total_backoff: float = DEFAULTS.max_total_backoff_duration,
        max_rate_limit: float = DEFAULTS.max_rate_limit_duration,
        now: Clock = time.monotonic,
    ) -> None:
        self.sender = sender
        self.stats = stats
        self.max_retries = max_retries
        self.abort = abort
        self.waits = waits
        self.max_total_backoff = max_total_backoff
        self.max_rate_limit = max_rate_limit
        self.now = now
        # The batch being sent, so that a shutdown out of time can settle it from outside.
        self._inflight_lock = threading.Lock()
        self._inflight: Batch | None = None

    def deliver(self, batch: Batch, max_retries: int | None = None) -> Outcome:
        """Post `batch` as one request, retrying as the policy says (`max_retries` of this
        batch, if not the client's). `TAKEN` if a shutdown took the batch meanwhile."""
        return self.finish(self.begin(batch), max_retries)

    def begin(self, batch: Batch) -> Attempt:
        """Send the batch's first try (the sender's `start`, if it has one: the reply is
        read by `finish`, so the caller may work while the collector reads the request)."""
        with self._inflight_lock:
            self._inflight = batch
        if self.abort.is_set():
            return Attempt(batch, None)
        self.stats.add_request(retry=False)
        return Attempt(batch, self._start(batch.items))

    def _start(self, items: Sequence[bytes]) -> ReadReply:
        start = getattr(self.sender, "start", None)
        try:
            if start is not None:
                read: ReadReply = start(items)
                return read
            reply = self.sender.send(items)
        except Exception as exc:  # a sender must not raise; if one does, it is a failure
            reply = _raised(exc)
        return lambda: reply

    def finish(self, attempt: Attempt, max_retries: int | None = None) -> Outcome:
        """The reply to `attempt`'s first try, then the retries the policy allows."""
        batch = attempt.batch
        retries = self.max_retries if max_retries is None else max_retries
        waits = self.waits()
        attempt_no = 0
        backoff_since: float | None = None  # the batch's first failure that asked for no wait
        limited_since: float | None = None  # its first answer with a Retry-After
        items = batch.items
        read = attempt.read
        while True:
            if read is None:
                if self.abort.is_set():
                    error = ClientShutdown("client shut down before the batch was sent")
                    return self._fail(error)
                self.stats.add_request(retry=attempt_no > 0)
                read = self._start(items)
            try:
                reply = read()
            except Exception as exc:
                reply = _raised(exc)
            read = None
            attempt_no += 1
            if reply.ok:
                if self._take_inflight() is None:  # abandoned by a shutdown meanwhile
                    return TAKEN
                logger.debug("delivered %d messages (HTTP %s)", len(items), reply.status)
                return DELIVERED
            what = f"HTTP {reply.status}" if reply.status is not None else reply.detail
            if not is_retryable(reply.status):
                assert reply.status is not None
                return self._fail(APIError(reply.status, reply.detail))
            if attempt_no > retries:
                return self._fail(RetriesExhausted(attempt_no, reply.status, what))
            wait = next(waits)
            if reply.retry_after is not None:
                wait = reply.retry_after
            now = self.now()
            if wait > 0 and reply.retry_after is not None:  # rate limited: the collector's wait
                limited_since = now if limited_since is None else limited_since
                if now + wait - limited_since > self.max_rate_limit:
                    spent = f"{what}; a Retry-After of {wait:g} s passes max_rate_limit_duration"
                    return self._fail(RetriesExhausted(attempt_no, reply.status, spent))
            else:
                backoff_since = now if backoff_since is None else backoff_since
                if now - backoff_since >= self.max_total_backoff:
                    spent = f"{what}; max_total_backoff_duration ({self.max_total_backoff:g} s)"
                    return self._fail(RetriesExhausted(attempt_no, reply.status, f"{spent} spent"))
            logger.debug("attempt %d failed (%s); retrying in %.3f s", attempt_no, what, wait)
            if self.abort.wait(wait):
                return self._fail(ClientShutdown("client shut down while retrying the batch"))

    def _take_inflight(self) -> Batch | None:
        with self._inflight_lock:
            taken, self._inflight = self._inflight, None
        return taken

    def _fail(self, error: DeliveryError) -> Outcome:
        if self._take_inflight() is None:  # a shutdown already settled this batch
            return TAKEN
        return Outcome(error)

    def abandon(self) -> Batch | None:
        """For a shutdown out of time: take the batch in flight, so that it is settled once,
        by the caller, even if the thread sending it never comes back."""
        return self._take_inflight()
