"""A full queue never blocks the caller: it drops, counts, warns and reports once."""

from __future__ import annotations

import logging
import time
from collections import Counter

from helpers import call_within

import analytics


def test_full_queue_never_blocks_and_reports_each_drop_once(
    make_client, collector, errors, caplog
):
    caplog.set_level(logging.WARNING, logger="analytics")
    collector.hang()
    client = make_client(max_queue_size=10, batch_size=5, flush_interval=0.01, timeout=10)
    results = []
    durations = []

    def calls():
        for i in range(200):
            start = time.perf_counter()
            results.append(client.track("u", "E", {"i": i}))
            durations.append(time.perf_counter() - start)

    call_within(10, calls)  # a blocking call fails here instead of hanging the suite

    assert max(durations) < 0.05, f"slowest call took {max(durations) * 1000:.1f} ms"
    dropped = [msg for ok, msg in results if not ok]
    accepted = [msg for ok, msg in results if ok]
    assert len(dropped) + len(accepted) == 200
    assert len(dropped) >= 200 - 10 - 5, "more accepted than queue + one batch can hold"
    assert len(accepted) >= 10

    stats = client.stats()
    assert stats["dropped_by_reason"]["queue_full"] == len(dropped)
    assert stats["queued"] == len(accepted)

    errors.wait_for(len(dropped), timeout=5)
    full = errors.of_type(analytics.QueueFull)
    assert len(full) == len(dropped) == len(errors)
    assert all(len(batch) == 1 for _, batch in full)
    reported = Counter(batch[0]["messageId"] for _, batch in full)
    assert set(reported) == {m["messageId"] for m in dropped}
    assert max(reported.values()) == 1, "a dropped message was reported twice"
    assert all(isinstance(e, analytics.DeliveryError) for e, _ in full)

    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings, "a full queue must log a warning"
    assert all(r.name == "analytics" or r.name.startswith("analytics.") for r in warnings)


def test_accepted_messages_are_delivered_after_the_server_recovers(
    make_client, collector, errors
):
    collector.hang()
    client = make_client(max_queue_size=10, batch_size=5, flush_interval=0.01, timeout=10)
    results = call_within(10, lambda: [client.track("u", "E") for _ in range(50)])
    accepted = {m["messageId"] for ok, m in results if ok}
    dropped = {m["messageId"] for ok, m in results if not ok}
    assert dropped
    collector.release()
    assert client.flush(timeout=10) is True
    delivered = [m["messageId"] for m in collector.delivered_messages()]
    assert sorted(delivered) == sorted(accepted)
    assert not (set(delivered) & dropped)
    assert client.stats()["delivered"] == len(accepted)
