"""A tiny WSGI app for test_gunicorn: the facade configured from the environment at import
(in the --preload master), one tracked event per request inside a request scope."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any, Callable
from urllib.parse import parse_qs

import analytics
from analytics.context import context_from_request

analytics.write_key = "gunicorn-test-key"
analytics.host = os.environ["ANALYTICS_TEST_HOST"]
analytics.flush_interval = 60  # no batch leaves on its own: only the exit drain sends them
analytics.batch_size = 100
analytics.timeout = 5
analytics.shutdown_timeout = 5

# Tracked in the master before it forks: must be sent once, by the master, never by a worker.
analytics.track(anonymous_id="master", event="Preloaded", properties={"pid": os.getpid()})


def hold_until_two_workers(timeout: float = 10.0) -> None:
    """A cross-process rendezvous: marks this worker, then polls (bounded) until two workers
    have marked; a sync worker serves one request at a time, so two held requests that both
    return were served by different workers."""
    folder = os.environ["ANALYTICS_TEST_DIR"]
    open(os.path.join(folder, f"worker-{os.getpid()}"), "w").close()
    deadline = time.monotonic() + timeout
    while len(os.listdir(folder)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
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
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
