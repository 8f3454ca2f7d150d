"""Process-wide hooks: drain every running pipeline at interpreter exit, reset every client
after fork.

Installed once, when the first client is built; nothing runs at import time.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref
from typing import Protocol

from .log import logger


class ForkAware(Protocol):
    """A client: told of forks (it builds a new pipeline in the child)."""

    def reset_after_fork(self) -> None: ...
    def fork_lock(self) -> threading.Lock | None: ...


class Drained(Protocol):
    """A running pipeline: drained at interpreter exit."""

    shutdown_timeout: float

    def flush(self, timeout: float | None = None) -> bool: ...
    def flush_soon(self) -> None: ...
    def shutdown(self, timeout: float | None = None) -> bool: ...


def in_uwsgi_master() -> bool:
    """True in a uWSGI master process (it loads the app, then forks the workers from C)."""
    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is None:
        return False
    try:
        return bool(uwsgi.masterpid() == os.getpid())  # 0 without a master
    except Exception:  # an old or partial uwsgi module
        return False


_lock = threading.Lock()
_every: weakref.WeakSet[ForkAware] = weakref.WeakSet()  # no reason to keep them alive
_running: set[Drained] = set()  # started, not shut down: kept alive so exit can drain them
_installed = False


def register(client: ForkAware) -> None:
    global _installed
    with _lock:
        _every.add(client)
        if not _installed:
            _installed = True
            atexit.register(drain_all)
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(
                    before=_before_fork,
                    after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child,
                )


def started(client: Drained) -> None:
    with _lock:
        _running.add(client)


def stopped(client: Drained) -> None:
    with _lock:
        _running.discard(client)


def flush_all(timeout: float | None) -> bool:
    """Flush every running pipeline within one shared `timeout`; False if it ran out."""
    with _lock:
        pipelines = list(_running)
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for pipeline in pipelines:
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        ok = pipeline.flush(remaining) and ok
    return ok


def drain_all() -> None:
    """Flush then shut down every running client within one shared `shutdown_timeout`."""
    with _lock:
        clients = list(_running)
    if not clients:
        return
    deadline = time.monotonic() + max(c.shutdown_timeout for c in clients)
    for client in clients:
        client.flush_soon()
    for client in clients:
        try:
            client.shutdown(timeout=max(deadline - time.monotonic(), 0.0))
        except Exception:
            logger.exception("analytics: draining a client at exit failed")


_held: list[threading.Lock] = []


def _before_fork() -> None:
    """Hold every spool's lock: no thread may be inside SQLite when the process forks, or
    the child inherits SQLite's own locks held, and hangs."""
    for client in list(_every):
        lock = client.fork_lock()
        if lock is not None and lock.acquire(timeout=5):
            _held.append(lock)


def _after_fork_in_parent() -> None:
    while _held:
        _held.pop().release()


def _after_fork_in_child() -> None:
    _after_fork_in_parent()  # a plain Lock may be released by any thread
    global _lock
    _lock = threading.Lock()  # the parent's may have been held by another thread
    _running.clear()
    for client in list(_every):
        client.reset_after_fork()
