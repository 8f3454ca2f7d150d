"""Retry policy against real faults: statuses, Retry-After, refused connections,
timeouts, giving up, and per-batch retry state."""

from __future__ import annotations

import math
import time
from email.utils import formatdate

import pytest
from helpers import wait_until

import analytics
import analytics.retry


def _ids(req):
    return sorted(req.ids)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
def test_retryable_status_twice_then_200_is_delivered(make_client, collector, errors, status):
    collector.fail(status, count=2)
    client = make_client()
    ok, msg = client.track("u", "E")
    assert ok
    assert client.flush(timeout=10) is True
    assert len(collector.requests) == 3
    assert [r.status for r in collector.requests] == [status, status, 200]
    assert all(_ids(r) == [msg["messageId"]] for r in collector.requests), "batch changed"
    stats = client.stats()
    assert stats["retries"] == 2
    assert stats["requests"] == 3
    assert stats["delivered"] == 1
    assert stats["dropped"] == 0
    assert len(errors) == 0


def test_429_retry_after_seconds_is_honoured(make_client, collector, errors):
    collector.fail(429, count=1, retry_after="1")
    client = make_client()
    client.track("u", "E")
    assert client.flush(timeout=10) is True
    first, second = collector.requests
    gap = second.arrived - first.arrived
    assert gap >= 0.95, f"retried after {gap:.3f}s despite Retry-After: 1"
    assert second.status == 200
    stats = client.stats()
    assert stats["retries"] == 1, "a Retry-After wait counts as a retry"
    assert stats["requests"] == 2
    assert stats["delivered"] == 1
    assert len(errors) == 0


def test_retry_after_http_date_is_honoured(make_client, collector, errors):
    # an HTTP date 2 s past the current whole second: the wait is between 1 and 2 s
    def header() -> str:
        return formatdate(math.floor(time.time()) + 2, usegmt=True)

    collector.fail(503, count=1, retry_after=header)
    client = make_client()
    client.track("u", "E")
    assert client.flush(timeout=10) is True
    first, second = collector.requests
    gap = second.arrived - first.arrived
    assert gap >= 0.8, f"retried after {gap:.3f}s despite an HTTP-date Retry-After"
    assert client.stats()["delivered"] == 1
    assert len(errors) == 0


def test_retry_after_replaces_the_backoff_wait(make_client, collector, monkeypatch):
    # with a huge backoff factor, only Retry-After: 0 can make these retries fast
    collector.fail(503, count=3, retry_after="0")
    client = make_client(backoff=analytics.Backoff(factor=10.0))
    client.track("u", "E")
    start = time.monotonic()
    assert client.flush(timeout=5) is True
    assert time.monotonic() - start < 5
    assert len(collector.requests) == 4
    assert client.stats()["retries"] == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_other_4xx_is_not_retried(make_client, collector, errors, status):
    collector.fail(status)
    client = make_client()
    ok, msg = client.track("u", "E")
    assert ok
    assert client.flush(timeout=5) is True
    assert len(collector.requests) == 1
    [(error, batch)] = errors.wait_for(1, timeout=2)
    assert isinstance(error, analytics.APIError)
    assert isinstance(error, analytics.DeliveryError)
    assert error.status == status
    assert [m["messageId"] for m in batch] == [msg["messageId"]]
    stats = client.stats()
    assert stats["dropped_by_reason"]["rejected"] == 1
    assert stats["retries"] == 0
    assert stats["requests"] == 1
    assert stats["delivered"] == 0


def test_400_rejects_the_whole_batch_once(make_client, collector, errors):
    collector.fail(400, count=1)
    client = make_client(batch_size=10, flush_interval=10)
    sent = [client.track("u", "E")[1]["messageId"] for _ in range(5)]
    assert client.flush(timeout=5) is True
    assert len(collector.requests) == 1
    errors.wait_for(1, timeout=2)
    assert len(errors) == 1
    assert sorted(errors.message_ids()) == sorted(sent)
    assert client.stats()["dropped_by_reason"]["rejected"] == 5


def test_always_500_gives_up_after_max_retries(make_client, collector, errors):
    collector.fail(500)
    client = make_client(max_retries=2, batch_size=10, flush_interval=10)
    sent = [client.track("u", "E")[1]["messageId"] for _ in range(3)]
    assert client.flush(timeout=10) is True
    assert len(collector.requests) == 3
    [(error, batch)] = errors.wait_for(1, timeout=2)
    assert isinstance(error, analytics.RetriesExhausted)
    assert isinstance(error, analytics.DeliveryError)
    assert error.status == 500
    assert error.attempts == 3
    assert sorted(m["messageId"] for m in batch) == sorted(sent)
    stats = client.stats()
    assert stats["dropped_by_reason"]["gave_up"] == 3
    assert stats["dropped"] == 3
    assert stats["delivered"] == 0
    assert stats["requests"] == 3
    assert stats["retries"] == 2


def test_max_retries_zero_means_a_single_attempt(make_client, collector, errors):
    collector.fail(503)
    client = make_client(max_retries=0)
    client.track("u", "E")
    assert client.flush(timeout=5) is True
    assert len(collector.requests) == 1
    errors.wait_for(1, timeout=2)
    assert isinstance(errors.errors[0], analytics.RetriesExhausted)


def test_retry_state_is_kept_per_batch(make_client, collector, errors):
    collector.fail(500, count=5)
    client = make_client(max_retries=2, batch_size=1, flush_interval=10)
    client.track("u", "first")
    assert client.flush(timeout=10)  # 3 attempts, all 500: gave up
    client.track("u", "second")
    assert client.flush(timeout=10)  # 500, 500, then 200: a fresh budget of retries
    assert len(collector.requests) == 6
    assert [m["event"] for m in collector.delivered_messages()] == ["second"]
    errors.wait_for(1, timeout=2)
    assert len(errors) == 1
    assert errors.calls[0][1][0]["event"] == "first"


def test_refused_connection_then_server_comes_up_is_delivered(
    make_client, down_collector, errors
):
    client = make_client(host=down_collector.url, max_retries=30)
    ok, msg = client.track("u", "E")
    assert ok
    assert wait_until(lambda: client.stats()["retries"] >= 1, timeout=5), "no retry seen"
    down_collector.start()
    assert client.flush(timeout=10) is True
    [received] = down_collector.messages()
    assert received["messageId"] == msg["messageId"]
    assert client.stats()["delivered"] == 1
    assert len(errors) == 0


def test_refused_connection_gives_up_with_status_none(make_client, down_collector, errors):
    client = make_client(host=down_collector.url, max_retries=2)
    ok, msg = client.track("u", "E")
    assert ok
    assert client.flush(timeout=10) is True
    [(error, batch)] = errors.wait_for(1, timeout=2)
    assert isinstance(error, analytics.RetriesExhausted)
    assert error.status is None
    assert error.attempts == 3
    assert [m["messageId"] for m in batch] == [msg["messageId"]]
    assert client.stats()["dropped_by_reason"]["gave_up"] == 1


def test_request_timeout_is_retried(make_client, collector, errors):
    collector.hang(count=1)
    client = make_client(timeout=0.5)
    ok, msg = client.track("u", "E")
    assert ok
    assert client.flush(timeout=10) is True
    assert len(collector.requests) >= 2
    assert msg["messageId"] in [m["messageId"] for m in collector.delivered_messages()]
    assert client.stats()["retries"] >= 1
    assert client.stats()["delivered"] == 1
    assert len(errors) == 0


# -- Segment 2.4's time bounds: max_total_backoff_duration, max_rate_limit_duration -------------

# Waits of a few ms: 1000 retries of them would take seconds, far more than the bounds below.
TINY_WAITS = analytics.Backoff(factor=0.001, max_wait=0.02)


def test_the_duration_bounds_default_to_segments():
    client = analytics.Client("k", stub=True)
    assert client.settings.max_total_backoff_duration == 43200  # 12 h
    assert client.settings.max_rate_limit_duration == 1800  # 30 min
    for name in ("max_total_backoff_duration", "max_rate_limit_duration"):
        with pytest.raises(analytics.ValidationError, match=f"{name} must be a number >= 0"):
            analytics.Client("k", stub=True, **{name: -1})
        with pytest.raises(analytics.ValidationError, match=f"{name} must be a number >= 0"):
            analytics.Client("k", stub=True, **{name: "30"})


def test_503_forever_is_given_up_once_max_total_backoff_duration_is_spent(
    make_client, collector, errors
):
    collector.fail(503)
    client = make_client(max_retries=1000, max_total_backoff_duration=0.3, backoff=TINY_WAITS)
    started = time.monotonic()
    ok, msg = client.track("u", "E")
    assert ok and client.flush(timeout=10) is True
    took = time.monotonic() - started
    [(error, batch)] = errors.wait_for(1, timeout=2)
    assert isinstance(error, analytics.RetriesExhausted) and error.status == 503
    assert "max_total_backoff_duration" in str(error)
    assert [m["messageId"] for m in batch] == [msg["messageId"]]
    requests = collector.snapshot()
    assert 2 < len(requests) == error.attempts < 1001, "retried, then given up by the bound"
    assert 0.3 <= took < 5, f"{took:.2f} s: given up before the bound, or not by it"
    stats = client.stats()
    assert stats["dropped_by_reason"]["gave_up"] == stats["dropped"] == 1
    assert stats["delivered"] == 0
    assert client.shutdown(timeout=2)  # nothing more is sent, on_error is not called again
    assert len(collector.snapshot()) == len(requests) and len(errors) == 1


def test_max_total_backoff_duration_zero_means_no_backoff_retry(make_client, collector, errors):
    collector.fail(500)
    client = make_client(max_total_backoff_duration=0)
    client.track("u", "E")
    assert client.flush(timeout=10) is True
    [(error, _)] = errors.wait_for(1, timeout=2)
    assert isinstance(error, analytics.RetriesExhausted) and error.attempts == 1
    assert len(collector.snapshot()) == 1


def test_429_forever_is_given_up_once_max_rate_limit_duration_is_spent(
    make_client, collector, errors
):
    collector.fail(429, retry_after="0.1")
    client = make_client(max_retries=1000, max_rate_limit_duration=0.3)
    started = time.monotonic()
    client.track("u", "E")
    assert client.flush(timeout=10) is True
    took = time.monotonic() - started
    [(error, _)] = errors.wait_for(1, timeout=2)
    assert isinstance(error, analytics.RetriesExhausted) and error.status == 429
    assert "max_rate_limit_duration" in str(error)
    requests = collector.snapshot()
    # Waits of 0.1 s from the first 429: those ending by 0.3 s are honoured, no later one.
    assert 2 <= len(requests) <= 4, [r.arrived for r in requests]  # 4: a wait ended early
    assert requests[-1].arrived - requests[0].arrived < 0.3 + 0.1
    assert took < 3, f"{took:.2f} s"
    assert client.stats()["dropped_by_reason"]["gave_up"] == client.stats()["dropped"] == 1
    assert client.shutdown(timeout=2)  # nothing more is sent, on_error is not called again
    assert len(collector.snapshot()) == len(requests) and len(errors) == 1


def test_a_retry_after_longer_than_max_rate_limit_duration_is_not_waited(
    make_client, collector, errors
):
    collector.fail(503, retry_after="30")
    client = make_client(max_rate_limit_duration=0.3)
    started = time.monotonic()
    client.track("u", "E")
    assert client.flush(timeout=10) is True
    assert time.monotonic() - started < 5, "the 30 s wait was begun"
    [(error, _)] = errors.wait_for(1, timeout=2)
    assert isinstance(error, analytics.RetriesExhausted) and error.attempts == 1
    assert len(collector.snapshot()) == 1


def test_the_duration_bounds_leave_max_retries_as_it_was(make_client, collector, errors):
    collector.fail(503)
    client = make_client(max_retries=3, max_total_backoff_duration=60, backoff=TINY_WAITS)
    client.track("u", "E")
    assert client.flush(timeout=10) is True
    [(error, _)] = errors.wait_for(1, timeout=2)
    assert isinstance(error, analytics.RetriesExhausted) and error.attempts == 4
    assert "duration" not in str(error)
