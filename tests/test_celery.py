"""A real Celery worker (prefork pool, 2 processes, filesystem broker): every event tracked in
a task reaches the collector exactly once when a warm shutdown (SIGTERM) stops the pool, or
when `--max-tasks-per-child` replaces a pool process, with no hook in the app (the library
connects its drain to `worker_process_shutdown` itself: billiard's pool processes leave with
`os._exit`, skipping atexit). The README's old recipe, kept by an app, changes nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers import stop_with_sigterm, wait_until

celery = pytest.importorskip("celery")
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="prefork needs os.fork")

HERE = Path(__file__).resolve().parent
TASKS = 20


def broker_options(root: Path) -> dict[str, Any]:
    """kombu's filesystem transport, every folder under `root` (its defaults are relative)."""
    queue, processed, control = root / "queue", root / "processed", root / "control"
    for folder in (queue, processed, control):
        folder.mkdir(parents=True)
    return {
        "data_folder_in": str(queue),
        "data_folder_out": str(queue),
        "processed_folder": str(processed),
        "store_processed": True,
        "control_folder": str(control),
        "polling_interval": 0.1,
    }


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its new parent) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def run_worker(
    collector: Any, tmp_path: Path, recipe: bool, extra: tuple[str, ...] = ()
) -> tuple[set[int], str]:
    """Start a prefork worker, run TASKS tasks, stop it warm; the pool pids and its log."""
    options = broker_options(tmp_path / "broker")
    done = tmp_path / "done"
    done.mkdir()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(
        ANALYTICS_TEST_HOST=collector.url,
        ANALYTICS_TEST_DIR=str(done),
        ANALYTICS_TEST_BROKER_OPTIONS=json.dumps(options),
        ANALYTICS_TEST_RECIPE="1" if recipe else "0",
        PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")])),
    )
    log = tmp_path / "celery.log"
    command = [
        sys.executable, "-m", "celery", "-A", "_celery_app", "worker",
        "-P", "prefork", "-c", "2", "-n", f"analytics-test-{os.getpid()}@localhost",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO",
        *extra,
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=HERE, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        with celery.Celery("producer", broker="filesystem://") as producer:
            producer.conf.broker_transport_options = options
            for n in range(TASKS):  # the first two meet, so both pool processes track
                producer.send_task("track_one", args=[n], kwargs={"hold": n < 2})

        def finished() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"celery exited early with {proc.returncode}")
            return sum(p.name.startswith("done-") for p in done.iterdir()) == TASKS

        ran = wait_until(finished, timeout=30, interval=0.05)
        output = log.read_text(errors="replace")
        assert ran, f"the worker did not run {TASKS} tasks within 30s\n{output}"
        pids = {int((done / f"done-{n}").read_text()) for n in range(TASKS)}
        if not extra:  # all still queued: flush_interval is 30 s (nothing was replaced)
            assert collector.snapshot() == []
        code = stop_with_sigterm(proc, timeout=20, name="celery")  # its warm shutdown
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    output = log.read_text(errors="replace")
    assert code == 0, output
    # Whatever a pool process sent, it sent before it died: wait (bounded) until all have.
    assert wait_until(lambda: not any(alive(pid) for pid in pids), timeout=10), output
    return pids, output


def assert_every_task_once(collector: Any, pids: set[int], output: str) -> None:
    messages = collector.wait_for_messages(TASKS, timeout=10)
    ids = Counter(m["messageId"] for m in messages)
    assert max(ids.values()) == 1, f"sent twice: {[i for i, c in ids.items() if c > 1]}"
    assert sorted(ids) == sorted(f"celery-task-{n}" for n in range(TASKS)), output
    for m in messages:
        n = m["properties"]["n"]
        assert m["event"] == "Task Ran"
        assert m["userId"] == f"user-{n}"
    assert {m["properties"]["pid"] for m in messages} == pids  # each child sent its own


def test_recipe_drains_every_pool_process_at_warm_shutdown(collector, tmp_path):
    """An app that kept the old recipe: its drain and the library's together send once."""
    pids, output = run_worker(collector, tmp_path, recipe=True)
    assert len(pids) == 2, f"tasks ran in {pids}, not in two pool processes"
    assert_every_task_once(collector, pids, output)


def test_without_the_recipe_every_pool_process_drains_at_warm_shutdown(collector, tmp_path):
    # Replaces "without the recipe pool processes lose their queue" (0 of 20 arrived before
    # the library drained pool processes itself): now the guarantee holds with no hook.
    pids, output = run_worker(collector, tmp_path, recipe=False)
    assert len(pids) == 2, f"tasks ran in {pids}, not in two pool processes"
    assert_every_task_once(collector, pids, output)


def test_pool_process_replaced_after_max_tasks_per_child_drains(collector, tmp_path):
    pids, output = run_worker(
        collector, tmp_path, recipe=False, extra=("--max-tasks-per-child", "3")
    )
    assert len(pids) > 2, f"no pool process was replaced: tasks ran in {pids}"
    assert_every_task_once(collector, pids, output)
