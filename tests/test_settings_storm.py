"""The facade's settings changed from several threads while others call: every accepted
message is delivered (or reported) exactly once, and every replaced client stops its thread,
closes its connections and leaves the exit registry once it has delivered what it held."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from collector import Collector
from helpers import ErrorLog, wait_until

import analytics
from analytics import lifecycle

TRACKERS, FLIPPERS, PER_TRACKER = 4, 4, 1500


# Threads and pipelines that other tests left behind are not this test's to count.
def _library_threads(before: set[threading.Thread] = frozenset()) -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t.name == "analytics-consumer" and t.is_alive() and t not in before
    ]


def _open_connections(before: set[threading.Thread] = frozenset()) -> int:
    """Connections the test collectors still serve (a handler thread each, until the
    client closes it)."""
    return sum(
        1 for t in threading.enumerate() if "process_request_thread" in t.name and t not in before
    )


def test_flipping_host_and_write_key_under_load_loses_nothing_and_leaks_nothing(
    facade: Any, collector: Collector, errors: ErrorLog
) -> None:
    other = Collector()
    try:
        before = set(threading.enumerate())
        running_before = set(lifecycle._running)
        accepted: list[str] = []
        refused: list[str] = []
        done = threading.Event()
        failures: list[BaseException] = []

        def flip(i: int) -> None:
            n = 0
            try:
                while not done.is_set():
                    analytics.host = (collector.url, other.url)[n % 2]
                    analytics.write_key = f"key-{i}-{n}"
                    n += 1
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                failures.append(exc)

        def track(i: int) -> None:
            try:
                for j in range(PER_TRACKER):
                    ok, msg = analytics.track(f"user-{i}", "Storm", {"j": j})
                    (accepted if ok else refused).append(msg["messageId"])
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                failures.append(exc)

        flippers = [threading.Thread(target=flip, args=(i,)) for i in range(FLIPPERS)]
        trackers = [threading.Thread(target=track, args=(i,)) for i in range(TRACKERS)]
        for t in flippers + trackers:
            t.start()
        for t in trackers:
            t.join(60)
        done.set()
        for t in flippers:
            t.join(10)
        assert not any(t.is_alive() for t in flippers + trackers)
        assert failures == []
        analytics.host = collector.url  # settled: one last client

        assert analytics.flush(timeout=10) is True
        arrived = Counter(
            m["messageId"] for c in (collector, other) for m in c.delivered_messages()
        )
        reported = Counter(errors.message_ids())
        assert len(accepted) + len(refused) == TRACKERS * PER_TRACKER
        assert [i for i in accepted if arrived[i] + reported[i] != 1] == []
        assert [i for i in refused if reported[i] != 1 or arrived[i]] == []
        assert refused == []  # a call racing a rebuild goes to the new client
        assert reported == Counter()

        # The replaced clients, drained: their threads end, their sessions close and they
        # leave the exit registry, without a shutdown.
        assert wait_until(lambda: len(_library_threads(before)) <= 1, timeout=5)
        assert wait_until(lambda: len(set(lifecycle._running) - running_before) <= 1, timeout=5)
        assert wait_until(lambda: _open_connections(before) <= 1, timeout=5)

        assert analytics.shutdown(timeout=5) is True
        assert _library_threads(before) == []
        assert set(lifecycle._running) - running_before == set()
        assert [
            t
            for t in set(threading.enumerate()) - before
            if t.is_alive() and "process_request_thread" not in t.name
        ] == []
    finally:
        other.stop()


def test_a_client_retired_before_its_first_call_starts_no_thread_and_passes_calls_on(
    make_client: Any, collector: Collector, errors: ErrorLog
) -> None:
    old, new = make_client(), make_client()
    old.retire(new)
    assert old._pipeline.done()
    ok, msg = old.track("u1", "After retire")
    assert ok is True
    assert old._pipeline.consumer is None  # the call started no thread in the retired one
    assert old._pipeline not in lifecycle._running
    assert new.flush(timeout=5) is True
    assert [m["messageId"] for m in collector.delivered_messages()] == [msg["messageId"]]
    assert old.stats()["queued"] == 0 and errors.calls == []


def test_a_retired_client_delivers_what_it_holds_then_ends_and_closes_its_connection(
    make_client: Any, collector: Collector
) -> None:
    before = set(threading.enumerate())
    client = make_client(flush_interval=30)  # what it holds waits for the retirement
    ids = [client.track("u1", "Held")[1]["messageId"] for _ in range(3)]
    consumer = client._pipeline.consumer
    assert consumer is not None and consumer.alive()
    client.retire()
    assert wait_until(client._pipeline.done, timeout=5)
    assert not consumer.alive()
    assert client._pipeline not in lifecycle._running
    assert [m["messageId"] for m in collector.delivered_messages()] == ids
    assert wait_until(lambda: _open_connections(before) == 0, timeout=5)


def test_a_retired_client_without_a_successor_refuses_and_reports_once(
    make_client: Any, errors: ErrorLog
) -> None:
    client = make_client()
    client.retire()
    ok, msg = client.track("u1", "Refused")
    assert ok is False
    [(error, batch)] = errors.calls
    assert isinstance(error, analytics.ClientShutdown)
    assert batch == [msg]
    assert client.stats()["dropped_by_reason"]["shutdown"] == 1


def test_a_retired_sync_client_closes_its_connection(
    make_client: Any, collector: Collector
) -> None:
    before = set(threading.enumerate())
    client = make_client(sync_mode=True)
    assert client.track("u1", "Sent now")[0] is True
    assert _open_connections(before) == 1
    client.retire()
    assert client._pipeline.done()
    assert wait_until(lambda: _open_connections(before) == 0, timeout=5)
