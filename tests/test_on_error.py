"""on_error: called once per undeliverable message with a reason; its exceptions are
logged and never kill the consumer."""

from __future__ import annotations

import logging
from collections import Counter

from helpers import ErrorLog

import analytics


def test_exception_in_on_error_is_logged_and_consumer_keeps_delivering(
    make_client, collector, caplog
):
    caplog.set_level(logging.DEBUG, logger="analytics")
    boom = ErrorLog(raise_exc=RuntimeError("on_error blew up"))
    collector.fail(400, count=1)
    client = make_client(on_error=boom, batch_size=1, flush_interval=0.01)
    client.track("u", "rejected")
    boom.wait_for(1, timeout=5)
    client.track("u", "later")
    assert client.flush(timeout=5) is True
    assert [m["event"] for m in collector.delivered_messages()] == ["later"]
    logged = [
        r for r in caplog.records
        if r.name.startswith("analytics") and (
            (r.exc_info and isinstance(r.exc_info[1], RuntimeError))
            or "on_error blew up" in r.getMessage()
        )
    ]
    assert logged, "the on_error exception was not logged"


def test_exception_in_on_error_never_reaches_the_caller(make_client, collector):
    boom = ErrorLog(raise_exc=RuntimeError("on_error blew up"))
    client = make_client(on_error=boom)
    ok, _ = client.track("u", "Huge", {"blob": "x" * 40_000})  # must not raise
    assert ok is False
    client.shutdown(timeout=2)
    ok, _ = client.track("u", "after")  # must not raise
    assert ok is False
    assert len(boom) == 2


def test_on_error_receives_error_and_list_of_message_dicts(make_client, collector, errors):
    collector.fail(422, count=1)
    client = make_client(batch_size=3, flush_interval=10)
    sent = [client.track("u", "E", {"i": i})[1] for i in range(3)]
    assert client.flush(timeout=5)
    [(error, batch)] = errors.wait_for(1, timeout=2)
    assert isinstance(error, BaseException)
    assert isinstance(batch, list)
    assert all(isinstance(m, dict) for m in batch)
    assert sorted(m["messageId"] for m in batch) == sorted(m["messageId"] for m in sent)
    assert {m["event"] for m in batch} == {"E"}


def test_every_undelivered_message_reaches_on_error_exactly_once(make_client, collector, errors):
    client = make_client(batch_size=2, flush_interval=10, max_retries=1)
    expected = []
    collector.fail(400, count=1)
    expected += [client.track("u", "rejected")[1]["messageId"] for _ in range(2)]
    assert client.flush(timeout=5)
    collector.fail(503, count=2)
    expected += [client.track("u", "gave-up")[1]["messageId"] for _ in range(2)]
    assert client.flush(timeout=5)
    expected.append(client.track("u", "huge", {"b": "x" * 40_000})[1]["messageId"])
    client.track("u", "delivered")
    assert client.shutdown(timeout=5)
    expected.append(client.track("u", "late")[1]["messageId"])
    errors.wait_for(4, timeout=2)
    counts = Counter(errors.message_ids())
    assert sorted(counts) == sorted(expected)
    assert set(counts.values()) == {1}
    kinds = [type(e) for e in errors.errors]
    assert kinds.count(analytics.APIError) == 1
    assert kinds.count(analytics.RetriesExhausted) == 1
    assert kinds.count(analytics.MessageTooLarge) == 1
    assert kinds.count(analytics.ClientShutdown) == 1
    stats = client.stats()
    assert stats["dropped"] == len(expected)
    assert stats["delivered"] == 1


def test_no_on_error_means_failures_are_only_logged(make_client, collector, caplog):
    caplog.set_level(logging.WARNING, logger="analytics")
    collector.fail(400, count=1)
    client = make_client(on_error=None)
    client.track("u", "E")
    assert client.flush(timeout=5) is True
    assert client.stats()["dropped_by_reason"]["rejected"] == 1
