"""client.stats(): running totals per message, requests and retries, pending."""

from __future__ import annotations

from helpers import wait_until

REASONS = {"queue_full", "too_large", "gave_up", "rejected", "shutdown"}


def test_stats_start_at_zero_with_every_key(make_client):
    stats = make_client().stats()
    assert set(stats) >= {"queued", "delivered", "dropped", "dropped_by_reason", "retries",
                          "requests", "pending"}
    assert set(stats["dropped_by_reason"]) == REASONS
    assert all(stats[k] == 0 for k in ("queued", "delivered", "dropped", "retries",
                                       "requests", "pending"))
    assert all(v == 0 for v in stats["dropped_by_reason"].values())


def test_queued_delivered_and_requests_match(make_client, collector):
    client = make_client(batch_size=10, flush_interval=10)
    for _ in range(25):
        client.track("u", "E")
    assert client.flush(timeout=5)
    stats = client.stats()
    assert stats["queued"] == 25
    assert stats["delivered"] == 25
    assert stats["requests"] == len(collector.requests) == 3
    assert stats["dropped"] == 0
    assert stats["retries"] == 0
    assert stats["pending"] == 0


def test_pending_counts_queued_and_in_flight_then_drops_to_zero(make_client, collector):
    collector.hang(count=1)
    client = make_client(batch_size=3, flush_interval=0.01, timeout=10)
    for _ in range(3):
        client.track("u", "E")
    collector.wait_for_requests(1, timeout=5)
    assert client.stats()["pending"] == 3, "in-flight messages are pending"
    client.track("u", "E")
    assert client.stats()["pending"] == 4
    collector.release()
    assert client.flush(timeout=5)
    assert client.stats()["pending"] == 0
    assert client.stats()["delivered"] == 4


def test_dropped_is_the_sum_of_reasons(make_client, collector):
    collector.fail(400, count=1)
    client = make_client(batch_size=2, flush_interval=10)
    client.track("u", "E")
    client.track("u", "E")
    assert client.flush(timeout=5)
    client.track("u", "E", {"b": "x" * 40_000})
    client.shutdown(timeout=2)
    client.track("u", "E")
    stats = client.stats()
    by = stats["dropped_by_reason"]
    assert by["rejected"] == 2 and by["too_large"] == 1 and by["shutdown"] == 1
    assert stats["dropped"] == sum(by.values()) == 4


def test_stats_is_a_snapshot(make_client, collector):
    client = make_client()
    first = client.stats()
    client.track("u", "E")
    assert client.flush(timeout=5)
    assert wait_until(lambda: client.stats()["delivered"] == 1, timeout=2)
    assert first["delivered"] == 0, "stats() must return a copy, not a live view"
