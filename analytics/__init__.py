"""Server-side analytics for Segment, RudderStack and any Segment-compatible collector.

Configure the module once (`analytics.write_key = ...`) and call `analytics.track(...)`, or
build `analytics.Client` objects, one per source. Drop-in for Segment's Python library.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import sys
import threading
import time
import types
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from .batch import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES, Batcher, Fit
from .client import Client
from .context import context_from_request, current_scope, scope
from .errors import (
    AnalyticsError,
    APIError,
    ClientShutdown,
    DeliveryError,
    MessageTooLarge,
    QueueFull,
    RetriesExhausted,
    ValidationError,
)
from .options import ALIASES, DEFAULTS, FACADE_OPTIONS, Option
from .retry import Backoff
from .serverless import flush_after
from .stats import FlushReport
from .typing import BeforeSend, OnError
from .version import LIBRARY_NAME, VERSION

__version__ = VERSION

__all__ = [
    "APIError",
    "AnalyticsError",
    "Backoff",
    "Batcher",
    "Client",
    "ClientShutdown",
    "DeliveryError",
    "Fit",
    "FlushReport",
    "LIBRARY_NAME",
    "MAX_BATCH_BYTES",
    "MAX_MESSAGE_BYTES",
    "MessageTooLarge",
    "QueueFull",
    "RetriesExhausted",
    "VERSION",
    "ValidationError",
    "aflush",
    "alias",
    "ashutdown",
    "context_from_request",
    "current_scope",
    "flush",
    "flush_after",
    "flush_report",
    "group",
    "identify",
    "join",
    "page",
    "scope",
    "screen",
    "shutdown",
    "track",
]

# -- settings of the default client: their defaults are the table's (analytics.options) --------
write_key: str | None = DEFAULTS.write_key
host: str = DEFAULTS.host
dataPlaneUrl: str = DEFAULTS.value("dataPlaneUrl")  # noqa: N816  RudderStack's: host + protocol
on_error: OnError | None = DEFAULTS.on_error
debug: bool = DEFAULTS.debug
stub: bool = DEFAULTS.stub
send: bool = DEFAULTS.value("send")  # Segment's name: send = not stub
max_queue_size: int = DEFAULTS.max_queue_size
batch_size: int = DEFAULTS.batch_size
upload_size: int = DEFAULTS.value("upload_size")  # Segment's name for batch_size
flush_interval: float = DEFAULTS.flush_interval
upload_interval: float = DEFAULTS.value("upload_interval")  # Segment's name for flush_interval
gzip: bool = DEFAULTS.gzip
timeout: float = DEFAULTS.timeout
max_retries: int = DEFAULTS.max_retries
sync_mode: bool = DEFAULTS.sync_mode
shutdown_timeout: float = DEFAULTS.shutdown_timeout
proxies: dict[str, str] | None = DEFAULTS.proxies
protocol: str = DEFAULTS.protocol  # or "rudderstack", "atrack" (see analytics.atrack)
spool_path: str | None = DEFAULTS.spool_path  # a SQLite file: keep what cannot be delivered yet
durable: bool = DEFAULTS.durable  # with spool_path: write every message ahead of the call
spool_max_bytes: int = DEFAULTS.spool_max_bytes
fsync: bool = DEFAULTS.fsync  # with spool_path: fsync each spool write
backoff: Backoff = DEFAULTS.backoff  # the waits between retries
log_handler: logging.Handler | None = DEFAULTS.log_handler  # added to the analytics logger
max_total_backoff_duration: float = DEFAULTS.max_total_backoff_duration  # Segment 2.4's
max_rate_limit_duration: float = DEFAULTS.max_rate_limit_duration  # Segment 2.4's
# before_send(message) -> message or None, or a list of them; context and properties: the
# defaults of every call (the name `context` is this setting's, not the submodule's)
before_send: BeforeSend | Sequence[BeforeSend] | None = DEFAULTS.before_send
context: Mapping[str, Any] | None = DEFAULTS.context
properties: Mapping[str, Any] | None = DEFAULTS.properties

default_client: Client | None = None

_SETTINGS = tuple(option.name for option in FACADE_OPTIONS)
# Segment's names and the options they stand for, kept in step both ways.
_ALIASES: dict[str, Option] = dict(ALIASES)
_MIRRORS: dict[str, tuple[str, Option]] = {o.name: (alias, o) for alias, o in ALIASES.items()}

_lock = threading.RLock()
_stale = False
_retired: list[Client] = []  # replaced default clients still delivering what they hold
# Hooks an integration registers (Flask: the current app's client); the first Client returned
# stands in for the default one. Empty unless an integration is used: one falsy check per call.
_client_resolvers: list[Callable[[], Client | None]] = []


class _Facade(types.ModuleType):
    """Makes `analytics.<setting> = value` take effect on the next call."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _ALIASES or name in _SETTINGS or name == "default_client":
            # A rebuild reads the settings and clears _stale under the lock: none is lost.
            with _lock:
                self._set(self.__dict__, name, value)
        else:  # a submodule being imported (maybe by a rebuild, under the lock), or private
            super().__setattr__(name, value)

    def _set(self, d: dict[str, Any], name: str, value: Any) -> None:
        if name in _ALIASES:
            option = _ALIASES[name]
            d[name] = value
            if option.implies and value in (None, ""):  # RudderStack's: unset, host applies
                return
            d[option.name] = option.from_alias(value)
            d.update(option.implies)  # dataPlaneUrl: RudderStack's protocol too
            d["_stale"] = True
        elif name in _MIRRORS:
            alias, option = _MIRRORS[name]
            d[name] = value
            d[alias] = option.to_alias(value)
            d["_stale"] = True
        elif name in _SETTINGS:
            d[name] = value
            d["_stale"] = True
        else:  # default_client
            d[name] = value
            d["_stale"] = value is None


sys.modules[__name__].__class__ = _Facade


async def aflush(timeout: float | None = None) -> bool:
    """As flush(), awaited: the event loop keeps running while it waits."""
    return await _aover_clients("aflush", timeout)


async def ashutdown(timeout: float | None = None) -> bool:
    """As shutdown(), awaited: the event loop keeps running while it waits."""
    return await _aover_clients("ashutdown", timeout)


async def _aover_clients(method: str, timeout: float | None) -> bool:
    """Every client at once: each wait is bounded by the one `timeout`."""
    import asyncio

    clients = [client for client, _ in _targets(timeout)]
    return all(await asyncio.gather(*(getattr(c, method)(timeout) for c in clients)))


def _client() -> Client:
    if _client_resolvers and (found := _resolved()) is not None:
        return found
    client = default_client
    if client is not None and not _stale:
        return client
    return _rebuild()


def _resolved() -> Client | None:
    for resolver in _client_resolvers:
        if (found := resolver()) is not None:
            return found
    return None


def _rebuild() -> Client:
    global default_client, _stale
    with _lock:
        old = default_client
        if old is not None and not _stale:
            return old
        g = globals()
        new = Client(**{name: g[name] for name in _SETTINGS})
        if old is not None:
            old.retire(new)  # a call racing this rebuild goes on to the new client
            _retired[:] = [c for c in _retired if not c._pipeline.done()] + [old]
        default_client, _stale = new, False
        return new


if TYPE_CHECKING:  # ParamSpec is 3.10's; the checker alone needs it (no runtime dependency)
    if sys.version_info >= (3, 10):
        from typing import Concatenate, ParamSpec
    else:
        from typing_extensions import Concatenate, ParamSpec
    P = ParamSpec("P")
R = TypeVar("R")


def _signature_of(method: Callable[..., Any]) -> inspect.Signature:
    """A method's signature without `self`: what help() shows for the module's function."""
    sig = inspect.signature(method)
    return sig.replace(parameters=list(sig.parameters.values())[1:])


def _on_client(method: Callable[Concatenate[Client, P], R]) -> Callable[P, R]:
    """The module's function for a `Client` method: the same parameters, types and docstring
    (for the checker too), called on the default client (or the integration's)."""
    name = method.__name__

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return getattr(_client(), name)(*args, **kwargs)  # type: ignore[no-any-return]

    call.__name__ = call.__qualname__ = name
    call.__doc__ = method.__doc__
    call.__signature__ = _signature_of(method)  # type: ignore[attr-defined]
    return call


def _on_clients(method: Callable[Concatenate[Client, P], bool], doc: str) -> Callable[P, bool]:
    """The module's flush or shutdown: `method`'s parameters, done on every client the module
    has built (the default one and replaced ones still delivering), within one timeout."""
    name = method.__name__

    def call(*args: P.args, **kwargs: P.kwargs) -> bool:
        return _over_clients(name, *args, **kwargs)  # type: ignore[arg-type]  # timeout

    call.__name__ = call.__qualname__ = name
    call.__doc__ = doc
    call.__signature__ = _signature_of(method)  # type: ignore[attr-defined]
    return call


track = _on_client(Client.track)
identify = _on_client(Client.identify)
page = _on_client(Client.page)
screen = _on_client(Client.screen)
group = _on_client(Client.group)
alias = _on_client(Client.alias)


def _each_client() -> list[Client]:
    with _lock:
        clients = [c for c in _retired if not c._pipeline.done()]
        _retired[:] = clients
        if default_client is not None:
            clients = [*clients, default_client]
    return clients


flush = _on_clients(
    Client.flush, "Send everything queued so far; False if `timeout` ran out first."
)
shutdown = _on_clients(
    Client.shutdown,
    "Flush, then stop the default client; later calls are refused until it is rebuilt.",
)
join = shutdown  # Segment's name for it, as on a Client


def flush_report(timeout: float | None = None) -> FlushReport:
    """flush(), then what became of the messages since the last report, all clients summed."""
    report = FlushReport(True)
    for client, remaining in _targets(timeout):
        report = report + client.flush_report(remaining())
    return report


def _over_clients(method: str, timeout: float | None = None) -> bool:
    ok = True
    for client, remaining in _targets(timeout):
        left = remaining()
        # Segment's and RudderStack's Client.flush() take no argument and return None.
        result = getattr(client, method)() if left is None else getattr(client, method)(left)
        ok = result is not False and ok
    return ok


def _targets(timeout: float | None) -> list[tuple[Client, Callable[[], float | None]]]:
    """The clients a module-level flush or shutdown is for, each with what is left of
    the shared `timeout` when its turn comes."""
    deadline = None if timeout is None else time.monotonic() + timeout

    def remaining() -> float | None:
        return None if deadline is None else max(deadline - time.monotonic(), 0.0)

    found = _resolved() if _client_resolvers else None
    if found is None and (default_client is None or _stale) and (write_key or stub):
        # As Segment's: the default client is built (their tests read it afterwards). Settings
        # that cannot build one raise at the next call, not here: these run at exit too.
        with contextlib.suppress(ValidationError):
            _rebuild()
    return [(client, remaining) for client in ([found] if found is not None else _each_client())]
