"""Sends one batch with the retry policy and says what came of it, as an `Outcome`.

Shared by the consumer thread, sync mode and spool replay, so all follow the same policy.
It settles nothing (settle.py does). Waits between tries are on an Event, so a shutdown
interrupts them at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Callable

from .errors import APIError, ClientShutdown, DeliveryError, RetriesExhausted
from .log import logger
from .outcome import DELIVERED, TAKEN, Batch, Outcome
from .protocols import Reply, Sender
from .retry import backoff_waits, is_retryable
from .stats import Stats

Waits = Callable[[], Iterator[float]]  # the backoff policy: a fresh series of waits per batch


class Delivery:
    def __init__(
        self,
        sender: Sender,
        stats: Stats,
        max_retries: int,
        abort: threading.Event,
        waits: Waits = backoff_waits,
    ) -> None:
        self.sender = sender
        self.stats = stats
        self.max_retries = max_retries
        self.abort = abort
        self.waits = waits
        # The batch being sent, so that a shutdown out of time can settle it from outside.
        self._inflight_lock = threading.Lock()
        self._inflight: Batch | None = None

    def deliver(self, batch: Batch, max_retries: int | None = None) -> Outcome:
        """Post `batch` as one request, retrying as the policy says (`max_retries` of this
        batch, if not the client's). `TAKEN` if a shutdown took the batch meanwhile."""
        retries = self.max_retries if max_retries is None else max_retries
        with self._inflight_lock:
            self._inflight = batch
        waits = self.waits()
        attempt = 0
        items = batch.items
        while True:
            if self.abort.is_set():
                return self._fail(ClientShutdown("client shut down before the batch was sent"))
            self.stats.add_request(retry=attempt > 0)
            try:
                reply = self.sender.send(items)
            except Exception as exc:  # a sender must not raise; if one does, it is a failure
                logger.exception("analytics: the sender raised; taken as a network error")
                reply = Reply(None, detail=f"the sender raised {type(exc).__name__}")
            attempt += 1
            if reply.ok:
                if self._take_inflight() is None:  # abandoned by a shutdown meanwhile
                    return TAKEN
                logger.debug("delivered %d messages (HTTP %s)", len(items), reply.status)
                return DELIVERED
            what = f"HTTP {reply.status}" if reply.status is not None else reply.detail
            if not is_retryable(reply.status):
                assert reply.status is not None
                return self._fail(APIError(reply.status, reply.detail))
            if attempt > retries:
                return self._fail(RetriesExhausted(attempt, reply.status, what))
            wait = next(waits)
            if reply.retry_after is not None:
                wait = reply.retry_after
            logger.debug("attempt %d failed (%s); retrying in %.3f s", attempt, what, wait)
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
