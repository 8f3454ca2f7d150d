"""`Client`: validates and encodes on the caller's thread, queues, and owns its consumer.

The hot path (`track` and friends) is: build the message (a copy of what it was given),
encode it to check its size, `put_nowait`; the consumer encodes it again for the batch.
Thread start, fork recovery and error reporting live off that path.
"""

from __future__ import annotations

import importlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from . import lifecycle, messages
from . import spool as spool_lib
from .batch import MAX_MESSAGE_BYTES
from .consumer import Consumer, Handoff
from .delivery import Delivery
from .errors import (
    ClientShutdown,
    DeliveryError,
    MessageTooLarge,
    QueueFull,
    ValidationError,
)
from .ids import Id
from .keeper import Keeper
from .log import Throttle, logger
from .options import DEFAULTS, OnError, Settings, resolve
from .stats import Stats
from .transport import Sender, Transport

Message = dict[str, Any]
# Reasons that pass (an outage, a full queue, a shutdown): with a spool they wait there.
_SPILLED = frozenset({"gave_up", "queue_full", "shutdown"})
Result = tuple[bool, Message]


class Client:
    """A client for one source (write key): its own queue, consumer thread and session."""

    # The six message builders (the `messages` module); a protocol may wrap them.
    _build: Any = messages

    def __new__(cls, *args: Any, protocol: str = DEFAULTS.protocol, **kwargs: Any) -> Client:
        if cls is Client and protocol != "segment":
            if protocol == "atrack":
                # Imported here: only users of A-Track pay for it.
                atrack = importlib.import_module(".atrack", __package__)
                subclass: type[Client] = atrack.ATrackClient
                return super().__new__(subclass)
            raise ValidationError(f"unknown protocol {protocol!r}: 'segment' or 'atrack'")
        return super().__new__(cls)

    def __init__(
        self,
        write_key: str | None = DEFAULTS.write_key,
        host: str | None = DEFAULTS.host,
        debug: bool = DEFAULTS.debug,
        max_queue_size: int = DEFAULTS.max_queue_size,
        send: bool | None = None,
        on_error: OnError | None = DEFAULTS.on_error,
        gzip: bool = DEFAULTS.gzip,
        max_retries: int = DEFAULTS.max_retries,
        sync_mode: bool = DEFAULTS.sync_mode,
        timeout: float = DEFAULTS.timeout,
        proxies: dict[str, str] | None = DEFAULTS.proxies,
        thread: int = DEFAULTS.thread,
        upload_size: int | None = None,
        upload_interval: float | None = None,
        log_handler: logging.Handler | None = DEFAULTS.log_handler,
        *,
        # None: not given, so that an alias and its option can be told apart (see options)
        stub: bool | None = None,
        batch_size: int | None = None,
        flush_interval: float | None = None,
        shutdown_timeout: float = DEFAULTS.shutdown_timeout,
        protocol: str = DEFAULTS.protocol,
        spool_path: str | None = DEFAULTS.spool_path,
        durable: bool = DEFAULTS.durable,
        spool_max_bytes: int = DEFAULTS.spool_max_bytes,
        fsync: bool = DEFAULTS.fsync,
    ) -> None:
        # The first statement, so that locals() holds the parameters and nothing else.
        given = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.settings: Settings = resolve(given)
        settings = self.settings
        self.stub: bool = settings.stub
        self.host = settings.host
        self.on_error = settings.on_error
        self.debug = settings.debug
        self.gzip = settings.gzip
        self.sync_mode = settings.sync_mode
        self.proxies = settings.proxies
        self.max_queue_size = settings.max_queue_size
        self.max_retries = settings.max_retries
        self.timeout = settings.timeout
        self.shutdown_timeout = settings.shutdown_timeout
        self.batch_size = settings.batch_size
        self.flush_interval = settings.flush_interval
        self._write_key = settings.write_key or ""
        if settings.debug:
            logger.setLevel(logging.DEBUG)
        if settings.log_handler is not None:
            logger.addHandler(settings.log_handler)
        self.durable = settings.durable
        self._spool: spool_lib.Spool | None = None
        spool_path = settings.spool_path
        if spool_path and not self.stub:
            try:
                self._spool = spool_lib.Spool(spool_path, settings.spool_max_bytes, settings.fsync)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise ValidationError(f"cannot use spool_path {spool_path!r}: {exc}") from None
                # Held by another process for longer than the busy timeout: run without it.
                logger.error("analytics: spool %r unusable (%s); memory only", spool_path, exc)
            except (OSError, sqlite3.Error) as exc:
                raise ValidationError(f"cannot use spool_path {spool_path!r}: {exc}") from None
        self._high_water = self.max_queue_size // 2
        self.sent: list[Message] = []  # stub mode: what would have been sent
        self._closed = False
        self._start_process_state()
        lifecycle.register(self)
        if self._spool is not None and not self.sync_mode:
            self._start_consumer()  # replay what an earlier run left, without waiting for a call

    def _start_process_state(self) -> None:
        """Everything that belongs to one process: rebuilt in a forked child."""
        self._pid = os.getpid()
        # uWSGI forks its workers from C, without Python's fork protocol: a thread of ours
        # waiting for the GIL at that moment hangs the worker. Its master starts none.
        self._thread_free = lifecycle.in_uwsgi_master()
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._full_warning = Throttle()
        self._queue: queue.Queue[Any] = queue.Queue(self.max_queue_size)
        self._put_lock = threading.Lock()
        self._handoff = Handoff()
        self._stats = Stats(spool=self._spool is not None)
        self._abort = threading.Event()
        self._transport = self._make_sender()
        self._encode = self._transport.encode
        self._keeper: Keeper | None = None
        if self._spool is not None:
            self._keeper = Keeper(
                self._spool, self._stats, self._transport, self._report, self.batch_size,
                self.durable,
            )  # fmt: skip
        self._delivery = Delivery(
            self._transport,
            self._stats,
            self._lost,
            self.max_retries,
            self._abort,
            self._keeper.delivered if self._keeper is not None and self.durable else None,
        )
        self._consumer: Consumer | None = None

    def _make_sender(self) -> Sender:
        """The wire protocol: Segment's batch API here; other protocols override this."""
        return Transport(self._write_key, self.host, self.timeout, self.proxies, self.gzip)

    def __repr__(self) -> str:
        mode = "stub" if self.stub else "sync" if self.sync_mode else "queue"
        return f"<analytics.Client host={self.host!r} mode={mode} closed={self._closed}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(timeout=self.shutdown_timeout)

    @property
    def queue(self) -> queue.Queue[Any]:
        """The bounded queue of message dicts waiting for the consumer."""
        return self._queue

    # -- the six calls ---------------------------------------------------------------------

    def track(
        self,
        user_id: Id | None = None,
        event: str | None = None,
        properties: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: messages.Timestamp | None = None,
        anonymous_id: Id | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: Id | None = None,
    ) -> Result:
        """Record an action the user did."""
        return self._enqueue(
            self._build.track(
                user_id, event, properties, context, timestamp, anonymous_id, integrations,
                message_id,
            )
        )  # fmt: skip

    def identify(
        self,
        user_id: Id | None = None,
        traits: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: messages.Timestamp | None = None,
        anonymous_id: Id | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: Id | None = None,
    ) -> Result:
        """Tie a user to their traits."""
        return self._enqueue(
            self._build.identify(
                user_id, traits, context, timestamp, anonymous_id, integrations, message_id
            )
        )

    def page(
        self,
        user_id: Id | None = None,
        category: str | None = None,
        name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: messages.Timestamp | None = None,
        anonymous_id: Id | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: Id | None = None,
    ) -> Result:
        """Record a page view."""
        return self._enqueue(
            self._build.page(
                user_id, category, name, properties, context, timestamp, anonymous_id,
                integrations, message_id,
            )
        )  # fmt: skip

    def screen(
        self,
        user_id: Id | None = None,
        category: str | None = None,
        name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: messages.Timestamp | None = None,
        anonymous_id: Id | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: Id | None = None,
    ) -> Result:
        """Record a screen view in an app."""
        return self._enqueue(
            self._build.screen(
                user_id, category, name, properties, context, timestamp, anonymous_id,
                integrations, message_id,
            )
        )  # fmt: skip

    def group(
        self,
        user_id: Id | None = None,
        group_id: Id | None = None,
        traits: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: messages.Timestamp | None = None,
        anonymous_id: Id | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: Id | None = None,
    ) -> Result:
        """Tie a user to a group (an account, a company)."""
        return self._enqueue(
            self._build.group(
                user_id, group_id, traits, context, timestamp, anonymous_id, integrations,
                message_id,
            )
        )  # fmt: skip

    def alias(
        self,
        previous_id: Id | None = None,
        user_id: Id | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: messages.Timestamp | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: Id | None = None,
    ) -> Result:
        """Merge one identity into another."""
        return self._enqueue(
            self._build.alias(previous_id, user_id, context, timestamp, integrations, message_id)
        )

    # -- the hot path ----------------------------------------------------------------------

    def _enqueue(self, msg: Message) -> Result:
        data = self._encode(msg)
        if len(data) > MAX_MESSAGE_BYTES:
            self._report(MessageTooLarge(len(data), MAX_MESSAGE_BYTES), [msg], False)
            return False, msg
        if self._closed:
            self._report(ClientShutdown("client is shut down; message not sent"), [msg], False)
            return False, msg
        if self.stub:
            self._keep(msg)
            return True, msg
        if self._pid != os.getpid():
            self.reset_after_fork()
        if self.durable and self._keeper is not None:
            self._keeper.write_ahead(msg, data)
        if self.sync_mode or (self._consumer is None and not self._start_consumer()):
            with self._sync_lock:
                result = self._delivery.deliver([data], [msg], from_queue=False)
                if result and self._keeper is not None:  # the collector answers: catch up
                    self._keeper.replay_guarded()
            return result is not False, msg  # None: not sent, but kept in the spool
        with self._put_lock:  # so that `queued` counts every put, and nothing else
            try:
                self._queue.put(msg, False)
            except queue.Full:
                full = True
            else:
                full = False
                self._stats.queued += 1
        if full:  # with a spool, the message waits there: accepted all the same
            return self._lost(QueueFull("queue is full; message dropped"), [msg], False), msg
        handoff = self._handoff
        waiting = self._stats.queued - handoff.taken  # may count one taken a moment ago
        if waiting >= handoff.want:
            handoff.ring()
        if waiting > self._high_water:
            # Backed up: give the consumer the GIL for a moment, so that a burst of calls
            # does not starve it and overflow the queue. Costs callers only under overload.
            # (os.sched_yield is not enough: this thread takes the GIL back before the
            # consumer has woken up to take it.)
            time.sleep(0)
        return True, msg

    def _keep(self, msg: Message) -> None:
        self.sent.append(msg)
        if len(self.sent) > self.max_queue_size:
            del self.sent[0]

    def _start_consumer(self, now: bool = False) -> bool:
        """Start the thread on first use, so a pre-fork master stays thread-free.
        In a uWSGI master, only when `now` (a flush): until then messages wait in the queue.
        False if no thread can be started."""
        if self._thread_free and not now:
            return True
        with self._lock:
            if self._consumer is None:
                consumer = Consumer(
                    self._queue,
                    self._encode,
                    self._handoff,
                    self._delivery,
                    self._lost,
                    self.batch_size,
                    self.flush_interval,
                    self._keeper.replay_once if self._keeper is not None else None,
                    spool_lib.REPLAY_INTERVAL,
                )
                try:
                    consumer.start()
                except RuntimeError:  # interpreter shutting down: send in the caller instead
                    logger.debug("cannot start the consumer thread; sending synchronously")
                    return False
                self._consumer = consumer
                lifecycle.started(self)
        return True

    def _lost(self, error: DeliveryError, batch: Sequence[Message], from_queue: bool) -> bool:
        """Messages that will not be delivered now. With a spool, what failed for a passing
        reason waits there instead (True); the rest is reported (False)."""
        keeper = self._keeper
        if keeper is not None:
            if error.reason in _SPILLED and keeper.keep(batch, from_queue):
                consumer = self._consumer
                if consumer is not None:
                    consumer.replay_pending = True
                return True
            keeper.refused(batch)
        self._report(error, batch, from_queue)
        return False

    def _report(self, error: DeliveryError, batch: Sequence[Message], from_queue: bool) -> None:
        """Log, report and count messages that will not be delivered: once each.
        Counted last, so that a flush waiting on the count returns after on_error ran."""
        if isinstance(error, QueueFull):
            self._full_warning.warn(
                "analytics queue is full (max_queue_size=%d); dropping", self.max_queue_size
            )
        else:
            logger.warning("dropped %d message(s): %s", len(batch), error)
        if self.on_error is not None:
            try:
                self.on_error(error, list(batch))
            except Exception:
                logger.exception("on_error raised; ignored")
        self._stats.add_dropped(error.reason, len(batch), from_queue)

    def fork_lock(self) -> threading.Lock | None:
        """Held across a fork so that no thread is inside SQLite when it happens."""
        return self._spool.lock if self._spool is not None else None

    # -- flush, shutdown, stats ------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far. True once all of it is delivered or reported to
        on_error; False if `timeout` seconds ran out first."""
        if self._pid != os.getpid():
            self.reset_after_fork()
        target = self._stats.queued
        if self._stats.settled >= target:
            return True
        if self._consumer is None and not self._start_consumer(now=True):
            return False  # no thread can be started (interpreter shutting down)
        consumer = self._consumer
        assert consumer is not None
        if consumer.is_current():  # from on_error: waiting here would wait on ourselves
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        consumer.nudge(timeout)
        remaining = None if deadline is None else deadline - time.monotonic()
        return self._stats.wait_settled(target, remaining)

    def flush_soon(self) -> None:
        """Ask the consumer to send its partial batch now, without waiting."""
        consumer = self._consumer
        if consumer is not None:
            consumer.nudge(0)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then stop the consumer. Later calls return (False, message).
        True if everything queued was delivered or reported within `timeout`."""
        if self._pid != os.getpid():
            self.reset_after_fork()
        self._closed = True
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = self.flush(timeout)
        consumer = self._consumer
        if consumer is not None and not consumer.is_current():
            if not ok:
                self._abort.set()  # cut retry waits short; what is left is reported as lost
            consumer.stop()
            # Past the deadline, only a moment for the thread to see the stop marker.
            remaining = 10.0 if deadline is None else max(deadline - time.monotonic(), 0.05)
            consumer.thread.join(remaining)
            if not consumer.alive():
                consumer.drain_lost()
                self._transport.close()
                if self._keeper is not None:
                    self._keeper.close()
                if self._spool is not None:
                    self._spool.close()
            else:  # stuck in a request: settle what waits, and the batch in flight, from here
                self._abort.set()
                consumer.drain_queue_lost()
                inflight = self._delivery.abandon()
                if inflight is not None:
                    self._lost(
                        ClientShutdown("client shut down while sending the batch"), *inflight
                    )
        lifecycle.stopped(self)
        return ok

    def retire(self) -> None:
        """Stop taking calls; the consumer delivers what it holds, then ends. Does not wait."""
        self._closed = True
        consumer = self._consumer
        if consumer is not None:
            consumer.stop()

    def join(self) -> None:
        """Segment's name for shutdown()."""
        self.shutdown()

    def stats(self) -> dict[str, Any]:
        """Running totals: queued, delivered, dropped, dropped_by_reason, retries, requests,
        pending."""
        return self._stats.snapshot()

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh queue, lock, session and (lazily) thread of its own."""
        if self._pid == os.getpid():
            return
        if self._spool is not None and not self._closed:
            self._spool.reopen_after_fork()
        self._start_process_state()
