"""A real gunicorn (--preload, 2 workers): every event reaches the collector exactly once,
the queued ones when SIGTERM makes the workers exit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import free_port, stop_with_sigterm

pytest.importorskip("gunicorn")
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="gunicorn needs os.fork")

HERE = Path(__file__).resolve().parent
REQUESTS = 40


def wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"gunicorn not listening on {port} within {timeout}s")


def test_preloaded_workers_deliver_every_event_once(collector, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["ANALYTICS_TEST_HOST"] = collector.url
    marks = tmp_path / "workers"
    marks.mkdir()
    env["ANALYTICS_TEST_DIR"] = str(marks)
    log = tmp_path / "gunicorn.log"
    command = [
        sys.executable, "-m", "gunicorn", "--preload", "-w", "2",
        "-b", f"127.0.0.1:{port}", "--chdir", str(HERE),
        "--graceful-timeout", "10", "--timeout", "30", "--log-level", "info",
        "_gunicorn_app:app",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        wait_listening(proc, port, timeout=15)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def get(n: int) -> str:
            hold = "&hold=1" if n < 2 else ""  # the first two meet, so both workers serve
            url = f"http://127.0.0.1:{port}/hit?n={n}&utm_source=load{hold}"
            request = urllib.request.Request(url, headers={"User-Agent": f"probe/{n}"})
            with opener.open(request, timeout=10) as response:
                assert response.status == 200
                return response.read().decode()

        with ThreadPoolExecutor(4) as pool:
            held = set(pool.map(get, range(2)))
            worker_pids = held | set(pool.map(get, range(2, REQUESTS)))
        assert len(held) == 2, "the two held requests were not served by two workers"
        assert collector.snapshot() == []  # all still queued: flush_interval is 60 s
        code = stop_with_sigterm(proc, timeout=20, name="gunicorn")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    output = log.read_text(errors="replace")
    assert code == 0, output

    messages = collector.wait_for_messages(REQUESTS + 1, timeout=10)
    ids = Counter(m["messageId"] for m in messages)
    assert max(ids.values()) == 1, f"sent twice: {[i for i, c in ids.items() if c > 1]}"
    hits = [m for m in messages if m["event"] == "Hit"]
    assert sorted(m["properties"]["n"] for m in hits) == list(range(REQUESTS)), output
    assert {str(m["properties"]["pid"]) for m in hits} == worker_pids
    [preloaded] = [m for m in messages if m["event"] == "Preloaded"]
    assert str(preloaded["properties"]["pid"]) not in worker_pids  # the master sent it
    for m in hits:
        n = m["properties"]["n"]
        assert m["anonymousId"] == f"visitor-{n}"
        assert m["context"]["ip"] == "127.0.0.1"
        assert m["context"]["userAgent"] == f"probe/{n}"
        assert m["context"]["page"]["path"] == "/hit"
        assert m["context"]["campaign"] == {"source": "load"}
