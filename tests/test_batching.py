"""Batch limits (count and 500 KB), the 32 KB message limit, and how batches are sent."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from helpers import wait_until

import analytics

MAX_BODY = 500_000
MAX_MESSAGE = 32_768


def test_at_most_batch_size_messages_per_request(make_client, collector):
    client = make_client(batch_size=10, flush_interval=10)
    for i in range(35):
        client.track("u", "E", message_id=f"m{i}")
    assert client.flush(timeout=5)
    sizes = [r.count for r in collector.requests]
    assert sum(sizes) == 35
    assert max(sizes) <= 10
    assert len(sizes) >= 4


def test_full_batch_is_sent_without_waiting_for_flush_interval(make_client, collector):
    client = make_client(batch_size=5, flush_interval=30)
    for _ in range(5):
        client.track("u", "E")
    collector.wait_for_messages(5, timeout=5)


def test_partial_batch_is_sent_after_flush_interval(make_client, collector):
    client = make_client(batch_size=100, flush_interval=0.2)
    client.track("u", "E")
    collector.wait_for_messages(1, timeout=5)


def _assert_exactly_once(collector, sent_ids):
    counts = Counter(m["messageId"] for m in collector.messages())
    assert set(counts) == set(sent_ids), "messages lost or invented"
    dupes = {k: v for k, v in counts.items() if v > 1}
    assert dupes == {}, "messages duplicated"


def test_body_stays_under_500kb_with_30kb_messages(make_client, collector, errors):
    client = make_client(batch_size=100, flush_interval=10)
    blob = "x" * 30_000
    sent = []
    for i in range(40):  # 1.2 MB in all: the 500 KB limit is crossed mid-batch
        ok, msg = client.track("u", "Big", {"blob": blob, "i": i})
        assert ok, "a 30 KB message must be accepted"
        sent.append(msg["messageId"])
    assert client.flush(timeout=10)
    for req in collector.requests:
        assert len(req.raw) <= MAX_BODY, f"request body of {len(req.raw)} bytes"
    assert len(collector.requests) >= 3
    _assert_exactly_once(collector, sent)
    assert len(errors) == 0


def test_batch_full_by_bytes_is_sent_without_waiting_for_flush_interval(make_client, collector):
    client = make_client(batch_size=100, flush_interval=30)
    blob = "x" * 30_000
    assert client.track("u", "Big", {"blob": blob, "i": 0})[0]
    # the consumer holds a batch of one and waits for the rest of it
    assert wait_until(lambda: client.queue.qsize() == 0, timeout=5)
    for i in range(1, 20):  # 16 fill a body; the 17th closes it: no flush, no 30 s wait
        assert client.track("u", "Big", {"blob": blob, "i": i})[0]
    [first] = collector.wait_for_requests(1, timeout=10)
    assert 10 <= len(first.messages) < 20
    assert len(first.raw) <= MAX_BODY


def test_body_stays_under_500kb_with_mixed_sizes(make_client, collector, errors):
    rng = random.Random(1234)
    client = make_client(batch_size=100, flush_interval=10)
    sent = []
    for i in range(300):
        size = rng.choice([10, 200, 5_000, 20_000, 31_000, 31_500])
        ok, msg = client.track("u", "Mixed", {"pad": "y" * size, "i": i})
        assert ok
        sent.append(msg["messageId"])
    assert client.flush(timeout=15)
    for req in collector.requests:
        assert len(req.raw) <= MAX_BODY, f"request body of {len(req.raw)} bytes"
        assert req.count <= 100
    _assert_exactly_once(collector, sent)
    assert len(errors) == 0


def test_body_stays_under_500kb_with_gzip(make_client, collector):
    client = make_client(batch_size=100, flush_interval=10, gzip=True)
    sent = []
    for i in range(25):
        ok, msg = client.track("u", "Big", {"blob": "z" * 30_000, "i": i})
        assert ok
        sent.append(msg["messageId"])
    assert client.flush(timeout=10)
    for req in collector.requests:
        assert len(req.raw) <= MAX_BODY
        assert len(req.body) <= MAX_BODY, "uncompressed body over 500 KB"
    _assert_exactly_once(collector, sent)


def test_message_over_32kb_is_refused(make_client, collector, errors):
    client = make_client()
    ok, msg = client.track("u", "Huge", {"blob": "x" * 40_000})
    assert ok is False
    assert msg["event"] == "Huge" and "messageId" in msg
    assert client.queue.qsize() == 0
    [(error, batch)] = errors.wait_for(1, timeout=2)
    assert isinstance(error, analytics.MessageTooLarge)
    assert isinstance(error, analytics.DeliveryError)
    assert [m["messageId"] for m in batch] == [msg["messageId"]]
    stats = client.stats()
    assert stats["dropped_by_reason"]["too_large"] == 1
    assert stats["dropped"] == 1
    assert stats["queued"] == 0
    assert client.flush(timeout=5)
    assert collector.requests == []


def test_message_just_under_32kb_is_accepted(make_client, collector):
    client = make_client()
    ok, msg = client.track("u", "Fits", {"blob": "x" * 31_000})
    assert ok is True
    assert len(json.dumps(msg)) < MAX_MESSAGE
    assert client.flush(timeout=5)
    assert collector.messages()[0]["messageId"] == msg["messageId"]


@pytest.mark.parametrize("kind", ["identify", "group", "page"])
def test_too_large_applies_to_every_call(make_client, collector, errors, kind):
    client = make_client()
    big = {"blob": "q" * 40_000}
    call = {
        "identify": lambda: client.identify("u", big),
        "group": lambda: client.group("u", "g", big),
        "page": lambda: client.page("u", "c", "n", big),
    }[kind]
    ok, _ = call()
    assert ok is False
    errors.wait_for(1, timeout=2)
    assert isinstance(errors.errors[0], analytics.MessageTooLarge)


def test_client_queue_is_a_bounded_queue(make_client):
    import queue

    client = make_client(max_queue_size=123)
    assert isinstance(client.queue, queue.Queue)
    assert client.queue.maxsize == 123


def test_one_request_at_a_time_per_client(make_client, collector):
    collector.delay = 0.05
    client = make_client(batch_size=2, flush_interval=0.01)
    for _ in range(20):
        client.track("u", "E")
    assert client.flush(timeout=10)
    assert collector.message_count() == 20
    assert collector.max_in_flight == 1


def test_requests_reuse_a_kept_alive_connection(make_client, collector):
    client = make_client(batch_size=1, flush_interval=10)
    for _ in range(3):
        client.track("u", "E")
        assert client.flush(timeout=5)
    ports = {r.client_port for r in collector.requests}
    assert len(collector.requests) == 3
    assert len(ports) == 1, f"one kept-alive connection expected, saw {len(ports)}"


def test_queued_messages_keep_their_order_within_a_client(make_client, collector):
    client = make_client(batch_size=7, flush_interval=10)
    ids = [f"ord-{i}" for i in range(50)]
    for mid in ids:
        client.track("u", "E", message_id=mid)
    assert client.flush(timeout=5)
    assert wait_until(lambda: collector.message_count() == 50, timeout=2)
    assert [m["messageId"] for m in collector.messages()] == ids


def test_queue_holds_plain_dicts(make_client, collector):
    collector.hang(count=1)  # the first batch stays in flight; the rest wait in the queue
    client = make_client(batch_size=1, flush_interval=0.01, timeout=10)
    client.track("u", "in-flight")
    collector.wait_for_requests(1, timeout=5)
    sent = [client.track("u", "queued", {"i": i})[1] for i in range(3)]
    items = list(client.queue.queue)
    assert len(items) == 3
    assert all(type(item) is dict for item in items), [type(i).__name__ for i in items]
    assert [item["messageId"] for item in items] == [m["messageId"] for m in sent]
