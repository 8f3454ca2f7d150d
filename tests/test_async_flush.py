"""aflush / ashutdown (Client and module) and flush_after on async handlers: they never block
the running event loop, return what flush/shutdown return within the same bounds, and a
cancelled wait leaves no thread behind and no flush broken."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable
from typing import Any, Callable

import pytest

import analytics
from analytics.serverless import flush_after

TICK = 0.01  # the concurrent task's period
SLOW = 0.6  # seconds the collector waits before answering, in the slow tests


async def ticks_during(wait: Callable[[], Awaitable[Any]]) -> tuple[Any, int, float]:
    """Await `wait()` while another task ticks every TICK seconds: what it returned, how many
    ticks the other task made meanwhile, and how long it took."""
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            await asyncio.sleep(TICK)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # let it start
    start, before = time.monotonic(), ticks
    try:
        result = await wait()
    finally:
        during = ticks - before
        elapsed = time.monotonic() - start
        stop.set()
        await task
    return result, during, elapsed


def run(coro: Awaitable[Any], limit: float = 20) -> Any:
    """asyncio.run, bounded: a test never hangs on a wait that does not end."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, limit)

    return asyncio.run(bounded())


# ---------------------------------------------------------------- the loop keeps running


def test_a_blocking_flush_stops_the_ticks(make_client, collector):
    # The measure below can fail: the sync flush, called on the loop, lets no tick through.
    collector.delay = SLOW
    client = make_client(flush_interval=30)
    client.track("u", "E")

    async def blocking() -> bool:
        return client.flush(timeout=5)

    ok, during, elapsed = run(ticks_during(blocking))
    assert ok is True and elapsed >= SLOW * 0.9
    assert during <= 1


def test_aflush_lets_other_tasks_run_against_a_slow_collector(make_client, collector):
    collector.delay = SLOW
    client = make_client(flush_interval=30)
    ids = [client.track("u", "E", {"n": n})[1]["messageId"] for n in range(5)]

    ok, during, elapsed = run(ticks_during(lambda: client.aflush(timeout=5)))

    assert ok is True
    assert elapsed >= SLOW * 0.9, "aflush returned before the collector answered"
    # ~SLOW / TICK ticks when idle; a third of them on a loaded machine is still plenty
    assert during >= (SLOW / TICK) / 3, f"only {during} ticks in {elapsed:.2f}s"
    assert sorted(m["messageId"] for m in collector.messages()) == sorted(ids)


def test_ashutdown_lets_other_tasks_run_then_refuses_calls(make_client, collector, errors):
    collector.delay = SLOW
    client = make_client(flush_interval=30)
    _, msg = client.track("u", "Before")

    ok, during, _ = run(ticks_during(lambda: client.ashutdown(timeout=5)))

    assert ok is True
    assert during >= (SLOW / TICK) / 3
    assert [m["messageId"] for m in collector.messages()] == [msg["messageId"]]
    assert client.track("u", "After")[0] is False
    assert isinstance(errors.errors[-1], analytics.ClientShutdown)


def test_module_aflush_and_ashutdown(facade, collector, errors):
    collector.delay = SLOW
    analytics.flush_interval = 30
    analytics.track("u", "Module")

    ok, during, _ = run(ticks_during(lambda: analytics.aflush(timeout=5)))
    assert ok is True and during >= (SLOW / TICK) / 3
    assert [m["event"] for m in collector.messages()] == ["Module"]

    analytics.track("u", "Last")
    assert run(analytics.ashutdown(timeout=5)) is True
    assert [m["event"] for m in collector.messages()] == ["Module", "Last"]
    assert analytics.track("u", "Refused")[0] is False


def test_flush_after_on_an_async_handler_keeps_the_loop_running(make_client, collector):
    collector.delay = SLOW
    client = make_client(flush_interval=30)

    @flush_after(client=client, timeout=5)
    async def handler() -> str:
        client.track("u", "Handled")
        return "done"

    result, during, elapsed = run(ticks_during(handler))
    assert result == "done" and elapsed >= SLOW * 0.9
    assert during >= (SLOW / TICK) / 3
    assert [m["event"] for m in collector.messages()] == ["Handled"]


def test_bare_flush_after_on_an_async_handler_flushes_every_client(facade, make_client, collector):
    analytics.flush_interval = 30
    mine = make_client(flush_interval=30)

    @flush_after
    async def handler() -> None:
        analytics.track("u", "Facade")
        mine.track("u", "Mine")

    run(handler())
    assert sorted(m["event"] for m in collector.messages()) == ["Facade", "Mine"]


# ---------------------------------------------------------------- results and bounds


def test_aflush_with_nothing_queued_returns_true_at_once(make_client):
    client = make_client()
    start = time.monotonic()
    assert run(client.aflush(timeout=5)) is True
    assert time.monotonic() - start < 1


@pytest.mark.parametrize("mode", ["stub", "sync_mode"])
def test_aflush_in_stub_and_sync_mode_returns_true(make_client, collector, mode):
    client = make_client(**{mode: True})
    client.track("u", "E")
    assert run(client.aflush(timeout=5)) is True
    assert run(client.ashutdown(timeout=5)) is True


def test_aflush_returns_false_at_its_timeout_with_the_server_hung(make_client, collector):
    collector.hang()
    client = make_client(timeout=10)
    client.track("u", "E")
    ok, during, elapsed = run(ticks_during(lambda: client.aflush(timeout=0.5)))
    assert ok is False
    assert 0.45 <= elapsed < 1.5
    assert during >= 5


def test_aflush_with_the_server_down_returns_false_at_its_timeout(make_client, down_collector):
    client = make_client(host=down_collector.url, max_retries=1000)
    client.track("u", "E")
    start = time.monotonic()
    assert run(client.aflush(timeout=0.5)) is False
    assert time.monotonic() - start < 1.5
    down_collector.start()  # lets the teardown drain quickly


def test_aflush_counts_a_rejected_batch_as_done(make_client, collector, errors):
    collector.fail(400)
    client = make_client()
    client.track("u", "E")
    assert run(client.aflush(timeout=5)) is True
    assert len(errors) == 1  # reported before aflush returned
    assert client.stats()["dropped_by_reason"]["rejected"] == 1


def test_aflush_sends_a_partial_batch_at_once(make_client, collector):
    client = make_client(batch_size=100, flush_interval=30)
    client.track("u", "E")
    start = time.monotonic()
    assert run(client.aflush(timeout=5)) is True
    assert time.monotonic() - start < 2, "aflush waited out flush_interval"
    assert collector.message_count() == 1


def test_aflush_with_a_full_queue_still_sends_the_last_partial_batch_at_once(
    make_client, collector
):
    collector.delay = 0.2
    client = make_client(max_queue_size=10, batch_size=4, flush_interval=30)
    sent = [client.track("u", "E", {"n": n})[0] for n in range(30)]
    accepted = sent.count(True)
    start = time.monotonic()
    assert run(client.aflush(timeout=10)) is True
    assert time.monotonic() - start < 5, "the last partial batch waited out flush_interval"
    assert collector.message_count() == accepted


def test_ashutdown_out_of_time_reports_what_is_left_as_shutdown(make_client, collector, errors):
    collector.hang()
    client = make_client(timeout=10)
    _, msg = client.track("u", "E")
    start = time.monotonic()
    assert run(client.ashutdown(timeout=0.5)) is False
    assert time.monotonic() - start < 2
    lost = errors.of_type(analytics.ClientShutdown)
    assert [m["messageId"] for _, batch in lost for m in batch] == [msg["messageId"]]
    assert client.stats()["dropped_by_reason"]["shutdown"] == 1


# ---------------------------------------------------------------- cancellation and threads


def our_threads() -> set[threading.Thread]:
    """The threads of this process but the collector's (one per connection it serves)."""
    return {t for t in threading.enumerate() if "process_request" not in t.name}


def test_aflush_makes_no_thread_and_a_cancelled_one_breaks_no_later_flush(
    make_client, collector
):
    collector.hang()
    client = make_client(timeout=10)
    client.track("u", "First")  # the consumer thread starts here, before the count

    async def scenario() -> tuple[set[threading.Thread], set[threading.Thread]]:
        before = our_threads()
        task = asyncio.create_task(client.aflush())
        await asyncio.sleep(0.2)
        assert not task.done()
        during = our_threads()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return before, during

    before, during = run(scenario())
    assert during - before == set(), f"aflush started threads: {during - before}"
    collector.release()  # the hung request is answered
    client.track("u", "Second")
    assert run(client.aflush(timeout=5)) is True
    assert client.flush(timeout=5) is True
    assert sorted(m["event"] for m in collector.messages()) == ["First", "Second"]


def test_many_concurrent_aflushes_make_no_thread(make_client, collector):
    collector.delay = 0.3
    client = make_client(flush_interval=30)
    client.track("u", "E")

    async def scenario() -> tuple[list[bool], int]:
        before = our_threads()
        pending = asyncio.gather(*(client.aflush(timeout=5) for _ in range(50)))
        await asyncio.sleep(0.1)
        extra = len(our_threads() - before)
        return await pending, extra

    results, extra = run(scenario())
    assert results == [True] * 50
    assert extra == 0


def test_a_cancelled_ashutdown_still_refuses_calls_and_a_later_one_completes(
    make_client, collector, errors
):
    collector.hang()
    client = make_client(timeout=10)
    client.track("u", "E")

    async def cancel_it() -> None:
        task = asyncio.create_task(client.ashutdown())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(cancel_it())
    assert client.track("u", "Refused")[0] is False
    collector.release()
    assert run(client.ashutdown(timeout=5)) is True
    assert [m["event"] for m in collector.messages()] == ["E"]
    assert client.stats()["pending"] == 0
