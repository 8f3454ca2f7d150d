"""One client's delivery machinery in one process: the queue, how callers wake the consumer,
the counters, the consumer thread, delivery, the loss rule and the spool keeper. A forked
child builds a new one; `flush` and `shutdown` are its methods.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from . import encode, lifecycle
from .batch import MAX_MESSAGE_BYTES
from .consumer import Consumer, Handoff, MessageQueue, replay
from .delivery import Delivery, Waits
from .errors import ClientShutdown, DeliveryError, MessageTooLarge, QueueFull
from .log import logger
from .options import DEFAULTS, Settings
from .outcome import Batch, Fate, Origin, Outcome
from .protocols import Sender
from .retry import backoff_waits
from .settle import Settler
from .spool import REPLAY_INTERVAL, Spool
from .spooling import SpoolKeeper
from .stats import Stats
from .typing import Message, OnError


@dataclass(frozen=True)
class Plan:
    """What a pipeline is built from: the client's resolved options that it uses."""

    max_queue_size: int
    batch_size: int
    flush_interval: float
    max_retries: int
    sync_mode: bool
    durable: bool
    shutdown_timeout: float
    waits: Waits = backoff_waits
    max_total_backoff_duration: float = DEFAULTS.max_total_backoff_duration
    max_rate_limit_duration: float = DEFAULTS.max_rate_limit_duration

    @classmethod
    def of(cls, settings: Settings, batch_size: int) -> Plan:
        """The plan of a client's settings (its batch size limited by its protocol)."""
        s = settings
        return cls(
            s.max_queue_size, batch_size, s.flush_interval, s.max_retries, s.sync_mode,
            s.durable, s.shutdown_timeout, s.backoff.waits,
            s.max_total_backoff_duration, s.max_rate_limit_duration,
        )  # fmt: skip


class Pipeline:
    def __init__(
        self,
        plan: Plan,
        sender: Sender,
        on_error: OnError | None,
        spool: Spool | None,
        closed: bool = False,
    ) -> None:
        self.plan = plan
        self.shutdown_timeout = plan.shutdown_timeout  # what the exit-time drain reads
        self.sender = sender
        self.closed = closed  # shut down: calls are refused
        # uWSGI forks its workers from C, without Python's fork protocol: a thread of ours
        # waiting for the GIL at that moment hangs the worker. Its master starts none.
        self._thread_free = lifecycle.in_uwsgi_master()
        self._lock = threading.Lock()
        self._sync_lock = threading.RLock()  # re-entered by a call from on_error (sync mode)
        self.queue = MessageQueue(plan.max_queue_size)
        self._put_lock = threading.Lock()
        self._handoff = Handoff()
        self._high_water = plan.max_queue_size // 2
        self.stats = Stats(spool=spool is not None)
        self.abort = threading.Event()
        self.spool = spool
        self.keeper = (
            SpoolKeeper(spool, sender.encode, plan.batch_size, plan.durable)
            if spool is not None
            else None
        )
        # Read once here, not on every call: the hot path checks two plain attributes.
        self._write_ahead = self.keeper if plan.durable else None
        self._sync = plan.sync_mode
        self.settler = Settler(self.stats, on_error, self.keeper, plan.max_queue_size)
        self.delivery = Delivery(
            sender, self.stats, plan.max_retries, self.abort, plan.waits,
            max_total_backoff=plan.max_total_backoff_duration,
            max_rate_limit=plan.max_rate_limit_duration,
        )  # fmt: skip
        self.consumer: Consumer | None = None
        self._retired = False  # closed by retire(): its consumer releases it as it ends
        self._ended = False  # its consumer thread has ended
        self._released = False  # its session, spool and place in the exit registry given up

    # -- the hot path ----------------------------------------------------------------------

    def put(self, msg: Message, data: bytes | None) -> bool | None:
        """Take an accepted message (and its JSON, if the call encoded it): queue it, or in
        sync mode send it now. False if it was dropped (reported and counted); None if the
        pipeline was closed meanwhile (nothing done: the caller refuses the call or passes
        it on). Only the queue takes the message without its JSON: the consumer encodes it."""
        if self._write_ahead is not None:
            if self.closed:
                return None
            if data is None:
                data = self.sender.encode(msg)
            self._write_ahead.write_ahead(msg, data)
        if self._sync or (self.consumer is None and not self.start()):
            return self._send_now(msg, self.sender.encode(msg) if data is None else data)
        with self._put_lock:  # so that `queued` counts every put, and nothing else
            # Read under the lock that closing takes: no message can land behind its STOP.
            full = closed = self.closed
            if not closed:
                if self.queue.offer(msg):
                    self.stats.queued += 1
                else:
                    full = True
        if closed:
            return self._closed_meanwhile(msg, data)
        if full:  # with a spool, the message waits there: accepted all the same
            error = QueueFull("queue is full; message dropped")
            fate = self.settler.lose(error, [msg], False, None if data is None else [data])
            return fate is Fate.KEPT
        handoff = self._handoff
        waiting = self.stats.queued - handoff.taken  # may count one taken a moment ago
        if waiting >= handoff.want:
            handoff.ring()
        if waiting > self._high_water:
            # Backed up: give the consumer the GIL for a moment, so that a burst of calls
            # does not starve it and overflow the queue. Costs callers only under overload.
            # (os.sched_yield is not enough: this thread takes the GIL back before the
            # consumer has woken up to take it.)
            time.sleep(0)
        return True

    def refuse(self, msg: Message, size: int) -> None:
        """A call refused at once: its JSON is over the limit, or the client is shut down."""
        if size > MAX_MESSAGE_BYTES:
            error: DeliveryError = MessageTooLarge(size, MAX_MESSAGE_BYTES)
        else:
            error = ClientShutdown("client is shut down; message not sent")
        self.settler.report(error, [msg], False)

    def _closed_meanwhile(self, msg: Message, data: bytes | None) -> bool | None:
        """A put that found the pipeline closed. Written ahead (durable), the message is in
        the journal already: it is kept in the spool as if the queue had been full."""
        if self._write_ahead is None:
            return None
        error = ClientShutdown("client shut down during the call; message not queued")
        return self.settler.lose(error, [msg], False, None if data is None else [data]) is Fate.KEPT

    def _send_now(self, msg: Message, data: bytes) -> bool | None:
        """Sync mode: the caller's thread sends the message, with the same policy."""
        with self._sync_lock:
            if self.closed:  # shut down or retired since the call checked
                fate = None
            else:
                batch = Batch([data], [msg], Origin.CALL)
                fate = self.settler.settle(batch, self.delivery.deliver(batch))
                if fate is Fate.DELIVERED and self.keeper is not None:  # it answers: catch up
                    replay(self.keeper, self.delivery, self.settler, batches=1)
        if self.closed:  # closed while this send held the lock: release what it used
            self._release()
        if fate is None:
            return self._closed_meanwhile(msg, data)
        return fate is not Fate.DROPPED  # kept in the spool: not sent, but not lost

    def start(self, now: bool = False) -> bool:
        """Start the thread on first use, so a pre-fork master stays thread-free.
        In a uWSGI master, only when `now` (a flush): until then messages wait in the queue.
        False if no thread can be started."""
        if self._thread_free and not now:
            return True
        with self._lock:
            if self.consumer is None:
                if self.closed and not now:
                    return True  # closed: a thread only to drain what a flush asks for
                consumer = Consumer(
                    self.queue,
                    encode.many(self.sender.encode),
                    self._handoff,
                    self.delivery,
                    self.settler,
                    self.plan.batch_size,
                    self.plan.flush_interval,
                    self.keeper,
                    REPLAY_INTERVAL,
                    self._consumer_ended,
                )
                try:
                    consumer.start()
                except RuntimeError:  # interpreter shutting down: send in the caller instead
                    logger.debug("cannot start the consumer thread; sending synchronously")
                    return False
                self.consumer = consumer
                lifecycle.started(self)
                if self.closed:
                    consumer.stop()  # it ends once what the flush wanted is sent
        return True

    # -- flush and shutdown ----------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is settled; False if `timeout` ran out."""
        target = self.stats.queued
        if self.stats.settled >= target:
            return True
        if self.consumer is None and not self.start(now=True):
            return False  # no thread can be started (interpreter shutting down)
        consumer = self.consumer
        assert consumer is not None
        if consumer.is_current():  # from on_error: waiting here would wait on ourselves
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        consumer.nudge(timeout)
        remaining = None if deadline is None else deadline - time.monotonic()
        return self.stats.wait_settled(target, remaining)

    def flush_soon(self) -> None:
        """Ask the consumer to send its partial batch now, without waiting."""
        consumer = self.consumer
        if consumer is not None:
            consumer.nudge(0)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, stop the consumer, and close what this process holds open. What is
        still undelivered when the time runs out is settled as lost to the shutdown."""
        with self._put_lock:
            self.closed = True
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = self.flush(timeout)
        consumer = self.consumer
        if consumer is None:
            self._release()
            return ok
        if consumer.is_current():
            lifecycle.stopped(self)
            return ok
        if not ok:
            self.abort.set()  # cut retry waits short; what is left is reported as lost
        consumer.stop()
        # Past the deadline, only a moment for the thread to see the stop marker.
        remaining = 10.0 if deadline is None else max(deadline - time.monotonic(), 0.05)
        consumer.thread.join(remaining)
        if not consumer.alive():
            self._release()
        else:  # stuck in a request: settle what waits, and the batch in flight, from here
            self.abort.set()
            consumer.drain_queue_lost()
            inflight = self.delivery.abandon()
            if inflight is not None:
                error = ClientShutdown("client shut down while sending the batch")
                self.settler.settle(inflight, Outcome(error))
        lifecycle.stopped(self)
        return ok

    def retire(self) -> None:
        """Refuse calls; the consumer delivers what it holds, then ends and releases what
        the pipeline holds (its session, spool, place in the exit registry). Does not wait."""
        with self._put_lock:  # every put before this is queued ahead of the STOP marker
            self.closed = True
        with self._lock:  # a thread starting now sees `closed` or is seen here
            self._retired = True
            consumer, ended = self.consumer, self._ended
        if consumer is None:
            if self.queue.empty():  # never started (a uWSGI master's waits for a flush)
                self._release()
        elif ended:  # started and stopped by a call racing this (see start)
            self._release()
        else:
            consumer.stop()

    def done(self) -> bool:
        """Closed, its thread (if any) ended and what it held released."""
        consumer = self.consumer
        return self._released and (consumer is None or not consumer.alive())

    def _consumer_ended(self) -> None:
        with self._lock:  # either this sees `_retired`, or retire() sees `_ended`
            self._ended = True
            retired = self._retired
        if retired:  # (a shutdown releases from its own thread, once it has joined)
            self._release()

    def _release(self) -> None:
        """Once closed and drained: report what is left, close the session and the spool,
        leave the exit registry. Once. A sync send under way releases when it ends."""
        if not self._sync_lock.acquire(blocking=False):
            return
        try:
            with self._lock:
                if self._released:
                    return
                self._released = True
            try:
                if self.consumer is not None:
                    self.consumer.drain_lost()
                self.sender.close()
                if self.keeper is not None:
                    self.keeper.close()
                if self.spool is not None:
                    self.spool.close()
            except Exception:  # closing must never fail a call, a flush or the thread
                logger.exception("analytics: closing a client's session or spool failed")
        finally:
            self._sync_lock.release()
        lifecycle.stopped(self)
