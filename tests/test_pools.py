"""multiprocessing children (fork, forkserver, spawn; Process and Pool) deliver what they
queued when they end normally, with no hook in the app: the library drains through
multiprocessing's own finalizers, which run in a child before it leaves with `os._exit`.

Real processes and a real loopback collector. `_pool_app` sets flush_interval=30, so nothing
arrives unless the end-of-process drain sends it."""

from __future__ import annotations

import multiprocessing
import multiprocessing.util
import time
from collections import Counter
from typing import Any

import _pool_app
import pytest

from analytics import lifecycle

AVAILABLE = multiprocessing.get_all_start_methods()
METHODS = [m for m in ("fork", "forkserver", "spawn") if m in AVAILABLE]
EVENTS = 10
JOIN_TIMEOUT = 30  # a child's drain is bounded by shutdown_timeout=5; this is far above


def assert_exactly_once(collector: Any, expected: list[str]) -> list[dict[str, Any]]:
    messages = collector.wait_for_messages(len(expected), timeout=10)
    ids = Counter(m["messageId"] for m in messages)
    twice = [i for i, c in ids.items() if c > 1]
    assert not twice, f"sent twice: {twice}"
    assert sorted(ids) == sorted(expected), f"missing: {sorted(set(expected) - set(ids))}"
    return messages


def joined(process: Any) -> int | None:
    process.join(JOIN_TIMEOUT)
    if process.is_alive():
        process.kill()
        process.join(5)
        raise AssertionError(f"child {process.pid} did not end within {JOIN_TIMEOUT}s")
    return process.exitcode


@pytest.mark.parametrize("method", METHODS)
def test_process_that_returns_delivers_its_queue(method, collector):
    ctx = multiprocessing.get_context(method)
    child = ctx.Process(target=_pool_app.track_many, args=(collector.url, f"proc-{method}", EVENTS))
    child.start()
    assert joined(child) == 0
    messages = assert_exactly_once(collector, [f"proc-{method}-{i}" for i in range(EVENTS)])
    assert {m["properties"]["pid"] for m in messages} == {child.pid}


@pytest.mark.parametrize("method", METHODS)
def test_pool_closed_and_joined_delivers_every_worker_queue(method, collector):
    ctx = multiprocessing.get_context(method)
    expected = [f"pool-{method}-{i}" for i in range(EVENTS)]
    pool = ctx.Pool(2)
    try:
        pids = pool.map(_pool_app.track_task, [(collector.url, mid) for mid in expected], 1)
        # every event is queued in a live worker, none sent yet (flush_interval=30)
        assert collector.message_count() == 0
        pool.close()
        pool.join()  # the workers end normally: their finalizers drain them
    finally:
        pool.terminate()
    messages = assert_exactly_once(collector, expected)
    assert {m["properties"]["pid"] for m in messages} == set(pids)


@pytest.mark.parametrize("method", METHODS)
def test_pool_worker_replaced_after_maxtasksperchild_delivers(method, collector):
    ctx = multiprocessing.get_context(method)
    expected = [f"max-{method}-{i}" for i in range(EVENTS)]
    pool = ctx.Pool(2, maxtasksperchild=2)
    try:
        pids = pool.map(_pool_app.track_task, [(collector.url, mid) for mid in expected], 1)
        pool.close()
        pool.join()
    finally:
        pool.terminate()
    assert len(set(pids)) >= EVENTS // 2, f"workers were not replaced: {set(pids)}"
    messages = assert_exactly_once(collector, expected)
    assert {m["properties"]["pid"] for m in messages} == set(pids)


def test_a_hung_collector_holds_a_child_no_longer_than_shutdown_timeout(collector):
    collector.hang()  # every request accepted, never answered
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_pool_app.track_many, args=(collector.url, "hung", 3, 1.0))
    started = time.monotonic()
    child.start()
    assert joined(child) == 0
    elapsed = time.monotonic() - started
    assert elapsed < 1.0 + 4.0, f"the child's drain took {elapsed:.1f}s, shutdown_timeout 1s"
    assert collector.delivered_messages() == []  # nothing was answered


def drains_registered() -> int:
    return sum(
        f._callback is lifecycle._drain_quietly
        for f in list(multiprocessing.util._finalizer_registry.values())
    )


def test_the_finalizer_is_registered_once_per_process(make_client):
    before = drains_registered()
    assert before <= 1
    for i in range(3):
        client = make_client(flush_interval=30)
        assert client.track("u", "Started", message_id=f"once-{i}")[0]  # starts a pipeline
    assert drains_registered() == 1


class Raising:
    """A pipeline whose every method raises: the end-of-process drain must not."""

    shutdown_timeout = 1.0

    def flush(self, timeout: float | None = None) -> bool:
        raise RuntimeError("flush")

    def flush_soon(self) -> None:
        raise RuntimeError("flush_soon")

    def shutdown(self, timeout: float | None = None) -> bool:
        raise RuntimeError("shutdown")


def test_the_end_of_process_drain_never_raises():
    broken = Raising()
    lifecycle.started(broken)
    try:
        with pytest.raises(RuntimeError):
            lifecycle.drain_all()  # the atexit drain may raise (atexit reports it) ...
        lifecycle._drain_quietly()  # ... the finalizer's must not: nothing after it would run
    finally:
        lifecycle.stopped(broken)
