"""The retry rule alone (analytics/retry.py): which statuses are retried, the jittered
backoff waits, and how a Retry-After header is read."""

from __future__ import annotations

import itertools
import math
from email.utils import formatdate

import pytest

import analytics.retry
from analytics.retry import (
    MAX_BACKOFF_WAIT,
    MAX_RETRY_AFTER,
    backoff_waits,
    is_retryable,
    parse_retry_after,
)

# -- is_retryable --------------------------------------------------------------------------


def test_a_network_error_without_a_status_is_retried():
    assert is_retryable(None) is True


@pytest.mark.parametrize("status", [408, 429])
def test_request_timeout_and_too_many_requests_are_retried(status: int):
    assert is_retryable(status) is True


@pytest.mark.parametrize("status", [500, 501, 502, 503, 504, 599])
def test_every_5xx_is_retried(status: int):
    assert is_retryable(status) is True


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422, 499])
def test_other_4xx_are_not_retried(status: int):
    assert is_retryable(status) is False


@pytest.mark.parametrize("status", [200, 201, 204, 299, 301, 304, 600])
def test_success_redirect_and_out_of_range_statuses_are_not_retried(status: int):
    assert is_retryable(status) is False


# -- backoff_waits -------------------------------------------------------------------------

SAMPLES = 400  # generators sampled; a draw under half its cap 400 times: p = 2**-400
TRIES = 10


def caps(factor: float) -> list[float]:
    return [min(factor * 2**n, MAX_BACKOFF_WAIT) for n in range(TRIES)]


def draws(monkeypatch: pytest.MonkeyPatch, factor: float) -> list[list[float]]:
    """SAMPLES series of the first TRIES waits of a policy with this factor."""
    policy = analytics.Backoff(factor=factor)
    return [list(itertools.islice(policy.waits(), TRIES)) for _ in range(SAMPLES)]


def test_each_wait_lies_between_zero_and_its_growing_cap(monkeypatch: pytest.MonkeyPatch):
    limits = caps(1.0)
    for series in draws(monkeypatch, 1.0):
        assert len(series) == TRIES
        for wait, cap in zip(series, limits):
            assert 0.0 <= wait <= cap


def test_no_wait_is_over_30_seconds(monkeypatch: pytest.MonkeyPatch):
    for _ in range(50):
        series = list(itertools.islice(backoff_waits(), 40))
        assert max(series) <= MAX_BACKOFF_WAIT == 30.0


def test_the_caps_grow_and_the_jitter_reaches_up_to_them(monkeypatch: pytest.MonkeyPatch):
    # the n-th wait is jittered over [0, cap_n]: across many series its largest draw is
    # over half of cap_n, so the caps seen grow 1, 2, 4, 8, 16 then stay at 30
    limits = caps(1.0)
    highest = [max(column) for column in zip(*draws(monkeypatch, 1.0))]
    for top, cap in zip(highest, limits):
        assert cap / 2 < top <= cap
    assert highest[4] > highest[0] * 4  # 16 s cap against 1 s


def test_the_waits_are_jittered_not_fixed(monkeypatch: pytest.MonkeyPatch):
    firsts = {series[0] for series in draws(monkeypatch, 1.0)}
    assert len(firsts) > SAMPLES // 2


def test_backoff_factor_scales_the_caps(monkeypatch: pytest.MonkeyPatch):
    assert analytics.Backoff().factor == 1.0 and analytics.Backoff().max_wait == 30.0
    limits = caps(0.001)
    for series in draws(monkeypatch, 0.001):
        for wait, cap in zip(series, limits):
            assert 0.0 <= wait <= cap


def test_each_call_starts_a_fresh_series(monkeypatch: pytest.MonkeyPatch):
    # a used-up series does not carry over: the first wait of a new one is under 1 s again
    old = backoff_waits()
    for _ in range(TRIES):
        next(old)
    assert all(next(backoff_waits()) <= 1.0 for _ in range(SAMPLES))


# -- parse_retry_after ---------------------------------------------------------------------

NOW = 1_700_000_000.0  # a fixed "now" for HTTP dates: 2023-11-14T22:13:20Z


@pytest.mark.parametrize(("header", "seconds"), [("5", 5.0), ("0", 0.0), ("1.5", 1.5)])
def test_seconds_are_read_as_seconds(header: str, seconds: float):
    assert parse_retry_after(header) == seconds


def test_surrounding_whitespace_is_ignored():
    assert parse_retry_after("  7 \t") == 7.0


def test_an_http_date_is_read_as_seconds_from_now():
    header = formatdate(NOW + 12, usegmt=True)
    assert parse_retry_after(header, now=NOW) == 12.0


def test_an_http_date_without_a_zone_is_taken_as_utc():
    header = formatdate(NOW + 20, usegmt=True).replace("GMT", "-0000")
    assert parse_retry_after(header, now=NOW) == 20.0


def test_an_http_date_with_an_offset_is_converted():
    # 2023-11-14 23:13:30 at +01:00 is 22:13:30 UTC: ten seconds past NOW
    assert parse_retry_after("Tue, 14 Nov 2023 23:13:30 +0100", now=NOW) == 10.0


def test_an_http_date_in_the_past_means_no_wait():
    header = formatdate(NOW - 30, usegmt=True)
    assert parse_retry_after(header, now=NOW) == 0.0


def test_an_http_date_far_ahead_is_capped_at_60_seconds():
    header = formatdate(NOW + 3600, usegmt=True)
    assert parse_retry_after(header, now=NOW) == MAX_RETRY_AFTER == 60.0


@pytest.mark.parametrize("header", ["120", "60.5", "1e9", "inf"])
def test_seconds_over_the_cap_are_capped_at_60(header: str):
    assert parse_retry_after(header) == MAX_RETRY_AFTER


@pytest.mark.parametrize("header", ["-5", "-0.5", "-inf"])
def test_negative_seconds_mean_no_wait(header: str):
    assert parse_retry_after(header) == 0.0


@pytest.mark.parametrize("header", ["nan", "NaN", "-nan"])
def test_nan_is_no_usable_header(header: str):
    assert parse_retry_after(header) is None


@pytest.mark.parametrize("header", [None, "", "   "])
def test_a_missing_or_empty_header_is_none(header: str | None):
    assert parse_retry_after(header) is None


@pytest.mark.parametrize(
    "header", ["soon", "tomorrow at noon", "5s", "0x10", "Mon, 32 Foo 2023", "Tue, 14 Nov"]
)
def test_garbage_is_no_usable_header(header: str):
    assert parse_retry_after(header, now=NOW) is None


@pytest.mark.parametrize(
    "header",
    [
        "Mon, 01 Jan 2000 99999999999999999999:00:00 GMT",
        "Mon, 01 Jan 99999999999999999999 00:00:00 GMT",
        "Mon, 01 Jan 2000 00:00:00 +99999999999999999999",
    ],
)
def test_a_date_with_an_overflowing_number_is_no_usable_header(header: str):
    assert parse_retry_after(header, now=NOW) is None


def test_every_parsed_wait_is_finite_and_within_the_cap():
    headers = ["1", "59.9", "61", "-1", "inf", "-inf", formatdate(NOW + 5, usegmt=True)]
    for header in headers:
        seconds = parse_retry_after(header, now=NOW)
        assert seconds is not None and math.isfinite(seconds)
        assert 0.0 <= seconds <= MAX_RETRY_AFTER
