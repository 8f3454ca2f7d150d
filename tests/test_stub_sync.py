"""Stub mode (nothing sent, `client.sent`) and sync mode (the call itself sends)."""

from __future__ import annotations

import time

import pytest
from helpers import call_within

import analytics

# ---------------------------------------------------------------------- stub


def test_stub_sends_nothing(make_client, collector):
    client = make_client(stub=True)
    results = [client.track("u", "E", {"i": i}) for i in range(5)]
    assert all(ok for ok, _ in results)
    assert client.flush(timeout=2) is True
    assert client.shutdown(timeout=2) is True
    assert collector.requests == []


def test_stub_keeps_messages_in_sent_at_call_time(make_client, collector):
    client = make_client(stub=True)
    ok, msg = client.track("u", "E")
    assert ok
    assert isinstance(client.sent, list)
    assert [m["messageId"] for m in client.sent] == [msg["messageId"]]
    assert client.sent[0]["event"] == "E"
    assert client.sent[0]["type"] == "track"


def test_stub_sent_keeps_the_last_max_queue_size_messages(make_client, collector):
    client = make_client(stub=True, max_queue_size=5)
    ids = [client.track("u", "E", message_id=f"s{i}")[1]["messageId"] for i in range(12)]
    assert [m["messageId"] for m in client.sent] == ids[-5:]


def test_stub_still_validates(make_client):
    client = make_client(stub=True)
    with pytest.raises(analytics.ValidationError):
        client.track("u")  # no event
    with pytest.raises(analytics.ValidationError):
        client.alias(None, "u")
    assert client.sent == []


def test_stub_still_refuses_too_large(make_client, collector, errors):
    client = make_client(stub=True)
    ok, msg = client.track("u", "Huge", {"blob": "x" * 40_000})
    assert ok is False
    assert client.sent == []
    errors.wait_for(1, timeout=2)
    assert isinstance(errors.errors[0], analytics.MessageTooLarge)
    assert client.stats()["dropped_by_reason"]["too_large"] == 1


def test_send_false_is_stub(make_client, collector):
    client = make_client(send=False)
    ok, msg = client.track("u", "E")
    assert ok
    assert [m["messageId"] for m in client.sent] == [msg["messageId"]]
    assert client.flush(timeout=2)
    assert client.shutdown(timeout=2)
    assert collector.requests == []


def test_flush_in_stub_mode_returns_true_at_once(make_client):
    client = make_client(stub=True, flush_interval=30)
    for _ in range(10):
        client.track("u", "E")
    start = time.monotonic()
    assert client.flush(timeout=5) is True
    assert time.monotonic() - start < 1


# ---------------------------------------------------------------------- sync


def test_sync_message_is_at_the_collector_when_the_call_returns(make_client, collector):
    client = make_client(sync_mode=True, flush_interval=30)
    ok, msg = client.track("u", "E")
    assert ok is True
    # no waiting: the request is already recorded
    assert [m["messageId"] for m in collector.messages()] == [msg["messageId"]]
    assert client.stats()["delivered"] == 1


@pytest.mark.parametrize("kind", ["identify", "page", "screen", "group", "alias"])
def test_sync_mode_applies_to_every_call(make_client, collector, kind):
    client = make_client(sync_mode=True, flush_interval=30)
    call = {
        "identify": lambda: client.identify("u"),
        "page": lambda: client.page("u"),
        "screen": lambda: client.screen("u"),
        "group": lambda: client.group("u", "g"),
        "alias": lambda: client.alias("p", "u"),
    }[kind]
    ok, msg = call()
    assert ok is True
    assert [m["messageId"] for m in collector.messages()] == [msg["messageId"]]


def test_sync_rejected_returns_false_and_reports(make_client, collector, errors):
    collector.fail(400)
    client = make_client(sync_mode=True)
    ok, msg = client.track("u", "E")  # must not raise
    assert ok is False
    assert len(collector.requests) == 1
    [(error, batch)] = errors.wait_for(1, timeout=2)
    assert isinstance(error, analytics.APIError) and error.status == 400
    assert [m["messageId"] for m in batch] == [msg["messageId"]]
    assert client.stats()["dropped_by_reason"]["rejected"] == 1


def test_sync_retries_then_succeeds(make_client, collector, errors):
    collector.fail(500, count=2)
    client = make_client(sync_mode=True)
    ok, msg = client.track("u", "E")
    assert ok is True
    assert len(collector.requests) == 3
    assert client.stats()["retries"] == 2
    assert len(errors) == 0


def test_sync_gives_up_beyond_max_retries(make_client, collector, errors):
    collector.fail(500)
    client = make_client(sync_mode=True, max_retries=1)
    ok, msg = client.track("u", "E")
    assert ok is False
    assert len(collector.requests) == 2
    [(error, _)] = errors.wait_for(1, timeout=2)
    assert isinstance(error, analytics.RetriesExhausted)
    assert error.status == 500
    assert client.stats()["dropped_by_reason"]["gave_up"] == 1


def test_sync_refused_connection_returns_false(make_client, down_collector, errors):
    client = make_client(host=down_collector.url, sync_mode=True, max_retries=2)
    start = time.monotonic()
    ok, _ = call_within(20, client.track, "u", "E")
    assert ok is False
    assert time.monotonic() - start < 10
    errors.wait_for(1, timeout=2)
    assert isinstance(errors.errors[0], analytics.RetriesExhausted)


def test_sync_honours_retry_after(make_client, collector):
    collector.fail(429, count=1, retry_after="1")
    client = make_client(sync_mode=True)
    ok, _ = client.track("u", "E")
    assert ok is True
    first, second = collector.requests
    assert second.arrived - first.arrived >= 0.95


def test_sync_too_large_is_refused_without_request(make_client, collector, errors):
    client = make_client(sync_mode=True)
    ok, _ = client.track("u", "E", {"blob": "x" * 40_000})
    assert ok is False
    assert collector.requests == []
    errors.wait_for(1, timeout=2)
    assert isinstance(errors.errors[0], analytics.MessageTooLarge)


def test_flush_in_sync_mode_returns_true_at_once(make_client, collector):
    client = make_client(sync_mode=True)
    client.track("u", "E")
    start = time.monotonic()
    assert client.flush(timeout=5) is True
    assert time.monotonic() - start < 1
