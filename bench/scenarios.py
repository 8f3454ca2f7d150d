"""The per-library worker: one scenario, one library, one fresh process; prints one result.

Runs under the project's venv (`ours`, `ours-json`, `floor`) or the peers' venv (`segment`,
`posthog`), so it imports nothing but the standard library and the library under test. The
last line of stdout is `BENCH_RESULT {json}`. `ours` encodes with whatever is installed
(orjson with the `fast` extra); `ours-json` switches to the json module first, as a user
without the extra gets it.

Every library gets the same message: a track with a user id, an event name and five
properties (a string, a float, a bool, a nested dict and a datetime), built fresh per call.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import logging
import os
import pstats
import queue
import socket
import sys
import threading
import time
import urllib.request
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

RESULT_PREFIX = "BENCH_RESULT "
USER_ID = "user-1234567"
EVENT = "Order Completed"
ORDERED_AT = datetime(2024, 5, 17, 12, 30, 15, 250000, tzinfo=timezone.utc)
WARMUP_CALLS = 1
WARMUP_IDLE = 200  # idle: calls before the timed ones
LIBRARY_LOGGERS = ("analytics", "segment", "posthog")
OURS = ("ours", "ours-json")  # our library: JSON encoder as installed, or the json module


def props() -> dict[str, Any]:
    """The five properties, as a caller builds them for each call."""
    return {
        "plan": "enterprise",
        "revenue": 49.95,
        "first_order": True,
        "cart": {"sku": "B-42", "quantity": 2, "coupon": "SPRING"},
        "ordered_at": ORDERED_AT,
    }


class Library:
    """One library's client behind the few calls the scenarios need."""

    def __init__(self, lib: str, host: str, max_queue_size: int, use_gzip: bool) -> None:
        self.lib = lib
        self.client: Any
        self.backend: str | None = None  # ours: the JSON encoder in use
        if lib in OURS:
            import analytics
            import analytics.encode

            if lib == "ours-json":
                analytics.encode.use_backend("json")
            self.client = analytics.Client(
                "bench-write-key", host=host, max_queue_size=max_queue_size, gzip=use_gzip
            )
            self.version = analytics.VERSION
            self.file = analytics.__file__  # which checkout (bench/compare.py checks it)
            self.backend = analytics.encode.BACKEND
        elif lib == "segment":
            from segment.analytics.client import Client
            from segment.analytics.version import VERSION

            self.client = Client(
                "bench-write-key", host=host, max_queue_size=max_queue_size, gzip=use_gzip
            )
            self.version = VERSION
        elif lib == "posthog":
            import posthog

            self.client = posthog.Posthog(
                "phc_bench_project_key", host=host, max_queue_size=max_queue_size, gzip=use_gzip
            )
            self.version = posthog.VERSION
        else:
            raise SystemExit(f"unknown library {lib!r}")

    def burst(self, n: int) -> None:
        """`n` calls in a tight loop on this thread."""
        if self.lib == "posthog":
            capture = self.client.capture
            for _ in range(n):
                capture(EVENT, distinct_id=USER_ID, properties=props())
        else:
            track = self.client.track
            for _ in range(n):
                track(USER_ID, EVENT, props())

    def with_props(self, properties: dict[str, Any]) -> None:
        """One call with properties built beforehand (steady: only the call is timed)."""
        if self.lib == "posthog":
            self.client.capture(EVENT, distinct_id=USER_ID, properties=properties)
        else:
            self.client.track(USER_ID, EVENT, properties)

    def one(self, message_id: str) -> None:
        """One call with a known message id."""
        if self.lib == "posthog":
            self.client.capture(EVENT, distinct_id=USER_ID, properties=props(), uuid=message_id)
        else:
            self.client.track(USER_ID, EVENT, props(), message_id=message_id)

    def flush(self) -> None:
        """Block until the queue is delivered (each library's own flush)."""
        if self.lib in OURS:
            self.client.flush(timeout=600)
        elif self.lib == "posthog":
            self.client.flush(timeout_seconds=None)
        else:
            self.client.flush()

    def warm_up(self) -> None:
        """Start the consumer thread and open the connection before anything is timed."""
        for _ in range(WARMUP_CALLS):
            self.one(str(uuid.uuid4()))
        self.flush()


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/status."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class Profiler:
    """cProfile of the measured section on the main thread, and of every thread the library
    starts (its consumer), from `install()` on. The timer is each thread's CPU time, so a
    call that releases the GIL is not charged for the wait to get it back."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.profiles: list[cProfile.Profile] = []

    def _thread_start(self, *_: Any) -> None:
        sys.setprofile(None)
        profile = cProfile.Profile(time.thread_time)
        self.profiles.append(profile)
        profile.enable()

    def install(self) -> None:
        """Profile threads started from now on (call before the client is built)."""
        if self.path:
            threading.setprofile(self._thread_start)

    def __enter__(self) -> Profiler:
        if self.path:
            self._thread_start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.path:
            return
        threading.setprofile(None)
        for profile in self.profiles:
            profile.disable()
        out = io.StringIO()
        stats = pstats.Stats(*self.profiles, stream=out)
        stats.sort_stats("tottime").print_stats(35)
        stats.sort_stats("cumulative").print_stats(35)
        with open(self.path, "w") as f:
            f.write(out.getvalue())


def sink_get(host: str, path: str) -> dict[str, Any]:
    """A control request to the sink (not counted as traffic)."""
    with urllib.request.urlopen(host + path, timeout=10) as resp:
        result: dict[str, Any] = json.loads(resp.read())
    return result


def caller(lib: Library, n: int, host: str, prof: Profiler) -> dict[str, Any]:
    """Scenario 1: the cost of a call on the main thread while delivery runs."""
    lib.warm_up()
    mark = sink_get(host, "/_stats")
    cpu0 = time.process_time()
    with prof:
        t0 = time.perf_counter()
        lib.burst(n)
        t1 = time.perf_counter()
    lib.flush()
    t2 = time.perf_counter()
    return {
        "us_per_call": (t1 - t0) / n * 1e6,
        "burst_s": t1 - t0,
        "flush_s": t2 - t1,
        "cpu_s": time.process_time() - cpu0,
        "sink_mark": mark,
    }


def end_to_end(lib: Library, n: int, host: str, prof: Profiler) -> dict[str, Any]:
    """Scenario 2: from the first call until flush() returns, everything delivered."""
    lib.warm_up()
    mark = sink_get(host, "/_stats")
    gc.collect()
    with prof:
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        lib.burst(n)
        t1 = time.perf_counter()
        lib.flush()
        t2 = time.perf_counter()
        cpu = time.process_time() - cpu0
    return {
        "msgs_per_s": n / (t2 - t0),
        "elapsed_s": t2 - t0,
        "burst_s": t1 - t0,
        "cpu_s": cpu,
        "cpu_s_per_10k": cpu / n * 10_000,
        "sink_mark": mark,
    }


def memory(lib: Library, n: int, host: str, hold: float) -> dict[str, Any]:
    """Scenario 3: RSS growth per queued message while the sink holds each response."""
    lib.warm_up()
    sink_get(host, f"/_delay?seconds={hold}")
    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    lib.burst(n)
    burst_s = time.perf_counter() - t0
    gc.collect()
    after = rss_bytes()
    return {
        "rss_bytes_per_msg": (after - before) / n,
        "rss_before": before,
        "rss_after": after,
        "burst_s": burst_s,
    }


def latency(lib: Library, samples: int, idle: float) -> dict[str, Any]:
    """Scenario 4: an idle client, one call then flush(); the sink stamps the arrival."""
    lib.warm_up()
    calls: list[tuple[str, float]] = []
    flush_ms: list[float] = []
    for _ in range(samples):
        time.sleep(idle)
        message_id = str(uuid.uuid4())
        t0 = time.time()
        lib.one(message_id)
        lib.flush()
        flush_ms.append((time.time() - t0) * 1000)
        calls.append((message_id, t0))
    return {"calls": calls, "flush_ms": flush_ms}


def steady(lib: Library | FloorCall, seconds: float, per_tick: int, host: str) -> dict[str, Any]:
    """Scenario 7: a steady load, `per_tick` calls every millisecond for `seconds`, each
    call timed on its own (its properties built before the clock starts); between ticks the
    caller sleeps, as a web worker would between requests. The consumer delivers meanwhile,
    so a call's time includes any wait for the GIL while the consumer holds it."""
    lib.warm_up()
    mark = sink_get(host, "/_stats") if host else {}
    clock = time.perf_counter
    call = lib.with_props
    durations: list[float] = []
    tick = clock()
    end = tick + seconds
    while tick < end:
        for _ in range(per_tick):
            properties = props()
            t0 = clock()
            call(properties)
            durations.append(clock() - t0)
        tick += 0.001
        delay = tick - clock()
        if delay > 0:
            time.sleep(delay)
    lib.flush()
    durations.sort()

    def at(q: float) -> float:
        return durations[min(len(durations) - 1, int(q * len(durations)))] * 1e6

    return {
        "p50_us": at(0.50), "p99_us": at(0.99), "p999_us": at(0.999),
        "max_us": durations[-1] * 1e6, "calls": len(durations), "sink_mark": mark,
    }  # fmt: skip


def idle(lib: Library, n: int) -> dict[str, Any]:
    """Scenario 6: the cost of a call with nothing being sent. The library's host accepts
    the connection and never answers, so its sender waits in its first request while the
    calls only queue (the queue is sized so that no backpressure or drop kicks in)."""
    lib.burst(WARMUP_IDLE)  # the consumer starts and blocks in its first request
    time.sleep(0.2)
    t0 = time.perf_counter()
    lib.burst(n)
    t1 = time.perf_counter()
    return {"us_per_call": (t1 - t0) / n * 1e6}


def silent_host() -> tuple[socket.socket, str]:
    """A listening socket that never accepts: connections open, requests never end."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


class FloorCall:
    """The floor's work as a steady-load call: the message through a JSON encode and a
    Queue.put, no library and no thread, so steady's tail for it is the machine's own."""

    lib = "floor"

    def __init__(self) -> None:
        self._encode = json.JSONEncoder(default=lambda o: o.isoformat()).encode
        self._queue: queue.Queue[str] = queue.Queue()
        self._ids = (str(uuid.uuid4()), datetime.now(timezone.utc).isoformat())

    def warm_up(self) -> None:
        pass

    def flush(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    def with_props(self, properties: dict[str, Any]) -> None:
        message_id, timestamp = self._ids
        self._queue.put_nowait(self._encode({
            "type": "track", "userId": USER_ID, "event": EVENT, "properties": properties,
            "messageId": message_id, "timestamp": timestamp,
        }))  # fmt: skip


def floor(n: int) -> dict[str, Any]:
    """Scenario 5: the same message through a JSON encode and a Queue.put, nothing else."""
    encode = json.JSONEncoder(default=lambda o: o.isoformat()).encode
    q: queue.Queue[str] = queue.Queue(n + 1)
    put = q.put_nowait
    message_id = str(uuid.uuid4())
    timestamp = datetime.now(timezone.utc).isoformat()
    t0 = time.perf_counter()
    for _ in range(n):
        put(
            encode(
                {
                    "type": "track",
                    "userId": USER_ID,
                    "event": EVENT,
                    "properties": props(),
                    "messageId": message_id,
                    "timestamp": timestamp,
                }
            )
        )
    t1 = time.perf_counter()
    return {"us_per_msg": (t1 - t0) / n * 1e6}


def main() -> None:
    """Parse the arguments, run one scenario, print the result line, exit at once."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lib", required=True, choices=[*OURS, "segment", "posthog", "floor"])
    parser.add_argument(
        "--scenario",
        required=True,
        choices=["caller", "e2e", "memory", "latency", "floor", "idle", "steady"],
    )
    parser.add_argument("--host", default="")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--queue-size", type=int, default=10_000)
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--hold", type=float, default=2.0, help="memory: sink delay, s")
    parser.add_argument("--samples", type=int, default=7, help="latency: calls")
    parser.add_argument("--idle", type=float, default=0.3, help="latency: idle before a call")
    parser.add_argument("--seconds", type=float, default=6.0, help="steady: duration, s")
    parser.add_argument("--per-tick", type=int, default=5, help="steady: calls per ms")
    parser.add_argument("--profile", default=None, help="write a cProfile summary here")
    args = parser.parse_args()
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)

    result: dict[str, Any] = {"lib": args.lib, "scenario": args.scenario, "pid": os.getpid()}
    prof = Profiler(args.profile)
    prof.install()
    if args.scenario == "floor":
        result.update(floor(args.messages))
    elif args.lib == "floor" and args.scenario == "steady":
        result.update(steady(FloorCall(), args.seconds, args.per_tick, ""))
    elif args.scenario == "idle":
        _listener, host = silent_host()  # kept open until the process ends
        lib = Library(args.lib, host, 4 * (args.messages + WARMUP_IDLE), args.gzip)
        result["version"] = lib.version
        if lib.lib in OURS:
            result["file"] = lib.file
        result.update(idle(lib, args.messages))
        result["calls_made"] = WARMUP_IDLE + args.messages
    else:
        lib = Library(args.lib, args.host, args.queue_size, args.gzip)
        result["version"] = lib.version
        if lib.lib in OURS:
            result["file"] = lib.file
        if lib.backend:
            result["backend"] = lib.backend
        runners: dict[str, Callable[[], dict[str, Any]]] = {
            "caller": lambda: caller(lib, args.messages, args.host, prof),
            "e2e": lambda: end_to_end(lib, args.messages, args.host, prof),
            "memory": lambda: memory(lib, args.messages, args.host, args.hold),
            "latency": lambda: latency(lib, args.samples, args.idle),
            "steady": lambda: steady(lib, args.seconds, args.per_tick, args.host),
        }
        result.update(runners[args.scenario]())
        counted = {"latency": args.samples, "steady": result.get("calls", 0)}
        result["calls_made"] = WARMUP_CALLS + counted.get(args.scenario, args.messages)
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # No exit hooks: Segment's atexit join would wait out a held sink (scenario 3).
    os._exit(0)


if __name__ == "__main__":
    main()
