"""The retry rule: which answers are retried, and how long to wait before the next try.

Waits come from `backoff`'s exponential generator with full jitter, each capped at 30 s;
a `Retry-After` from the collector replaces that wait (capped at 60 s).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from collections.abc import Iterator
from dataclasses import dataclass

import backoff

MAX_BACKOFF_WAIT = 30.0
MAX_RETRY_AFTER = 60.0

_RETRYABLE_4XX = frozenset({408, 429})


def is_retryable(status: int | None) -> bool:
    """Network errors (no status), 5xx, 408 and 429 are worth another try. Anything else is
    a refusal, a 3xx too: it is a redirect that transport.py would not follow."""
    return status is None or status in _RETRYABLE_4XX or 500 <= status <= 599


def backoff_waits(factor: float = 1.0, max_wait: float = MAX_BACKOFF_WAIT) -> Iterator[float]:
    """Successive jittered wait times for one batch (the n-th up to `factor` * 2**n s, each
    capped at `max_wait`); a fresh generator per batch."""
    gen = backoff.expo(factor=factor, max_value=max_wait)
    first = next(gen)  # backoff >= 2 primes its generators with a bare yield
    if first is not None:
        yield backoff.full_jitter(min(first, max_wait))
    for value in gen:
        yield backoff.full_jitter(min(value, max_wait))


@dataclass(frozen=True)
class Backoff:
    """The waits between tries of a batch: exponential with full jitter, from `backoff`.
    The n-th wait is up to `factor` * 2**n seconds, each at most `max_wait`."""

    factor: float = 1.0
    max_wait: float = MAX_BACKOFF_WAIT

    def waits(self) -> Iterator[float]:
        """A fresh series of waits, for one batch."""
        return backoff_waits(self.factor, self.max_wait)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (seconds or HTTP date), capped.
    None when there is no usable header."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
