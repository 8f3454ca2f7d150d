"""`Client`: the six calls of one source (write key). It checks what only the call can
(size, shut down, stub, fork) on the caller's thread and hands the message to its
process's `Pipeline`, which queues, sends and settles it.

The hot path (`track` and friends) is: build the message (a copy of what it was given),
encode it to check its size, queue it; the consumer encodes it again for the batch.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Mapping
from typing import Any, Callable, Optional

from . import lifecycle, messages, protocols
from .batch import MAX_MESSAGE_BYTES
from .errors import ClientShutdown, DeliveryError, MessageTooLarge, ValidationError
from .ids import Id
from .log import logger
from .messages import Timestamp
from .options import DEFAULTS, OnError, Settings, resolve
from .pipeline import Pipeline, Plan
from .retry import Backoff
from .spool import Spool
from .spooling import open_spool

Message = dict[str, Any]
Result = tuple[bool, Message]
Fields = Optional[Mapping[str, Any]]  # properties, traits, context, integrations


class Client:
    """A client for one source (write key): its own queue, consumer thread and session."""

    # The id of a call that gives none (nor does its scope): a protocol's client may know
    # the current user (A-Track's does).
    _fallback_id: Callable[[], str | None] | None = None

    def __new__(cls, *args: Any, protocol: str = DEFAULTS.protocol, **kwargs: Any) -> Client:
        # A protocol with helpers of its own (A-Track's identity) names its Client subclass.
        kind = protocols.client_class(protocols.load(protocol)) if cls is Client else None
        return super().__new__(kind if kind is not None else cls)

    def __init__(
        self,
        write_key: str | None = DEFAULTS.write_key,
        host: str | None = None,  # None: the protocol's default host
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
        backoff: Backoff = DEFAULTS.backoff,
    ) -> None:
        # The first statement, so that locals() holds the parameters and nothing else.
        given = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.protocol = protocols.load(protocol)
        if host is None:  # the protocol's (A-Track's depends on its geo)
            given["host"] = self._default_host()
        key_name = self.protocol.key_name  # what the protocol's docs call the write key
        s = resolve(given, lambda n: key_name if n == "write_key" else n)
        self.settings: Settings = s
        self._write_key = s.write_key or ""
        self.host, self.stub, self.sync_mode = s.host, s.stub, s.sync_mode
        self._on_error, self.debug, self.gzip = s.on_error, s.debug, s.gzip
        self.timeout, self.proxies, self.max_retries = s.timeout, s.proxies, s.max_retries
        self.max_queue_size, self.batch_size = s.max_queue_size, s.batch_size
        self.flush_interval, self.shutdown_timeout = s.flush_interval, s.shutdown_timeout
        self.durable = s.durable
        if s.debug:
            logger.setLevel(logging.DEBUG)
        if s.log_handler is not None:
            logger.addHandler(s.log_handler)
        self._spool: Spool | None = None
        if s.spool_path and not self.stub:
            self._spool = open_spool(s.spool_path, s.spool_max_bytes, s.fsync)
        self.sent: list[Message] = []  # stub mode: what would have been sent
        self._start_process_state()
        lifecycle.register(self)
        if self._spool is not None and not self.sync_mode:
            self._pipeline.start()  # replay what an earlier run left, without waiting for a call

    def _start_process_state(self, closed: bool = False) -> None:
        """Everything that belongs to one process: rebuilt in a forked child."""
        self._pid = os.getpid()
        self._transport = self.protocol.make_sender(
            self._write_key, self.host, self.timeout, self.proxies, self.gzip
        )
        self._encode = self._transport.encode
        plan = Plan.of(self.settings, self.batch_size)
        self._pipeline = Pipeline(plan, self._transport, self.on_error, self._spool)
        self._pipeline.closed = closed

    def _default_host(self) -> str:
        """The host when none is given: the protocol's (A-Track's depends on its geo)."""
        return self.protocol.default_host

    @property
    def batch_size(self) -> int:
        """Messages per request at most (never above the protocol's limit)."""
        limit = self.protocol.batch_limit
        return self._batch_size if limit is None else min(self._batch_size, limit)

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self._batch_size = value

    def __repr__(self) -> str:
        mode = "stub" if self.stub else "sync" if self.sync_mode else "queue"
        return f"<analytics.Client host={self.host!r} mode={mode} closed={self._pipeline.closed}>"

    @property
    def on_error(self) -> OnError | None:
        """`on_error(error, batch)`, called once for every message that will not be sent."""
        return self._on_error

    @on_error.setter
    def on_error(self, value: OnError | None) -> None:
        self._on_error = value
        pipeline = getattr(self, "_pipeline", None)
        if pipeline is not None:
            pipeline.settler.on_error = value

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(timeout=self.shutdown_timeout)

    @property
    def queue(self) -> queue.Queue[Any]:
        """The bounded queue of message dicts waiting for the consumer."""
        return self._pipeline.queue

    # -- the six calls, in Segment's positional order -----------------------------------------
    # fmt: off

    def track(
        self, user_id: Id | None = None, event: str | None = None, properties: Fields = None,
        context: Fields = None, timestamp: Timestamp | None = None,
        anonymous_id: Id | None = None, integrations: Fields = None, message_id: Id | None = None,
    ) -> Result:
        """Record an action the user did."""
        return self._enqueue(messages.track(
            user_id, event, properties, context, timestamp, anonymous_id, integrations,
            message_id, self._fallback_id,
        ))

    def identify(
        self, user_id: Id | None = None, traits: Fields = None, context: Fields = None,
        timestamp: Timestamp | None = None, anonymous_id: Id | None = None,
        integrations: Fields = None, message_id: Id | None = None,
    ) -> Result:
        """Tie a user to their traits."""
        return self._enqueue(messages.identify(
            user_id, traits, context, timestamp, anonymous_id, integrations, message_id,
            self._fallback_id,
        ))

    def page(
        self, user_id: Id | None = None, category: str | None = None, name: str | None = None,
        properties: Fields = None, context: Fields = None, timestamp: Timestamp | None = None,
        anonymous_id: Id | None = None, integrations: Fields = None, message_id: Id | None = None,
    ) -> Result:
        """Record a page view."""
        return self._enqueue(messages.page(
            user_id, category, name, properties, context, timestamp, anonymous_id,
            integrations, message_id, self._fallback_id,
        ))

    def screen(
        self, user_id: Id | None = None, category: str | None = None, name: str | None = None,
        properties: Fields = None, context: Fields = None, timestamp: Timestamp | None = None,
        anonymous_id: Id | None = None, integrations: Fields = None, message_id: Id | None = None,
    ) -> Result:
        """Record a screen view in an app."""
        return self._enqueue(messages.screen(
            user_id, category, name, properties, context, timestamp, anonymous_id,
            integrations, message_id, self._fallback_id,
        ))

    def group(
        self, user_id: Id | None = None, group_id: Id | None = None, traits: Fields = None,
        context: Fields = None, timestamp: Timestamp | None = None,
        anonymous_id: Id | None = None, integrations: Fields = None, message_id: Id | None = None,
    ) -> Result:
        """Tie a user to a group (an account, a company)."""
        return self._enqueue(messages.group(
            user_id, group_id, traits, context, timestamp, anonymous_id, integrations,
            message_id, self._fallback_id,
        ))

    def alias(
        self, previous_id: Id | None = None, user_id: Id | None = None, context: Fields = None,
        timestamp: Timestamp | None = None, integrations: Fields = None,
        message_id: Id | None = None,
    ) -> Result:
        """Merge one identity into another."""
        if "alias" in self.protocol.refuses:
            name = self.protocol.name
            raise ValidationError(f"the {name} protocol has no alias; nothing was sent")
        return self._enqueue(
            messages.alias(previous_id, user_id, context, timestamp, integrations, message_id)
        )

    # fmt: on

    # -- the hot path ----------------------------------------------------------------------

    def _enqueue(self, msg: Message) -> Result:
        data = self._encode(msg)
        pipeline = self._pipeline
        if len(data) > MAX_MESSAGE_BYTES:
            error: DeliveryError = MessageTooLarge(len(data), MAX_MESSAGE_BYTES)
            pipeline.settler.report(error, [msg], False)
            return False, msg
        if pipeline.closed:
            error = ClientShutdown("client is shut down; message not sent")
            pipeline.settler.report(error, [msg], False)
            return False, msg
        if self.stub:
            self._keep(msg)
            return True, msg
        if self._pid != os.getpid():
            self.reset_after_fork()
            pipeline = self._pipeline
        return pipeline.put(msg, data), msg

    def _keep(self, msg: Message) -> None:
        self.sent.append(msg)
        if len(self.sent) > self.max_queue_size:
            del self.sent[0]

    def fork_lock(self) -> threading.Lock | None:
        """Held across a fork so that no thread is inside SQLite when it happens."""
        return self._spool.lock if self._spool is not None else None

    # -- flush, shutdown, stats ------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far. True once all of it is delivered or reported to
        on_error; False if `timeout` seconds ran out first."""
        if self._pid != os.getpid():
            self.reset_after_fork()
        return self._pipeline.flush(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then stop the consumer. Later calls return (False, message).
        True if everything queued was delivered or reported within `timeout`."""
        if self._pid != os.getpid():
            self.reset_after_fork()
        return self._pipeline.shutdown(timeout)

    def retire(self) -> None:
        """Stop taking calls; the consumer delivers what it holds, then ends. Does not wait."""
        self._pipeline.retire()

    def join(self) -> None:
        """Segment's name for shutdown()."""
        self.shutdown()

    def stats(self) -> dict[str, Any]:
        """Running totals: queued, delivered, dropped, dropped_by_reason, retries, requests,
        pending."""
        return self._pipeline.stats.snapshot()

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh queue, lock, session and (lazily) thread of its own."""
        if self._pid == os.getpid():
            return
        closed = self._pipeline.closed
        if self._spool is not None and not closed:
            self._spool.reopen_after_fork()
        self._start_process_state(closed)
