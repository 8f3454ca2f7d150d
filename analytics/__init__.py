"""Server-side analytics for Segment, RudderStack and any Segment-compatible collector.

Configure the module once (`analytics.write_key = ...`) and call `analytics.track(...)`, or
build `analytics.Client` objects, one per source. Drop-in for Segment's Python library.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import types
from typing import Any, Callable

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
from .typing import OnError
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
    "LIBRARY_NAME",
    "MAX_BATCH_BYTES",
    "MAX_MESSAGE_BYTES",
    "MessageTooLarge",
    "QueueFull",
    "RetriesExhausted",
    "VERSION",
    "ValidationError",
    "alias",
    "context_from_request",
    "current_scope",
    "flush",
    "flush_after",
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
protocol: str = DEFAULTS.protocol  # or "atrack" (see analytics.atrack)
spool_path: str | None = DEFAULTS.spool_path  # a SQLite file: keep what cannot be delivered yet
durable: bool = DEFAULTS.durable  # with spool_path: write every message ahead of the call
spool_max_bytes: int = DEFAULTS.spool_max_bytes
fsync: bool = DEFAULTS.fsync  # with spool_path: fsync each spool write
backoff: Backoff = DEFAULTS.backoff  # the waits between retries
log_handler: logging.Handler | None = DEFAULTS.log_handler  # added to the analytics logger
max_total_backoff_duration: float = DEFAULTS.max_total_backoff_duration  # Segment 2.4's
max_rate_limit_duration: float = DEFAULTS.max_rate_limit_duration  # Segment 2.4's

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
            d[option.name] = option.from_alias(value)
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


def track(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    """Record an action; see `Client.track`."""
    return _client().track(*args, **kwargs)


def identify(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    """Tie a user to traits; see `Client.identify`."""
    return _client().identify(*args, **kwargs)


def page(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    """Record a page view; see `Client.page`."""
    return _client().page(*args, **kwargs)


def screen(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    """Record a screen view; see `Client.screen`."""
    return _client().screen(*args, **kwargs)


def group(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    """Tie a user to a group; see `Client.group`."""
    return _client().group(*args, **kwargs)


def alias(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    """Merge two identities; see `Client.alias`."""
    return _client().alias(*args, **kwargs)


def _each_client() -> list[Client]:
    with _lock:
        clients = [c for c in _retired if not c._pipeline.done()]
        _retired[:] = clients
        if default_client is not None:
            clients = [*clients, default_client]
    return clients


def flush(timeout: float | None = None) -> bool:
    """Send everything queued so far; False if `timeout` ran out first."""
    return _over_clients("flush", timeout)


def shutdown(timeout: float | None = None) -> bool:
    """Flush, then stop the default client; later calls are refused until it is rebuilt."""
    return _over_clients("shutdown", timeout)


def join() -> None:
    """Segment's name for shutdown()."""
    shutdown()


def _over_clients(method: str, timeout: float | None) -> bool:
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    found = _resolved() if _client_resolvers else None
    for client in [found] if found is not None else _each_client():
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        ok = getattr(client, method)(remaining) and ok
    return ok
