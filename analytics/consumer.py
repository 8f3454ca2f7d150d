"""The consumer thread: takes messages off the queue, batches them, delivers.

The queue holds the message dicts; their JSON, encoded once on the caller's thread, waits
beside them in a deque in the same order. Only this thread takes from either.
A batch is sent when it is full (count or bytes), when `flush_interval` has passed since
its first message, or when a flush marker arrives. It never dies of an exception.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from typing import Any, Callable

from .batch import Batcher
from .delivery import Delivery, LostHandler, Message
from .errors import ClientShutdown
from .log import logger

FLUSH = object()  # marker: send what you have now
STOP = object()  # marker: send what you have and end


class Consumer:
    def __init__(
        self,
        q: queue.Queue[Any],
        encoded: deque[bytes],
        delivery: Delivery,
        lost: LostHandler,
        batch_size: int,
        flush_interval: float,
        replay: Callable[[], bool | None] | None = None,
        replay_interval: float = 5.0,
    ) -> None:
        self.queue = q
        self.encoded = encoded
        self.delivery = delivery
        self.lost = lost
        self.batcher = Batcher(batch_size)
        self.messages: list[Message] = []  # the dicts of the batch being filled
        self.flush_interval = flush_interval
        self.closing = False
        # The spool: `replay()` sends one spooled batch: True if it went, False if it failed,
        # None if the spool had nothing free. `replay_pending` is False once it found none.
        self.replay = replay
        self.replay_interval = replay_interval
        self.replay_pending = replay is not None
        self._carry: tuple[Message, bytes] | None = None
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
        self._replay()
        while True:
            try:
                stop = self._fill()
                if self.messages:
                    messages, self.messages = self.messages, []
                    if self.delivery.deliver(self.batcher.take(), messages):
                        self._replay()  # the collector answers again: send what was spooled
                elif self.replay is not None and not stop:
                    self._replay()  # idle: the spool may hold what other processes left
                if self.delivery.abort.is_set():
                    self.drain_lost()
                    return
                if stop or (self.closing and self._carry is None and self.queue.empty()):
                    return
            except Exception:  # the consumer must outlive any bug or hook
                logger.exception("analytics consumer hit an error; it keeps running")

    def _replay(self) -> None:
        """Send spooled batches while they go through, giving way to live messages."""
        if self.replay is None:
            return
        try:
            while self.queue.empty() and not self.delivery.abort.is_set():
                result = self.replay()
                if result is None:
                    self.replay_pending = False
                if not result:
                    break
        except Exception:
            logger.exception("analytics: replaying the spool failed")

    def _fill(self) -> bool:
        """Fill the batch by the batching rule; True when told to stop."""
        batcher = self.batcher
        deadline = time.monotonic() + self.flush_interval
        while not batcher.full:
            if self._carry is not None:
                msg, data = self._carry
                self._carry = None
            else:
                if not self.messages:
                    try:  # idle: with a spool, wake now and then to replay it
                        item = self.queue.get(
                            timeout=self.replay_interval if self.replay is not None else None
                        )
                    except queue.Empty:
                        return False
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
                msg, data = item, self.encoded.popleft()
            if not batcher.add(data):
                self._carry = (msg, data)
                return False
            self.messages.append(msg)
        return False

    def drain_queue_lost(self) -> None:
        """From another thread, once `abort` is set: report what waits in the queue. The
        JSON deque is left alone; after abort this thread sends nothing more."""
        self._report_shutdown(self._take_queued())

    def drain_lost(self) -> None:
        """Report everything still waiting as lost to a shutdown (on this thread, or once
        this thread has ended)."""
        self.batcher.take()
        lost, self.messages = self.messages, []
        if self._carry is not None:
            lost.append(self._carry[0])
            self._carry = None
        lost += self._take_queued()
        self.encoded.clear()
        self._report_shutdown(lost)

    def _take_queued(self) -> list[Message]:
        """Every message waiting in the queue, markers left out."""
        taken: list[Message] = []
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return taken
            if isinstance(item, dict):
                taken.append(item)

    def _report_shutdown(self, lost: list[Message]) -> None:
        if lost:
            self.lost(ClientShutdown("client shut down before the message was sent"), lost, True)
