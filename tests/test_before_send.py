"""`before_send`: hooks given each message on the caller's thread, before the size check;
a None drops it (counted as filtered, no on_error); a raising hook never loses a message."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import pytest
from helpers import WRITE_KEY

import analytics
from analytics.integrations import _common

Message = dict[str, Any]


def scrub_email(message: Message) -> Message:
    """Named by dotted path in the framework settings tests."""
    message["traits"].pop("email", None)
    return message


def add_build(message: Message) -> Message:
    message["properties"]["build"] = "7f3c2e1"
    return message


def test_a_hook_changes_what_is_sent_and_what_the_call_returns(make_client, collector):
    client = make_client(before_send=scrub_email)
    ok, msg = client.identify("u1", {"email": "ada@example.com", "plan": "pro"})
    assert ok and msg["traits"] == {"plan": "pro"}
    assert client.flush(timeout=5)
    [sent] = collector.messages()
    assert sent["traits"] == {"plan": "pro"} and sent["messageId"] == msg["messageId"]


def test_the_hook_gets_the_wire_message_on_the_callers_thread(make_client, collector):
    seen: list[tuple[Message, threading.Thread]] = []

    def record(message: Message) -> Message:
        seen.append((dict(message), threading.current_thread()))
        return message

    client = make_client(before_send=record, context={"app": {"name": "shop"}})
    with analytics.scope(user_id="u1"):
        client.track(event="Viewed", properties={"n": 1})
    [(message, thread)] = seen
    assert thread is threading.current_thread()
    assert message["type"] == "track" and message["userId"] == "u1"
    assert message["messageId"] and message["timestamp"].endswith("+00:00")
    # the defaults are merged before the hook sees it
    assert message["context"]["app"] == {"name": "shop"}
    assert message["context"]["library"]["name"] == analytics.LIBRARY_NAME


def test_returning_none_drops_it_counted_as_filtered_and_not_an_error(
    make_client, collector, errors
):
    client = make_client(before_send=lambda m: None if m["event"] == "Health" else m)
    dropped = client.track("u1", "Health")
    kept = client.track("u1", "Bought")
    assert dropped[0] is False and dropped[1]["event"] == "Health"
    assert kept[0] is True
    assert client.flush(timeout=5)
    assert [m["event"] for m in collector.messages()] == ["Bought"]
    stats = client.stats()
    assert stats["filtered"] == 1 and stats["dropped"] == 0 and stats["queued"] == 1
    assert errors.calls == []
    report = client.flush_report(timeout=5)
    assert report and (report.filtered, report.dropped, report.delivered) == (1, 0, 1)


def test_hooks_run_in_order_and_the_first_none_stops_the_rest(make_client, collector):
    order: list[str] = []

    def first(message: Message) -> Message:
        order.append("first")
        message["properties"]["seen"] = ["first"]
        return message

    def second(message: Message) -> Message | None:
        order.append("second")
        message["properties"]["seen"].append("second")
        return None if message["event"] == "Drop" else message

    def third(message: Message) -> Message:
        order.append("third")
        return {**message, "event": message["event"] + "!"}  # a new dict is fine too

    client = make_client(before_send=[first, second, third])
    ok, msg = client.track("u1", "Keep")
    assert ok and msg["event"] == "Keep!" and msg["properties"] == {"seen": ["first", "second"]}
    assert order == ["first", "second", "third"]
    order.clear()
    assert client.track("u1", "Drop")[0] is False
    assert order == ["first", "second"]
    assert client.flush(timeout=5)
    assert [m["event"] for m in collector.messages()] == ["Keep!"]


def test_a_raising_hook_is_skipped_logged_once_and_the_message_still_sent(
    make_client, collector, errors, caplog
):
    def broken(message: Message) -> Message:
        raise KeyError("no such field")

    client = make_client(before_send=[broken, add_build])
    caplog.set_level(logging.WARNING, logger="analytics")
    results = [client.track("u1", f"E{n}") for n in range(5)]
    assert all(ok for ok, _ in results)
    assert client.flush(timeout=5)
    sent = collector.messages()
    assert [m["event"] for m in sent] == [f"E{n}" for n in range(5)]
    assert all(m["properties"] == {"build": "7f3c2e1"} for m in sent)  # the next hook ran
    warnings = [r.getMessage() for r in caplog.records if "before_send" in r.getMessage()]
    assert len(warnings) == 1, warnings  # rate-limited: one for the storm
    assert "broken" in warnings[0] and "KeyError" in warnings[0]
    assert errors.calls == [] and client.stats()["filtered"] == 0


def test_a_hook_returning_neither_a_dict_nor_none_is_ignored(make_client, collector, caplog):
    client = make_client(before_send=lambda m: "oops")
    caplog.set_level(logging.WARNING, logger="analytics")
    ok, msg = client.track("u1", "Kept")
    assert ok and msg["event"] == "Kept"
    assert client.flush(timeout=5)
    assert [m["event"] for m in collector.messages()] == ["Kept"]
    assert any("returned a str" in r.getMessage() for r in caplog.records)


def test_a_hook_may_change_the_sections_of_a_call_that_gave_none(make_client):
    # Without properties or context, a message holds the library's shared read-only dicts:
    # the hook gets plain ones, so that an in-place change works.
    client = make_client(stub=True, before_send=[add_build, scrub_email])
    ok, msg = client.track("u1", "Plain")
    assert ok and msg["properties"] == {"build": "7f3c2e1"}
    ok, msg = client.identify("u1")
    assert ok and msg["traits"] == {}
    other = client.track("u1", "Again")[1]
    assert other["properties"] == {"build": "7f3c2e1"} and other["properties"] is not msg


def test_the_hook_runs_before_the_size_check(make_client, errors):
    def pad(message: Message) -> Message:
        message["properties"]["pad"] = "x" * 40_000
        return message

    def trim(message: Message) -> Message:
        message["properties"].pop("pad", None)
        return message

    padded = make_client(before_send=pad)
    ok, msg = padded.track("u1", "Big")
    assert not ok and len(msg["properties"]["pad"]) == 40_000
    [(error, batch)] = errors.calls
    assert isinstance(error, analytics.MessageTooLarge) and batch[0]["event"] == "Big"
    trimmed = make_client(before_send=trim)
    assert trimmed.track("u1", "Was big", {"pad": "x" * 40_000})[0] is True


def test_validation_comes_first_and_the_hook_never_sees_a_bad_call(make_client):
    seen: list[Message] = []
    client = make_client(before_send=lambda m: seen.append(m) or m)
    with pytest.raises(analytics.ValidationError):
        client.track("u1", None)
    with pytest.raises(analytics.ValidationError):
        client.identify()
    assert seen == []


def test_in_stub_mode_a_dropped_message_is_not_kept(make_client):
    client = make_client(stub=True, before_send=lambda m: None if m["event"] == "No" else m)
    client.track("u1", "No")
    client.track("u1", "Yes")
    assert [m["event"] for m in client.sent] == ["Yes"]
    assert client.stats()["filtered"] == 1


def test_in_sync_mode_a_dropped_message_makes_no_request(make_client, collector):
    client = make_client(sync_mode=True, before_send=lambda m: None)
    assert client.track("u1", "Gone")[0] is False
    assert collector.snapshot() == [] and client.stats()["requests"] == 0


async def async_hook(message: Message) -> Message:
    return message


@pytest.mark.parametrize(
    "value", [5, "scrub", [scrub_email, 3], {"hook": scrub_email}, async_hook, [async_hook]]
)
def test_a_wrong_before_send_is_refused_when_the_client_is_built(value):
    with pytest.raises(analytics.ValidationError, match="before_send"):
        analytics.Client(WRITE_KEY, stub=True, before_send=value)


def test_an_empty_list_means_no_hook():
    client = analytics.Client(WRITE_KEY, stub=True, before_send=[])
    assert client.settings.before_send is None
    assert client.track("u1", "E")[0] is True


def test_the_module_takes_before_send(facade, collector):
    facade.before_send = add_build
    ok, msg = facade.track("u1", "From module")
    assert ok and msg["properties"] == {"build": "7f3c2e1"}
    assert facade.flush(timeout=5)
    assert collector.messages()[0]["properties"] == {"build": "7f3c2e1"}


def test_framework_settings_take_a_dotted_path_or_a_list_of_them():
    here = f"{__name__}.scrub_email"
    assert sys.modules[__name__].scrub_email is scrub_email
    one, _ = _common.parse_options({"BEFORE_SEND": here}, lambda k: f"ANALYTICS_{k}")
    assert one["before_send"] == (scrub_email,)
    many, _ = _common.parse_options(
        {"BEFORE_SEND": [here, add_build]}, lambda k: f"ANALYTICS_{k}"
    )
    assert many["before_send"] == (scrub_email, add_build)
    with pytest.raises(analytics.ValidationError, match="ANALYTICS_BEFORE_SEND"):
        _common.parse_options({"BEFORE_SEND": "no.such.hook"}, lambda k: f"ANALYTICS_{k}")


def test_flask_config_before_send_runs_on_the_requests_events(collector):
    flask = pytest.importorskip("flask")
    from analytics.integrations.flask import Analytics

    app = flask.Flask("hooked")
    app.config.update(
        ANALYTICS_WRITE_KEY=WRITE_KEY, ANALYTICS_HOST=collector.url, ANALYTICS_TIMEOUT=5,
        ANALYTICS_FLUSH_INTERVAL=0.05, ANALYTICS_BEFORE_SEND=f"{__name__}.add_build",
    )  # fmt: skip
    ext = Analytics()
    ext.init_app(app)

    @app.get("/buy")
    def buy() -> Any:
        ok, msg = ext.track("u1", "Bought")
        return {"ok": ok}

    try:
        assert app.test_client().get("/buy").json == {"ok": True}
        with app.app_context():
            assert ext.flush(timeout=5)
        [msg] = collector.messages()
        assert msg["properties"] == {"build": "7f3c2e1"}
    finally:
        Analytics.state(app).client.shutdown(timeout=2)
