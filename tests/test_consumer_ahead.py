"""While a request is in flight (a sender with `start`: the request goes, the reply is read
later), the consumer fills and encodes the next batch from what is queued — still one
request at a time, a flush still prompt, and a shutdown out of time still reports every
message it holds exactly once."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from _engine_fakes import GATE_LIMIT, OK, FakeSender, message
from helpers import ErrorLog, call_within, wait_until

from analytics.encode import encode
from analytics.errors import ClientShutdown
from analytics.pipeline import Pipeline, Plan
from analytics.protocols import ReadReply, Reply

LIMIT = 5.0


class StartingSender(FakeSender):
    """A FakeSender with `start`: the request is recorded at once, its reply read later
    (the read waits for `gate`, if set). The first start waits for `go` (a slow send, so
    that a test can queue messages behind it). Counts encodes and requests open at once."""

    def __init__(self) -> None:
        super().__init__()
        self.encoded: list[str] = []
        self.open = 0
        self.most_open = 0
        self.reading = threading.Event()
        self.starting = threading.Event()  # the first start has begun
        self.go = threading.Event()
        self._lock = threading.Lock()

    def encode(self, message: dict[str, Any]) -> bytes:
        self.encoded.append(message["messageId"])
        return encode(message)

    def start(self, items: Sequence[bytes]) -> ReadReply:
        if not self.starting.is_set():
            self.starting.set()
            self.go.wait(GATE_LIMIT)
        with self._lock:
            self.open += 1
            self.most_open = max(self.most_open, self.open)
        with self._cond:
            self.requests.append(list(items))
            self._cond.notify_all()

        def read() -> Reply:
            self.reading.set()
            gate = self.gate
            if gate is not None:
                gate.wait(GATE_LIMIT)
            with self._lock:
                self.open -= 1
            return OK

        return read


@pytest.fixture
def sender() -> Iterator[StartingSender]:
    s = StartingSender()
    s.gate = threading.Event()
    yield s
    s.go.set()
    s.gate.set()


def pipeline(sender: FakeSender, on_error: Any = None, flush_interval: float = 30.0) -> Pipeline:
    plan = Plan(
        max_queue_size=10_000, batch_size=100, flush_interval=flush_interval, max_retries=0,
        sync_mode=False, durable=False, shutdown_timeout=1.0,
    )  # fmt: skip
    return Pipeline(plan, sender, on_error, None)


def test_the_next_batch_is_encoded_while_the_reply_is_awaited(sender: StartingSender):
    pipe = pipeline(sender)
    try:
        assert pipe.put(message("first"), None)
        pipe.flush(timeout=0)
        assert sender.starting.wait(LIMIT)  # "first" is being sent
        for mid in ("a", "b", "c"):
            assert pipe.put(message(mid), None)
        pipe.flush(timeout=0)  # with a long flush_interval, only a flush closes the batch
        sender.go.set()
        assert sender.reading.wait(LIMIT)
        # The reply to "first" is still held, yet a, b and c are encoded already.
        assert wait_until(lambda: sender.encoded[-3:] == ["a", "b", "c"], LIMIT)
        assert len(sender.requests) == 1  # and not sent: one request at a time
        sender.gate.set()
        assert pipe.flush(timeout=LIMIT) is True
        assert [[m["messageId"] for m in b] for b in sender.batches()] == [
            ["first"],
            ["a", "b", "c"],
        ]
        assert sender.most_open == 1
    finally:
        sender.go.set()
        sender.gate.set()
        call_within(10, pipe.shutdown, timeout=1)


def test_a_flush_while_a_request_is_in_flight_does_not_wait_out_flush_interval(
    sender: StartingSender,
):
    pipe = pipeline(sender)
    try:
        assert pipe.put(message("first"), None)
        pipe.flush(timeout=0)
        assert sender.starting.wait(LIMIT)
        assert pipe.put(message("second"), None)
        sender.go.set()
        sender.gate.set()
        assert call_within(LIMIT, pipe.flush, timeout=LIMIT) is True  # not 30 s
        assert sender.ids() == ["first", "second"]
    finally:
        call_within(10, pipe.shutdown, timeout=1)


def test_a_partial_batch_filled_meanwhile_still_waits_for_more_until_its_interval(
    sender: StartingSender,
):
    pipe = pipeline(sender, flush_interval=0.3)
    try:
        assert pipe.put(message("first"), None)
        pipe.flush(timeout=0)
        assert sender.starting.wait(LIMIT)
        assert pipe.put(message("a"), None)
        sender.go.set()
        assert wait_until(lambda: "a" in sender.encoded, LIMIT)
        sender.gate.set()
        assert pipe.put(message("b"), None)  # joins "a": its batch waits out flush_interval
        assert wait_until(lambda: len(sender.requests) == 2, LIMIT)
        assert [m["messageId"] for m in sender.batches()[1]] == ["a", "b"]
    finally:
        sender.go.set()
        sender.gate.set()
        call_within(10, pipe.shutdown, timeout=1)


def test_shutdown_out_of_time_reports_the_batch_filled_meanwhile_once(
    sender: StartingSender, errors: ErrorLog
):
    pipe = pipeline(sender, on_error=errors)
    assert pipe.put(message("first"), None)
    pipe.flush(timeout=0)
    assert sender.starting.wait(LIMIT)
    mids = [f"m{i}" for i in range(5)]
    for mid in mids:
        assert pipe.put(message(mid), None)
    sender.go.set()
    assert wait_until(lambda: sender.encoded[-5:] == mids, LIMIT)  # held as the next batch
    assert call_within(10, pipe.shutdown, timeout=0.3) is False  # the read never returns
    sender.gate.set()  # now it does: nothing may be reported twice
    assert wait_until(lambda: not pipe.consumer or not pipe.consumer.alive(), LIMIT)
    lost = Counter(m["messageId"] for _, batch in errors.calls for m in batch)
    assert lost == Counter(["first", *mids])
    assert all(isinstance(error, ClientShutdown) for error, _ in errors.calls)
    assert pipe.stats.snapshot()["dropped"] == 6
