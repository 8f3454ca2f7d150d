"""A client's default `context` (deep-merged under each call's; the call and the scope win)
and default `properties` (under track/page/screen's, shallow), from every place options come."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import WRITE_KEY

import analytics
from analytics.integrations import _common

APP = {"app": {"name": "shop", "version": "1.4.2"}, "environment": "production"}


def test_the_default_context_reaches_the_collector_under_the_calls(make_client, collector):
    client = make_client(context=APP)
    client.track("u1", "Bought", context={"app": {"build": "7f3c2e1"}, "ip": "192.0.2.1"})
    client.identify("u1", {"plan": "pro"})
    assert client.flush(timeout=5)
    bought, identified = collector.messages()
    assert bought["context"]["app"] == {"name": "shop", "version": "1.4.2", "build": "7f3c2e1"}
    assert bought["context"]["environment"] == "production"
    assert bought["context"]["ip"] == "192.0.2.1"
    assert identified["context"]["app"] == APP["app"]
    for msg in (bought, identified):
        assert msg["context"]["library"] == {
            "name": analytics.LIBRARY_NAME, "version": analytics.VERSION,
        }  # fmt: skip


def test_the_call_wins_over_the_scope_and_the_scope_over_the_default(make_client):
    client = make_client(stub=True, context={"env": "prod", "app": {"name": "shop"}, "a": 1})
    with analytics.scope(context={"env": "staging", "app": {"name": "scoped"}, "b": 2}):
        msg = client.track("u1", "E", context={"app": {"name": "call"}})[1]
        plain = client.track("u1", "E")[1]
    assert msg["context"]["env"] == "staging" and msg["context"]["app"] == {"name": "call"}
    assert plain["context"]["app"] == {"name": "scoped"}
    assert (msg["context"]["a"], msg["context"]["b"]) == (1, 2)


def test_every_kind_of_call_gets_the_default_context(make_client):
    client = make_client(stub=True, context={"environment": "production"})
    client.identify("u1")
    client.track("u1", "E")
    client.page("u1", name="Home")
    client.screen("u1", name="Home")
    client.group("u1", "g1")
    client.alias("a1", "u1")
    assert [m["type"] for m in client.sent] == [
        "identify", "track", "page", "screen", "group", "alias",
    ]  # fmt: skip
    assert all(m["context"]["environment"] == "production" for m in client.sent)


def test_the_library_of_the_context_stays_the_librarys_own(make_client):
    client = make_client(stub=True, context={"library": {"name": "mine"}, "app": "x"})
    msg = client.track("u1", "E")[1]
    assert msg["context"] == {
        "app": "x", "library": {"name": analytics.LIBRARY_NAME, "version": analytics.VERSION},
    }  # fmt: skip


def test_default_properties_go_under_track_page_and_screen_only(make_client, collector):
    client = make_client(properties={"region": "eu", "tags": {"tier": "gold"}})
    client.track("u1", "E", {"revenue": 9.5, "tags": {"new": True}})
    client.page("u1", name="Home")
    client.screen("u1", name="Home", properties={"region": "us"})
    client.identify("u1", {"plan": "pro"})
    client.group("u1", "g1", {"seats": 3})
    assert client.flush(timeout=5)
    track, page, screen, identify, group = collector.messages()
    # shallow: the call's `tags` replaces the default's whole
    assert track["properties"] == {"region": "eu", "revenue": 9.5, "tags": {"new": True}}
    assert page["properties"] == {"region": "eu", "tags": {"tier": "gold"}}
    assert screen["properties"] == {"region": "us", "tags": {"tier": "gold"}}
    assert identify["traits"] == {"plan": "pro"} and group["traits"] == {"seats": 3}


def test_the_defaults_are_copied_when_built_and_never_shared_by_messages(make_client):
    context: dict[str, Any] = {"app": {"name": "shop", "flags": ["a"]}}
    properties: dict[str, Any] = {"tags": {"tier": "gold"}}
    client = make_client(stub=True, context=context, properties=properties)
    context["app"]["name"] = "changed later"
    properties["tags"]["tier"] = "changed later"
    first = client.track("u1", "E")[1]
    assert first["context"]["app"] == {"name": "shop", "flags": ["a"]}
    assert first["properties"] == {"tags": {"tier": "gold"}}
    first["context"]["app"]["flags"].append("mutated by the caller")
    first["properties"]["tags"]["tier"] = "mutated by the caller"
    second = client.track("u1", "E")[1]
    assert second["context"]["app"] == {"name": "shop", "flags": ["a"]}
    assert second["properties"] == {"tags": {"tier": "gold"}}


def test_the_callers_context_is_not_modified(make_client):
    client = make_client(stub=True, context=APP)
    mine = {"app": {"build": "1"}}
    client.track("u1", "E", context=mine)
    assert mine == {"app": {"build": "1"}}


@pytest.mark.parametrize("name", ["context", "properties"])
@pytest.mark.parametrize("value", [["app"], "shop", 5])
def test_a_default_that_is_no_mapping_is_refused(name, value):
    with pytest.raises(analytics.ValidationError, match=name):
        analytics.Client(WRITE_KEY, stub=True, **{name: value})


def test_a_client_without_defaults_or_hooks_has_nothing_on_its_call_path():
    client = analytics.Client(WRITE_KEY, stub=True, context={}, properties=None)
    assert client._shape is None  # the precomputed check the hot path reads
    assert client.track("u1", "E")[1]["properties"] == {}


def test_the_module_takes_context_and_properties_and_a_change_applies(facade, collector):
    facade.context = {"environment": "production"}
    facade.properties = {"region": "eu"}
    facade.track("u1", "First")
    facade.context = {"environment": "staging"}
    facade.track("u1", "Second")
    assert facade.flush(timeout=5)
    first, second = collector.messages()
    assert first["context"]["environment"] == "production"
    assert second["context"]["environment"] == "staging"
    assert first["properties"] == second["properties"] == {"region": "eu"}


def test_framework_settings_take_context_and_properties():
    given, _ = _common.parse_options(
        {"CONTEXT": APP, "PROPERTIES": {"region": "eu"}}, lambda k: f"ANALYTICS_{k}"
    )
    assert given["context"] == APP and given["properties"] == {"region": "eu"}
    with pytest.raises(analytics.ValidationError, match="ANALYTICS_CONTEXT"):
        _common.parse_options({"CONTEXT": "shop"}, lambda k: f"ANALYTICS_{k}")


def test_flask_config_context_reaches_the_requests_events(collector):
    flask = pytest.importorskip("flask")
    from analytics.integrations.flask import Analytics

    app = flask.Flask("defaults")
    app.config.update(
        ANALYTICS_WRITE_KEY=WRITE_KEY, ANALYTICS_HOST=collector.url, ANALYTICS_TIMEOUT=5,
        ANALYTICS_FLUSH_INTERVAL=0.05, ANALYTICS_CONTEXT=APP,
    )  # fmt: skip
    ext = Analytics()
    ext.init_app(app)

    @app.get("/buy")
    def buy() -> Any:
        return {"ok": ext.track("u1", "Bought")[0]}

    try:
        assert app.test_client().get("/buy").json == {"ok": True}
        with app.app_context():
            assert ext.flush(timeout=5)
        [msg] = collector.messages()
        assert msg["context"]["app"] == APP["app"]
        assert msg["context"]["ip"] == "127.0.0.1"  # the request's context is merged over it
    finally:
        Analytics.state(app).client.shutdown(timeout=2)
