"""The consumer thread: takes encoded messages off the queue, batches them, delivers.

A batch is sent when it is full (count or bytes), when `flush_interval` has passed since
its first message, or when a flush marker arrives. It never dies of an exception.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from typing import Any

from .batch import Batcher
from .delivery import Delivery, LostHandler
from .errors import ClientShutdown
from .log import logger

FLUSH = object()  # marker: send what you have now
STOP = object()  # marker: send what you have and end


class Consumer:
    def __init__(
        self,
        q: queue.Queue[Any],
        delivery: Delivery,
        lost: LostHandler,
        batch_size: int,
        flush_interval: float,
    ) -> None:
        self.queue = q
        self.delivery = delivery
        self.lost = lost
        self.batcher = Batcher(batch_size)
        self.flush_interval = flush_interval
        self.closing = False
        self._carry: bytes | None = None
        self.thread = threading.Thread(target=self._run, name="analytics-consumer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def is_current(self) -> bool:
        return threading.current_thread() is self.thread

    def alive(self) -> bool:
        return self.thread.is_alive()

    def nudge(self, timeout: float | None) -> None:
        """Ask for the partial batch to go now instead of after `flush_interval`."""
        try:
            if timeout is None:
                self.queue.put(FLUSH)
            else:
                self.queue.put(FLUSH, timeout=max(timeout, 0.0))
        except queue.Full:
            pass

    def stop(self) -> None:
        """End after the queue is drained. The flag covers a queue too full for the marker."""
        self.closing = True
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(STOP)

    def _run(self) -> None:
        while True:
            try:
                stop = self._fill()
                if len(self.batcher):
                    self.delivery.deliver(self.batcher.take())
                if self.delivery.abort.is_set():
                    self.drain_lost()
                    return
                if stop or (self.closing and self._carry is None and self.queue.empty()):
                    return
            except Exception:  # the consumer must outlive any bug or hook
                logger.exception("analytics consumer hit an error; it keeps running")

    def _fill(self) -> bool:
        """Fill the batch by the batching rule; True when told to stop."""
        batcher = self.batcher
        deadline = time.monotonic() + self.flush_interval
        while not batcher.full:
            if self._carry is not None:
                item: Any = self._carry
                self._carry = None
            elif not len(batcher):
                item = self.queue.get()
                deadline = time.monotonic() + self.flush_interval
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                try:
                    item = self.queue.get(timeout=remaining)
                except queue.Empty:
                    return False
            if item is FLUSH:
                return False
            if item is STOP:
                return True
            if not batcher.add(item):
                self._carry = item
                return False
        return False

    def drain_lost(self, queue_only: bool = False) -> None:
        """Report everything still waiting as lost to a shutdown. From another thread while
        this one runs, take only from the queue (the batch belongs to this thread)."""
        items = [] if queue_only else self.batcher.take()
        if not queue_only and self._carry is not None:
            items.append(self._carry)
            self._carry = None
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, bytes):
                items.append(item)
        if items:
            self.lost(ClientShutdown("client shut down before the message was sent"), items, True)
