"""A tiny WSGI app for test_uwsgi (`--wsgi-file`, no --lazy-apps): the facade configured from
the environment at import, in the uWSGI master, before it forks its workers; one tracked event
per request inside a request scope.

The master tracks one event at import (unless ANALYTICS_TEST_MASTER_EVENT=0). uWSGI's master
never runs Python's atexit, so that event is only sent if ANALYTICS_TEST_FLUSH_MASTER=1 makes
the master flush it here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any, Callable
from urllib.parse import parse_qs

import analytics
from analytics.context import context_from_request

FOLDER = os.environ["ANALYTICS_TEST_DIR"]

analytics.write_key = "uwsgi-test-key"
analytics.host = os.environ["ANALYTICS_TEST_HOST"]
# 60 s by default: no batch leaves on its own, only the exit drain sends them
analytics.flush_interval = float(os.environ.get("ANALYTICS_TEST_FLUSH_INTERVAL", "60"))
analytics.batch_size = 100
analytics.timeout = 5
analytics.shutdown_timeout = 5

if os.environ.get("ANALYTICS_TEST_MASTER_EVENT", "1") == "1":
    analytics.track(anonymous_id="master", event="Preloaded", properties={"pid": os.getpid()})
    if os.environ.get("ANALYTICS_TEST_FLUSH_MASTER") == "1":
        analytics.flush(timeout=5)


def marked(prefix: str) -> int:
    return sum(name.startswith(prefix) for name in os.listdir(FOLDER))


def hold_until_two_workers(timeout: float = 10.0) -> None:
    """A cross-process rendezvous: marks this worker, then polls (bounded) until two workers
    have marked; a worker without threads serves one request at a time, so two held requests
    that both return were served by different workers."""
    open(os.path.join(FOLDER, f"worker-{os.getpid()}"), "w").close()
    deadline = time.monotonic() + timeout
    while marked("worker-") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)


def stall(timeout: float = 10.0) -> None:
    """Marks `stalled-PID`, then polls (bounded) for a `release` file: a request in flight."""
    open(os.path.join(FOLDER, f"stalled-{os.getpid()}"), "w").close()
    deadline = time.monotonic() + timeout
    while not marked("release") and time.monotonic() < deadline:
        time.sleep(0.01)


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    query = environ.get("QUERY_STRING", "")
    params = parse_qs(query)
    n = int(params["n"][0])
    if "hold" in params:
        hold_until_two_workers()
    url = f"http://{environ['HTTP_HOST']}{environ['PATH_INFO']}?{query}"
    context = context_from_request(
        url=url,
        ip=environ.get("REMOTE_ADDR"),
        headers={"User-Agent": environ.get("HTTP_USER_AGENT", "")},
    )
    with analytics.scope(anonymous_id=f"visitor-{n}", context=context):
        analytics.track(event="Hit", properties={"n": n, "pid": os.getpid()})
    if "stall" in params:
        stall()
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
