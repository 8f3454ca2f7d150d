"""Process-wide hooks: drain every running pipeline at interpreter exit, reset every client
after fork, and drain at the end of a worker process that leaves without atexit.

Installed once, when the first client is built; nothing runs at import time. The end-of-worker
drains are registered when a pipeline starts, and only through modules the app has already
imported (multiprocessing, Celery): this module imports neither.
"""

from __future__ import annotations

import atexit
import contextlib
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
    _drain_at_worker_end()


# The pid for which the end-of-worker drains are registered: once per process, and again in a
# forked child (whose multiprocessing registry is cleared when its Process starts).
_worker_end_pid: int | None = None


def _drain_at_worker_end() -> None:
    """Register a drain that runs when a worker process ends without atexit.

    multiprocessing children started by fork or forkserver end with `os._exit` after
    `Process._bootstrap`, which skips atexit but first runs multiprocessing's finalizers
    (`util._exit_function`); a spawned child runs them too, then atexit (drain_all is
    idempotent: the second finds nothing running). billiard shares that registry, but its pool
    worker calls `os._exit` inside `run()`, before the finalizers: there only Celery's
    `worker_process_shutdown` signal (sent from the worker's `on_exit`) is still in time.

    Registered in the main process too: there multiprocessing runs its finalizers from its
    own atexit handler, next to ours, and whichever drains first leaves nothing to the other.
    A finalizer inherited through a plain os.fork() is ignored in the child (Finalize checks
    the pid), hence one registration per pid.
    """
    global _worker_end_pid
    pid = os.getpid()
    with _lock:  # two pipelines may start at once in two threads (a second drain is harmless)
        if _worker_end_pid == pid:
            return
        _worker_end_pid = pid
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        try:
            # exitpriority >= 0: run in the first pass of _exit_function, before it joins
            # this process's own children. obj=None: a finalizer not tied to an object.
            util.Finalize(None, _drain_quietly, exitpriority=10)
        except Exception:  # an unexpected multiprocessing: the atexit drain remains
            logger.debug("analytics: cannot register a multiprocessing finalizer", exc_info=True)
    signals = sys.modules.get("celery.signals")
    if signals is not None:
        try:
            # weak=False: the receiver is a module function, but keep it whatever happens;
            # dispatch_uid: connected once even if a fork makes us call this again.
            signals.worker_process_shutdown.connect(
                _drain_on_signal, weak=False, dispatch_uid="analytics.lifecycle.drain"
            )
        except Exception:
            logger.debug("analytics: cannot connect worker_process_shutdown", exc_info=True)


def _drain_on_signal(**kwargs: object) -> None:
    _drain_quietly()


def _drain_quietly() -> None:
    """drain_all at the very end of a process: it must not raise (nobody is left to see it,
    and a finalizer that raises stops the ones after it). Bounded by shutdown_timeout."""
    try:
        drain_all()
    except BaseException:  # noqa: BLE001 - the process is ending; never propagate
        with contextlib.suppress(BaseException):  # logging itself may be torn down
            logger.exception("analytics: draining at the end of a worker process failed")


def stopped(client: Drained) -> None:
    with _lock:
        _running.discard(client)


def running() -> list[Drained]:
    """The pipelines started and not shut down, in this process."""
    with _lock:
        return list(_running)


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
