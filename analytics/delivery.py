"""Sends one batch with the retry policy, and settles it: delivered, or lost with a reason.

Shared by the consumer thread and by sync mode, so both follow the same policy.
Waits between tries are on an Event, so a shutdown interrupts them at once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Callable

from .errors import APIError, ClientShutdown, DeliveryError, RetriesExhausted
from .log import logger
from .retry import backoff_waits, is_retryable
from .stats import Stats
from .transport import Sender

Message = dict[str, Any]
# Called once for each batch that will not be delivered: (error, its messages, from_queue).
LostHandler = Callable[[DeliveryError, Sequence[Message], bool], object]


class Delivery:
    def __init__(
        self,
        transport: Sender,
        stats: Stats,
        lost: LostHandler,
        max_retries: int,
        abort: threading.Event,
        delivered: Callable[[Sequence[Message]], None] | None = None,
    ) -> None:
        self.transport = transport
        self.stats = stats
        self.lost = lost  # returns True when it kept the messages (the spool)
        self.max_retries = max_retries
        self.abort = abort
        self.delivered = delivered  # told of each delivered batch (the spool's write-ahead)
        # The batch being sent, so that a shutdown out of time can settle it from outside.
        self._inflight_lock = threading.Lock()
        self._inflight: tuple[Sequence[Message], bool] | None = None

    def deliver(
        self, items: Sequence[bytes], messages: Sequence[Message], from_queue: bool = True
    ) -> bool | None:
        """Post `items` (the encoded `messages`) as one batch, retrying as the policy says.
        True if delivered, None if not but kept (spooled), False if lost."""
        with self._inflight_lock:
            self._inflight = (messages, from_queue)
        waits = backoff_waits()
        attempt = 0
        while True:
            if self.abort.is_set():
                return self._fail(ClientShutdown("client shut down before the batch was sent"))
            self.stats.add_request(retry=attempt > 0)
            outcome = self.transport.send(items)
            attempt += 1
            if outcome.ok:
                if self._take_inflight() is None:  # abandoned by a shutdown meanwhile
                    return False
                logger.debug("delivered %d messages (HTTP %s)", len(items), outcome.status)
                if self.delivered is not None:
                    self.delivered(messages)
                self.stats.add_delivered(len(items), from_queue)
                return True
            what = f"HTTP {outcome.status}" if outcome.status is not None else outcome.detail
            if not is_retryable(outcome.status):
                assert outcome.status is not None
                return self._fail(APIError(outcome.status, outcome.detail))
            if attempt > self.max_retries:
                return self._fail(RetriesExhausted(attempt, outcome.status, what))
            wait = next(waits)
            if outcome.retry_after is not None:
                wait = outcome.retry_after
            logger.debug("attempt %d failed (%s); retrying in %.3f s", attempt, what, wait)
            if self.abort.wait(wait):
                return self._fail(ClientShutdown("client shut down while retrying the batch"))

    def _take_inflight(self) -> tuple[Sequence[Message], bool] | None:
        with self._inflight_lock:
            taken, self._inflight = self._inflight, None
        return taken

    def _fail(self, error: DeliveryError) -> bool | None:
        taken = self._take_inflight()
        if taken is None:  # a shutdown already settled this batch
            return False
        return None if self.lost(error, *taken) else False

    def abandon(self) -> tuple[Sequence[Message], bool] | None:
        """For a shutdown out of time: take the batch in flight, so that it is settled once,
        by the caller, even if the thread sending it never comes back."""
        return self._take_inflight()
