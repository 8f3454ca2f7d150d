"""The library's logger and a rate limit for warnings that can repeat in a storm."""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("analytics")
logger.addHandler(logging.NullHandler())


class Throttle:
    """Lets a repeated warning through at most once per `interval` seconds, with a count."""

    def __init__(self, interval: float = 10.0) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._next = 0.0
        self._suppressed = 0

    def warn(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._next = now + self._interval
        if suppressed:
            logger.warning(msg + " (%d more like it not logged)", *args, suppressed)
        else:
            logger.warning(msg, *args)
