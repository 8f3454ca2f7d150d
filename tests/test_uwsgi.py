"""A real uWSGI (--master, 2 preforked workers, app loaded in the master, no --lazy-apps):
every event tracked in a worker reaches the collector exactly once when uWSGI stops.

What uWSGI 2.0 does at shutdown, as these tests show:

* SIGINT (and SIGQUIT, and SIGTERM with --die-on-term) is a brutal stop: each worker gets
  SIGINT and exits from the signal handler; Python's atexit (our exit drain) runs there, *unless
  the worker is busy with a request*, in which case uWSGI skips it and that worker's queue is
  lost. The master FIFO's `q` is the graceful stop: a busy worker finishes, then drains.
* The master never runs Python's atexit: what the master itself tracked (e.g. at import) is
  only sent if it flushes it.
* Since uWSGI 2.0.27 Python threads are always on (--enable-threads is a no-op); before, without
  it, the sending thread does not run while a worker is idle (the exit drain still sends).
  ANALYTICS_TEST_UWSGI=/path/to/uwsgi runs these tests with another uWSGI binary.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import free_port, wait_until

HERE = Path(__file__).resolve().parent
APP = HERE / "_uwsgi_app.py"
REQUESTS = 40


def find_uwsgi() -> str | None:
    """ANALYTICS_TEST_UWSGI, else the uwsgi beside this Python (its venv), else PATH's."""
    if os.environ.get("ANALYTICS_TEST_UWSGI"):
        return os.environ["ANALYTICS_TEST_UWSGI"]
    beside = Path(sys.executable).with_name("uwsgi")
    return str(beside) if beside.exists() else shutil.which("uwsgi")


UWSGI = find_uwsgi()
pytestmark = [
    pytest.mark.skipif(UWSGI is None, reason="no uwsgi binary (pip install pyuwsgi, or uwsgi)"),
    pytest.mark.skipif(not hasattr(os, "fork"), reason="uWSGI needs fork"),
]


def uwsgi_version() -> tuple[int, ...]:
    assert UWSGI is not None
    out = subprocess.run([UWSGI, "--version"], capture_output=True, text=True, timeout=10)
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", out.stdout.strip())
    assert match, f"cannot read the uWSGI version from {out.stdout!r}"
    return tuple(int(part) for part in match.groups())


OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    stats_port: int
    folder: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def get(self, n: int, extra: str = "") -> str:
        url = f"http://127.0.0.1:{self.port}/hit?n={n}&utm_source=load{extra}"
        request = urllib.request.Request(url, headers={"User-Agent": f"probe/{n}"})
        with OPENER.open(request, timeout=10) as response:
            assert response.status == 200
            return str(response.read().decode())

    def send_requests(self) -> dict[int, str]:
        """REQUESTS requests, 4 at a time; the first two are served by the two workers.
        Returns the pid of the worker that served each request."""
        with ThreadPoolExecutor(4) as pool:
            held = list(pool.map(lambda n: self.get(n, "&hold=1"), range(2)))
            rest = list(pool.map(self.get, range(2, REQUESTS)))
        assert len(set(held)) == 2, "the two held requests were not served by two workers"
        return dict(enumerate(held + rest))

    def workers(self) -> list[dict[str, Any]]:
        """The stats server's view of the workers (pid, status: idle/busy/...)."""
        with socket.create_connection(("127.0.0.1", self.stats_port), timeout=2) as s:
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return list(json.loads(b"".join(chunks))["workers"])

    def wait_idle(self, timeout: float = 10) -> None:
        """A response reaches the client before its worker has finished the request."""
        idle = wait_until(lambda: all(w["status"] == "idle" for w in self.workers()), timeout)
        assert idle, f"workers not idle within {timeout}s: {self.workers()}"

    def stop(self, timeout: float, sig: int = signal.SIGINT, fifo: Path | None = None) -> int:
        """`sig` to the master (or `q` to its FIFO); wait at most `timeout`; kill on overrun."""
        if fifo is not None:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(fd, b"q")
            finally:
                os.close(fd)
        else:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"uWSGI did not stop within {timeout}s\n{self.output()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


def wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = log.read_text(errors="replace")
            raise AssertionError(f"uWSGI exited early with {proc.returncode}\n{output}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"uWSGI not listening on {port} within {timeout}s")


def start(collector: Any, tmp_path: Path, *options: str, **env_extra: str) -> Server:
    assert UWSGI is not None
    port, stats_port = free_port(), free_port()
    folder = tmp_path / "marks"
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(ANALYTICS_TEST_HOST=collector.url, ANALYTICS_TEST_DIR=str(folder), **env_extra)
    log = tmp_path / "uwsgi.log"
    command = [
        UWSGI, "--http", f"127.0.0.1:{port}", "--master", "--processes", "2",
        "--wsgi-file", str(APP), "--need-app", "--virtualenv", sys.prefix,
        "--stats", f"127.0.0.1:{stats_port}", *options,
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        wait_listening(proc, port, timeout=15, log=log)
    except BaseException:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        raise
    return Server(proc, port, stats_port, folder, log)


def check_hits(messages: list[dict[str, Any]], served: dict[int, str], output: str) -> None:
    """Every hit arrived once, sent by the worker that served it."""
    ids = Counter(m["messageId"] for m in messages)
    assert max(ids.values()) == 1, f"sent twice: {[i for i, c in ids.items() if c > 1]}"
    hits = [m for m in messages if m["event"] == "Hit"]
    assert sorted(m["properties"]["n"] for m in hits) == list(range(REQUESTS)), output
    for m in hits:
        n = m["properties"]["n"]
        assert str(m["properties"]["pid"]) == served[n]
        assert m["anonymousId"] == f"visitor-{n}"
        assert m["context"]["ip"] == "127.0.0.1"
        assert m["context"]["userAgent"] == f"probe/{n}"
        assert m["context"]["page"]["path"] == "/hit"
        assert m["context"]["campaign"] == {"source": "load"}


def test_preloaded_workers_deliver_every_event_once_on_sigint(collector, tmp_path):
    # The master flushes what it tracked at import (it never runs atexit), then forks.
    server = start(collector, tmp_path, "--enable-threads", ANALYTICS_TEST_FLUSH_MASTER="1")
    try:
        # uWSGI listens before it loads the app: wait for the master's flush
        [preloaded] = collector.wait_for_messages(1, timeout=10)
        served = server.send_requests()
        assert collector.message_count() == 1  # the hits are all still queued: 60 s
        server.wait_idle()  # a worker stopped while busy skips atexit (see below)
        code = server.stop(timeout=20, sig=signal.SIGINT)
    finally:
        server.kill()
    output = server.output()
    assert code == 0, output

    messages = collector.wait_for_messages(REQUESTS + 1, timeout=10)
    check_hits(messages, served, output)
    assert [m for m in messages if m["event"] == "Preloaded"] == [preloaded]
    assert preloaded["properties"]["pid"] == server.proc.pid  # the master sent it
    assert str(preloaded["properties"]["pid"]) not in served.values()


def test_graceful_stop_drains_busy_workers_but_never_the_master(collector, tmp_path):
    fifo = tmp_path / "master.fifo"
    server = start(collector, tmp_path, "--enable-threads", "--master-fifo", str(fifo))
    try:
        served = server.send_requests()
        assert collector.snapshot() == []  # all queued, the master's own event too
        code = server.stop(timeout=20, fifo=fifo)  # no wait for idle workers: `q` waits
    finally:
        server.kill()
    output = server.output()
    assert code == 0, output
    assert "graceful shutdown triggered" in output, output

    messages = collector.wait_for_messages(REQUESTS, timeout=10)
    check_hits(messages, served, output)
    # The event the master queued at import: never sent by a worker (forked queues start
    # empty) and never by the master (uWSGI's master does not run atexit).
    assert [m for m in messages if m["event"] == "Preloaded"] == []


def test_sigint_while_a_worker_is_busy_loses_that_workers_queue(collector, tmp_path):
    server = start(collector, tmp_path, "--enable-threads")
    try:
        served = server.send_requests()
        server.wait_idle()
        with ThreadPoolExecutor(1) as pool:
            stalled = pool.submit(server.get, REQUESTS, "&stall=1")
            assert wait_until(lambda: any(server.folder.glob("stalled-*")), timeout=10)
            [mark] = server.folder.glob("stalled-*")
            busy_pid = mark.name.split("-")[1]
            code = server.stop(timeout=20, sig=signal.SIGINT)
            with pytest.raises(OSError):  # its worker died mid-request
                stalled.result(timeout=15)
    finally:
        server.kill()
    output = server.output()
    assert code == 0, output

    [idle_pid] = set(served.values()) - {busy_pid}
    hits = [m for m in collector.messages() if m["event"] == "Hit"]
    # The idle worker drained every event it had (the master has reaped both workers: nothing
    # more will come); the busy one skipped atexit: all it had queued, the stalled hit too, is
    # lost.
    by_idle = sorted(n for n, pid in served.items() if pid == idle_pid)
    assert sorted(m["properties"]["n"] for m in hits) == by_idle, output
    assert {str(m["properties"]["pid"]) for m in hits} == {idle_pid}


def test_without_enable_threads(collector, tmp_path):
    """The README says the sending thread never runs without --enable-threads. uWSGI >= 2.0.27
    turns Python threads on whatever the flag says; before, the thread does not run while the
    worker waits for requests, but the exit drain still delivers.

    The master tracks nothing here: on uWSGI < 2.0.27 without threads, a thread started in the
    master before the fork (as tracking at import does) can deadlock the workers."""
    server = start(
        collector, tmp_path,  # no --enable-threads
        ANALYTICS_TEST_FLUSH_INTERVAL="0.2", ANALYTICS_TEST_MASTER_EVENT="0",
    )  # fmt: skip
    try:
        served = server.send_requests()
        server.wait_idle()

        sent_while_idle = wait_until(lambda: collector.message_count() >= REQUESTS, timeout=3)
        code = server.stop(timeout=20, sig=signal.SIGINT)
    finally:
        server.kill()
    output = server.output()
    assert code == 0, output

    if uwsgi_version() >= (2, 0, 27):
        assert "python threads support enabled" in output, output
        assert sent_while_idle, "threads are on, yet the batches did not leave within 3 s"
    else:
        assert "Python threads support is disabled" in output, output
        assert not sent_while_idle, "the sending thread ran while the workers were idle"
    check_hits(collector.wait_for_messages(REQUESTS, timeout=10), served, output)
