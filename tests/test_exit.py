"""Interpreter exit drains the queue (atexit), bounded by shutdown_timeout."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(tmp_path, body: str, *args: str, timeout: float = 60):
    """Run `body` in a fresh interpreter; return (returncode, stdout, stderr, ended_at).

    `ended_at` is time.monotonic() when the process was seen to exit (CLOCK_MONOTONIC is
    shared by every process on the machine, so the script can print its own readings)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body))
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY",
                 "all_proxy"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=str(tmp_path),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"script did not exit within {timeout}s\n{err}") from None
    return proc.returncode, out, err, time.monotonic()


def last_float(out: str) -> float:
    return float(out.strip().splitlines()[-1])


def test_exit_without_flush_drains_every_message(tmp_path, collector):
    code, out, err, _ = run_script(
        tmp_path,
        """
        import sys
        import analytics
        client = analytics.Client("key", host=sys.argv[1], flush_interval=30)
        for i in range(5000):
            ok, _ = client.track("u", "AtExit", {"i": i}, message_id=f"exit-{i}")
            assert ok
        print("tracked")
        """,
        collector.url,
    )
    assert code == 0, err
    # the process has exited: whatever it delivered is already recorded
    counts = Counter(m["messageId"] for m in collector.messages())
    assert len(counts) == 5000, f"{5000 - len(counts)} messages lost at exit"
    assert set(counts.values()) == {1}


def test_facade_exit_without_flush_drains(tmp_path, collector):
    code, _, err, _ = run_script(
        tmp_path,
        """
        import sys
        import analytics
        analytics.write_key = "key"
        analytics.host = sys.argv[1]
        analytics.flush_interval = 30
        for i in range(300):
            analytics.track("u", "FacadeExit", message_id=f"fx-{i}")
        """,
        collector.url,
    )
    assert code == 0, err
    assert len({m["messageId"] for m in collector.messages()}) == 300


def test_exit_with_server_failing_is_bounded_by_shutdown_timeout(tmp_path, collector):
    collector.fail(500)
    code, out, err, ended = run_script(
        tmp_path,
        """
        import sys, time
        import analytics
        client = analytics.Client("key", host=sys.argv[1], shutdown_timeout=2,
                                  flush_interval=0.05)
        for i in range(10):
            client.track("u", "E")
        print(time.monotonic(), flush=True)
        """,
        collector.url,
        timeout=30,
    )
    took = ended - last_float(out)
    assert code == 0, err
    assert took <= 2 + 2, f"exit took {took:.2f}s with shutdown_timeout=2"
    assert len(collector.requests) >= 1


def test_exit_with_server_hung_is_bounded_by_shutdown_timeout(tmp_path, collector):
    collector.hang()
    code, out, err, ended = run_script(
        tmp_path,
        """
        import sys, time
        import analytics
        client = analytics.Client("key", host=sys.argv[1], shutdown_timeout=1,
                                  flush_interval=0.05)
        client.track("u", "E")
        print(time.monotonic(), flush=True)
        """,
        collector.url,
        timeout=30,
    )
    took = ended - last_float(out)
    assert code == 0, err
    assert took <= 1 + 2, f"exit took {took:.2f}s with shutdown_timeout=1"


def test_shutdown_timeout_is_shared_by_all_clients(tmp_path, collector):
    collector.fail(500)
    code, out, err, ended = run_script(
        tmp_path,
        """
        import sys, time
        import analytics
        clients = [analytics.Client(f"key{n}", host=sys.argv[1], shutdown_timeout=1.5,
                                    flush_interval=0.05) for n in range(3)]
        for c in clients:
            for i in range(5):
                c.track("u", "E")
        print(time.monotonic(), flush=True)
        """,
        collector.url,
        timeout=30,
    )
    took = ended - last_float(out)
    assert code == 0, err
    assert took <= 1.5 + 2, f"exit took {took:.2f}s for three clients, shutdown_timeout=1.5"
