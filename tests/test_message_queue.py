"""The client's queue: a bounded queue.Queue the consumer takes from in bulk, and what it
has taken but not yet batched is still settled exactly once."""

from __future__ import annotations

import queue
import threading

from helpers import call_within, wait_until

import analytics
from analytics.consumer import MessageQueue


def test_take_returns_the_oldest_items_up_to_n_without_waiting():
    q = MessageQueue(10)
    for i in range(5):
        q.put_nowait({"i": i})
    assert [m["i"] for m in q.take(3)] == [0, 1, 2]
    assert [m["i"] for m in q.take(10)] == [3, 4]
    assert q.take(10) == []
    assert q.qsize() == 0


def test_take_makes_room_for_a_blocked_put():
    q = MessageQueue(2)
    q.put_nowait({"i": 0})
    q.put_nowait({"i": 1})
    done = threading.Event()

    def put_third() -> None:
        q.put({"i": 2}, timeout=10)
        done.set()

    thread = threading.Thread(target=put_third, daemon=True)
    thread.start()
    assert not done.wait(0.05)  # full: the put waits
    assert len(q.take(2)) == 2
    assert done.wait(5), "take did not wake the blocked put"
    thread.join(5)
    assert [m["i"] for m in q.take(5)] == [2]


def test_the_client_queue_is_still_bounded(make_client):
    client = make_client(max_queue_size=3)
    assert isinstance(client.queue, queue.Queue)
    assert isinstance(client.queue, MessageQueue)
    assert client.queue.maxsize == 3


def test_messages_taken_for_the_next_batch_are_reported_once_by_a_shutdown_out_of_time(
    make_client, collector, errors
):
    collector.delay = 0.5  # the first batch is answered late: the next messages queue up
    client = make_client(batch_size=10, flush_interval=10, timeout=10)
    first = client.track("u", "first")[1]["messageId"]
    client.flush(timeout=0)
    collector.wait_for_requests(1, timeout=5)
    collector.hang()  # what comes next is never answered
    # The consumer takes these in one go: a batch of one (the flush marker closes it) and
    # two messages held for the batch after it, which is never sent.
    ids = [client.track("u", "held")[1]["messageId"]]
    client.flush(timeout=0)
    ids += [client.track("u", "held")[1]["messageId"] for _ in range(2)]
    collector.wait_for_requests(2, timeout=5)
    assert call_within(10, client.shutdown, timeout=0.3) is False
    lost = [m["messageId"] for e, batch in errors.calls for m in batch]
    assert all(isinstance(e, analytics.ClientShutdown) for e in errors.errors), errors.errors
    assert sorted(lost) == sorted(ids)  # each once, none twice
    assert client.stats()["dropped_by_reason"]["shutdown"] == 3
    assert [m["messageId"] for m in collector.delivered_messages()] == [first]


def test_offer_queues_until_full_then_refuses_and_changes_nothing():
    q = MessageQueue(maxsize=2)
    assert q.offer({"n": 1}) is True
    assert q.offer({"n": 2}) is True
    assert q.offer({"n": 3}) is False
    assert q.qsize() == 2 and q.full()
    assert [q.get_nowait(), q.get_nowait()] == [{"n": 1}, {"n": 2}]
    assert q.unfinished_tasks == 2  # as put() counts them: task_done()/join() still work


def test_offer_wakes_a_thread_blocked_in_get():
    q = MessageQueue(maxsize=10)
    got: list[object] = []
    waiting = threading.Thread(target=lambda: got.append(q.get(timeout=5)))
    waiting.start()
    assert wait_until(lambda: bool(q.not_empty._waiters), 5)  # type: ignore[attr-defined]
    assert q.offer("item")
    waiting.join(5)
    assert got == ["item"]
