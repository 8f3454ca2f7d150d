"""The module-level facade, and Segment's alias names on Client."""

from __future__ import annotations

import base64
import time

import pytest
from collector import Collector
from helpers import WRITE_KEY, call_within, wait_until

import analytics


def test_configured_facade_track_arrives(facade, collector):
    ok, msg = analytics.track("u", "FacadeEvent", {"a": 1})
    assert ok is True
    assert analytics.flush(timeout=5) is True
    [received] = collector.messages()
    assert received["messageId"] == msg["messageId"]
    assert received["properties"] == {"a": 1}
    expected = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    assert collector.requests[0].headers["Authorization"] == expected
    assert isinstance(analytics.default_client, analytics.Client)


def test_all_six_facade_calls_use_segments_positional_order(facade, collector):
    analytics.track("u", "E", {"p": 1})
    analytics.identify("u", {"t": 1})
    analytics.page("u", "Cat", "Name", {"p": 2})
    analytics.screen("u", "Cat", "Scr", {"p": 3})
    analytics.group("u", "g", {"t": 2})
    analytics.alias("prev", "u")
    assert analytics.flush(timeout=5) is True
    by_type = {m["type"]: m for m in collector.messages()}
    assert by_type["track"]["event"] == "E" and by_type["track"]["properties"] == {"p": 1}
    assert by_type["identify"]["traits"] == {"t": 1}
    assert (by_type["page"]["category"], by_type["page"]["name"]) == ("Cat", "Name")
    assert by_type["screen"]["name"] == "Scr" and by_type["screen"]["properties"] == {"p": 3}
    assert by_type["group"]["groupId"] == "g" and by_type["group"]["traits"] == {"t": 2}
    assert by_type["alias"]["previousId"] == "prev" and by_type["alias"]["userId"] == "u"


def test_changing_host_after_first_call_takes_effect(facade, collector):
    other = Collector()
    try:
        analytics.track("u", "first")
        assert analytics.flush(timeout=5)
        analytics.host = other.url
        analytics.track("u", "second")
        assert analytics.flush(timeout=5)
        assert [m["event"] for m in collector.messages()] == ["first"]
        assert [m["event"] for m in other.messages()] == ["second"]
    finally:
        analytics.shutdown(timeout=2)
        other.stop()


def test_changing_write_key_after_first_call_takes_effect(facade, collector):
    analytics.track("u", "first")
    assert analytics.flush(timeout=5)
    analytics.write_key = "second-key"
    analytics.track("u", "second")
    assert analytics.flush(timeout=5)
    auth = {m["event"]: r.headers["Authorization"] for r in collector.requests for m in r.messages}
    assert auth["second"] == "Basic " + base64.b64encode(b"second-key:").decode()


def test_changing_on_error_after_first_call_takes_effect(facade, collector, errors):
    from helpers import ErrorLog

    analytics.track("u", "first")
    assert analytics.flush(timeout=5)
    second = ErrorLog()
    analytics.on_error = second
    collector.fail(400, count=1)
    analytics.track("u", "rejected")
    assert analytics.flush(timeout=5)
    second.wait_for(1, timeout=2)
    assert len(errors) == 0, f"the old on_error was called: {errors.calls}"


@pytest.mark.parametrize("value", [False, 0, ""])
def test_a_falsy_on_error_on_the_module_means_none(facade, collector, value):
    analytics.on_error = value
    collector.fail(400, count=1)
    ok, _ = analytics.track("u", "rejected")  # reported to no one; nothing raises
    assert ok and analytics.flush(timeout=5)
    assert analytics.default_client is not None and analytics.default_client.on_error is None
    assert analytics.default_client.stats()["dropped_by_reason"].get("rejected") == 1


def test_a_falsy_callable_on_error_on_the_module_is_called(facade, collector):
    from helpers import ErrorLog

    log = ErrorLog()
    assert not log
    analytics.on_error = log
    collector.fail(400, count=1)
    analytics.track("u", "rejected")
    assert analytics.flush(timeout=5)
    assert [type(e) for e, _ in log.wait_for(1, timeout=2)] == [analytics.APIError]


def test_a_truthy_non_callable_on_error_on_the_module_is_refused(facade):
    analytics.on_error = "print"
    with pytest.raises(analytics.ValidationError, match="on_error must be callable"):
        analytics.track("u", "e")


def test_log_handler_on_the_module_reaches_the_analytics_logger(facade, collector):
    import logging

    from helpers import ErrorLog

    class Records(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.DEBUG)
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    handler = Records()
    logger = logging.getLogger("analytics")
    try:
        analytics.log_handler = handler  # Segment's module has the setting
        analytics.on_error = ErrorLog()
        collector.fail(400, count=1)
        analytics.track("u", "rejected")
        assert analytics.flush(timeout=5)
        assert handler in logger.handlers
        assert any("dropped 1 message" in r.getMessage() for r in handler.records), [
            r.getMessage() for r in handler.records
        ]
    finally:
        logger.removeHandler(handler)


def test_a_module_host_ending_in_v1_posts_to_v1_batch(facade, collector):
    analytics.host = collector.url + "/v1"
    ok, msg = analytics.track("u", "E")
    assert ok and analytics.flush(timeout=5)
    assert [r.path for r in collector.requests] == ["/v1/batch"]
    assert collector.requests[0].ids == [msg["messageId"]]
    assert analytics.default_client is not None
    assert analytics.default_client.url == collector.url + "/v1/batch"


def test_changing_stub_after_first_call_takes_effect(facade, collector):
    analytics.track("u", "sent")
    assert analytics.flush(timeout=5)
    analytics.stub = True
    analytics.track("u", "stubbed")
    assert analytics.flush(timeout=5)
    assert [m["event"] for m in collector.messages()] == ["sent"]


def test_changing_batch_size_after_first_call_takes_effect(facade, collector):
    analytics.track("u", "first")
    assert analytics.flush(timeout=5)
    analytics.batch_size = 2
    analytics.flush_interval = 10
    for _ in range(6):
        analytics.track("u", "E")
    assert analytics.flush(timeout=5)
    assert max(r.count for r in collector.requests[1:]) <= 2


def test_facade_refuses_at_first_call_without_write_key(facade):
    analytics.write_key = None
    with pytest.raises(analytics.ValidationError):
        analytics.track("u", "E")
    analytics.write_key = ""
    with pytest.raises(analytics.ValidationError):
        analytics.identify("u")


def test_facade_stub_without_write_key_is_allowed(facade, collector):
    analytics.write_key = None
    analytics.stub = True
    ok, _ = analytics.track("u", "E")
    assert ok is True
    assert analytics.flush(timeout=2)
    assert collector.requests == []


def test_facade_validation_raises(facade):
    with pytest.raises(analytics.ValidationError):
        analytics.track("u")


def test_facade_sync_mode(facade, collector):
    analytics.sync_mode = True
    ok, msg = analytics.track("u", "E")
    assert ok
    assert [m["messageId"] for m in collector.messages()] == [msg["messageId"]]


def test_facade_gzip(facade, collector):
    analytics.gzip = True
    analytics.track("u", "E")
    assert analytics.flush(timeout=5)
    assert collector.requests[0].headers["Content-Encoding"] == "gzip"


def test_facade_send_false_is_stub(facade, collector):
    analytics.send = False
    analytics.track("u", "E")
    assert analytics.flush(timeout=2)
    assert collector.requests == []


def test_facade_upload_size_is_batch_size(facade, collector):
    analytics.upload_size = 2
    analytics.flush_interval = 10
    for _ in range(5):
        analytics.track("u", "E")
    assert analytics.flush(timeout=5)
    assert collector.message_count() == 5
    assert max(r.count for r in collector.requests) <= 2


def test_facade_flush_and_shutdown_without_client_do_not_raise(facade):
    analytics.shutdown(timeout=2)
    analytics.default_client = None
    start = time.monotonic()
    analytics.flush(timeout=2)
    analytics.shutdown(timeout=2)
    assert time.monotonic() - start < 2


# -------------------------------------------------------------- Client aliases


def test_client_send_false_is_stub(make_client, collector):
    client = make_client(send=False)
    client.track("u", "E")
    assert client.flush(timeout=2)
    assert client.shutdown(timeout=2)
    assert collector.requests == []
    assert len(client.sent) == 1


def test_client_send_true_sends(make_client, collector):
    client = make_client(send=True)
    client.track("u", "E")
    assert client.flush(timeout=5)
    assert collector.message_count() == 1


def test_client_upload_size_is_batch_size(make_client, collector):
    client = make_client(upload_size=3, flush_interval=10)
    for _ in range(7):
        client.track("u", "E")
    assert client.flush(timeout=5)
    assert collector.message_count() == 7
    assert max(r.count for r in collector.requests) <= 3


def test_client_upload_interval_is_flush_interval(make_client, collector):
    slow = make_client(upload_interval=5, batch_size=100)
    slow.track("u", "slow")
    assert not wait_until(lambda: collector.message_count() >= 1, timeout=1.0), (
        "upload_interval=5 ignored: the partial batch left within 1 s"
    )
    fast = make_client(upload_interval=0.05, batch_size=100)
    fast.track("u", "fast")
    assert wait_until(lambda: collector.message_count() >= 1, timeout=3)
    assert [m["event"] for m in collector.messages()] == ["fast"]


def test_proxies_are_used(make_client, collector):
    # the collector acts as the HTTP proxy: it sees the absolute URL of the real host
    client = make_client(host="http://collector.invalid", proxies={"http": collector.url})
    ok, msg = client.track("u", "E")
    assert ok
    assert client.flush(timeout=5) is True
    req = collector.requests[0]
    assert req.path == "http://collector.invalid/v1/batch"
    assert req.ids == [msg["messageId"]]


def test_facade_flush_returns_false_when_time_runs_out(facade, collector):
    collector.hang()
    analytics.track("u", "E")
    start = time.monotonic()
    assert call_within(10, analytics.flush, timeout=1) is False
    assert time.monotonic() - start < 2


def test_facade_calls_after_shutdown_are_refused(facade, collector, errors):
    analytics.track("u", "before")
    assert analytics.shutdown(timeout=5) is True
    ok, msg = call_within(5, analytics.track, "u", "after")
    assert ok is False
    assert msg["event"] == "after"
    errors.wait_for(1, timeout=2)
    assert isinstance(errors.errors[0], analytics.ClientShutdown)
    assert [m["event"] for m in collector.messages()] == ["before"]
