"""A `Pipeline` alone (analytics/pipeline.py), without a Client, with the in-memory Sender:
order and batching, flush and shutdown within their timeouts, what a shutdown reports, the
spool replayed at start, and a forked child that builds a pipeline of its own."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable

import pytest
from _engine_fakes import FakeSender, message, zeros
from _spool_helpers import spool_count
from helpers import ErrorLog, call_within, wait_child, wait_until

from analytics.delivery import Waits
from analytics.encode import encode
from analytics.errors import ClientShutdown, MessageTooLarge, QueueFull
from analytics.pipeline import Pipeline, Plan
from analytics.protocols import Reply
from analytics.spool import Spool
from analytics.spooling import SpoolKeeper

LIMIT = 5.0  # the longest any flush or wait in these tests may take
FAIL = Reply(503)


def plan(
    batch_size: int = 100,
    flush_interval: float = 30.0,  # long: batches go when full or flushed, never by time
    max_retries: int = 3,
    max_queue_size: int = 10_000,
    sync_mode: bool = False,
    waits: Waits = zeros,
) -> Plan:
    return Plan(
        max_queue_size=max_queue_size,
        batch_size=batch_size,
        flush_interval=flush_interval,
        max_retries=max_retries,
        sync_mode=sync_mode,
        durable=False,
        shutdown_timeout=1.0,
        waits=waits,
    )


def every(seconds: float) -> Waits:
    """A backoff policy that always waits `seconds`."""

    def waits() -> Iterator[float]:
        return itertools.repeat(seconds)

    return waits


MakePipeline = Callable[..., Pipeline]


@pytest.fixture
def make_pipeline() -> Iterator[MakePipeline]:
    """Builds pipelines (keyword arguments go to `plan`); each is shut down afterwards,
    after its sender's gate (if any) is opened."""
    built: list[tuple[Pipeline, FakeSender]] = []

    def factory(
        sender: FakeSender,
        on_error: Any = None,
        spool: Spool | None = None,
        **kw: Any,
    ) -> Pipeline:
        pipeline = Pipeline(plan(**kw), sender, on_error, spool)
        built.append((pipeline, sender))
        return pipeline

    yield factory
    for pipeline, sender in built:
        if sender.gate is not None:
            sender.gate.set()
        call_within(10, pipeline.shutdown, timeout=0.2)


def put(pipeline: Pipeline, mids: list[str], **extra: Any) -> None:
    for mid in mids:
        msg = message(mid, **extra)
        assert pipeline.put(msg, encode(msg))


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


# -- order and batching --------------------------------------------------------------------


def test_flushed_messages_reach_the_sender_in_the_order_put(make_pipeline: MakePipeline):
    sender = FakeSender()
    pipeline = make_pipeline(sender, batch_size=3)
    mids = ids("m", 7)
    put(pipeline, mids)
    assert pipeline.flush(timeout=LIMIT) is True
    assert sender.ids() == mids


def test_messages_go_in_batches_of_batch_size(make_pipeline: MakePipeline):
    sender = FakeSender()
    pipeline = make_pipeline(sender, batch_size=3)
    put(pipeline, ids("m", 7))
    pipeline.flush(timeout=LIMIT)
    assert [len(b) for b in sender.batches()] == [3, 3, 1]


def test_a_full_batch_goes_without_a_flush(make_pipeline: MakePipeline):
    sender = FakeSender()
    pipeline = make_pipeline(sender, batch_size=3)
    put(pipeline, ids("m", 3))
    assert sender.wait_requests(1, LIMIT)
    assert sender.ids() == ids("m", 3)


def test_flush_counts_the_flushed_messages_as_delivered(make_pipeline: MakePipeline):
    sender = FakeSender()
    pipeline = make_pipeline(sender, batch_size=3)
    put(pipeline, ids("m", 7))
    pipeline.flush(timeout=LIMIT)
    snap = pipeline.stats.snapshot()
    assert (snap["queued"], snap["delivered"], snap["pending"]) == (7, 7, 0)


def test_flush_with_nothing_queued_is_true_at_once(make_pipeline: MakePipeline):
    sender = FakeSender()
    pipeline = make_pipeline(sender)
    started = time.monotonic()
    assert pipeline.flush(timeout=LIMIT) is True
    assert time.monotonic() - started < 1.0
    assert sender.requests == []


def test_a_message_too_large_for_any_batch_is_reported_and_the_rest_delivered(
    make_pipeline: MakePipeline, errors: ErrorLog
):
    sender = FakeSender()
    pipeline = make_pipeline(sender, on_error=errors)
    big = message("big", blob="x" * 40_000)
    put(pipeline, ["a"])
    assert pipeline.put(big, encode(big))
    put(pipeline, ["b"])
    assert pipeline.flush(timeout=LIMIT) is True
    assert sender.ids() == ["a", "b"]
    [(error, lost)] = errors.calls
    assert isinstance(error, MessageTooLarge)
    assert [m["messageId"] for m in lost] == ["big"]


def test_a_full_queue_refuses_the_message_and_reports_queue_full(
    make_pipeline: MakePipeline, errors: ErrorLog
):
    sender = FakeSender()
    sender.gate = threading.Event()  # the consumer is held in its first send
    pipeline = make_pipeline(sender, on_error=errors, batch_size=1, max_queue_size=2)
    put(pipeline, ["m0"])
    assert sender.sending.wait(LIMIT)
    put(pipeline, ["m1", "m2"])  # the queue's two places
    refused = message("m3")
    assert pipeline.put(refused, encode(refused)) is False
    [(error, lost)] = errors.calls
    assert isinstance(error, QueueFull)
    assert lost == [refused]


def test_sync_mode_sends_on_the_callers_thread_before_put_returns(
    make_pipeline: MakePipeline,
):
    sender = FakeSender()
    pipeline = make_pipeline(sender, sync_mode=True)
    put(pipeline, ["m0"])
    assert sender.ids() == ["m0"]
    assert pipeline.consumer is None


# -- flush and shutdown within their timeouts ----------------------------------------------


def test_flush_with_the_sender_failing_forever_is_false_within_its_timeout(
    make_pipeline: MakePipeline,
):
    sender = FakeSender(then=FAIL)
    pipeline = make_pipeline(sender, max_retries=10**6, waits=every(0.005))
    put(pipeline, ids("m", 3))
    started = time.monotonic()
    ok = call_within(LIMIT, pipeline.flush, timeout=0.3)
    elapsed = time.monotonic() - started
    assert ok is False
    assert elapsed < 0.3 + 1.0, f"flush(timeout=0.3) took {elapsed:.2f}s"
    assert len(sender.requests) > 1  # it was retrying all along


def test_shutdown_reports_what_is_left_as_client_shutdown(
    make_pipeline: MakePipeline, errors: ErrorLog
):
    sender = FakeSender(then=FAIL)
    pipeline = make_pipeline(
        sender, on_error=errors, batch_size=2, max_retries=5, waits=every(60.0)
    )
    mids = ids("m", 5)
    put(pipeline, mids)
    assert sender.wait_requests(1, LIMIT)  # the first batch waits 60 s to retry
    assert call_within(LIMIT, pipeline.shutdown, timeout=0.3) is False
    assert all(isinstance(e, ClientShutdown) for e in errors.errors)
    assert Counter(errors.message_ids()) == Counter(mids)  # each reported once


def test_shutdown_counts_what_is_left_under_shutdown(
    make_pipeline: MakePipeline, errors: ErrorLog
):
    sender = FakeSender(then=FAIL)
    pipeline = make_pipeline(
        sender, on_error=errors, batch_size=2, max_retries=5, waits=every(60.0)
    )
    put(pipeline, ids("m", 5))
    assert sender.wait_requests(1, LIMIT)
    call_within(LIMIT, pipeline.shutdown, timeout=0.3)
    snap = pipeline.stats.snapshot()
    assert (snap["dropped_by_reason"]["shutdown"], snap["pending"]) == (5, 0)


def test_shutdown_with_a_send_that_never_returns_reports_the_batch_in_flight(
    make_pipeline: MakePipeline, errors: ErrorLog
):
    sender = FakeSender()
    sender.gate = threading.Event()
    pipeline = make_pipeline(sender, on_error=errors, batch_size=2)
    mids = ids("m", 5)
    put(pipeline, mids)
    assert sender.sending.wait(LIMIT)
    started = time.monotonic()
    assert call_within(LIMIT, pipeline.shutdown, timeout=0.3) is False
    assert time.monotonic() - started < 0.3 + 1.0
    assert all(isinstance(e, ClientShutdown) for e in errors.errors)
    assert Counter(errors.message_ids()) == Counter(mids)


def test_a_send_coming_back_after_shutdown_took_its_batch_is_not_reported_again(
    make_pipeline: MakePipeline, errors: ErrorLog
):
    sender = FakeSender()
    sender.gate = threading.Event()
    pipeline = make_pipeline(sender, on_error=errors, batch_size=2)
    put(pipeline, ids("m", 2))
    assert sender.sending.wait(LIMIT)
    call_within(LIMIT, pipeline.shutdown, timeout=0.2)
    consumer = pipeline.consumer
    assert consumer is not None
    sender.gate.set()  # the hung request comes back: 200, but the batch was settled
    consumer.thread.join(LIMIT)
    assert not consumer.alive()
    assert sorted(errors.message_ids()) == ["m0", "m1"]
    assert pipeline.stats.delivered == 0


def test_shutdown_with_a_hung_send_reports_the_message_carried_over_to_the_next_batch(
    make_pipeline: MakePipeline, errors: ErrorLog
):
    sender = FakeSender()
    sender.gate = threading.Event()
    pipeline = make_pipeline(sender, on_error=errors, batch_size=100)
    mids = ids("m", 20)
    put(pipeline, mids, blob="x" * 30_000)  # 16 fill a 500 kB batch; the 17th is carried
    # set-up checks fail the test outright (pytest.fail), not as the expected failure
    if not sender.sending.wait(LIMIT) or len(sender.requests[0]) != 16:
        pytest.fail("set-up: the first batch did not go out full by bytes")
    if call_within(LIMIT, pipeline.shutdown, timeout=0.3) is not False:
        pytest.fail("set-up: shutdown did not run out of time")
    assert Counter(errors.message_ids()) == Counter(mids)


class RaisingSender(FakeSender):
    """A sender that breaks its protocol: send() raises (as SegmentSender does on a
    Retry-After date with an overflowing number, see test_engine_delivery.py)."""

    def send(self, items: Sequence[bytes]) -> Reply:
        super().send(items)
        raise OverflowError("Python int too large to convert to C long")


def test_a_batch_whose_send_raises_is_still_settled_and_reported(
    make_pipeline: MakePipeline, errors: ErrorLog
):
    sender = RaisingSender()
    pipeline = make_pipeline(sender, on_error=errors)
    put(pipeline, ids("m", 2))
    flushed = pipeline.flush(timeout=0.3)
    if not sender.requests:
        pytest.fail("set-up: nothing was sent")
    assert flushed is True
    assert sorted(errors.message_ids()) == ["m0", "m1"]


def test_shutdown_after_everything_was_delivered_is_true_and_closes_the_sender(
    make_pipeline: MakePipeline, errors: ErrorLog
):
    sender = FakeSender()
    pipeline = make_pipeline(sender, on_error=errors, batch_size=3)
    put(pipeline, ids("m", 4))
    assert call_within(LIMIT, pipeline.shutdown, timeout=LIMIT) is True
    assert sender.ids() == ids("m", 4)
    assert sender.closed
    assert len(errors) == 0


def test_flush_from_on_error_is_false_instead_of_waiting_on_itself(
    make_pipeline: MakePipeline,
):
    results: list[bool] = []
    sender = FakeSender(Reply(400))
    box: dict[str, Pipeline] = {}

    def on_error(error: Exception, batch: list[dict[str, Any]]) -> None:
        results.append(box["pipeline"].flush(timeout=LIMIT))

    box["pipeline"] = pipeline = make_pipeline(sender, on_error=on_error)
    put(pipeline, ["m0"])
    assert call_within(LIMIT * 2, pipeline.flush, timeout=LIMIT) is True
    assert results == [False]


# -- the spool -----------------------------------------------------------------------------


def test_a_new_pipeline_replays_what_its_spool_holds(
    make_pipeline: MakePipeline, tmp_path: Path
):
    path = str(tmp_path / "spool.db")
    earlier = Spool(path)
    keeper = SpoolKeeper(earlier, encode, 100, durable=False)
    assert keeper.keep([message(mid) for mid in ids("old", 3)])
    keeper.close()
    earlier.close()

    sender = FakeSender()
    pipeline = make_pipeline(sender, spool=Spool(path))
    assert pipeline.start()
    assert sender.wait_requests(1, LIMIT)
    assert sender.ids() == ids("old", 3)
    assert wait_until(lambda: spool_count(path) == 0, timeout=LIMIT)
    assert wait_until(lambda: pipeline.stats.replayed == 3, timeout=LIMIT)


def test_a_batch_given_up_with_a_spool_waits_there_instead_of_being_reported(
    make_pipeline: MakePipeline, tmp_path: Path, errors: ErrorLog
):
    path = str(tmp_path / "spool.db")
    sender = FakeSender(then=FAIL)
    pipeline = make_pipeline(sender, on_error=errors, spool=Spool(path), max_retries=1)
    put(pipeline, ids("m", 3))
    assert pipeline.flush(timeout=LIMIT) is True  # settled: kept
    assert spool_count(path) == 3
    assert pipeline.stats.spooled == 3
    assert len(errors) == 0


# -- fork ----------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_with_a_new_pipeline_sends_only_its_own_messages(
    make_pipeline: MakePipeline,
):
    sender = FakeSender()
    parent = make_pipeline(sender)  # batch_size 100, flush_interval 30: they wait
    parent_ids = ids("parent-", 4)
    put(parent, parent_ids)
    assert wait_until(lambda: parent.stats.queued == 4, timeout=LIMIT)
    child_ids = ids("child-", 3)

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(read_end)
            child_sender = FakeSender()
            child = Pipeline(plan(), child_sender, None, None)
            put(child, child_ids)
            flushed = child.flush(timeout=LIMIT)
            report = {"flushed": flushed, "sent": child_sender.ids(), "parent": sender.ids()}
            os.write(write_end, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        assert wait_child(pid, timeout=20) == 0  # reaped first, whatever fails next
        report = json.loads(pipe.read())
    assert parent.flush(timeout=LIMIT) is True
    assert report["flushed"] is True
    assert report["sent"] == child_ids, "the child sent what was not its own"
    assert report["parent"] == [], "the parent's sender sent something in the child"
    assert sender.ids() == parent_ids, "the parent sent what was not its own"
