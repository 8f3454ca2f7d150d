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
