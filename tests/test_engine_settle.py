"""The loss rule alone (`Settler`, analytics/settle.py): every batch is delivered, kept in
the spool or dropped, and counted once; with a real SQLite spool in tmp_path."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _engine_fakes import message
from _spool_helpers import spool_count, spool_ids
from helpers import ErrorLog

from analytics.encode import encode
from analytics.errors import (
    APIError,
    ClientShutdown,
    DeliveryError,
    MessageTooLarge,
    QueueFull,
    RetriesExhausted,
    SpoolFull,
)
from analytics.outcome import DELIVERED, TAKEN, Batch, Fate, Origin, Outcome
from analytics.settle import Settler
from analytics.spool import Spool
from analytics.spooling import SpoolKeeper
from analytics.stats import Stats

Message = dict[str, Any]


def messages(n: int = 3, prefix: str = "m") -> list[Message]:
    return [message(f"{prefix}{i}") for i in range(n)]


def batch(msgs: list[Message], origin: Origin = Origin.QUEUE) -> Batch:
    return Batch([encode(m) for m in msgs], msgs, origin)


@pytest.fixture
def spool_path(tmp_path: Path) -> Path:
    return tmp_path / "spool.db"


@pytest.fixture
def keeper(spool_path: Path) -> Iterator[SpoolKeeper]:
    spool = Spool(str(spool_path))
    keeper = SpoolKeeper(spool, encode, 100, durable=False)
    yield keeper
    keeper.close()
    spool.close()


def spooled(keeper: SpoolKeeper, errors: ErrorLog) -> Settler:
    return Settler(Stats(spool=True), errors, keeper)


# -- delivered -----------------------------------------------------------------------------


def test_a_delivered_batch_counts_its_messages_as_delivered():
    settler = Settler(Stats(), None)
    assert settler.settle(batch(messages(3)), DELIVERED) is Fate.DELIVERED
    assert settler.stats.delivered == 3


def test_a_delivered_queued_batch_is_counted_as_settled():
    settler = Settler(Stats(), None)
    settler.settle(batch(messages(3)), DELIVERED)
    assert settler.stats.settled == 3


def test_a_delivered_batch_sent_by_the_call_is_not_counted_as_settled():
    settler = Settler(Stats(), None)
    settler.settle(batch(messages(3), Origin.CALL), DELIVERED)
    assert (settler.stats.delivered, settler.stats.settled) == (3, 0)


def test_a_taken_batch_is_settled_elsewhere_and_not_counted(errors: ErrorLog):
    settler = Settler(Stats(), errors)
    assert settler.settle(batch(messages(3)), TAKEN) is Fate.SETTLED
    snap = settler.stats.snapshot()
    assert (snap["delivered"], snap["dropped"], settler.stats.settled) == (0, 0, 0)
    assert len(errors) == 0


# -- lost, without a spool -----------------------------------------------------------------


def test_a_lost_batch_is_reported_to_on_error_once_with_the_error_and_messages(
    errors: ErrorLog,
):
    settler = Settler(Stats(), errors)
    msgs = messages(3)
    error = APIError(400, "bad")
    assert settler.settle(batch(msgs), Outcome(error)) is Fate.DROPPED
    assert errors.calls == [(error, msgs)]


@pytest.mark.parametrize(
    "error",
    [
        RetriesExhausted(4, 500, "HTTP 500"),
        APIError(400),
        ClientShutdown("bye"),
        QueueFull("full"),
        MessageTooLarge(40_000, 32_768),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_lost_batch_is_counted_under_its_reason(error: DeliveryError):
    settler = Settler(Stats(), None)
    settler.settle(batch(messages(2)), Outcome(error))
    dropped = settler.stats.snapshot()["dropped_by_reason"]
    assert dropped[error.reason] == 2
    assert sum(dropped.values()) == 2


def test_a_lost_queued_batch_is_counted_as_settled():
    settler = Settler(Stats(), None)
    settler.settle(batch(messages(2)), Outcome(APIError(400)))
    assert settler.stats.settled == 2


def test_lose_of_messages_never_queued_is_not_counted_as_settled():
    settler = Settler(Stats(), None)
    settler.lose(QueueFull("full"), messages(1), queued=False)
    assert settler.stats.dropped_by_reason["queue_full"] == 1
    assert settler.stats.settled == 0


def test_the_loss_is_counted_after_on_error_ran():
    # a flush waiting on the count must not return before on_error has seen the messages
    stats = Stats()
    seen: list[int] = []
    settler = Settler(stats, lambda error, batch: seen.append(stats.settled))
    settler.settle(batch(messages(2)), Outcome(APIError(400)))
    assert seen == [0]
    assert stats.settled == 2


def test_on_error_raising_is_logged_and_ignored(caplog: pytest.LogCaptureFixture):
    settler = Settler(Stats(), ErrorLog(raise_exc=RuntimeError("hook broke")))
    with caplog.at_level(logging.ERROR, logger="analytics"):
        fate = settler.settle(batch(messages(2)), Outcome(APIError(400)))
    assert fate is Fate.DROPPED
    logged = [r for r in caplog.records if "on_error raised" in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].exc_info is not None and isinstance(logged[0].exc_info[1], RuntimeError)


def test_on_error_raising_does_not_stop_the_count():
    settler = Settler(Stats(), ErrorLog(raise_exc=RuntimeError("hook broke")))
    settler.settle(batch(messages(2)), Outcome(APIError(400)))
    assert (settler.stats.dropped_by_reason["rejected"], settler.stats.settled) == (2, 2)


def test_a_loss_is_logged_as_a_warning_without_on_error(caplog: pytest.LogCaptureFixture):
    settler = Settler(Stats(), None)
    with caplog.at_level(logging.WARNING, logger="analytics"):
        settler.settle(batch(messages(2)), Outcome(APIError(400)))
    assert any("dropped 2 message(s)" in r.getMessage() for r in caplog.records)


# -- lost, with a spool --------------------------------------------------------------------

PASSING = [
    RetriesExhausted(4, 503, "HTTP 503"),
    QueueFull("full"),
    ClientShutdown("bye"),
]
REFUSED = [APIError(400, "bad"), MessageTooLarge(40_000, 32_768)]


@pytest.mark.parametrize("error", PASSING, ids=lambda e: e.reason)
def test_a_passing_reason_keeps_the_batch_in_the_spool(
    error: DeliveryError, keeper: SpoolKeeper, spool_path: Path, errors: ErrorLog
):
    settler = spooled(keeper, errors)
    msgs = messages(3)
    assert settler.settle(batch(msgs), Outcome(error)) is Fate.KEPT
    assert spool_ids(spool_path) == [m["messageId"] for m in msgs]
    assert len(errors) == 0


@pytest.mark.parametrize("error", PASSING, ids=lambda e: e.reason)
def test_a_kept_batch_is_counted_as_spooled_and_settled_not_dropped(
    error: DeliveryError, keeper: SpoolKeeper, errors: ErrorLog
):
    settler = spooled(keeper, errors)
    settler.settle(batch(messages(3)), Outcome(error))
    snap = settler.stats.snapshot()
    assert (snap["spooled"], snap["dropped"], settler.stats.settled) == (3, 0, 3)


def test_a_kept_message_that_was_never_queued_is_not_counted_as_settled(
    keeper: SpoolKeeper, errors: ErrorLog
):
    settler = spooled(keeper, errors)
    assert settler.lose(QueueFull("full"), messages(1), queued=False) is Fate.KEPT
    assert (settler.stats.spooled, settler.stats.settled) == (1, 0)


@pytest.mark.parametrize("error", REFUSED, ids=lambda e: e.reason)
def test_a_refused_batch_is_dropped_and_reported_not_spooled(
    error: DeliveryError, keeper: SpoolKeeper, spool_path: Path, errors: ErrorLog
):
    settler = spooled(keeper, errors)
    msgs = messages(2)
    assert settler.settle(batch(msgs), Outcome(error)) is Fate.DROPPED
    assert errors.calls == [(error, msgs)]
    assert spool_count(spool_path) == 0
    assert settler.stats.dropped_by_reason[error.reason] == 2


def test_a_spool_that_cannot_be_written_falls_back_to_reporting(
    keeper: SpoolKeeper, errors: ErrorLog
):
    keeper.spool.close()  # every write now fails with sqlite3.ProgrammingError
    settler = spooled(keeper, errors)
    msgs = messages(2)
    error = ClientShutdown("bye")
    assert settler.settle(batch(msgs), Outcome(error)) is Fate.DROPPED
    assert errors.calls == [(error, msgs)]
    assert settler.stats.dropped_by_reason["shutdown"] == 2


def test_a_spool_over_its_limit_reports_the_evicted_oldest_as_spool_full(
    spool_path: Path, errors: ErrorLog
):
    first = messages(3, "old")
    second = messages(3, "new")
    one = len(encode(first[0]))
    spool = Spool(str(spool_path), max_bytes=one * 4)  # room for four of the six
    keeper = SpoolKeeper(spool, encode, 100, durable=False)
    try:
        settler = spooled(keeper, errors)
        settler.settle(batch(first), Outcome(ClientShutdown("bye")))
        settler.settle(batch(second), Outcome(ClientShutdown("bye")))
    finally:
        keeper.close()
        spool.close()
    [(error, lost)] = errors.calls
    assert isinstance(error, SpoolFull)
    assert [m["messageId"] for m in lost] == ["old0", "old1"]
    assert settler.stats.dropped_by_reason["spool_full"] == 2
    assert spool_ids(spool_path) == ["old2", "new0", "new1", "new2"]


# -- replayed batches ----------------------------------------------------------------------


def kept_and_claimed(keeper: SpoolKeeper, msgs: list[Message]) -> Batch:
    assert keeper.keep(msgs)
    claimed = keeper.claim()
    assert claimed is not None and claimed.origin is Origin.SPOOL
    assert len(claimed.items) == len(msgs)
    return claimed


def test_a_replayed_batch_delivered_is_deleted_from_the_spool(
    keeper: SpoolKeeper, spool_path: Path, errors: ErrorLog
):
    settler = spooled(keeper, errors)
    claimed = kept_and_claimed(keeper, messages(3))
    assert settler.settle(claimed, DELIVERED) is Fate.DELIVERED
    assert spool_count(spool_path) == 0


def test_a_replayed_batch_delivered_is_counted_as_replayed_not_settled(
    keeper: SpoolKeeper, errors: ErrorLog
):
    settler = spooled(keeper, errors)
    settler.settle(kept_and_claimed(keeper, messages(3)), DELIVERED)
    assert (settler.stats.replayed, settler.stats.settled) == (3, 0)


def test_claimed_rows_are_not_free_for_another_claim(keeper: SpoolKeeper):
    kept_and_claimed(keeper, messages(2))
    assert keeper.claim() is None


@pytest.mark.parametrize(
    "error", [RetriesExhausted(1, 503, "HTTP 503"), ClientShutdown("bye")], ids=lambda e: e.reason
)
def test_a_replayed_batch_failing_for_a_passing_reason_is_released_for_a_later_try(
    error: DeliveryError, keeper: SpoolKeeper, spool_path: Path, errors: ErrorLog
):
    settler = spooled(keeper, errors)
    claimed = kept_and_claimed(keeper, messages(3))
    assert settler.settle(claimed, Outcome(error)) is Fate.KEPT
    again = keeper.claim()
    assert again is not None and list(again.rows) == list(claimed.rows)
    assert spool_count(spool_path) == 3
    assert len(errors) == 0


def test_a_replayed_batch_refused_is_deleted_and_reported(
    keeper: SpoolKeeper, spool_path: Path, errors: ErrorLog
):
    settler = spooled(keeper, errors)
    msgs = messages(3)
    claimed = kept_and_claimed(keeper, msgs)
    error = APIError(400, "bad")
    assert settler.settle(claimed, Outcome(error)) is Fate.DROPPED
    assert spool_count(spool_path) == 0
    assert errors.calls == [(error, msgs)]  # the spooled bytes, decoded back to the dicts


def test_a_replayed_batch_refused_is_counted_as_rejected_not_settled(
    keeper: SpoolKeeper, errors: ErrorLog
):
    settler = spooled(keeper, errors)
    settler.settle(kept_and_claimed(keeper, messages(3)), Outcome(APIError(400)))
    assert (settler.stats.dropped_by_reason["rejected"], settler.stats.settled) == (3, 0)
