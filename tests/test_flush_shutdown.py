"""flush(timeout) and shutdown(timeout): results, bounds, partial batches, refusals."""

from __future__ import annotations

import threading
import time

import pytest
from helpers import call_within, wait_until

import analytics

# ---------------------------------------------------------------------- flush


def test_flush_with_server_up_returns_true_and_everything_arrived(make_client, collector):
    client = make_client(batch_size=10, flush_interval=10)
    ids = [client.track("u", "E")[1]["messageId"] for _ in range(25)]
    assert client.flush(timeout=5) is True
    # no waiting: flush returned, so everything is already there
    assert sorted(m["messageId"] for m in collector.messages()) == sorted(ids)


def test_flush_sends_a_partial_batch_at_once(make_client, collector):
    client = make_client(batch_size=100, flush_interval=10)
    ok, msg = client.track("u", "E")
    start = time.monotonic()
    assert client.flush(timeout=5) is True
    assert time.monotonic() - start < 2, "flush waited out flush_interval"
    assert [m["messageId"] for m in collector.messages()] == [msg["messageId"]]


def test_flush_with_server_hung_returns_false_within_timeout(make_client, collector):
    collector.hang()
    client = make_client(timeout=10)
    client.track("u", "E")
    start = time.monotonic()
    assert call_within(10, client.flush, timeout=1) is False
    assert time.monotonic() - start < 2


def test_flush_with_server_down_returns_false_within_timeout(make_client, down_collector):
    client = make_client(host=down_collector.url, max_retries=1000)
    client.track("u", "E")
    start = time.monotonic()
    assert call_within(10, client.flush, timeout=1) is False
    assert time.monotonic() - start < 2
    down_collector.start()  # lets the teardown drain quickly


def test_flush_counts_reported_failures_as_done(make_client, collector, errors):
    collector.fail(400)
    client = make_client()
    client.track("u", "E")
    assert client.flush(timeout=5) is True
    assert client.stats()["dropped_by_reason"]["rejected"] == 1


def test_flush_returns_only_after_on_error_was_called(make_client, collector):
    # "True when every message queued before it was delivered or reported to on_error":
    # a slow on_error must have been called (and returned) before flush says True
    reported = []
    slow = threading.Event()

    def on_error(error, batch):
        slow.wait(0.3)  # a slow user callback
        reported.append(error)

    collector.fail(400)
    client = make_client(on_error=on_error)
    client.track("u", "E")
    assert client.flush(timeout=5) is True
    assert len(reported) == 1, "flush returned True before on_error was called"


def test_flush_with_nothing_queued_returns_true(make_client):
    client = make_client()
    start = time.monotonic()
    assert client.flush(timeout=5) is True
    assert time.monotonic() - start < 1


def test_flush_without_timeout_waits_for_delivery(make_client, collector):
    client = make_client(flush_interval=10)
    client.track("u", "E")
    done = threading.Event()
    result = []

    def run():
        result.append(client.flush())
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(10), "flush() without timeout did not return with the server up"
    assert result == [True]
    assert collector.message_count() == 1


def test_flush_called_from_on_error_does_not_hang(make_client, collector, errors):
    collector.fail(400, count=1)
    results = []
    finished = threading.Event()

    def hook(error, batch):
        start = time.monotonic()
        value = client.flush(timeout=1)
        results.append((value, time.monotonic() - start))
        finished.set()

    errors.hook = hook
    client = make_client(batch_size=1, flush_interval=0.01)
    client.track("u", "rejected")
    assert finished.wait(5), "flush from inside on_error hung"
    value, elapsed = results[0]
    assert isinstance(value, bool)
    assert elapsed < 2
    # and the consumer keeps delivering
    client.track("u", "later")
    assert client.flush(timeout=5) is True
    assert [m["event"] for m in collector.delivered_messages()] == ["later"]


def test_concurrent_flushes_all_return(make_client, collector):
    client = make_client(batch_size=10, flush_interval=10)
    for _ in range(30):
        client.track("u", "E")
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(client.flush(timeout=5)), daemon=True)
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(8)
    assert results == [True] * 4
    assert collector.message_count() == 30


# ------------------------------------------------------------------- shutdown


def test_shutdown_delivers_what_was_queued(make_client, collector):
    client = make_client(batch_size=100, flush_interval=10)
    ids = [client.track("u", "E")[1]["messageId"] for _ in range(10)]
    assert client.shutdown(timeout=5) is True
    assert sorted(m["messageId"] for m in collector.messages()) == sorted(ids)


CALLS = {
    "track": lambda c: c.track("u", "E"),
    "identify": lambda c: c.identify("u"),
    "page": lambda c: c.page("u"),
    "screen": lambda c: c.screen("u"),
    "group": lambda c: c.group("u", "g"),
    "alias": lambda c: c.alias("p", "u"),
}


@pytest.mark.parametrize("kind", list(CALLS))
def test_calls_after_shutdown_are_refused_and_reported(make_client, collector, errors, kind):
    client = make_client()
    assert client.shutdown(timeout=5) is True
    start = time.monotonic()
    ok, msg = call_within(5, CALLS[kind], client)
    assert time.monotonic() - start < 1
    assert ok is False
    assert msg["type"] == kind and "messageId" in msg
    [(error, batch)] = errors.wait_for(1, timeout=2)
    assert isinstance(error, analytics.ClientShutdown)
    assert isinstance(error, analytics.DeliveryError)
    assert [m["messageId"] for m in batch] == [msg["messageId"]]
    stats = client.stats()
    assert stats["dropped_by_reason"]["shutdown"] == 1
    assert stats["queued"] == 0
    assert client.flush(timeout=2) is True
    assert collector.requests == []


def test_shutdown_with_server_hung_is_bounded(make_client, collector):
    collector.hang()
    client = make_client(timeout=10)
    client.track("u", "E")
    collector.wait_for_requests(1, timeout=5)
    start = time.monotonic()
    result = call_within(10, client.shutdown, timeout=1)
    assert time.monotonic() - start < 2
    assert result is False


def test_shutdown_with_server_down_is_bounded(make_client, down_collector):
    client = make_client(host=down_collector.url, max_retries=1000)
    client.track("u", "E")
    start = time.monotonic()
    call_within(10, client.shutdown, timeout=1)
    assert time.monotonic() - start < 2


def test_shutdown_twice_is_harmless(make_client):
    client = make_client()
    assert client.shutdown(timeout=2) is True
    start = time.monotonic()
    assert client.shutdown(timeout=2) is True
    assert time.monotonic() - start < 1


def test_shutdown_stops_the_consumer_thread(make_client, collector):
    def others():
        return {
            t for t in threading.enumerate()
            if "process_request" not in t.name and t.is_alive()
        }

    before = others()
    client = make_client()
    client.track("u", "E")
    assert client.flush(timeout=5)
    assert client.shutdown(timeout=2) is True
    assert wait_until(lambda: others() <= before, timeout=3), (
        f"threads left running: {others() - before}"
    )


def test_context_manager_shuts_down_on_exit(collector, errors):
    with analytics.Client("k", host=collector.url, on_error=errors, flush_interval=10) as c:
        ok, msg = c.track("u", "E")
        assert ok
    # exit flushed and shut down
    assert [m["messageId"] for m in collector.messages()] == [msg["messageId"]]
    ok, _ = c.track("u", "after")
    assert ok is False
    errors.wait_for(1, timeout=2)
    assert isinstance(errors.errors[0], analytics.ClientShutdown)


def test_shutdown_interrupts_a_backoff_wait_and_reports_the_batch(
    make_client, collector, errors, monkeypatch
):
    # backoff waits of up to 30 s: only an interruptible wait lets the batch be
    # reported promptly once shutdown gives up on it
    collector.fail(500)
    client = make_client(max_retries=1000, backoff=analytics.Backoff(factor=100.0))
    ok, msg = client.track("u", "E")
    assert ok
    collector.wait_for_requests(1, timeout=5)  # first attempt failed: now in backoff
    start = time.monotonic()
    assert call_within(10, client.shutdown, timeout=1) is False
    assert time.monotonic() - start < 2
    errors.wait_for(1, timeout=3)
    assert errors.message_ids() == [msg["messageId"]]
    assert client.stats()["pending"] == 0
