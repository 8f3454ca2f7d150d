"""The library's logger and a rate limit for warnings that can repeat in a storm."""

from __future__ import annotations

import contextlib
import logging
import threading
import time


class _Guarded(logging.Logger):
    """The library's logger: a handler that raises (a user's, or one an SDK added to the
    root logger) loses that record, and never reaches a call or the consumer thread."""

    def handle(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # nothing sensible to log it with
            super().handle(record)


logger = logging.getLogger("analytics")
logger.__class__ = _Guarded  # this one logger only; getLogger may have built it already
logger.addHandler(logging.NullHandler())


class Throttle:
    """Lets a repeated warning through at most once per `interval` seconds per key,
    with a count of what it held back."""

    def __init__(self, interval: float = 10.0) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._next: dict[object, float] = {}
        self._suppressed: dict[object, int] = {}

    def warn(self, msg: str, *args: object, key: object = None) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next.get(key, 0.0):
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            if len(self._next) > 1000:  # keys are few in practice; never grow without bound
                self._next.clear()
            suppressed = self._suppressed.pop(key, 0)
            self._next[key] = now + self._interval
        if suppressed:
            logger.warning(msg + " (%d more like it not logged)", *args, suppressed)
        else:
            logger.warning(msg, *args)


def configure(debug: bool, handler: logging.Handler | None) -> None:
    """A client's `debug` and `log_handler` options: DEBUG level, an added handler."""
    if debug:
        logger.setLevel(logging.DEBUG)
    if handler is not None:
        logger.addHandler(handler)
