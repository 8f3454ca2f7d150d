"""After os.fork() the child has its own queue and consumer; nothing is sent twice."""

from __future__ import annotations

import os
from collections import Counter

import pytest
from helpers import wait_child

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")




def run_child(client, child_ids):
    """In the child: track, flush with a timeout, exit 0 if flush succeeded."""
    code = 3
    try:
        for mid in child_ids:
            ok, _ = client.track("child", "ChildEvent", message_id=mid)
            if not ok:
                code = 4
                raise RuntimeError("child track refused")
        code = 0 if client.flush(timeout=10) else 1
    except BaseException:
        pass
    finally:
        os._exit(code)


def test_child_sends_its_own_events_and_parent_queue_is_not_sent_twice(make_client, collector):
    client = make_client(batch_size=100, flush_interval=30)
    parent_ids = [f"parent-{i}" for i in range(5)]
    for mid in parent_ids:
        assert client.track("parent", "ParentEvent", message_id=mid)[0]
    child_ids = [f"child-{i}" for i in range(3)]

    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        run_child(client, child_ids)
    assert wait_child(pid, timeout=20) == 0, "child's flush failed or timed out"

    child_seen = Counter(m["messageId"] for m in collector.messages())
    for mid in child_ids:
        assert child_seen[mid] == 1, f"child event {mid} arrived {child_seen[mid]} times"

    assert client.flush(timeout=5) is True
    counts = Counter(m["messageId"] for m in collector.messages())
    for mid in parent_ids:
        assert counts[mid] == 1, f"parent event {mid} arrived {counts[mid]} times"
    for mid in child_ids:
        assert counts[mid] == 1
    assert set(counts) == set(parent_ids) | set(child_ids)


def test_fork_while_parent_batch_is_in_flight(make_client, collector):
    collector.hang(count=1)  # the parent's batch hangs in flight
    client = make_client(batch_size=5, flush_interval=0.01, timeout=15)
    parent_ids = [f"inflight-{i}" for i in range(5)]
    for mid in parent_ids:
        client.track("parent", "ParentEvent", message_id=mid)
    collector.wait_for_requests(1, timeout=5)
    child_ids = [f"kid-{i}" for i in range(3)]

    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        run_child(client, child_ids)
    assert wait_child(pid, timeout=20) == 0, "child's flush failed or timed out"

    collector.release()  # the parent's hung request is now answered 200
    assert client.flush(timeout=10) is True
    counts = Counter(m["messageId"] for m in collector.delivered_messages())
    for mid in parent_ids + child_ids:
        assert counts[mid] == 1, f"{mid} delivered {counts[mid]} times"
    child_requests = [r for r in collector.requests if any(i in child_ids for i in r.ids)]
    for req in child_requests:
        assert not set(req.ids) & set(parent_ids), "the child re-sent the parent's batch"


def test_parent_and_child_make_different_message_ids():
    from analytics import ids

    ids.uuid4()  # the generator in use before the fork
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(read_end)
            os.write(write_end, ",".join(ids.uuid4() for _ in range(5)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    parent_ids = {ids.uuid4() for _ in range(5)}
    assert wait_child(pid, timeout=20) == 0
    with os.fdopen(read_end) as pipe:
        child_ids = set(pipe.read().split(","))
    assert len(child_ids) == 5
    assert not parent_ids & child_ids


def test_a_fork_the_hooks_missed_is_seen_by_the_pid(monkeypatch):
    import random

    from analytics import ids

    twin = random.Random()
    twin.setstate(ids._rng.getstate())  # what the generator would give, not reseeded
    monkeypatch.setattr(ids, "_rng_pid", -1)  # as if forked from C, without the hooks
    reseeded = ids.uuid4()
    assert ids._rng_pid == os.getpid()
    monkeypatch.setattr(ids, "_rng", twin)
    assert ids.uuid4() != reseeded
