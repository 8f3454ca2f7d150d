"""Many threads calling one client: nothing lost, nothing duplicated."""

from __future__ import annotations

import threading
from collections import Counter

import analytics

THREADS = 8
PER_THREAD = 2_000


def test_eight_threads_of_two_thousand_calls_arrive_exactly_once(make_client, collector, errors):
    client = make_client(max_queue_size=THREADS * PER_THREAD + 1000, flush_interval=0.05)
    start = threading.Barrier(THREADS)
    failures = []

    def worker(n: int) -> None:
        start.wait(timeout=10)
        for i in range(PER_THREAD):
            ok, _ = client.track(f"user-{n}", "Threaded", {"i": i}, message_id=f"t{n}-{i}")
            if not ok:
                failures.append((n, i))

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a caller thread got stuck"
    assert failures == []
    assert client.flush(timeout=60) is True
    counts = Counter(m["messageId"] for m in collector.messages())
    assert len(counts) == THREADS * PER_THREAD
    assert set(counts.values()) == {1}
    stats = client.stats()
    assert stats["queued"] == THREADS * PER_THREAD
    assert stats["delivered"] == THREADS * PER_THREAD
    assert stats["pending"] == 0
    assert len(errors) == 0


def test_several_clients_in_parallel_keep_their_messages_apart(collector, errors):
    clients = [
        analytics.Client(f"key-{n}", host=collector.url, on_error=errors, flush_interval=0.05)
        for n in range(3)
    ]
    try:
        def worker(n: int) -> None:
            for i in range(300):
                clients[n].track("u", "E", {"client": n}, message_id=f"c{n}-{i}")

        threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert all(c.flush(timeout=10) for c in clients)
    finally:
        for c in clients:
            c.shutdown(timeout=2)
    import base64

    for req in collector.requests:
        owners = {m["properties"]["client"] for m in req.messages}
        assert len(owners) == 1, "one request mixed messages of two clients"
        (n,) = owners
        assert req.headers["Authorization"] == "Basic " + base64.b64encode(
            f"key-{n}:".encode()
        ).decode()
    assert len({m["messageId"] for m in collector.messages()}) == 900


def test_each_client_runs_one_consumer_thread(make_client, collector):
    def serves_a_request(t):  # the collector's handler threads (named so only on 3.10+)
        target = getattr(getattr(t, "_target", None), "__name__", "")
        return "process_request" in t.name or target == "process_request_thread"

    def ours():
        return {t for t in threading.enumerate() if not serves_a_request(t)}

    before = ours()
    client = make_client(batch_size=5, flush_interval=0.01)
    for _ in range(50):
        client.track("u", "E")
    assert client.flush(timeout=5)
    new = ours() - before
    assert len(new) <= 1, f"one consumer thread per client, found {sorted(t.name for t in new)}"


def test_a_uwsgi_master_starts_no_thread_until_it_flushes(make_client, collector, monkeypatch):
    """uWSGI forks its workers from C: a thread of ours waiting for the GIL then hangs them.
    Seen here as a `uwsgi` module whose master pid is this process."""
    import os
    import sys
    import types

    fake = types.ModuleType("uwsgi")
    fake.masterpid = os.getpid  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uwsgi", fake)
    before = {t.ident for t in threading.enumerate()}
    client = make_client(flush_interval=0.01)
    assert client.track("u", "In the master")[0]
    assert client.track("u", "Still in the master")[0]
    assert {t.ident for t in threading.enumerate()} == before
    assert collector.message_count() == 0
    assert client.flush(timeout=5) is True
    assert [m["event"] for m in collector.messages()] == ["In the master", "Still in the master"]


def test_a_uwsgi_worker_starts_its_thread_as_usual(make_client, collector, monkeypatch):
    import sys
    import types

    fake = types.ModuleType("uwsgi")
    fake.masterpid = lambda: 1  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uwsgi", fake)
    client = make_client(flush_interval=0.01)
    assert client.track("u", "In a worker")[0]
    assert collector.wait_for_messages(1, timeout=5)  # sent without a flush
