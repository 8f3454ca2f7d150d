"""Helpers for tests/test_spool.py: read a spool file with plain sqlite3, and run client
scripts in real subprocesses (sys.executable) with bounded waits only."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from helpers import wait_child  # noqa: F401  (re-exported for the spool tests)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- reading a spool file from outside the client ------------------------------------------


def _query(path: str | os.PathLike[str], sql: str) -> list[tuple[Any, ...]]:
    path = str(path)
    if not os.path.exists(path):
        return []
    db = sqlite3.connect(path, timeout=10)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def spool_count(path: str | os.PathLike[str]) -> int:
    rows = _query(path, "SELECT count(*) FROM spool")
    return int(rows[0][0]) if rows else 0


def spool_ids(path: str | os.PathLike[str]) -> list[str]:
    """messageIds in the spool, oldest row first."""
    return [r[0] for r in _query(path, "SELECT message_id FROM spool ORDER BY id")]


def spool_bytes(path: str | os.PathLike[str]) -> int:
    rows = _query(path, "SELECT total(size) FROM spool")
    return int(rows[0][0]) if rows else 0


def spool_owners(path: str | os.PathLike[str]) -> list[str | None]:
    return [r[0] for r in _query(path, "SELECT owner FROM spool ORDER BY id")]


# -- a client script, run as a subprocess --------------------------------------------------

# Configured by one JSON argument:
#   host, spool, options (Client kwargs), n (events to track), prefix (messageId prefix),
#   backoff (the factor of the client's analytics.Backoff), barrier (print "ready", wait for "go" on
#   stdin before building the client), hold (after "sent", block on stdin: to be killed),
#   wait_empty (seconds to poll until the spool file has no rows; exit 2 if it never
#   empties), shutdown (explicit client.shutdown(timeout)).
# Prints "sent" after the calls, and at the very end (an atexit hook registered before the
# client's, so it runs after the exit-time drain) "result {json}" with stats, errors
# (type name and messageIds per on_error call) and the spool's row count.
CLIENT_SCRIPT = r'''
import atexit, json, os, sqlite3, sys, time

cfg = json.loads(sys.argv[1])

import analytics

if cfg.get("backoff") is not None:
    cfg.setdefault("options", {})["backoff"] = analytics.Backoff(factor=cfg["backoff"])

errors = []
box = []


def on_error(error, batch):
    errors.append([type(error).__name__, [m["messageId"] for m in batch]])


def rows():
    if not os.path.exists(cfg["spool"]):
        return None
    db = sqlite3.connect(cfg["spool"], timeout=10)
    try:
        return db.execute("SELECT count(*) FROM spool").fetchone()[0]
    finally:
        db.close()


def report():
    stats = box[0].stats() if box else None
    print("result " + json.dumps({"stats": stats, "errors": errors, "rows": rows(),
                                  "pid": os.getpid()}), flush=True)


atexit.register(report)  # before the client registers its drain: runs after it

if cfg.get("barrier"):
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit(3)

client = analytics.Client("key", host=cfg["host"], spool_path=cfg["spool"],
                          on_error=on_error, **cfg.get("options", {}))
box.append(client)
for i in range(cfg.get("n", 0)):
    ok, _ = client.track("u", "SpoolEvent", {"i": i}, message_id=f"{cfg['prefix']}-{i}")
    if not ok:
        print(f"refused {i}", flush=True)
print("sent", flush=True)

if cfg.get("hold"):
    sys.stdin.readline()  # parked here until the test kills the process

code = 0
if cfg.get("wait_empty"):
    deadline = time.monotonic() + cfg["wait_empty"]
    while rows() != 0:
        if time.monotonic() > deadline:
            code = 2
            break
        time.sleep(0.02)
if cfg.get("shutdown") is not None:
    client.shutdown(timeout=cfg["shutdown"])
sys.exit(code)
'''


class Script:
    """A subprocess running CLIENT_SCRIPT; stdout lines are collected by a reader thread."""

    def __init__(self, script: Path, cfg: dict[str, Any], cwd: Path) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                     "all_proxy"):
            env.pop(name, None)
        self.cfg = cfg
        self.started = time.monotonic()
        self.ended: float | None = None
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(script), json.dumps(cfg)],
            cwd=str(cwd),
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out, True),
                             daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err, False),
                             daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream: Any, sink: list[str], lines: bool) -> None:
        for line in stream:
            sink.append(line)
            if lines:
                self._lines.put(line.rstrip("\n"))
        if lines:
            self._lines.put(None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    def wait_line(self, text: str, timeout: float) -> str:
        """Wait for a stdout line equal to `text` (or starting with it)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no {text!r} line within {timeout}s\nstdout:\n{self.stdout}\n"
                    f"stderr:\n{self.stderr}"
                )
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(
                    f"process ended (rc={self.proc.poll()}) before printing {text!r}\n"
                    f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
                )
            if line == text or line.startswith(text):
                return line

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float) -> int:
        """The exit code; the process is killed (and the test fails) if it overruns."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"script did not exit within {timeout}s (killed)\nstdout:\n{self.stdout}\n"
                f"stderr:\n{self.stderr}"
            ) from None
        self.ended = time.monotonic()
        for t in self._readers:
            t.join(5)
        return code

    def kill(self) -> None:
        """SIGKILL, then reap: a zombie would still look alive to os.kill(pid, 0)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.ended = time.monotonic()
        for t in self._readers:
            t.join(5)

    def result(self) -> dict[str, Any]:
        for line in reversed(self.out):
            if line.startswith("result "):
                return json.loads(line[len("result "):])
        raise AssertionError(
            f"no result line\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class Scripts:
    """Starts client scripts; every one still running is killed at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.path = tmp_path / "spool_client_script.py"
        self.path.write_text(CLIENT_SCRIPT)
        self.running: list[Script] = []

    def start(self, cfg: dict[str, Any]) -> Script:
        s = Script(self.path, cfg, self.tmp_path)
        self.running.append(s)
        return s

    def close(self) -> None:
        for s in self.running:
            s.close()


