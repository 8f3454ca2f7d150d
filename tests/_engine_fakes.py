"""Fakes for the engine tests (tests/test_engine_*.py): an in-memory Sender, the one seam
of the delivery engine, and an abort Event that records the waits asked of it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from analytics.encode import encode
from analytics.protocols import Reply

OK = Reply(200)
GATE_LIMIT = 10.0  # a blocked send gives up after this, so no test can hang on it


class FakeSender:
    """A Sender in memory: each send() records its items and answers the next scripted
    Reply (then `then`, forever). With `gate` set to an Event, each send first waits for
    it (at most GATE_LIMIT s). Thread-safe."""

    def __init__(self, *script: Reply, then: Reply = OK) -> None:
        self.script = list(script)
        self.then = then
        self.requests: list[list[bytes]] = []
        self.gate: threading.Event | None = None
        self.sending = threading.Event()  # set once a send has begun
        self.closed = False
        self._cond = threading.Condition()

    def encode(self, message: dict[str, Any]) -> bytes:
        return encode(message)

    def send(self, items: Sequence[bytes]) -> Reply:
        with self._cond:
            self.requests.append(list(items))
            reply = self.script.pop(0) if self.script else self.then
            self._cond.notify_all()
        self.sending.set()
        gate = self.gate
        if gate is not None:
            gate.wait(GATE_LIMIT)
        return reply

    def close(self) -> None:
        self.closed = True

    # -- reading what was sent --------------------------------------------------------------

    def batches(self) -> list[list[dict[str, Any]]]:
        """The messages of each request, decoded, in order."""
        with self._cond:
            return [[json.loads(i) for i in items] for items in self.requests]

    def ids(self) -> list[str]:
        """messageIds of every request, in the order sent."""
        return [m["messageId"] for batch in self.batches() for m in batch]

    def wait_requests(self, n: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True


class RecordingAbort(threading.Event):
    """An abort Event whose wait() records its timeout and returns at once (True only if
    set): the retry waits of a Delivery, seen without spending them."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


def zeros() -> Iterator[float]:
    """A backoff policy of no waits at all."""
    while True:
        yield 0.0


def message(mid: str, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": "E", "userId": "u", "messageId": mid, **extra}
