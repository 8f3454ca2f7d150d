"""The consumer takes messages off the queue in runs and encodes each run with one call
(`encode.encode_many`, `Batcher.add_run`): the same batches, order and limits as one message
at a time, a marker still closes the batch it ends, and an odd message in a run costs only
itself."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from _engine_fakes import FakeSender, message
from helpers import call_within, wait_until

import analytics.encode as encoding
from analytics.batch import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES, Batcher, Fit
from analytics.pipeline import Pipeline, Plan

LIMIT = 5.0


def item(size: int) -> bytes:
    head, tail = b'{"p":"', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


# -- Batcher.add_run -----------------------------------------------------------------------


def test_add_run_takes_a_whole_run_that_fits_in_one_go():
    batcher = Batcher(max_count=10)
    assert batcher.add_run([item(50)] * 4) == 4
    assert len(batcher) == 4
    single = Batcher(max_count=10)
    for _ in range(4):
        assert single.add(item(50)) is Fit.ADDED
    assert batcher.size == single.size and batcher.body(sent="t") == single.body(sent="t")


def test_add_run_stops_at_the_count_limit():
    batcher = Batcher(max_count=3)
    assert batcher.add(item(20)) is Fit.ADDED
    assert batcher.add_run([item(20)] * 5) == 2
    assert batcher.full


def test_add_run_stops_at_the_first_message_past_the_byte_limit():
    batcher = Batcher(max_count=1000)
    added = batcher.add_run([item(30_000)] * 20)
    assert 0 < added < 20
    assert batcher.size <= MAX_BATCH_BYTES
    assert batcher.add(item(30_000)) is Fit.FULL  # the one it stopped at would not fit
    assert len(batcher.body()) == batcher.size


def test_add_run_stops_at_a_message_too_large_for_any_batch():
    batcher = Batcher(max_count=10)
    run = [item(100), item(MAX_MESSAGE_BYTES + 1), item(100)]
    assert batcher.add_run(run) == 1
    assert len(batcher) == 1


# -- encode_many ----------------------------------------------------------------------------


ODD: list[Any] = [
    {"nan": math.nan},
    {"big": 10**5000},
    {"when": dt.datetime(2024, 5, 17, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))},
    {"price": decimal.Decimal("9.99")},
    {("tuple", "key"): 1},
]


@pytest.fixture(params=["json", "orjson"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    name: str = request.param
    if name == "orjson" and encoding.orjson is None:
        pytest.skip("orjson is not installed")
    before = encoding.BACKEND
    encoding.use_backend(name)
    try:
        yield name
    finally:
        encoding.use_backend(before)


@pytest.mark.parametrize("odd", ODD, ids=["nan", "big-int", "offset", "decimal", "tuple-key"])
def test_encode_many_gives_each_message_the_bytes_encode_gives_it(backend: str, odd: Any):
    messages = [message("a"), {**message("b"), "properties": odd}, message("c")]
    assert encoding.encode_many(messages) == [encoding.encode(m) for m in messages]
    assert json.loads(encoding.encode_many(messages)[2])["messageId"] == "c"


def test_encode_many_of_nothing_is_nothing(backend: str):
    assert encoding.encode_many([]) == []


def test_many_of_another_encoder_calls_it_per_message():
    def tagged(msg: dict[str, Any]) -> bytes:
        return b"tag:" + encoding.encode(msg)

    assert encoding.many(encoding.encode) is encoding.encode_many
    assert encoding.many(tagged)([message("a"), message("b")]) == [
        tagged(message("a")),
        tagged(message("b")),
    ]


# -- through a pipeline ---------------------------------------------------------------------


def pipeline(sender: FakeSender, batch_size: int = 100) -> Pipeline:
    plan = Plan(
        max_queue_size=10_000, batch_size=batch_size, flush_interval=30.0, max_retries=0,
        sync_mode=False, durable=False, shutdown_timeout=1.0,
    )  # fmt: skip
    return Pipeline(plan, sender, None, None)


def held(sender: FakeSender) -> Pipeline:
    """A pipeline whose first request ("first") is in flight and held at the sender's gate,
    so that what is put next queues up and is taken in runs."""
    sender.gate = threading.Event()
    pipe = pipeline(sender)
    assert pipe.put(message("first"), None)
    pipe.flush(timeout=0)
    assert sender.wait_requests(1)
    return pipe


def test_a_run_full_by_bytes_carries_the_rest_in_order_exactly_once():
    sender = FakeSender()
    pipe = held(sender)
    assert sender.gate is not None
    try:
        mids = [f"m{i}" for i in range(40)]
        for mid in mids:
            assert pipe.put(message(mid, blob="x" * 30_000), None)
        sender.gate.set()
        assert pipe.flush(timeout=LIMIT) is True
        assert sender.ids() == ["first", *mids]
        sizes = [len(b"".join(r)) + len(r) + 60 for r in sender.requests]
        assert all(size <= MAX_BATCH_BYTES for size in sizes)
        assert len(sender.requests) >= 4  # 40 x 30 KB cannot go in fewer than 3 bodies + first
    finally:
        sender.gate.set()
        call_within(10, pipe.shutdown, timeout=1)


def test_a_flush_marker_inside_what_is_queued_still_closes_its_batch():
    sender = FakeSender()
    pipe = held(sender)
    assert sender.gate is not None
    try:
        for mid in ("a", "b"):
            assert pipe.put(message(mid), None)
        pipe.flush(timeout=0)  # a marker between b and c
        for mid in ("c", "d"):
            assert pipe.put(message(mid), None)
        sender.gate.set()
        assert pipe.flush(timeout=LIMIT) is True
        got = [[m["messageId"] for m in batch] for batch in sender.batches()]
        assert got == [["first"], ["a", "b"], ["c", "d"]]
    finally:
        sender.gate.set()
        call_within(10, pipe.shutdown, timeout=1)


def test_an_odd_message_in_a_run_is_sent_with_its_neighbours():
    sender = FakeSender()
    pipe = pipeline(sender)
    try:
        for mid in ("a", "b", "c"):
            extra = {"properties": {"nan": math.nan}} if mid == "b" else {}
            assert pipe.put(message(mid, **extra), None)
        assert pipe.flush(timeout=LIMIT) is True
        assert wait_until(lambda: sender.ids() == ["a", "b", "c"], 2)
        assert sender.batches()[0][1]["properties"] == {"nan": None}
    finally:
        call_within(10, pipe.shutdown, timeout=1)


class CountingEvent(threading.Event):
    """An Event that counts its set() calls: the rings of the calls."""

    def __init__(self) -> None:
        super().__init__()
        self.sets = 0

    def set(self) -> None:
        self.sets += 1
        super().set()


def test_full_batches_go_without_the_calls_waking_the_consumer():
    sender = FakeSender()
    pipe = pipeline(sender)
    rings = CountingEvent()
    pipe._handoff.more = rings  # before the thread starts: it waits on this one
    try:
        for i in range(150):
            assert pipe.put(message(f"a{i}"), None)
        assert wait_until(lambda: len(sender.requests) == 1, LIMIT)
        assert wait_until(lambda: pipe._handoff.taken == 150, LIMIT)  # 50 in the next batch
        before = rings.sets
        for i in range(50):  # these complete the batch that is filling
            assert pipe.put(message(f"b{i}"), None)
        # It goes within a few polls, not after flush_interval (30 s)...
        assert wait_until(lambda: len(sender.requests) == 2, LIMIT)
        assert [len(r) for r in sender.requests] == [100, 100]
        assert rings.sets == before  # ...and none of the calls rang
    finally:
        call_within(10, pipe.shutdown, timeout=1)


def test_calls_ring_once_half_a_small_queue_waits():
    sender = FakeSender()
    plan = Plan(
        max_queue_size=10, batch_size=100, flush_interval=30.0, max_retries=0,
        sync_mode=False, durable=False, shutdown_timeout=1.0,
    )  # fmt: skip
    pipe = Pipeline(plan, sender, None, None)
    rings = CountingEvent()
    pipe._handoff.more = rings
    try:
        assert pipe.put(message("first"), None)
        assert wait_until(lambda: pipe._handoff.taken == 1, LIMIT)
        before = rings.sets
        for i in range(5):
            assert pipe.put(message(f"m{i}"), None)
        assert rings.sets > before  # 5 of 10 wait: the consumer is woken, not left to poll
    finally:
        call_within(10, pipe.shutdown, timeout=1)
