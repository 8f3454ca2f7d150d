"""RudderStack's spelling and wire flavour, against the loopback collector: `dataPlaneUrl` on
the module and on `Client`, the fields its SDK and event spec put on each message, Segment's
format left as it was; the host normalisation; module flush() building the default client."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from collector import Collector
from helpers import WRITE_KEY, call_within

import analytics

FLAVOUR = ("channel", "originalTimestamp")


def _auth() -> str:
    return "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()


# -- Client(dataPlaneUrl=...) ----------------------------------------------------------------


def test_client_data_plane_url_sends_rudderstacks_flavour_to_the_data_plane(
    make_client, collector
):
    client = make_client(host=None, dataPlaneUrl=collector.url)
    assert client.protocol.name == "rudderstack" and client.settings.protocol == "rudderstack"
    assert client.url == collector.url + "/v1/batch" and client.host == collector.url
    when = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    client.identify("u1", {"email": "a@example.com"}, timestamp=when)
    client.track("u1", "Signed Up", {"plan": "pro"}, integrations={"Amplitude": False})
    assert client.flush(timeout=5) is True
    [request] = collector.snapshot()
    assert request.path == "/v1/batch"
    assert request.headers["Authorization"] == _auth()
    assert isinstance(request.json["sentAt"], str)
    identify, track = request.messages
    assert identify["context"]["traits"] == {"email": "a@example.com"}
    assert identify["traits"] == {"email": "a@example.com"}  # also at the top, as Segment's
    assert identify["channel"] == track["channel"] == "server"
    assert identify["originalTimestamp"] == identify["timestamp"] == "2024-05-01T12:00:00+00:00"
    assert identify["integrations"] == {"All": True}  # none given: every destination
    assert track["integrations"] == {"Amplitude": False}  # given: as given
    assert "traits" not in track["context"]
    assert track["context"]["library"]["name"] == analytics.LIBRARY_NAME


def test_the_returned_and_stubbed_message_is_the_one_sent_and_callers_dicts_unchanged(
    make_client,
):
    client = make_client(host=None, dataPlaneUrl="https://example.dataplane.invalid", stub=True)
    context = {"ip": "10.0.0.1", "traits": {"plan": "free", "name": "A"}}
    traits = {"name": "B"}
    ok, msg = client.identify("u", traits, context=context)
    assert ok and client.sent == [msg]
    assert msg["channel"] == "server"
    # the caller's own context.traits kept beneath, the call's traits over them
    assert msg["context"]["traits"] == {"plan": "free", "name": "B"}
    assert context == {"ip": "10.0.0.1", "traits": {"plan": "free", "name": "A"}}
    assert traits == {"name": "B"}


def test_an_odd_context_traits_value_never_makes_identify_raise(make_client):
    client = make_client(host=None, dataPlaneUrl="https://example.dataplane.invalid", stub=True)
    ok, msg = client.identify("u", {"a": 1}, context={"traits": "not a dict"})
    assert ok and msg["context"]["traits"] == {"a": 1}


def test_segments_wire_format_is_unchanged(make_client, collector):
    client = make_client()
    assert client.protocol.name == "segment"
    client.identify("u1", {"email": "a@example.com"})
    assert client.flush(timeout=5) is True
    [msg] = collector.messages()
    assert not set(FLAVOUR) & set(msg)
    assert "traits" not in msg["context"] and msg["integrations"] == {}
    assert msg["traits"] == {"email": "a@example.com"}


def test_host_and_data_plane_url_must_agree(make_client, collector):
    client = make_client(host=collector.url, dataPlaneUrl=collector.url)
    assert client.protocol.name == "rudderstack"
    with pytest.raises(analytics.ValidationError, match="disagree"):
        analytics.Client(WRITE_KEY, host=collector.url, dataPlaneUrl="https://other.invalid")


def test_data_plane_url_with_another_protocol_is_refused():
    with pytest.raises(analytics.ValidationError, match="give host instead"):
        analytics.Client(WRITE_KEY, protocol="atrack", dataPlaneUrl="https://x.invalid")


def test_rudderstack_protocol_has_no_default_host(make_client, collector):
    with pytest.raises(analytics.ValidationError, match="host is required"):
        analytics.Client(WRITE_KEY, protocol="rudderstack")
    with pytest.raises(analytics.ValidationError, match="dataPlaneUrl must be an http"):
        analytics.Client(WRITE_KEY, dataPlaneUrl="dataplane.example.com")
    client = make_client(protocol="rudderstack")  # with host: the flavour, at that host
    client.track("u", "E")
    assert client.flush(timeout=5) is True
    assert collector.messages()[0]["channel"] == "server"


@pytest.mark.parametrize("tail", ["/v1", "/v1/", "/v1/batch", "/"])
def test_a_data_plane_url_or_host_with_the_path_posts_to_v1_batch(make_client, collector, tail):
    for client in (
        make_client(host=collector.url + tail),
        make_client(host=None, dataPlaneUrl=collector.url + tail),
    ):
        assert client.url == collector.url + "/v1/batch"
        client.track("u", "E")
        assert client.flush(timeout=5) is True
    assert [r.path for r in collector.snapshot()] == ["/v1/batch", "/v1/batch"]


# -- analytics.dataPlaneUrl ------------------------------------------------------------------


def test_module_data_plane_url_sends_rudderstacks_flavour_there(facade, collector):
    other = Collector()
    try:
        analytics.dataPlaneUrl = other.url
        assert (analytics.host, analytics.protocol) == (other.url, "rudderstack")
        analytics.identify("u1", {"email": "a@example.com"})
        assert analytics.flush(timeout=5) is True
        assert collector.requests == []
        [request] = other.snapshot()
        assert request.path == "/v1/batch" and request.headers["Authorization"] == _auth()
        [msg] = request.messages
        assert msg["context"]["traits"] == {"email": "a@example.com"}
        assert msg["channel"] == "server"
        assert analytics.default_client is not None
        assert analytics.default_client.protocol.name == "rudderstack"
    finally:
        analytics.shutdown(timeout=2)
        other.stop()


def test_module_data_plane_url_none_or_empty_leaves_host_as_it_is(facade, collector):
    # RudderStack's module: an unset or empty dataPlaneUrl means host applies
    for value in (None, ""):
        analytics.dataPlaneUrl = value
        assert (analytics.host, analytics.protocol) == (collector.url, "segment")
    analytics.track("u", "E")
    assert analytics.flush(timeout=5) is True
    assert "channel" not in collector.messages()[0]


def test_module_host_mirrors_to_data_plane_url_without_changing_protocol(facade, collector):
    analytics.host = collector.url + "/v1"
    assert analytics.dataPlaneUrl == collector.url + "/v1" and analytics.protocol == "segment"
    analytics.track("u", "E")
    assert analytics.flush(timeout=5) is True
    assert [r.path for r in collector.snapshot()] == ["/v1/batch"]


# -- module flush / join / shutdown with no default client yet --------------------------------


def test_module_flush_with_no_client_builds_the_default_client(facade, collector):
    analytics.default_client = None
    analytics.gzip = True
    assert call_within(10, analytics.flush, timeout=5) is True
    client = analytics.default_client
    assert isinstance(client, analytics.Client)
    assert client.write_key == WRITE_KEY and client.gzip is True
    analytics.track("u", "E")
    assert analytics.flush(timeout=5) is True
    assert analytics.default_client is client  # built once
    assert collector.requests[0].headers["Content-Encoding"] == "gzip"


@pytest.mark.parametrize("call", ["join", "shutdown"])
def test_module_join_and_shutdown_with_no_client_build_it_and_shut_it(facade, call):
    analytics.default_client = None
    call_within(10, getattr(analytics, call))
    client = analytics.default_client
    assert isinstance(client, analytics.Client) and client.write_key == WRITE_KEY
    ok, _ = client.track("u", "after")
    assert ok is False  # shut down, as the call says


def test_module_flush_with_settings_that_cannot_build_a_client_does_not_raise(facade):
    analytics.default_client = None
    analytics.write_key = None
    assert call_within(10, analytics.flush, timeout=2) is True
    assert analytics.default_client is None
    analytics.write_key = WRITE_KEY
    analytics.on_error = "not callable"
    assert call_within(10, analytics.shutdown, timeout=2) is True  # raised at the next call
    with pytest.raises(analytics.ValidationError, match="on_error must be callable"):
        analytics.track("u", "E")


def test_framework_settings_data_plane_url_chooses_rudderstack_too():
    from analytics.integrations._common import parse_options

    given = {"WRITE_KEY": WRITE_KEY, "DATAPLANEURL": "https://dp.example.invalid"}
    client, _ = parse_options(given, lambda key: f"ANALYTICS_{key}")
    assert client["host"] == "https://dp.example.invalid"
    assert client["protocol"] == "rudderstack"
    with pytest.raises(analytics.ValidationError, match="ANALYTICS_DATAPLANEURL means"):
        parse_options({**given, "PROTOCOL": "atrack"}, lambda key: f"ANALYTICS_{key}")
