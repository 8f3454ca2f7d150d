"""Small shared helpers for the test suite (no mocks, bounded waits only)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

from dateutil.parser import isoparse

WRITE_KEY = "test-write-key"


def wait_until(pred: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll `pred` until it is truthy or `timeout` seconds pass; return its last truth."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return bool(pred())
        time.sleep(interval)


def instant(value: str) -> datetime:
    """Parse an ISO-8601 string that must carry a UTC offset."""
    parsed = isoparse(value)
    assert parsed.tzinfo is not None and parsed.utcoffset() is not None, (
        f"timestamp {value!r} has no UTC offset"
    )
    return parsed


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


class ErrorLog:
    """A real on_error callback that records (error, batch) pairs, thread-safely."""

    def __init__(self, raise_exc: BaseException | None = None) -> None:
        self.calls: list[tuple[BaseException, list[dict[str, Any]]]] = []
        self.threads: list[threading.Thread] = []
        self.raise_exc = raise_exc
        self.hook: Callable[[BaseException, list[dict[str, Any]]], None] | None = None
        self._cond = threading.Condition()

    def __call__(self, error: BaseException, batch: list[dict[str, Any]]) -> None:
        with self._cond:
            self.calls.append((error, list(batch)))
            self.threads.append(threading.current_thread())
            self._cond.notify_all()
        if self.hook is not None:
            self.hook(error, batch)
        if self.raise_exc is not None:
            raise self.raise_exc

    def __len__(self) -> int:
        with self._cond:
            return len(self.calls)

    @property
    def errors(self) -> list[BaseException]:
        with self._cond:
            return [e for e, _ in self.calls]

    def of_type(self, cls: type) -> list[tuple[BaseException, list[dict[str, Any]]]]:
        with self._cond:
            return [(e, b) for e, b in self.calls if isinstance(e, cls)]

    def message_ids(self) -> list[str]:
        with self._cond:
            return [m["messageId"] for _, b in self.calls for m in b]

    def wait_for(self, n: int, timeout: float = 5.0) -> list[tuple[BaseException, list]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.calls) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"on_error called {len(self.calls)} times, expected {n} within {timeout}s"
                    )
                self._cond.wait(left)
            return list(self.calls)


def call_within(limit: float, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run `fn` in a daemon thread; fail (instead of hanging) if it takes over `limit` s.

    Re-raises what `fn` raised; returns what it returned."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed back to the caller
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name=f"call_within:{fn!r}"[:60])
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        raise AssertionError(f"{getattr(fn, '__name__', fn)} did not return within {limit}s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_with_sigterm(proc: subprocess.Popen[bytes], timeout: float, name: str) -> int:
    """SIGTERM a server we started, wait at most `timeout`; kill its group on overrun (and
    fail). Its exit code."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        raise AssertionError(f"{name} did not stop within {timeout}s of SIGTERM") from None


def wait_child(pid: int, timeout: float) -> int:
    """waitpid with a deadline (for os.fork children); the child is killed if it overruns."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"child {pid} did not finish within {timeout}s (killed)")


def is_uuid4(value: Any) -> bool:
    """Whether `value` is a UUID4 in its canonical string form."""
    if not isinstance(value, str):
        return False
    parsed = uuid.UUID(value)
    return parsed.version == 4 and str(parsed) == value
