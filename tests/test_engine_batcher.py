"""The batching rule alone (analytics/batch.py): count and byte limits, the per-message
limit, what `add` says with a `Fit`, and the body it makes."""

from __future__ import annotations

import json

import pytest
from helpers import instant

from analytics.batch import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES, Batcher, Fit
from analytics.encode import encode


def item(size: int, tag: str = "x") -> bytes:
    """An encoded JSON message of exactly `size` bytes."""
    head = b'{"p":"'
    tail = b'"}'
    data = head + tag.encode() * (size - len(head) - len(tail)) + tail
    assert len(data) == size
    json.loads(data)
    return data


# -- the count limit -----------------------------------------------------------------------


def test_count_limit_refuses_the_message_past_max_count():
    batcher = Batcher(max_count=3)
    fits = [batcher.add(item(20)) for _ in range(4)]
    assert fits == [Fit.ADDED, Fit.ADDED, Fit.ADDED, Fit.FULL]
    assert len(batcher) == 3


def test_full_is_true_once_max_count_messages_are_in():
    batcher = Batcher(max_count=2)
    batcher.add(item(20))
    assert not batcher.full
    batcher.add(item(20))
    assert batcher.full


# -- the byte limit ------------------------------------------------------------------------


def test_byte_limit_keeps_the_default_body_at_most_500_000_bytes():
    batcher = Batcher(max_count=1000)
    added = 0
    while batcher.add(item(30_000)) is Fit.ADDED:
        added += 1
        assert added < 1000, "the byte limit never refused a message"
    assert len(batcher.body()) <= MAX_BATCH_BYTES
    # the refused message really would have broken the limit: the check is tight
    assert batcher.size + 30_000 + 1 > MAX_BATCH_BYTES
    assert added == len(batcher) == 16


def test_size_is_the_length_of_the_body_it_makes():
    batcher = Batcher()
    for size in (100, 2_000, 31_000, 57):
        batcher.add(item(size))
        assert len(batcher.body()) == batcher.size


def test_message_that_fills_max_bytes_exactly_is_added():
    batcher = Batcher(max_count=10, max_bytes=40_000)
    assert batcher.add(item(20_000)) is Fit.ADDED
    exact = 40_000 - batcher.size - 1  # the comma joins it
    assert batcher.add(item(exact)) is Fit.ADDED
    assert len(batcher.body()) == 40_000


def test_message_one_byte_past_max_bytes_is_refused_before_it_is_added():
    batcher = Batcher(max_count=10, max_bytes=40_000)
    batcher.add(item(20_000))
    over = 40_000 - batcher.size  # with its comma: one byte past the limit
    assert batcher.add(item(over)) is Fit.FULL
    assert len(batcher) == 1
    assert len(batcher.body()) < 40_000


def test_fits_says_what_add_would_do_without_adding():
    batcher = Batcher(max_count=10, max_bytes=40_000)
    batcher.add(item(20_000))
    assert batcher.fits(item(1_000))
    assert not batcher.fits(item(30_000))
    assert len(batcher) == 1


# -- the per-message limit -----------------------------------------------------------------


def test_message_over_32_kb_is_too_large_and_not_added():
    batcher = Batcher()
    batcher.add(item(100))
    before = (list(batcher.items), batcher.size)
    assert batcher.add(item(MAX_MESSAGE_BYTES + 1)) is Fit.TOO_LARGE
    assert (batcher.items, batcher.size) == before


def test_message_of_exactly_32_kb_is_added():
    batcher = Batcher()
    assert batcher.add(item(MAX_MESSAGE_BYTES)) is Fit.ADDED


def test_too_large_is_said_even_to_an_empty_batch():
    batcher = Batcher()
    assert batcher.add(item(MAX_MESSAGE_BYTES + 1)) is Fit.TOO_LARGE
    assert len(batcher) == 0


def test_a_too_large_dict_is_too_large_too():
    batcher = Batcher()
    assert batcher.add({"p": "x" * MAX_MESSAGE_BYTES}) is Fit.TOO_LARGE
    assert len(batcher) == 0


# -- FULL, take, body ----------------------------------------------------------------------


def test_full_leaves_the_batch_unchanged():
    batcher = Batcher(max_count=2)
    batcher.add(item(30, "a"))
    batcher.add(item(30, "b"))
    before = (list(batcher.items), batcher.size, batcher.body(sent="2000-01-01T00:00:00.000+00:00"))
    assert batcher.add(item(30, "c")) is Fit.FULL
    after = (batcher.items, batcher.size, batcher.body(sent="2000-01-01T00:00:00.000+00:00"))
    assert after == before


def test_full_by_bytes_leaves_the_batch_unchanged():
    batcher = Batcher(max_count=100, max_bytes=40_000)
    batcher.add(item(30_000))
    before = (list(batcher.items), batcher.size)
    assert batcher.add(item(20_000)) is Fit.FULL
    assert (batcher.items, batcher.size) == before


def test_take_returns_the_messages_in_order_and_empties_the_batcher():
    batcher = Batcher(max_count=3)
    items = [item(30, tag) for tag in "abc"]
    for data in items:
        batcher.add(data)
    assert batcher.take() == items
    assert len(batcher) == 0
    assert batcher.items == []
    assert len(batcher.body()) == batcher.size  # back to the empty body's size
    assert json.loads(batcher.body())["batch"] == []


def test_after_take_a_full_batcher_takes_max_count_again():
    batcher = Batcher(max_count=2)
    batcher.add(item(30))
    batcher.add(item(30))
    batcher.take()
    assert [batcher.add(item(30)) for _ in range(3)] == [Fit.ADDED, Fit.ADDED, Fit.FULL]


def test_after_take_the_byte_budget_is_whole_again():
    batcher = Batcher(max_count=100, max_bytes=40_000)
    batcher.add(item(30_000))
    batcher.take()
    assert batcher.add(item(30_000)) is Fit.ADDED


def test_body_is_json_with_the_batch_and_sent_at():
    batcher = Batcher()
    messages = [{"messageId": "m1", "event": "A"}, {"messageId": "m2", "event": "B"}]
    for m in messages:
        batcher.add(encode(m))
    decoded = json.loads(batcher.body())
    assert set(decoded) == {"batch", "sentAt"}
    assert decoded["batch"] == messages
    instant(decoded["sentAt"])  # ISO-8601 with a UTC offset


def test_body_takes_the_sent_at_it_is_given():
    batcher = Batcher()
    batcher.add(item(30))
    stamp = "2021-02-03T04:05:06.789+00:00"
    assert json.loads(batcher.body(sent=stamp))["sentAt"] == stamp


def test_a_dict_is_encoded_on_add():
    batcher = Batcher()
    message = {"messageId": "m1", "properties": {"n": 1, "ok": True}}
    assert batcher.add(message) is Fit.ADDED
    assert batcher.items == [encode(message)]
    assert json.loads(batcher.items[0]) == message


# -- Fit and construction ------------------------------------------------------------------


def test_only_added_is_true():
    assert bool(Fit.ADDED) is True
    assert bool(Fit.FULL) is False
    assert bool(Fit.TOO_LARGE) is False


def test_a_max_count_below_one_is_refused():
    with pytest.raises(ValueError, match="max_count"):
        Batcher(max_count=0)


def test_a_max_bytes_that_cannot_hold_the_largest_message_is_refused():
    with pytest.raises(ValueError, match="max_bytes"):
        Batcher(max_bytes=MAX_MESSAGE_BYTES)
