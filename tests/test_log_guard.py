"""A logging handler that raises never reaches a call or the consumer thread: the record is
lost, the message is not."""

from __future__ import annotations

import logging
from typing import Any

from collector import Collector
from helpers import wait_until


class Raising(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.calls += 1
        raise RuntimeError("a broken handler")

    def handle(self, record: logging.LogRecord) -> bool:  # no handleError: the raw exception
        self.emit(record)
        return True


def test_a_raising_handler_breaks_neither_the_call_nor_delivery(
    make_client: Any, collector: Collector
) -> None:
    handler = Raising()
    logger = logging.getLogger("analytics")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        collector.fail(500, count=1)  # a retry: the consumer logs
        client = make_client(max_queue_size=1)
        results = [client.track("u1", "Logged")[0] for _ in range(50)]  # some: queue full, logged
        assert not all(results)
        assert client.flush(timeout=10)
        assert handler.calls > 0
        assert wait_until(lambda: collector.message_count() >= 1)
        assert client.track("u1", "After")[0]
        assert client.flush(timeout=10)
        assert any(m.get("event") == "After" for m in collector.messages())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
