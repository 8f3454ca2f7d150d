"""A Celery app for test_celery, loaded by a real `celery worker -P prefork` in a subprocess.

The facade is configured from the environment at import (in the worker's main process, before
it forks its pool), with a long flush_interval so that nothing leaves before a pool process
stops. The README's former `worker_process_shutdown` recipe is registered unless
ANALYTICS_TEST_RECIPE=0. Each task tracks one event, then leaves a file `done-N` behind.
"""

from __future__ import annotations

import json
import os
import time

from celery import Celery
from celery.signals import worker_process_shutdown

import analytics

analytics.write_key = "celery-test-key"
analytics.host = os.environ["ANALYTICS_TEST_HOST"]
analytics.flush_interval = 30  # no batch leaves on its own: only a drain at exit sends them
analytics.batch_size = 100
analytics.timeout = 5
analytics.shutdown_timeout = 5

DONE = os.environ["ANALYTICS_TEST_DIR"]

app = Celery("_celery_app", broker="filesystem://")
app.conf.update(
    broker_transport_options=json.loads(os.environ["ANALYTICS_TEST_BROKER_OPTIONS"]),
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)

if os.environ.get("ANALYTICS_TEST_RECIPE", "1") == "1":
    # ---- the recipe the README gave before the library drained pool processes itself ----
    @worker_process_shutdown.connect
    def drain_analytics(**kwargs):
        analytics.shutdown(timeout=5)


def hold_until_two_processes(timeout: float = 10.0) -> None:
    """Marks this pool process, then polls (bounded) until two have marked: a prefork child
    runs one task at a time, so two held tasks that both finish ran in different children."""
    open(os.path.join(DONE, f"process-{os.getpid()}"), "w").close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(name.startswith("process-") for name in os.listdir(DONE)) >= 2:
            return
        time.sleep(0.01)


@app.task(name="track_one")
def track_one(n: int, hold: bool = False) -> None:
    if hold:
        hold_until_two_processes()
    analytics.track(
        user_id=f"user-{n}",
        event="Task Ran",
        properties={"n": n, "pid": os.getpid()},
        message_id=f"celery-task-{n}",
    )
    # written then renamed: the test never sees a half-written file
    path = os.path.join(DONE, f"done-{n}")
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
