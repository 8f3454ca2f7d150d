"""Server-side analytics for Segment, RudderStack and any Segment-compatible collector.

Configure the module once (`analytics.write_key = ...`) and call `analytics.track(...)`, or
build `analytics.Client` objects, one per source. Drop-in for Segment's Python library.
"""

from __future__ import annotations

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
from .segment import DEFAULT_HOST
from .serverless import flush_after
from .version import LIBRARY_NAME, VERSION

__version__ = VERSION

__all__ = [
    "APIError",
    "AnalyticsError",
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

# -- settings of the default client (the contract's defaults) ---------------------------------
write_key: str | None = None
host: str = DEFAULT_HOST
on_error: Callable[[Exception, list[dict[str, Any]]], Any] | None = None
debug: bool = False
stub: bool = False
send: bool = True  # Segment's name: send = not stub
max_queue_size: int = 10000
batch_size: int = 100
upload_size: int = 100  # Segment's name for batch_size
flush_interval: float = 0.5
upload_interval: float = 0.5  # Segment's name for flush_interval
gzip: bool = False
timeout: float = 15
max_retries: int = 10
sync_mode: bool = False
shutdown_timeout: float = 5
proxies: dict[str, str] | None = None
protocol: str = "segment"  # or "atrack" (see analytics.atrack)
spool_path: str | None = None  # a SQLite file: keep what cannot be delivered yet
durable: bool = False  # with spool_path: write every message ahead, before the call returns
spool_max_bytes: int = 100 * 1024 * 1024
fsync: bool = False  # with spool_path: fsync each spool write

default_client: Client | None = None

_SETTINGS = (
    "write_key", "host", "on_error", "debug", "stub", "max_queue_size", "batch_size",
    "flush_interval", "gzip", "timeout", "max_retries", "sync_mode", "shutdown_timeout",
    "proxies", "protocol", "spool_path", "durable", "spool_max_bytes", "fsync",
)  # fmt: skip
# Segment's names, kept in step with the contract's: alias -> (setting, to alias, from alias)
_ALIASES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "send": ("stub", lambda v: not v),
    "upload_size": ("batch_size", lambda v: v),
    "upload_interval": ("flush_interval", lambda v: v),
}
_MIRRORS = {setting: (alias, conv) for alias, (setting, conv) in _ALIASES.items()}

_lock = threading.Lock()
_stale = False
_retired: list[Client] = []  # replaced default clients still delivering what they hold


class _Facade(types.ModuleType):
    """Makes `analytics.<setting> = value` take effect on the next call."""

    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        if name in _ALIASES:
            setting, conv = _ALIASES[name]
            d[name] = value
            d[setting] = conv(value)
            d["_stale"] = True
        elif name in _MIRRORS:
            alias, conv = _MIRRORS[name]
            d[name] = value
            d[alias] = conv(value)
            d["_stale"] = True
        elif name in _SETTINGS:
            d[name] = value
            d["_stale"] = True
        elif name == "default_client":
            d[name] = value
            d["_stale"] = value is None
        else:
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Facade


def _client() -> Client:
    client = default_client
    if client is not None and not _stale:
        return client
    return _rebuild()


def _rebuild() -> Client:
    global default_client, _stale
    with _lock:
        old = default_client
        if old is not None and not _stale:
            return old
        g = globals()
        new = Client(**{name: g[name] for name in _SETTINGS})
        if old is not None:
            old.retire()
            _retired.append(old)
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
        clients = [c for c in _retired if c.stats()["pending"]]
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
    for client in _each_client():
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        ok = getattr(client, method)(remaining) and ok
    return ok
