"""Flush and shut down from an event loop without blocking it. The wait polls the counters that
`flush` waits on, so other tasks keep running, no thread is made for it, and a cancelled wait
leaves nothing behind. Nothing here sends or settles a message: the pipeline does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from . import lifecycle
from .pipeline import Pipeline

# How often a waiting flush looks at the counters: soon at first (a batch to a near collector
# settles in a few ms), then every POLL_MAX seconds: the most it adds to a flush. While it
# waits, the loop wakes for it 100 times a second: the cost of any task sleeping 10 ms in a
# loop (about 1.5 % of a core on a loaded 2-core machine).
POLL_FIRST = 0.001
POLL_MAX = 0.01


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


async def aflush(pipeline: Pipeline, timeout: float | None = None) -> bool:
    """`pipeline.flush(timeout)`, awaited: True once every message queued before it is
    delivered or reported to on_error, False if `timeout` ran out first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    stats, q = pipeline.stats, pipeline.queue
    target = stats.queued
    marker_fits = not q.full()
    # With no time to wait, flush starts the consumer and asks it for its partial batch.
    if pipeline.flush(0):
        return True
    consumer = pipeline.consumer
    if consumer is None or consumer.is_current():
        return False  # as flush: no thread can be started, or called from on_error
    pause = POLL_FIRST
    while stats.settled < target:
        left = _left(deadline)
        if left == 0.0:
            return False
        if not marker_fits and not q.full():  # the queue was too full for the flush marker
            pipeline.flush_soon()
            marker_fits = True
        await asyncio.sleep(pause if left is None else min(pause, left))
        pause = min(pause * 2, POLL_MAX)
    return True


async def ashutdown(pipeline: Pipeline, timeout: float | None = None) -> bool:
    """`pipeline.shutdown(timeout)`, awaited. Calls are refused from the start; if the wait is
    cancelled, they stay refused and the consumer still sends what it holds, then ends."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pipeline.retire()
    ok = await aflush(pipeline, timeout)
    # What is left (join the ended thread, close the session and the spool, or settle what
    # is still undelivered as lost) takes a moment at most, in the loop's executor: a
    # spool's file or a thread still in a request never holds up the loop.
    loop = asyncio.get_running_loop()
    try:
        rest = loop.run_in_executor(None, pipeline.shutdown, _left(deadline))
    except RuntimeError:  # the loop's executor is shut down (the loop is closing)
        return pipeline.shutdown(_left(deadline)) and ok
    return await rest and ok


async def aflush_all(pipelines: Iterable[Pipeline], timeout: float | None = None) -> bool:
    """Flush every pipeline at once, within the one `timeout`; False if it ran out."""
    results = await asyncio.gather(*(aflush(p, timeout) for p in pipelines))
    return all(results)


async def aflush_running(timeout: float | None = None) -> bool:
    """Flush every running pipeline of the process (every client's), as `flush_all`."""
    return await aflush_all([p for p in lifecycle.running() if isinstance(p, Pipeline)], timeout)
