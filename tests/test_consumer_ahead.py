"""A sender with `start` (the request goes, the reply is read later): delivery through
`Delivery.begin`/`finish` keeps a flush prompt."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from _engine_fakes import GATE_LIMIT, OK, FakeSender, message
from helpers import call_within

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


def held_behind_first_request(sender: StartingSender, n: int) -> Pipeline:
    """A pipeline whose first request ("first") is being started while `n` messages
    (m0, m1, ...) are queued behind it; the start then goes on and its reply waits for
    `sender.gate`."""
    pipe = pipeline(sender)
    assert pipe.put(message("first"), None)
    pipe.flush(timeout=0)
    assert sender.starting.wait(LIMIT)
    for i in range(n):
        assert pipe.put(message(f"m{i}"), None)
    sender.go.set()
    assert sender.reading.wait(LIMIT)
    return pipe


def test_the_next_batch_is_encoded_while_a_request_is_in_flight_and_stays_queued(
    sender: StartingSender,
):
    pipe = held_behind_first_request(sender, 5)
    try:
        ahead = [f"m{i}" for i in range(5)]
        assert sender.encoded[-5:] == ahead  # encoded before the reply was read...
        assert pipe.queue.qsize() == 5  # ...and still queued: the queue bounds what is held
        sender.gate.set()
        assert call_within(LIMIT, pipe.flush, timeout=LIMIT) is True
        assert sender.ids() == ["first", *ahead]
        assert sorted(sender.encoded) == sorted(["first", *ahead])  # each encoded once
    finally:
        call_within(10, pipe.shutdown, timeout=1)


def test_messages_taken_from_the_queue_meanwhile_are_not_sent_from_their_early_json(
    sender: StartingSender,
):
    pipe = held_behind_first_request(sender, 4)
    try:
        taken = pipe.queue.get_nowait()  # as a shutdown out of time takes what waits...
        assert taken["messageId"] == "m0"
        pipe.settler.lose(ClientShutdown("taken by the test"), [taken], True)  # ...and settles
        assert pipe.put(message("m4"), None)
        sender.gate.set()
        assert call_within(LIMIT, pipe.flush, timeout=LIMIT) is True
        assert sender.ids() == ["first", "m1", "m2", "m3", "m4"]
        sent = [item for items in sender.requests for item in items]
        assert sent[1:] == [encode(m) for m in [message(f"m{i}") for i in range(1, 5)]]
    finally:
        call_within(10, pipe.shutdown, timeout=1)
