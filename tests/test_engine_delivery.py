"""One batch through `Delivery` (analytics/delivery.py) with an in-memory Sender and
injected waits: what each answer comes to, how often it is retried, how long it waits, and
how a shutdown cuts it short or takes the batch from a send that never returns."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import pytest
from _engine_fakes import OK, FakeSender, RecordingAbort, message, zeros
from collector import Collector
from helpers import call_within

from analytics.delivery import Delivery, Waits
from analytics.encode import encode
from analytics.errors import APIError, ClientShutdown, RetriesExhausted
from analytics.outcome import DELIVERED, TAKEN, Batch, Outcome
from analytics.protocols import Reply
from analytics.segment import SegmentSender
from analytics.stats import Stats

LIMIT = 5.0  # every wait on another thread is bounded by this


def batch(n: int = 2) -> Batch:
    messages = [message(f"m{i}") for i in range(n)]
    return Batch([encode(m) for m in messages], messages)


def delivery(
    sender: FakeSender,
    max_retries: int = 3,
    abort: threading.Event | None = None,
    waits: Waits = zeros,
) -> Delivery:
    return Delivery(sender, Stats(), max_retries, abort or RecordingAbort(), waits)


def fixed(*values: float) -> Waits:
    """A backoff policy that yields `values`, then zeros."""

    def waits() -> Iterator[float]:
        return itertools.chain(values, itertools.repeat(0.0))

    return waits


# -- delivered -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_a_2xx_answer_is_delivered(status: int):
    sender = FakeSender(then=Reply(status))
    b = batch()
    assert delivery(sender).deliver(b) is DELIVERED
    assert sender.requests == [list(b.items)]


def test_a_delivered_batch_counts_one_request_and_no_retry():
    sender = FakeSender()
    d = delivery(sender)
    d.deliver(batch())
    assert (d.stats.requests, d.stats.retries) == (1, 0)


def test_a_retryable_failure_then_success_is_delivered():
    sender = FakeSender(Reply(500), Reply(503))
    assert delivery(sender).deliver(batch()) is DELIVERED


def test_each_retry_is_counted_as_a_request_and_a_retry():
    sender = FakeSender(Reply(500), Reply(None, detail="ConnectionError"), Reply(429))
    d = delivery(sender, max_retries=5)
    d.deliver(batch())
    assert (d.stats.requests, d.stats.retries) == (4, 3)


def test_every_retry_sends_the_same_items():
    sender = FakeSender(Reply(502), Reply(502))
    b = batch(3)
    delivery(sender).deliver(b)
    assert sender.requests == [list(b.items)] * 3


# -- giving up -----------------------------------------------------------------------------


def test_always_failing_gives_up_after_max_retries_with_retries_exhausted():
    sender = FakeSender(then=Reply(503))
    outcome = delivery(sender, max_retries=3).deliver(batch())
    assert isinstance(outcome.error, RetriesExhausted)
    assert (outcome.error.attempts, outcome.error.status) == (4, 503)
    assert outcome.error.reason == "gave_up"
    assert not outcome.delivered
    assert len(sender.requests) == 4


def test_giving_up_on_a_network_error_keeps_status_none_and_the_detail():
    sender = FakeSender(then=Reply(None, detail="ConnectionError: refused"))
    outcome = delivery(sender, max_retries=1).deliver(batch())
    assert isinstance(outcome.error, RetriesExhausted)
    assert outcome.error.status is None
    assert outcome.error.attempts == 2
    assert "ConnectionError: refused" in str(outcome.error)


def test_giving_up_counts_every_attempt_as_a_request():
    sender = FakeSender(then=Reply(500))
    d = delivery(sender, max_retries=2)
    d.deliver(batch())
    assert (d.stats.requests, d.stats.retries) == (3, 2)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_a_non_retryable_4xx_is_an_api_error_at_once(status: int):
    sender = FakeSender(Reply(status, detail="bad batch"))
    abort = RecordingAbort()
    outcome = delivery(sender, max_retries=5, abort=abort).deliver(batch())
    assert isinstance(outcome.error, APIError)
    assert (outcome.error.status, outcome.error.detail) == (status, "bad batch")
    assert outcome.error.reason == "rejected"
    assert len(sender.requests) == 1
    assert abort.waits == []  # no wait either


def test_a_non_retryable_answer_after_retries_ends_the_retries():
    sender = FakeSender(Reply(500), Reply(400), then=Reply(500))
    outcome = delivery(sender, max_retries=5).deliver(batch())
    assert isinstance(outcome.error, APIError)
    assert len(sender.requests) == 2


def test_per_call_max_retries_zero_gives_one_try():
    sender = FakeSender(then=Reply(500))
    outcome = delivery(sender, max_retries=5).deliver(batch(), max_retries=0)
    assert isinstance(outcome.error, RetriesExhausted)
    assert outcome.error.attempts == 1
    assert len(sender.requests) == 1


def test_per_call_max_retries_can_allow_more_than_the_default():
    sender = FakeSender(Reply(500), Reply(500))
    assert delivery(sender, max_retries=0).deliver(batch(), max_retries=2) is DELIVERED
    assert len(sender.requests) == 3


def test_per_call_max_retries_does_not_stick_to_later_batches():
    sender = FakeSender(then=Reply(500))
    d = delivery(sender, max_retries=2)
    d.deliver(batch(), max_retries=0)
    outcome = d.deliver(batch())
    assert isinstance(outcome.error, RetriesExhausted)
    assert outcome.error.attempts == 3


# -- the waits -----------------------------------------------------------------------------


def test_the_backoff_waits_are_waited_on_the_abort_event():
    sender = FakeSender(Reply(500), Reply(500), Reply(500))
    abort = RecordingAbort()
    delivery(sender, abort=abort, waits=fixed(0.25, 0.5, 1.0)).deliver(batch())
    assert abort.waits == [0.25, 0.5, 1.0]


def test_retry_after_replaces_the_backoff_wait():
    sender = FakeSender(Reply(429, retry_after=2.5), Reply(503))
    abort = RecordingAbort()
    delivery(sender, abort=abort, waits=fixed(7.0, 9.0)).deliver(batch())
    assert abort.waits == [2.5, 9.0]  # the second failure had none: the backoff's own


def test_retry_after_zero_means_no_wait_not_the_backoff():
    sender = FakeSender(Reply(503, retry_after=0.0))
    abort = RecordingAbort()
    delivery(sender, abort=abort, waits=fixed(7.0)).deliver(batch())
    assert abort.waits == [0.0]


def test_no_wait_follows_the_last_attempt():
    sender = FakeSender(then=Reply(500))
    abort = RecordingAbort()
    delivery(sender, max_retries=2, abort=abort).deliver(batch())
    assert len(abort.waits) == 2  # between three attempts


def test_each_batch_gets_a_fresh_series_of_waits():
    calls: list[int] = []

    def waits() -> Iterator[float]:
        calls.append(1)
        return iter([0.1, 0.2, 0.4])

    sender = FakeSender(Reply(500), Reply(500), OK, Reply(500), Reply(500))
    abort = RecordingAbort()
    d = delivery(sender, abort=abort, waits=waits)
    d.deliver(batch())
    d.deliver(batch())
    assert len(calls) == 2
    assert abort.waits == [0.1, 0.2, 0.1, 0.2]


# -- shutdown ------------------------------------------------------------------------------


def test_abort_set_before_the_send_is_client_shutdown_and_nothing_is_sent():
    sender = FakeSender()
    abort = RecordingAbort()
    abort.set()
    outcome = delivery(sender, abort=abort).deliver(batch())
    assert isinstance(outcome.error, ClientShutdown)
    assert outcome.error.reason == "shutdown"
    assert sender.requests == []


def test_abort_set_during_a_retry_wait_ends_it_with_client_shutdown():
    sender = FakeSender(then=Reply(500))
    abort = threading.Event()
    d = delivery(sender, max_retries=5, abort=abort, waits=fixed(60.0))  # a long backoff
    box: dict[str, Outcome] = {}
    thread = threading.Thread(target=lambda: box.update(out=d.deliver(batch())), daemon=True)
    thread.start()
    assert sender.wait_requests(1, LIMIT)
    abort.set()
    thread.join(LIMIT)
    assert not thread.is_alive(), "the retry wait was not cut short by abort"
    assert isinstance(box["out"].error, ClientShutdown)
    assert len(sender.requests) == 1


def test_abandon_during_a_send_takes_the_batch_and_deliver_returns_taken():
    sender = FakeSender()
    sender.gate = threading.Event()
    d = delivery(sender)
    b = batch()
    box: dict[str, Outcome] = {}
    thread = threading.Thread(target=lambda: box.update(out=d.deliver(b)), daemon=True)
    thread.start()
    try:
        assert sender.sending.wait(LIMIT)
        assert d.abandon() is b
    finally:
        sender.gate.set()
    thread.join(LIMIT)
    assert not thread.is_alive()
    assert box["out"] is TAKEN
    assert not box["out"].delivered


def test_a_failure_after_abandon_is_taken_not_an_error():
    sender = FakeSender(Reply(400))
    sender.gate = threading.Event()
    d = delivery(sender)
    box: dict[str, Outcome] = {}
    thread = threading.Thread(target=lambda: box.update(out=d.deliver(batch())), daemon=True)
    thread.start()
    try:
        assert sender.sending.wait(LIMIT)
        assert d.abandon() is not None
    finally:
        sender.gate.set()
    thread.join(LIMIT)
    assert box["out"] is TAKEN  # settled by whoever abandoned it: not settled twice


def test_abandon_with_nothing_in_flight_is_none():
    d = delivery(FakeSender())
    assert d.abandon() is None
    d.deliver(batch())
    assert d.abandon() is None  # delivered: no longer in flight


def test_abandon_after_a_failure_is_none():
    d = delivery(FakeSender(Reply(400)))
    d.deliver(batch())
    assert d.abandon() is None


def test_taken_and_failures_are_not_delivered():
    assert DELIVERED.delivered
    assert not TAKEN.delivered
    assert not Outcome(ClientShutdown("x")).delivered


# -- the real sender -----------------------------------------------------------------------


def test_the_segment_sender_answers_a_reply_for_an_overflowing_retry_after_date(
    collector: Collector,
):
    collector.fail(503, count=1, retry_after="Mon, 01 Jan 2000 99999999999999999999:00:00 GMT")
    sender = SegmentSender("key", collector.url, 5, None, False)
    try:
        reply = call_within(LIMIT * 2, sender.send, [encode(message("m1"))])
    finally:
        sender.close()
    assert reply.status == 503
    assert reply.retry_after is None


# -- the time bounds, on a virtual clock that the waits advance ------------------------------


class VirtualTime(RecordingAbort):
    """An abort Event whose waits advance a clock instead of spending time."""

    def __init__(self) -> None:
        super().__init__()
        self.time = 0.0

    def now(self) -> float:
        return self.time

    def wait(self, timeout: float | None = None) -> bool:
        self.time += timeout or 0.0
        return super().wait(timeout)


def timed(sender: FakeSender, clock: VirtualTime, waits: Waits, **bounds: float) -> Delivery:
    return Delivery(sender, Stats(), 100, clock, waits, now=clock.now, **bounds)


def test_max_total_backoff_gives_up_at_the_first_failure_after_it():
    clock = VirtualTime()
    outcome = timed(FakeSender(then=Reply(503)), clock, fixed(1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
                    max_total_backoff=3.5).deliver(batch())  # fmt: skip
    assert isinstance(outcome.error, RetriesExhausted) and outcome.error.attempts == 5
    assert clock.waits == [1.0, 1.0, 1.0, 1.0]  # failures at 0, 1, 2, 3 s retried; at 4 s not


def test_max_rate_limit_refuses_a_wait_that_would_end_after_it():
    clock = VirtualTime()
    sender = FakeSender(then=Reply(429, retry_after=1.0))
    outcome = timed(sender, clock, fixed(), max_rate_limit=2.5).deliver(batch())
    assert isinstance(outcome.error, RetriesExhausted) and outcome.error.attempts == 3
    assert clock.waits == [1.0, 1.0]  # the third wait would have ended at 3 s


def test_the_two_bounds_are_timed_apart():
    clock = VirtualTime()
    # Rate limited for 10 s, then failing without a Retry-After: the backoff bound counts
    # from the first such failure, not from the batch's first try.
    sender = FakeSender(Reply(429, retry_after=10.0), Reply(503), Reply(503), then=OK)
    outcome = timed(sender, clock, fixed(0.0, 1.0, 1.0), max_total_backoff=1.5,
                    max_rate_limit=60).deliver(batch())  # fmt: skip
    assert outcome is DELIVERED and clock.waits == [10.0, 1.0, 1.0]
