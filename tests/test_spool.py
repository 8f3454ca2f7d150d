"""The optional on-disk spool (issue #7): spill on outage/queue-full/shutdown, replay,
durable write-ahead, bounded size, shared by processes, corrupt files moved aside.

Real SQLite files in tmp_path, real subprocesses (sys.executable), a real loopback
collector; every wait is a poll with a deadline, every client is shut down."""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import select
import signal
import sqlite3
import threading
import time
from collections import Counter

import pytest
from _spool_helpers import (
    Scripts,
    spool_bytes,
    spool_count,
    spool_ids,
    spool_owners,
    wait_child,
)
from helpers import call_within, wait_until

import analytics
import analytics.spool
from analytics.errors import APIError, SpoolFull

PAD = "x" * 500  # makes every message of a test about the same size


@pytest.fixture
def fast_replay(monkeypatch: pytest.MonkeyPatch) -> float:
    """Idle clients retry their spool every 0.2 s (read when the consumer is built)."""
    monkeypatch.setattr(analytics.spool, "REPLAY_INTERVAL", 0.2)
    return 0.2


@pytest.fixture
def scripts(tmp_path):
    s = Scripts(tmp_path)
    yield s
    s.close()


def ids_of(requests, status=200):
    return [mid for r in requests if status is None or r.status == status for mid in r.ids]


# -- outage, replay ------------------------------------------------------------------------


@pytest.mark.parametrize("outage", ["refused", "503"])
def test_outage_longer_than_retries_is_spooled_then_replayed_exactly_once(
    outage, tmp_path, collector, down_collector, make_client, errors, fast_replay
):
    target = down_collector if outage == "refused" else collector
    if outage == "503":
        collector.fail(503)
    spool = tmp_path / "spool.db"
    client = make_client(host=target.url, spool_path=str(spool), max_retries=1,
                         batch_size=50, timeout=2)
    ids = [f"outage-{i}" for i in range(250)]
    for i, mid in enumerate(ids):
        ok, _ = client.track("u", "Outage", {"i": i}, message_id=mid)
        assert ok

    assert call_within(20, client.flush, timeout=15) is True
    assert errors.calls == [], "a retryable failure reached on_error instead of the spool"
    stats = client.stats()
    assert stats["spooled"] == 250
    assert stats["dropped"] == 0 and stats["delivered"] == 0 and stats["pending"] == 0
    assert spool_count(spool) == 250

    if outage == "refused":
        target.start()  # same port, now listening
    else:
        target.heal()
    assert wait_until(lambda: client.stats()["replayed"] == 250, timeout=10), client.stats()
    assert wait_until(lambda: spool_count(spool) == 0, timeout=5)

    ok_requests = [r for r in target.snapshot() if r.status == 200]
    delivered = ids_of(ok_requests)
    assert Counter(delivered) == Counter(ids), "every message exactly once"
    assert delivered == ids, "replay sends the oldest first"
    assert all(1 <= r.count <= 50 for r in ok_requests), "replay sends normal batches"
    stats = client.stats()
    assert stats["replayed"] == 250 and stats["delivered"] == 250
    assert errors.calls == []


def test_restart_replays_what_the_previous_process_spooled(tmp_path, down_collector,
                                                           scripts):
    spool = str(tmp_path / "spool.db")
    n = 1000
    first = scripts.start({
        "host": down_collector.url, "spool": spool, "n": n, "prefix": "restart",
        "options": {"max_retries": 0, "shutdown_timeout": 1},
    })
    assert first.wait(20) == 0, first.stderr
    assert "refused" not in first.stdout
    res1 = first.result()
    assert res1["errors"] == [], "the outage reached on_error instead of the spool"
    assert res1["stats"]["spooled"] == n, res1["stats"]
    assert spool_count(spool) == n

    down_collector.start()
    second = scripts.start({
        "host": down_collector.url, "spool": spool, "n": 0, "wait_empty": 20,
        "shutdown": 5, "options": {"shutdown_timeout": 1},
    })
    assert second.wait(30) == 0, f"spool not emptied in time\n{second.stdout}{second.stderr}"
    elapsed = second.ended - second.started
    res2 = second.result()
    assert res2["stats"]["replayed"] == n, res2["stats"]
    assert res2["errors"] == []

    got = Counter(ids_of(down_collector.snapshot()))
    assert set(got) == {f"restart-{i}" for i in range(n)}
    dups = {k: c for k, c in got.items() if c > 1}
    assert not dups, f"duplicates on a clean restart: {len(dups)}"
    assert spool_count(spool) == 0
    print(f"restart: second process replayed {n} in {elapsed:.2f}s")


@pytest.mark.parametrize("mode", ["down", "hung"])
def test_sigkill_with_durable_loses_nothing(mode, tmp_path, collector, down_collector,
                                            scripts):
    spool = str(tmp_path / "spool.db")
    n = 1000
    target = down_collector if mode == "down" else collector
    if mode == "hung":
        collector.hang()
    first = scripts.start({
        "host": target.url, "spool": spool, "n": n, "prefix": "crash", "hold": True,
        "options": {"durable": True, "batch_size": 100, "timeout": 30},
    })
    first.wait_line("sent", timeout=20)
    if mode == "hung":
        collector.wait_for_requests(1, timeout=10)  # one batch is in flight, unanswered
    first.kill()  # SIGKILL, and reaped
    before = target.snapshot() if target.listening else []
    assert "refused" not in first.stdout
    # Write-ahead: every accepted message is on disk (the journal), though the process died.
    assert spool_count(spool) + len(journal_open(spool)) == n

    if mode == "hung":
        collector.heal()  # the dead process's hung requests are answered into the void
    else:
        down_collector.start()
    second = scripts.start({
        "host": target.url, "spool": spool, "n": 0, "wait_empty": 20, "shutdown": 5,
        "options": {"durable": True, "shutdown_timeout": 1},
    })
    assert second.wait(30) == 0, f"spool not emptied in time\n{second.stdout}{second.stderr}"
    res2 = second.result()
    assert res2["errors"] == []

    later = target.snapshot()[len(before):]
    delivered = Counter(ids_of(later))
    assert set(delivered) == {f"crash-{i}" for i in range(n)}, (
        f"{n - len(set(delivered))} messages lost after SIGKILL"
    )
    dup_within = sum(c - 1 for c in delivered.values() if c > 1)
    dup_across = len(set(ids_of(before, status=None)) & set(delivered))
    print(f"crash/{mode}: {len(before)} request(s) reached the collector before the kill; "
          f"{dup_across} message(s) received twice (at-least-once), "
          f"{dup_within} duplicate(s) within the second process")
    assert dup_within == 0, "the replaying process sent some messages twice"
    assert spool_count(spool) == 0
    assert journal_open(spool) == [], "the dead process's journal was not folded"


def test_two_processes_replaying_one_spool_never_send_a_message_twice(
    tmp_path, down_collector, make_client, errors, scripts
):
    spool = str(tmp_path / "spool.db")
    n = 2000
    ids = [f"shared-{i}" for i in range(n)]
    filler = make_client(host=down_collector.url, spool_path=spool, max_retries=0,
                         batch_size=100)
    for mid in ids:
        assert filler.track("u", "Shared", message_id=mid)[0]
    assert call_within(20, filler.flush, timeout=15) is True
    assert call_within(10, filler.shutdown, timeout=5) is True
    assert errors.calls == []
    assert spool_count(spool) == n

    down_collector.start()
    cfg = {"host": down_collector.url, "spool": spool, "n": 0, "barrier": True,
           "wait_empty": 20, "shutdown": 5, "options": {"batch_size": 20}}
    procs = [scripts.start(cfg), scripts.start(cfg)]
    for p in procs:
        p.wait_line("ready", timeout=15)
    for p in procs:  # as close together as we can: both replay at once
        p.send("go")
    for p in procs:
        assert p.wait(30) == 0, f"{p.stdout}{p.stderr}"
    shares = [p.result()["stats"]["replayed"] for p in procs]

    requests = down_collector.snapshot()
    got = Counter(ids_of(requests, status=None))
    twice = sorted(k for k, c in got.items() if c > 1)
    assert not twice, f"{len(twice)} message(s) sent by both processes, e.g. {twice[:5]}"
    assert set(got) == set(ids)
    assert sum(shares) == n, shares
    assert all(r.status == 200 and r.count <= 20 for r in requests)
    print(f"two processes: replayed {shares[0]} + {shares[1]} in {len(requests)} requests")


# -- what is not spooled, what is bounded ------------------------------------------------


@pytest.mark.parametrize("durable", [False, True])
def test_non_retryable_rejection_is_reported_not_spooled(durable, tmp_path, collector,
                                                         make_client, errors):
    spool = tmp_path / "spool.db"
    collector.fail(400)
    client = make_client(spool_path=str(spool), durable=durable, max_retries=3)
    ids = [f"bad-{i}" for i in range(3)]
    for mid in ids:
        assert client.track("u", "Rejected", message_id=mid)[0]
    assert call_within(10, client.flush, timeout=5) is True
    calls = errors.wait_for(1)
    assert len(calls) == 1
    error, batch = calls[0]
    assert isinstance(error, APIError) and error.status == 400
    assert [m["messageId"] for m in batch] == ids
    assert len(collector.snapshot()) == 1, "a 400 is not retried"
    assert spool_count(spool) == 0
    stats = client.stats()
    assert stats["spooled"] == 0
    assert stats["dropped_by_reason"]["rejected"] == 3


def test_spooled_batch_rejected_on_replay_is_reported_and_deleted(
    tmp_path, down_collector, make_client, errors, fast_replay
):
    spool = tmp_path / "spool.db"
    client = make_client(host=down_collector.url, spool_path=str(spool), max_retries=0)
    ids = [f"later-bad-{i}" for i in range(4)]
    for mid in ids:
        assert client.track("u", "LaterRejected", message_id=mid)[0]
    assert call_within(10, client.flush, timeout=5) is True
    assert spool_count(spool) == 4 and errors.calls == []

    down_collector.fail(400)
    down_collector.start()
    calls = errors.wait_for(1, timeout=10)
    assert isinstance(calls[0][0], APIError) and calls[0][0].status == 400
    assert sorted(errors.message_ids()) == sorted(ids)
    assert wait_until(lambda: spool_count(spool) == 0, timeout=5)
    assert client.stats()["dropped_by_reason"]["rejected"] == 4


def test_full_spool_drops_the_oldest_and_reports_them(tmp_path, down_collector, make_client,
                                                      errors):
    spool = tmp_path / "spool.db"
    limit = 2500  # room for about three padded messages
    client = make_client(host=down_collector.url, spool_path=str(spool), max_retries=0,
                         batch_size=1, spool_max_bytes=limit)
    ids = [f"full-{i}" for i in range(12)]
    for mid in ids:
        assert client.track("u", "Full", {"pad": PAD}, message_id=mid)[0]
    assert call_within(10, client.flush, timeout=5) is True

    kept = spool_ids(spool)
    assert kept, "the newest messages must be kept"
    assert kept == ids[-len(kept):], "the newest are kept, in order"
    assert spool_bytes(spool) <= limit
    full = errors.of_type(SpoolFull)
    dropped = [m["messageId"] for _, batch in full for m in batch]
    assert dropped == ids[: len(ids) - len(kept)], "the oldest are dropped and reported"
    assert len(errors) == len(full), f"only SpoolFull expected, got {errors.errors}"
    stats = client.stats()
    assert stats["dropped_by_reason"]["spool_full"] == len(dropped)
    assert stats["spooled"] == 12
    print(f"full spool: kept {len(kept)}, dropped {len(dropped)}")


def test_spool_full_reason_exists_only_with_a_spool(tmp_path, make_client):
    with_spool = make_client(spool_path=str(tmp_path / "s.db"))
    without = make_client()
    assert with_spool.stats()["dropped_by_reason"]["spool_full"] == 0
    assert "spool_full" not in without.stats()["dropped_by_reason"]


def test_durable_eviction_does_not_report_messages_that_are_then_delivered(
    tmp_path, collector, make_client, errors
):
    """With durable=True the spool holds a write-ahead copy of every queued message. When
    the spool is over spool_max_bytes, dropping the copy of a message still in memory must
    not report that message as lost: it is delivered a moment later."""
    spool = tmp_path / "spool.db"
    client = make_client(spool_path=str(spool), durable=True, spool_max_bytes=2500,
                         flush_interval=30, batch_size=100)
    ids = [f"ahead-{i}" for i in range(10)]
    for mid in ids:
        assert client.track("u", "Ahead", {"pad": PAD}, message_id=mid)[0]
    assert call_within(10, client.flush, timeout=5) is True
    delivered = set(ids_of(collector.snapshot()))
    assert delivered == set(ids)
    reported = set(errors.message_ids())
    stats = client.stats()
    assert not (reported & delivered), (
        f"{len(reported & delivered)} delivered message(s) were also reported to on_error "
        f"as {sorted({type(e).__name__ for e in errors.errors})}; stats: "
        f"delivered={stats['delivered']} dropped={stats['dropped_by_reason']}"
    )
    assert stats["dropped"] == 0


# -- durable write-ahead -----------------------------------------------------------------


def test_durable_writes_ahead_before_the_call_returns_and_deletes_after_delivery(
    tmp_path, collector, make_client, errors
):
    spool = tmp_path / "spool.db"
    collector.hang()
    client = make_client(spool_path=str(spool), durable=True)
    for i in range(5):
        assert client.track("u", "Ahead", message_id=f"wa-{i}")[0]
        assert journal_open(spool) == [f"wa-{j}" for j in range(i + 1)], (
            "not on disk when the call returned"
        )
    assert spool_count(spool) == 0, "written ahead to the journal, not to the shared table"

    collector.wait_for_requests(1, timeout=5)
    collector.release()
    assert call_within(10, client.flush, timeout=5) is True
    assert wait_until(lambda: spool_count(spool) == 0, timeout=5)
    assert Counter(ids_of(collector.snapshot())) == Counter(f"wa-{i}" for i in range(5))
    assert wait_until(lambda: journal_open(spool) == [], timeout=5), "delivered, still open"
    stats = client.stats()
    assert stats["delivered"] == 5 and stats["spooled"] == 0 and errors.calls == []


def journal_open(spool) -> list[str]:
    """The messageIds still open in every journal beside `spool` (read-only)."""
    import glob

    from analytics.journal import open_messages

    ids: list[str] = []
    for path in sorted(glob.glob(glob.escape(str(spool)) + ".journal.*")):
        with open(path, "rb") as f:
            ids += [mid for mid, _ in open_messages(f.read())]
    return ids


def test_durable_rows_of_a_live_owner_are_not_replayed_by_another_client(
    tmp_path, collector, make_client, errors
):
    from collector import Collector

    spool = tmp_path / "spool.db"
    collector.hang()
    owner = make_client(spool_path=str(spool), durable=True)
    for i in range(3):
        assert owner.track("u", "Owned", message_id=f"owned-{i}")[0]
    collector.wait_for_requests(1, timeout=5)  # in flight, unanswered

    other_collector = Collector()
    try:
        other = make_client(host=other_collector.url, spool_path=str(spool))
        assert other.track("u", "Other", message_id="other-0")[0]
        # The consumer replays the spool before it takes its first live message, so once
        # this flush returns, that replay is over.
        assert call_within(10, other.flush, timeout=5) is True
        assert ids_of(other_collector.snapshot()) == ["other-0"]
        assert other.stats()["replayed"] == 0
        call_within(10, other.shutdown, timeout=2)
    finally:
        other_collector.stop()
    collector.release()
    assert call_within(10, owner.flush, timeout=5) is True
    assert wait_until(lambda: spool_count(spool) == 0, timeout=5)
    assert errors.calls == []


# -- queue full, shutdown, exit ------------------------------------------------------------


def _fill_queue_until_spill(client, collector):
    """max_queue_size=1, batch_size=1, collector hung: the first message is in flight, the
    second waits in the queue, the third finds the queue full."""
    first = client.track("u", "QF", message_id="qf-0")
    collector.wait_for_requests(1, timeout=5)
    second = client.track("u", "QF", message_id="qf-1")
    third = client.track("u", "QF", message_id="qf-2")
    return first, second, third


def test_queue_full_message_goes_to_the_spool_and_is_replayed(
    tmp_path, collector, make_client, errors, fast_replay
):
    spool = tmp_path / "spool.db"
    collector.hang()
    client = make_client(spool_path=str(spool), max_queue_size=1, batch_size=1,
                         flush_interval=0)
    first, second, third = _fill_queue_until_spill(client, collector)
    assert first[0] and second[0]
    print(f"queue full with a spool: track() returned {third[0]!r}")
    assert errors.calls == [], "a queue-full message with a spool must not reach on_error"
    stats = client.stats()
    assert stats["spooled"] == 1 and stats["dropped_by_reason"]["queue_full"] == 0
    assert spool_ids(spool) == ["qf-2"]

    collector.release()
    assert wait_until(lambda: "qf-2" in ids_of(collector.snapshot()), timeout=10)
    assert call_within(10, client.flush, timeout=5) is True
    assert wait_until(lambda: spool_count(spool) == 0, timeout=5)
    assert Counter(ids_of(collector.snapshot())) == Counter(["qf-0", "qf-1", "qf-2"])
    assert client.stats()["replayed"] == 1


def test_queue_full_message_that_was_spooled_is_not_reported_as_dropped_to_the_caller(
    tmp_path, collector, make_client, errors
):
    """Issue: 'when the queue is full, the message goes to the spool instead of being
    dropped'; contract: (False, message) means dropped."""
    spool = tmp_path / "spool.db"
    collector.hang()
    client = make_client(spool_path=str(spool), max_queue_size=1, batch_size=1,
                         flush_interval=0)
    _, _, third = _fill_queue_until_spill(client, collector)
    assert spool_ids(spool) == ["qf-2"]
    assert third[0] is True, "the message was spooled, not dropped, yet the call said False"


def test_shutdown_with_collector_hung_spools_the_leftovers(tmp_path, collector, make_client,
                                                           errors):
    spool = tmp_path / "spool.db"
    collector.hang()
    client = make_client(spool_path=str(spool), batch_size=10, timeout=1, max_retries=3)
    ids = [f"left-{i}" for i in range(50)]
    for mid in ids:
        assert client.track("u", "Leftover", message_id=mid)[0]
    collector.wait_for_requests(1, timeout=5)
    t0 = time.monotonic()
    assert call_within(10, client.shutdown, timeout=0.5) is False
    took = time.monotonic() - t0
    assert took < 3, f"shutdown took {took:.2f}s"
    # The queue goes to the spool at once, the in-flight batch when its request times out.
    assert wait_until(lambda: spool_count(spool) == 50, timeout=10), spool_count(spool)
    assert sorted(spool_ids(spool)) == sorted(ids)
    assert errors.calls == [], f"leftovers reached on_error: {errors.errors}"
    assert wait_until(lambda: client.stats()["spooled"] == 50, timeout=5)
    assert client.stats()["dropped"] == 0


def test_exit_with_collector_hung_loses_nothing_silently(tmp_path, collector, scripts):
    """Interpreter exit with the collector hung: whatever was not delivered is in the spool
    or was reported to on_error — including the batch whose request never came back."""
    spool = str(tmp_path / "spool.db")
    n = 1000
    collector.hang()
    proc = scripts.start({
        "host": collector.url, "spool": spool, "n": n, "prefix": "exit",
        "options": {"batch_size": 100, "shutdown_timeout": 1, "timeout": 30},
    })
    assert proc.wait(15) == 0, proc.stderr
    took = proc.ended - proc.started
    res = proc.result()
    in_spool = set(spool_ids(spool))
    reported = {mid for _, batch in res["errors"] for mid in batch}
    answered = set(ids_of(collector.snapshot()))  # none: the collector answered nothing
    everything = {f"exit-{i}" for i in range(n)}
    missing = everything - in_spool - reported - answered
    print(f"exit/hung: exited in {took:.2f}s; {len(in_spool)} spooled, "
          f"{len(reported)} reported, {len(missing)} vanished; stats {res['stats']}")
    assert not missing, (
        f"{len(missing)} message(s) neither spooled nor reported (the in-flight batch of "
        f"{len(collector.snapshot()[0].ids)} sent to the hung collector)"
    )


# -- corrupt file ------------------------------------------------------------------------


def _truncated_spool(path: str) -> None:
    """A real spool file with rows, cut in half (a partial copy, a full disk)."""
    db = sqlite3.connect(path)
    db.executescript(analytics.spool._SCHEMA)
    db.executemany(
        "INSERT INTO spool (message_id, data, size) VALUES (?, ?, ?)",
        [(f"old-{i}", b"{}" * 200, 400) for i in range(200)],
    )
    db.commit()
    db.close()
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_spool_is_moved_aside_and_a_new_one_works(
    damage, tmp_path, down_collector, make_client, errors, caplog, fast_replay
):
    spool = str(tmp_path / "spool.db")
    if damage == "garbage":
        garbage = os.urandom(16) + b"this is not a sqlite database\n" * 200
        with open(spool, "wb") as f:
            f.write(garbage)
    else:
        _truncated_spool(spool)
        with open(spool, "rb") as f:
            garbage = f.read()

    with caplog.at_level(logging.ERROR, logger="analytics"):
        client = make_client(host=down_collector.url, spool_path=spool, max_retries=0)
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert logged, "no error logged for the unusable spool"
    aside = [p for p in os.listdir(tmp_path) if ".corrupt-" in p and not p.endswith(("-wal",
                                                                                     "-shm"))]
    assert len(aside) == 1, os.listdir(tmp_path)
    with open(tmp_path / aside[0], "rb") as f:
        assert f.read() == garbage, "the damaged file is kept as it was"

    ids = [f"fresh-{i}" for i in range(3)]
    for mid in ids:
        assert client.track("u", "Fresh", message_id=mid)[0]
    assert call_within(10, client.flush, timeout=5) is True
    assert errors.calls == []
    assert spool_ids(spool) == ids, "the new spool takes the outage"
    down_collector.start()
    assert wait_until(lambda: spool_count(spool) == 0, timeout=10)
    assert Counter(ids_of(down_collector.snapshot())) == Counter(ids)


# -- fork --------------------------------------------------------------------------------

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _child_exit(code: int, report_path, client) -> None:  # pragma: no cover - in the child
    try:
        with open(report_path, "w") as f:
            f.write(f"{code} {client.stats()}\n")
    finally:
        os._exit(code)


@pytest.fixture
def children():
    """Forked children: every one still running at teardown is killed and reaped."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            if not os.waitpid(pid, os.WNOHANG)[0]:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


def _wait_startup_replay_done(client) -> None:
    """A client with a spool starts its consumer at once, and the consumer's first act is a
    replay (SQLite calls on that thread). Forking while it runs is its own test
    (test_fork_right_after_building_a_client_with_a_spool_does_not_hang_the_child); the
    other fork tests wait for it to end. (Private attribute: there is no public signal.)"""
    assert wait_until(
        lambda: client._pipeline.consumer is not None
        and client._pipeline.consumer.started.is_set(),
        timeout=5,
    ), "the start-up replay of an empty spool did not finish"


@needs_fork
def test_forked_child_spools_on_its_own_connection_and_it_is_replayed(
    tmp_path, down_collector, make_client, errors, fast_replay, children
):
    spool = str(tmp_path / "spool.db")
    report = tmp_path / "child.txt"
    client = make_client(host=down_collector.url, spool_path=spool, max_retries=0)
    _wait_startup_replay_done(client)
    child_ids = [f"child-{i}" for i in range(5)]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 10
        try:
            os.close(w)
            for mid in child_ids:
                if not client.track("c", "Child", message_id=mid)[0]:
                    _child_exit(11, report, client)
            if not client.flush(timeout=10):
                _child_exit(12, report, client)
            if client.stats()["spooled"] != 5:
                _child_exit(13, report, client)
            ready, _, _ = select.select([r], [], [], 20)  # the parent starts the collector
            if not ready or os.read(r, 2) != b"go":
                _child_exit(14, report, client)
            # Either process may replay the shared spool (the parent wakes to replay too).
            deadline = time.monotonic() + 10
            while spool_count(spool) and time.monotonic() < deadline:
                time.sleep(0.02)
            code = 0 if spool_count(spool) == 0 else 15
            client.shutdown(timeout=2)
        finally:
            _child_exit(code, report, client)
    children.append(pid)
    os.close(r)
    try:
        assert wait_until(lambda: spool_count(spool) == 5, timeout=10), spool_count(spool)
        down_collector.start()
        os.write(w, b"go")
    finally:
        os.close(w)
    code = wait_child(pid, timeout=30)
    assert code == 0, report.read_text() if report.exists() else code
    assert Counter(ids_of(down_collector.snapshot())) == Counter(child_ids)
    assert spool_count(spool) == 0
    assert errors.calls == []


@needs_fork
def test_parent_replays_what_an_exited_child_spooled_after_a_successful_request(
    tmp_path, down_collector, make_client, errors, fast_replay, children
):
    spool = str(tmp_path / "spool.db")
    report = tmp_path / "child.txt"
    client = make_client(host=down_collector.url, spool_path=spool, max_retries=0)
    _wait_startup_replay_done(client)
    child_ids = [f"gone-{i}" for i in range(5)]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 10
        try:
            for mid in child_ids:
                client.track("c", "Child", message_id=mid)
            ok = client.flush(timeout=10) and client.stats()["spooled"] == 5
            client.shutdown(timeout=2)
            code = 0 if ok else 12
        finally:
            _child_exit(code, report, client)
    children.append(pid)
    code = wait_child(pid, timeout=20)
    assert code == 0, report.read_text() if report.exists() else code
    assert spool_ids(spool) == child_ids

    down_collector.start()
    assert client.track("p", "Parent", message_id="parent-0")[0]
    assert call_within(10, client.flush, timeout=5) is True  # a successful request
    arrived = wait_until(
        lambda: set(child_ids) <= set(ids_of(down_collector.snapshot())), timeout=5
    )
    assert arrived, (
        f"after a successful request the parent did not replay the spool: "
        f"{spool_count(spool)} row(s) left, stats {client.stats()}"
    )
    assert Counter(ids_of(down_collector.snapshot())) == Counter(child_ids + ["parent-0"])
    assert errors.calls == []


def _fork_and_wait(children, stacks_path, deadline_s: float) -> str | None:
    """Fork a child that exits at once (its at-fork hooks have run by then). None if it
    exited; else the analytics frames of the stack it hung in (asked for with SIGUSR1 by
    faulthandler, whose registration the child inherits)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - in the child
        os._exit(0)
    children.append(pid)
    deadline = time.monotonic() + deadline_s
    while not os.waitpid(pid, os.WNOHANG)[0]:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGUSR1)
            wait_until(lambda: os.path.getsize(stacks_path) > 0, timeout=2)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            with open(stacks_path) as f:
                text = f.read()
            return "".join(line + "\n" for line in text.splitlines() if "/analytics/" in line)
        time.sleep(0.005)
    return None


@pytest.fixture
def child_stacks(tmp_path):
    path = tmp_path / "child-stacks.txt"
    with open(path, "w+") as f:
        faulthandler.register(signal.SIGUSR1, file=f, all_threads=True)
        try:
            yield str(path)
        finally:
            faulthandler.unregister(signal.SIGUSR1)


@needs_fork
def test_fork_right_after_building_a_client_with_a_spool_does_not_hang_the_child(
    tmp_path, down_collector, make_client, children, child_stacks
):
    """The pre-fork pattern (gunicorn --preload, multiprocessing): the app builds its client
    at import, then forks workers. With a spool the consumer thread starts at construction
    and replays the spool at once, in SQLite, while the fork happens."""
    spool = str(tmp_path / "spool.db")
    for attempt in range(1, 11):
        make_client(host=down_collector.url, spool_path=spool)
        stack = _fork_and_wait(children, child_stacks, 5)
        assert stack is None, f"child of fork #{attempt} hung for 5 s; stack:\n{stack}"


# -- more: sync mode, facade, claims of the dead, locks, fork under load --------------------


def test_sync_mode_client_with_a_spool_replays_it_after_a_successful_request(
    tmp_path, down_collector, make_client, errors, fast_replay
):
    spool = str(tmp_path / "spool.db")
    client = make_client(host=down_collector.url, spool_path=spool, sync_mode=True,
                         max_retries=0)
    first = client.track("u", "Sync", message_id="sync-0")
    print(f"sync mode, collector down, spooled: track() returned {first[0]!r}")
    assert errors.calls == []
    assert spool_ids(spool) == ["sync-0"]

    down_collector.start()
    assert client.track("u", "Sync", message_id="sync-1")[0] is True  # a successful request
    arrived = wait_until(lambda: "sync-0" in ids_of(down_collector.snapshot()), timeout=5)
    assert arrived, (
        f"a sync-mode client never replays its spool: {spool_count(spool)} row(s) left, "
        f"stats {client.stats()}"
    )


def test_facade_spool_settings_reach_the_default_client(
    tmp_path, facade, down_collector, errors, monkeypatch
):
    spool = str(tmp_path / "spool.db")
    monkeypatch.setattr(analytics, "host", down_collector.url)
    monkeypatch.setattr(analytics, "max_retries", 0)
    monkeypatch.setattr(analytics, "spool_path", spool)
    ids = [f"facade-{i}" for i in range(3)]
    for mid in ids:
        assert analytics.track("u", "Facade", message_id=mid)[0]
    assert call_within(10, analytics.flush, timeout=5) is True
    assert errors.calls == []
    assert spool_ids(spool) == ids
    assert analytics.default_client.stats()["spooled"] == 3
    down_collector.start()
    assert analytics.track("u", "Facade", message_id="facade-live")[0]
    assert call_within(10, analytics.flush, timeout=5) is True
    assert wait_until(lambda: spool_count(spool) == 0, timeout=5)
    assert Counter(ids_of(down_collector.snapshot())) == Counter(ids + ["facade-live"])
    call_within(10, analytics.shutdown, timeout=2)


def test_claims_of_a_killed_replayer_are_taken_over(tmp_path, down_collector, make_client,
                                                    errors, scripts):
    spool = str(tmp_path / "spool.db")
    n = 300
    ids = [f"claimed-{i}" for i in range(n)]
    filler = make_client(host=down_collector.url, spool_path=spool, max_retries=0,
                         batch_size=100)
    for mid in ids:
        assert filler.track("u", "Claimed", message_id=mid)[0]
    assert call_within(10, filler.flush, timeout=5) is True
    assert call_within(10, filler.shutdown, timeout=2) is True
    assert spool_count(spool) == n

    down_collector.hang()
    down_collector.start()
    first = scripts.start({"host": down_collector.url, "spool": spool, "n": 0, "hold": True,
                           "options": {"batch_size": 100, "timeout": 30}})
    down_collector.wait_for_requests(1, timeout=15)  # its first replay batch, unanswered
    first.kill()
    claimed = [o for o in spool_owners(spool) if o is not None]
    assert len(claimed) == 100, f"{len(claimed)} rows claimed by the killed process"
    before = len(down_collector.snapshot())
    down_collector.heal()

    second = scripts.start({"host": down_collector.url, "spool": spool, "n": 0,
                            "wait_empty": 20, "shutdown": 5, "options": {"batch_size": 100}})
    assert second.wait(30) == 0, f"claims of the dead process not taken over\n{second.stdout}"
    assert second.result()["stats"]["replayed"] == n
    assert Counter(ids_of(down_collector.snapshot()[before:])) == Counter(ids)


def test_a_locked_spool_is_not_mistaken_for_a_corrupt_one(tmp_path, collector, make_client,
                                                          errors, caplog):
    """A healthy spool that another connection holds locked past the busy timeout (10 s) is
    not corrupt: it must not be renamed aside with the messages it holds."""
    spool = str(tmp_path / "spool.db")
    db = sqlite3.connect(spool, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(analytics.spool._SCHEMA)
    db.execute("INSERT INTO spool (message_id, data, size) VALUES ('kept-0', ?, 2)", (b"{}",))
    db.execute("PRAGMA locking_mode=EXCLUSIVE")  # e.g. an operator's tool, a stuck process
    db.execute("BEGIN EXCLUSIVE")
    db.execute("COMMIT")  # the exclusive lock stays held in this locking mode
    try:
        with caplog.at_level(logging.ERROR, logger="analytics"):
            try:
                client = call_within(20, make_client, spool_path=spool)
            except analytics.ValidationError:
                client = None  # refusing the path is an acceptable answer
        aside = [p for p in os.listdir(tmp_path) if ".corrupt-" in p]
        logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        db.close()
    assert not aside, (
        f"a locked (not corrupt) spool was moved aside: {aside}; logged {logged}; "
        f"client built: {client is not None}"
    )
    assert spool_ids(spool) == ["kept-0"]


@needs_fork
def test_fork_while_another_thread_writes_the_durable_spool_does_not_hang_the_child(
    tmp_path, collector, make_client, errors, children, child_stacks
):
    """A web app with worker threads tracking (durable=True) forks a helper process. The
    at-fork hook reopens the spool in the child; that must never hang, whatever another
    thread was doing inside SQLite at the moment of the fork."""
    spool = str(tmp_path / "spool.db")
    client = make_client(spool_path=spool, durable=True, flush_interval=0.05)
    _wait_startup_replay_done(client)
    stop = threading.Event()

    def tracker() -> None:
        i = 0
        while not stop.is_set():
            client.track("u", "Busy", message_id=f"busy-{i}")
            i += 1

    thread = threading.Thread(target=tracker, daemon=True)
    thread.start()
    forks = 0
    stack = None
    started = time.monotonic()
    try:
        while stack is None and forks < 200 and time.monotonic() - started < 8:
            forks += 1
            stack = _fork_and_wait(children, child_stacks, 5)
    finally:
        stop.set()
        thread.join(10)
    assert stack is None, f"fork #{forks} hung in the child for 5 s; stack:\n{stack}"
    assert call_within(15, client.flush, timeout=10) is True
    print(f"fork under load: {forks} forks, none hung")


def test_spool_path_that_cannot_be_created_is_refused_at_construction(tmp_path):
    with pytest.raises(analytics.ValidationError):
        analytics.Client("key", host="http://127.0.0.1:9",
                         spool_path=str(tmp_path / "no" / "such" / "dir" / "s.db"))
