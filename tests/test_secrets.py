"""The write key never appears in logs, reprs or error messages."""

from __future__ import annotations

import base64
import contextlib
import logging

import pytest
from helpers import wait_until

import analytics

SECRET = "wk_SECRET_7f3a9c0e5d2b41"
SECRET_B64 = base64.b64encode(f"{SECRET}:".encode()).decode()
SECRET_FORMS = [SECRET, SECRET_B64, SECRET[3:-3]]


def _leaks(text: str) -> list[str]:
    return [form for form in SECRET_FORMS if form in text]


def _record_text(record: logging.LogRecord) -> str:
    parts = [str(record.msg), repr(record.args)]
    with contextlib.suppress(Exception):  # a broken format string is not our concern
        parts.append(record.getMessage())
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    return "\n".join(parts)


@pytest.fixture
def busy_client(make_client, collector, errors, caplog):
    """A debug client driven through success, retries, rejection, too-large, queue-full
    and shutdown, with every log record captured at DEBUG."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="analytics")
    client = make_client(SECRET, debug=True, max_retries=2, batch_size=5)
    client.track("u", "ok")
    assert client.flush(timeout=5)
    collector.fail(500, count=2)
    client.track("u", "retried")
    assert client.flush(timeout=5)
    collector.fail(500, count=3)
    client.track("u", "gave-up")
    assert client.flush(timeout=5)
    collector.fail(400, count=1)
    client.track("u", "rejected")
    assert client.flush(timeout=5)
    client.track("u", "huge", {"blob": "x" * 40_000})
    with pytest.raises(analytics.ValidationError) as info:
        client.track(event="no ids")
    errors.validation_error = info.value
    assert client.shutdown(timeout=5)
    client.track("u", "after shutdown")
    errors.wait_for(4, timeout=2)  # gave up, rejected, too large, shut down
    return client


def test_write_key_never_in_debug_logs(busy_client, caplog, errors):
    # the scenario runs in the fixture: its records are in the "setup" phase
    records = caplog.get_records("setup") + caplog.get_records("call")
    assert any(r.name.startswith("analytics") for r in records), "nothing was logged at all"
    for record in records:
        assert _leaks(_record_text(record)) == [], f"write key in log record: {record.msg!r}"
    assert _leaks("\n".join(logging.Formatter().format(r) for r in records)) == []


def test_write_key_never_in_client_repr(make_client):
    client = make_client(SECRET)
    assert _leaks(repr(client)) == []
    assert _leaks(str(client)) == []


def test_write_key_is_a_read_only_property_that_repr_still_hides(make_client, collector):
    client = make_client(SECRET)
    assert client.write_key == SECRET  # Segment's and RudderStack's clients have it
    with pytest.raises(AttributeError):
        client.write_key = "another"  # type: ignore[misc]
    assert client.write_key == SECRET
    assert _leaks(repr(client)) == [] and _leaks(str(client)) == []
    assert _leaks(repr(client.settings)) == []
    client.track("u", "E")
    assert client.flush(timeout=5)
    assert collector.requests[0].headers["Authorization"] == f"Basic {SECRET_B64}"
    assert analytics.Client(stub=True).write_key is None


def test_write_key_never_in_errors_given_to_on_error(busy_client, errors):
    kinds = {type(e) for e in errors.errors}
    assert {analytics.RetriesExhausted, analytics.APIError, analytics.MessageTooLarge,
            analytics.ClientShutdown} <= kinds
    for error in errors.errors:
        assert _leaks(str(error)) == [], f"write key in str({type(error).__name__})"
        assert _leaks(repr(error)) == [], f"write key in repr({type(error).__name__})"
        assert _leaks(repr(error.args)) == []
        assert str(error), "an error must say why"


def test_write_key_never_in_validation_error(busy_client, errors):
    error = errors.validation_error
    assert _leaks(str(error)) == [] and _leaks(repr(error)) == []


def test_write_key_never_in_queue_full_error(make_client, collector, errors):
    collector.hang()
    client = make_client(SECRET, max_queue_size=2, batch_size=1, flush_interval=0.01)
    for _ in range(20):
        client.track("u", "E")
    assert wait_until(lambda: errors.of_type(analytics.QueueFull), timeout=5)
    full = errors.of_type(analytics.QueueFull)
    for error, _ in full:
        assert _leaks(str(error)) == [] and _leaks(repr(error)) == []
