"""Code run in multiprocessing children by test_pools (importable by a spawned or forkserver
child, which re-imports this module instead of inheriting the test's memory).

Each child builds its client from picklable config (the collector's URL), with a long
flush_interval so that nothing leaves on its own: only the library's drain at the end of the
process sends it. No hook of any kind is registered here.
"""

from __future__ import annotations

import os

import analytics

WRITE_KEY = "pool-test-key"

_clients: dict[str, analytics.Client] = {}


def client_for(host: str, shutdown_timeout: float = 5) -> analytics.Client:
    """One client per process and collector (a Pool worker runs many tasks)."""
    key = f"{os.getpid()}:{host}"  # a forked child must not reuse its parent's entry
    client = _clients.get(key)
    if client is None:
        client = analytics.Client(
            WRITE_KEY,
            host=host,
            flush_interval=30,  # nothing leaves before the process ends
            batch_size=100,
            timeout=5,
            shutdown_timeout=shutdown_timeout,
        )
        _clients[key] = client
    return client


def track(host: str, message_id: str, shutdown_timeout: float = 5) -> int:
    """Track one event; the pid of the process that queued it."""
    ok, _ = client_for(host, shutdown_timeout).track(
        "pool-user", "Pool Event", {"pid": os.getpid()}, message_id=message_id
    )
    if not ok:
        raise RuntimeError(f"track refused for {message_id}")
    return os.getpid()


def track_many(host: str, prefix: str, count: int, shutdown_timeout: float = 5) -> None:
    """A Process target: track `count` events, then return (the child ends normally)."""
    for i in range(count):
        track(host, f"{prefix}-{i}", shutdown_timeout)


def track_task(args: tuple[str, str]) -> int:
    """A Pool task."""
    host, message_id = args
    return track(host, message_id)
