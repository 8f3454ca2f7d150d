"""The consumer's cost per delivered message, measured in-process against the bench sink.

`python bench/wire.py [--backend json|orjson] [--messages N]` prints, in CPU µs per message
on the thread doing the work: the consumer's encode, the body join and the HTTP post of a
100-message batch (each alone, on this thread), then an end-to-end burst: the consumer
thread's own CPU (its pthread CPU clock) per delivered message, and messages/s.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any, Callable

import peers
from scenarios import EVENT, USER_ID, props
from sink import SinkProcess

import analytics
import analytics.encode
from analytics import batch as batching
from analytics.segment import SegmentSender


def per_call(fn: Callable[[], Any], repeat: int) -> float:
    """CPU µs of this thread per call of `fn`."""
    t0 = time.thread_time()
    for _ in range(repeat):
        fn()
    return (time.thread_time() - t0) / repeat * 1e6


def messages(n: int) -> list[dict[str, Any]]:
    stub = analytics.Client("bench-write-key", stub=True, max_queue_size=n)
    for _ in range(n):
        stub.track(USER_ID, EVENT, props())
    return list(stub.sent)


def components(host: str) -> dict[str, float]:
    msgs = messages(100)
    encode = analytics.encode.encode
    items = [encode(m) for m in msgs]
    sender = SegmentSender("bench-write-key", host, 15, None, False)
    sender.send(items)  # the connection opened
    try:
        return {
            "encode": per_call(lambda: [encode(m) for m in msgs], 200) / 100,
            "body join": per_call(lambda: batching.body(items), 2000) / 100,
            "HTTP post": per_call(lambda: sender.send(items), 300) / 100,
        }
    finally:
        sender.close()


def consumer_cpu(host: str, n: int) -> dict[str, float]:
    client = analytics.Client("bench-write-key", host=host, max_queue_size=n + 1000)
    client.track(USER_ID, EVENT, props())
    client.flush(timeout=30)
    consumer = client._here().consumer
    assert consumer is not None and consumer.thread.ident is not None
    clock = time.pthread_getcpuclockid(consumer.thread.ident)
    cpu0 = time.clock_gettime(clock)
    t0 = time.perf_counter()
    for _ in range(n):
        client.track(USER_ID, EVENT, props())
    assert client.flush(timeout=120)
    elapsed = time.perf_counter() - t0
    cpu = time.clock_gettime(clock) - cpu0
    stats = client.stats()
    client.shutdown(timeout=10)
    return {
        "consumer CPU µs/msg": cpu / n * 1e6,
        "msgs/s": n / elapsed,
        "delivered": float(stats["delivered"]),
    }


def drain_cpu(sink: SinkProcess, n: int) -> dict[str, float]:
    """The consumer alone: `n` messages queued while it waits on a held response, then its
    CPU until all are delivered (no caller competing for the GIL meanwhile)."""
    client = analytics.Client("bench-write-key", host=sink.url, max_queue_size=n + 1000)
    client.track(USER_ID, EVENT, props())
    client.flush(timeout=30)
    consumer = client._here().consumer
    assert consumer is not None and consumer.thread.ident is not None
    clock = time.pthread_getcpuclockid(consumer.thread.ident)
    before = sink.stats()["requests"]
    sink.get("/_delay?seconds=2")
    client.track(USER_ID, EVENT, props())
    client.flush(timeout=0)  # the partial batch goes now
    deadline = time.monotonic() + 10
    while sink.stats()["requests"] == before and time.monotonic() < deadline:
        time.sleep(0.01)  # until the held request is in
    for _ in range(n):
        client.track(USER_ID, EVENT, props())
    sink.get("/_delay?seconds=0")
    cpu0 = time.clock_gettime(clock)
    t0 = time.perf_counter()
    assert client.flush(timeout=120)
    elapsed = time.perf_counter() - t0
    cpu = time.clock_gettime(clock) - cpu0
    client.shutdown(timeout=10)
    return {"drain CPU µs/msg": cpu / n * 1e6, "drain msgs/s": n / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="json", choices=["json", "orjson"])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--drain-only", action="store_true", help="only the drain measure")
    args = parser.parse_args()
    analytics.encode.use_backend(args.backend)
    sink = SinkProcess(peers.ours_python())
    try:
        for trial in range(args.trials):
            sink.reset()
            row = drain_cpu(sink, args.messages)
            if not args.drain_only:
                row = {**components(sink.url), **consumer_cpu(sink.url, args.messages), **row}
            print(
                f"{args.backend} #{trial + 1}: "
                + ", ".join(f"{k} {v:,.2f}" for k, v in row.items())
            )
    finally:
        sink.stop()


if __name__ == "__main__":
    threading.current_thread().name = "bench-wire"
    main()
