"""on_error is never re-entered on its own thread: a call made inside it is handled (and its
own drop counted), but that drop is not reported to on_error again."""

from __future__ import annotations

import threading
from typing import Any

from collector import Collector
from helpers import call_within, wait_until

import analytics


def test_an_on_error_that_tracks_into_a_full_queue_is_called_once_per_drop(
    collector: Collector, make_client: Any
) -> None:
    calls: list[BaseException] = []
    inner: list[tuple[bool, dict[str, Any]]] = []
    depth = threading.local()

    def on_error(error: BaseException, batch: list[dict[str, Any]]) -> None:
        depth.n = getattr(depth, "n", 0) + 1
        try:
            calls.append(error)
            inner.append(client.track("u1", "Reported", {"depth": depth.n}))
        finally:
            depth.n -= 1

    collector.hang()  # the consumer holds its first batch, so the queue stays full
    client = make_client(max_queue_size=2, batch_size=1, on_error=on_error)
    client.track("u1", "First")
    collector.wait_for_requests(1)
    assert client.track("u1", "Queued")[0] and client.track("u1", "Queued")[0]
    results = [client.track("u1", "Over") for _ in range(10)]

    assert [ok for ok, _ in results] == [False] * 10
    assert len(calls) == 10  # once per original drop, not once per nested one
    assert all(isinstance(e, analytics.QueueFull) for e in calls)
    assert [ok for ok, _ in inner] == [False] * 10  # each handled: refused, not raised
    assert client.stats()["dropped_by_reason"]["queue_full"] == 20  # every drop counted

    collector.release()
    assert client.flush(timeout=5) is True
    assert client.stats()["delivered"] == 3


def test_an_on_error_on_the_consumer_thread_may_track_again(
    collector: Collector, make_client: Any
) -> None:
    """Not a re-entry: a call from on_error that is accepted is delivered as usual."""
    seen: list[BaseException] = []

    def on_error(error: BaseException, batch: list[dict[str, Any]]) -> None:
        seen.append(error)
        client.track("u1", "After a refusal")

    collector.fail(400, count=1)
    client = make_client(on_error=on_error)
    client.track("u1", "Refused")
    assert wait_until(lambda: len(collector.delivered_messages()) == 1)
    assert client.flush(timeout=5) is True
    assert [type(e) for e in seen] == [analytics.APIError]
    assert [m["event"] for m in collector.delivered_messages()] == ["After a refusal"]


def test_a_drop_inside_on_error_is_not_reported_to_another_clients_on_error(
    collector: Collector, make_client: Any
) -> None:
    """Two clients whose on_error track on each other's full queue: bounded, each drop
    counted where it happened."""
    calls: list[str] = []

    def on_error_a(error: BaseException, batch: list[dict[str, Any]]) -> None:
        calls.append("a")
        b.track("u1", "From a")

    def on_error_b(error: BaseException, batch: list[dict[str, Any]]) -> None:
        calls.append("b")
        a.track("u1", "From b")

    collector.hang()
    a = make_client(max_queue_size=1, batch_size=1, on_error=on_error_a)
    b = make_client(max_queue_size=1, batch_size=1, on_error=on_error_b)
    a.track("u1", "First a")
    b.track("u1", "First b")
    collector.wait_for_requests(2)
    assert a.track("u1", "Queued a")[0] and b.track("u1", "Queued b")[0]
    assert a.track("u1", "Over")[0] is False
    assert calls == ["a"]
    assert a.stats()["dropped_by_reason"]["queue_full"] == 1
    assert b.stats()["dropped_by_reason"]["queue_full"] == 1
    collector.release()


def test_an_on_error_that_tracks_on_its_own_sync_client_neither_hangs_nor_recurses(
    collector: Collector, make_client: Any
) -> None:
    calls: list[BaseException] = []
    inner: list[tuple[bool, dict[str, Any]]] = []

    def on_error(error: BaseException, batch: list[dict[str, Any]]) -> None:
        calls.append(error)
        inner.append(client.track("u1", "From on_error"))  # sent, and refused, at once

    collector.fail(400)
    client = make_client(sync_mode=True, on_error=on_error)
    ok, _ = call_within(10, client.track, "u1", "Refused")
    assert ok is False
    assert [type(e) for e in calls] == [analytics.APIError]
    assert [ok for ok, _ in inner] == [False]
    assert client.stats()["dropped_by_reason"]["rejected"] == 2
    assert len(collector.snapshot()) == 2  # the nested call was sent, not skipped
