"""`Client`: the six calls of one source (write key). On the caller's thread it checks what
only the call can (size, shut down, stub, fork), then hands the message to this process's
`Pipeline`, which queues, sends and settles it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from . import encode as encoding
from . import lifecycle, log, messages, protocols
from .batch import MAX_MESSAGE_BYTES
from .encode import size_bound
from .errors import ValidationError
from .hooks import Shaper
from .options import BY_NAME, DEFAULTS, Settings, implied, resolve
from .pipeline import Pipeline, Plan
from .retry import Backoff
from .spooling import open_spool
from .stats import FlushReport
from .typing import BeforeSend, Fields, Id, Message, OnError, Result, Timestamp


class Client:
    """A client for one source (write key): its own queue, consumer thread and session."""

    log = log.logger  # Segment's and RudderStack's Client.log: the library's logger

    # The id of a call that gives none, nor does its scope: A-Track's client knows a user.
    _fallback_id: Callable[[], str | None] | None = None
    _successor: Client | None = None  # retired by the facade: calls go on to its new client

    def __new__(cls, *args: Any, protocol: str = DEFAULTS.protocol, **kwargs: Any) -> Client:
        # A protocol with helpers of its own (A-Track's identity) names its Client subclass.
        kind = protocols.client_class(protocols.load(protocol)) if cls is Client else None
        return super().__new__(kind if kind is not None else cls)

    # fmt: off
    def __init__(
        self, write_key: str | None = DEFAULTS.write_key,
        host: str | None = None,  # None: the protocol's default host
        debug: bool = DEFAULTS.debug, max_queue_size: int = DEFAULTS.max_queue_size,
        send: bool | None = None, on_error: OnError | None = DEFAULTS.on_error,
        gzip: bool = DEFAULTS.gzip, max_retries: int = DEFAULTS.max_retries,
        sync_mode: bool = DEFAULTS.sync_mode, timeout: float = DEFAULTS.timeout,
        proxies: dict[str, str] | None = DEFAULTS.proxies, thread: int = DEFAULTS.thread,
        upload_size: int | None = None, upload_interval: float | None = None,
        log_handler: logging.Handler | None = DEFAULTS.log_handler,
        *,  # above: Segment's positional order; below: this library's options
        # None: not given, so that an alias and its option can be told apart (see options)
        stub: bool | None = None, batch_size: int | None = None,
        flush_interval: float | None = None, shutdown_timeout: float = DEFAULTS.shutdown_timeout,
        protocol: str = DEFAULTS.protocol, spool_path: str | None = DEFAULTS.spool_path,
        durable: bool = DEFAULTS.durable, spool_max_bytes: int = DEFAULTS.spool_max_bytes,
        fsync: bool = DEFAULTS.fsync, backoff: Backoff = DEFAULTS.backoff,
        max_total_backoff_duration: float = DEFAULTS.max_total_backoff_duration,
        max_rate_limit_duration: float = DEFAULTS.max_rate_limit_duration,
        before_send: BeforeSend | Sequence[BeforeSend] | None = None,
        context: Mapping[str, Any] | None = None, properties: Mapping[str, Any] | None = None,
        dataPlaneUrl: str | None = None,  # noqa: N803  RudderStack's name for host
    ) -> None:
        # fmt: on
        # The first statement, so that locals() holds the parameters and nothing else.
        given = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        given = implied(given)  # dataPlaneUrl: RudderStack's protocol too
        self.protocol = protocols.load(given["protocol"])
        if host is None and dataPlaneUrl is None:  # the protocol's (A-Track's: by its geo)
            given["host"] = self._default_host()
        key_name = self.protocol.key_name  # what the protocol's docs call the write key
        s = resolve(given, lambda n: key_name if n == "write_key" else n)
        self.settings: Settings = s
        self._write_key = s.write_key or ""
        self.host, self.stub, self.sync_mode = s.host, s.stub, s.sync_mode
        self.debug, self.gzip, self.timeout, self.proxies = s.debug, s.gzip, s.timeout, s.proxies
        self.max_queue_size, self.max_retries = s.max_queue_size, s.max_retries
        self.flush_interval, self.shutdown_timeout = s.flush_interval, s.shutdown_timeout
        self.durable, limit = s.durable, self.protocol.batch_limit  # A-Track's: 1
        self.batch_size = s.batch_size if limit is None else min(s.batch_size, limit)
        self._plan = Plan.of(s, self.batch_size)
        # None unless a default or a hook is set: the call path then pays one `is None`.
        self._shape = Shaper.of(s.context, s.properties, s.before_send)
        log.configure(s.debug, s.log_handler)
        self._spool = open_spool(s) if s.spool_path and not self.stub else None
        self.sent: list[Message] = []  # stub mode: what would have been sent
        self._start_process_state(s.on_error)
        lifecycle.register(self)
        if self._spool is not None and not self.sync_mode:
            self._pipeline.start()  # replay what an earlier run left, without waiting for a call

    def _start_process_state(self, on_error: OnError | None, closed: bool = False) -> None:
        """Everything that belongs to one process: rebuilt in a forked child."""
        self._pid = os.getpid()
        make, key = self.protocol.make_sender, self._write_key
        self._transport = make(key, self.host, self.timeout, self.proxies, self.gzip)
        self._encode = self._transport.encode
        # The library's own JSON (Segment's): a size bound spares the call its encoding.
        self._bounded = self._encode is encoding.encode
        self._pipeline = Pipeline(self._plan, self._transport, on_error, self._spool, closed)

    def _default_host(self) -> str:  # when none is given; A-Track's depends on its geo
        return self.protocol.default_host

    def __repr__(self) -> str:
        mode = "stub" if self.stub else "sync" if self.sync_mode else "queue"
        return f"<analytics.Client host={self.host!r} mode={mode} closed={self._pipeline.closed}>"

    @property
    def write_key(self) -> str | None:
        """The write key as given (read-only; never in a repr, a log record or an error)."""
        return self.settings.write_key

    @property
    def url(self) -> str:
        """Where requests go: Segment's `{host}/v1/batch` (A-Track's: its base URL)."""
        return self._transport.url

    @property
    def on_error(self) -> OnError | None:
        """`on_error(error, batch)`: called once for every message that will not be sent."""
        return self._pipeline.settler.on_error

    @on_error.setter
    def on_error(self, value: OnError | None) -> None:
        self._pipeline.settler.on_error = BY_NAME["on_error"].check("on_error", value)

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
        return self._enqueue(*messages.track_sized(
            user_id, event, properties, context, timestamp, anonymous_id, integrations,
            message_id, self._fallback_id,
        ))

    def identify(
        self, user_id: Id | None = None, traits: Fields = None, context: Fields = None,
        timestamp: Timestamp | None = None, anonymous_id: Id | None = None,
        integrations: Fields = None, message_id: Id | None = None,
    ) -> Result:
        """Tie a user to their traits."""
        return self._enqueue(*messages.identify_sized(
            user_id, traits, context, timestamp, anonymous_id, integrations, message_id,
            self._fallback_id,
        ))

    def page(
        self, user_id: Id | None = None, category: str | None = None, name: str | None = None,
        properties: Fields = None, context: Fields = None, timestamp: Timestamp | None = None,
        anonymous_id: Id | None = None, integrations: Fields = None, message_id: Id | None = None,
    ) -> Result:
        """Record a page view."""
        return self._enqueue(*messages.page_sized(
            user_id, category, name, properties, context, timestamp, anonymous_id,
            integrations, message_id, self._fallback_id,
        ))

    def screen(
        self, user_id: Id | None = None, category: str | None = None, name: str | None = None,
        properties: Fields = None, context: Fields = None, timestamp: Timestamp | None = None,
        anonymous_id: Id | None = None, integrations: Fields = None, message_id: Id | None = None,
    ) -> Result:
        """Record a screen view in an app."""
        return self._enqueue(*messages.screen_sized(
            user_id, category, name, properties, context, timestamp, anonymous_id,
            integrations, message_id, self._fallback_id,
        ))

    def group(
        self, user_id: Id | None = None, group_id: Id | None = None, traits: Fields = None,
        context: Fields = None, timestamp: Timestamp | None = None,
        anonymous_id: Id | None = None, integrations: Fields = None, message_id: Id | None = None,
    ) -> Result:
        """Tie a user to a group (an account, a company)."""
        return self._enqueue(*messages.group_sized(
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
            raise ValidationError(f"the {self.protocol.name} protocol has no alias; nothing sent")
        return self._enqueue(
            *messages.alias_sized(
                previous_id, user_id, context, timestamp, integrations, message_id
            )
        )

    # fmt: on

    # -- the hot path ----------------------------------------------------------------------

    def _enqueue(self, msg: Message, bound: int = -1) -> Result:
        """Queue a built message; `bound`: its builder's bound of its JSON (-1: not known)."""
        if self._shape is not None:
            shaped = self._shape(msg)
            if shaped is None:  # a before_send hook dropped it: counted, not an error
                self._here().stats.add_filtered()
                return False, msg
            msg, bound = shaped, -1
        # The size check: the consumer encodes the message for the wire; the call encodes it
        # too only when the bound cannot tell (another protocol's encoding, odd values, big).
        # The builder's bound comes with the copy; a walk (`size_bound`) only if it had none:
        # a bound past the limit is what the walk would find too, so that one is encoded.
        data = None
        if (
            not (self._bounded and encoding.BOUND_PAYS)
            or bound > MAX_MESSAGE_BYTES
            or (bound < 0 and size_bound(msg, MAX_MESSAGE_BYTES) < 0)
        ):
            data = self._encode(msg)
            if len(data) > MAX_MESSAGE_BYTES:
                return self._refuse(msg, data)
        if self._pipeline.closed:
            return self._refuse(msg, data)
        if self.stub:
            self.sent.append(msg)
            if len(self.sent) > self.max_queue_size:
                del self.sent[0]
            return True, msg
        taken = self._here().put(msg, data)
        return (taken, msg) if taken is not None else self._refuse(msg, data)

    def _refuse(self, msg: Message, data: bytes | None) -> Result:
        """Too large or shut down: reported. A retired client passes the call on instead.
        (`data` None: the message is within the limit, by its bound.)"""
        size = 0 if data is None else len(data)
        if self._successor is not None and size <= MAX_MESSAGE_BYTES:
            return self._successor._enqueue(msg)
        self._pipeline.refuse(msg, size)
        return False, msg

    def _here(self) -> Pipeline:
        """This process's pipeline: a forked child builds its own first."""
        if self._pid != os.getpid():
            self.reset_after_fork()
        return self._pipeline

    def fork_lock(self) -> threading.Lock | None:
        """Held across a fork so that no thread is inside SQLite when it happens."""
        return self._spool.lock if self._spool is not None else None

    # -- flush, shutdown, stats ------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send what is queued; True once all is delivered or reported, False at `timeout`."""
        return self._here().flush(timeout)

    def flush_report(self, timeout: float | None = None) -> FlushReport:
        """flush(), then what became of the messages since the last report (truthy as flush)."""
        pipeline = self._here()
        return pipeline.stats.report(pipeline.flush(timeout))

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then stop; later calls return (False, message). As flush, True or False."""
        return self._here().shutdown(timeout)

    def retire(self, successor: Client | None = None) -> None:
        """Stop taking calls (passing them on to `successor`); deliver what is held, close."""
        self._successor = successor
        self._pipeline.retire()

    join = shutdown  # Segment's name for it

    async def aflush(self, timeout: float | None = None) -> bool:
        """As flush, awaited: the event loop keeps running while it waits."""
        from .aio import aflush

        return await aflush(self._here(), timeout)

    async def ashutdown(self, timeout: float | None = None) -> bool:
        """As shutdown, awaited: the event loop keeps running while it waits."""
        from .aio import ashutdown

        return await ashutdown(self._here(), timeout)

    def stats(self) -> dict[str, Any]:
        """Running totals: queued, delivered, dropped (by reason), filtered, retries, requests..."""
        return self._pipeline.stats.snapshot()

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh queue, lock, session and (lazily) thread of its own."""
        if self._pid == os.getpid():
            return
        old = self._pipeline
        if self._spool is not None and not old.closed:
            self._spool.reopen_after_fork()
        self._start_process_state(old.settler.on_error, old.closed)
