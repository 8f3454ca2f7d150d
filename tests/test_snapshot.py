"""What a call sends is what it was given at the call: the queue holds copies, and the
parts every message has in common are shared and read-only."""

from __future__ import annotations

import copy
import pickle
import random
import uuid

import pytest

import analytics
from analytics.errors import MessageTooLarge


def test_changing_the_callers_dicts_after_the_call_changes_nothing_sent(make_client, collector):
    client = make_client(flush_interval=30)
    props = {"plan": "pro", "cart": {"items": ["a"]}, "tags": ["x"], "pair": (1, [2])}
    context = {"page": {"path": "/a"}}
    integrations = {"Amplitude": {"session": 1}}
    assert client.track("u", "Bought", props, context=context, integrations=integrations)[0]
    props["plan"] = "free"
    props["cart"]["items"].append("b")
    props["tags"].clear()
    props["pair"][1].append(3)
    context["page"]["path"] = "/b"
    integrations["Amplitude"]["session"] = 2
    assert client.flush(timeout=5) is True
    [sent] = collector.wait_for_messages(1, timeout=2)
    assert sent["properties"] == {
        "plan": "pro", "cart": {"items": ["a"]}, "tags": ["x"], "pair": [1, [2]]
    }  # fmt: skip
    assert sent["context"]["page"] == {"path": "/a"}
    assert sent["integrations"] == {"Amplitude": {"session": 1}}


def test_a_dict_reused_for_many_calls_sends_each_calls_values(make_client, collector):
    client = make_client(flush_interval=30)
    props: dict[str, object] = {}
    for i in range(5):
        props["i"] = i
        client.track("u", "Step", props)
    assert client.flush(timeout=5) is True
    sent = collector.wait_for_messages(5, timeout=2)
    assert [m["properties"]["i"] for m in sent] == [0, 1, 2, 3, 4]


def test_traits_are_copied_too(make_client, collector):
    client = make_client(flush_interval=30)
    traits = {"address": {"city": "Oslo"}}
    client.identify("u", traits)
    traits["address"]["city"] = "Bergen"
    assert client.flush(timeout=5) is True
    [sent] = collector.wait_for_messages(1, timeout=2)
    assert sent["traits"] == {"address": {"city": "Oslo"}}


def test_defaults_are_shared_and_refuse_changes():
    client = analytics.Client(stub=True)
    _, one = client.track("u", "A")
    _, two = client.track("u", "B")
    assert one["context"] is two["context"]
    assert one["integrations"] is two["integrations"]
    assert one["properties"] is two["properties"]
    for shared in (one["context"], one["context"]["library"], one["integrations"]):
        assert isinstance(shared, dict)
        with pytest.raises(TypeError, match="shared"):
            shared["x"] = 1
        with pytest.raises(TypeError):
            shared.update(x=1)
        with pytest.raises(TypeError):
            shared.setdefault("x", 1)
        with pytest.raises(TypeError):
            shared.pop("library", None)
        with pytest.raises(TypeError):
            shared.clear()
    assert one["integrations"] == {} and one["properties"] == {}
    assert one["context"] == {"library": {"name": analytics.LIBRARY_NAME,
                                          "version": analytics.VERSION}}  # fmt: skip


def test_copies_of_a_message_are_plain_changeable_dicts():
    client = analytics.Client(stub=True)
    _, msg = client.track("u", "A")
    for made in (copy.deepcopy(msg), pickle.loads(pickle.dumps(msg))):
        assert made == msg
        assert type(made["context"]) is dict and type(made["context"]["library"]) is dict
        made["context"]["ip"] = "1.2.3.4"
        made["integrations"]["All"] = False
    for made_ctx in (copy.copy(msg["context"]), msg["context"].copy(), dict(msg["context"])):
        assert type(made_ctx) is dict
        made_ctx["ip"] = "1.2.3.4"
    _, later = client.track("u", "B")
    assert later["context"] == {"library": msg["context"]["library"]}
    assert later["integrations"] == {}


def test_a_given_context_is_a_copy_with_the_library_added():
    client = analytics.Client(stub=True)
    given = {"ip": "1.2.3.4", "library": {"name": "not-ours"}}
    _, msg = client.track("u", "A", context=given)
    assert given == {"ip": "1.2.3.4", "library": {"name": "not-ours"}}
    assert msg["context"]["ip"] == "1.2.3.4"
    assert msg["context"]["library"]["name"] == analytics.LIBRARY_NAME
    msg["context"]["extra"] = 1  # the message's own copy: changeable
    assert "extra" not in given


def test_message_grown_past_32kb_after_the_call_is_reported_not_sent(
    make_client, collector, errors
):
    collector.hang(count=1)  # the first batch stays in flight; the next waits in the queue
    client = make_client(batch_size=1, flush_interval=0.01, timeout=10)
    client.track("u", "first")
    collector.wait_for_requests(1, timeout=5)
    ok, msg = client.track("u", "grows", {"blob": ""})
    assert ok is True
    msg["properties"]["blob"] = "x" * 40_000  # changed by the caller while queued
    client.track("u", "after")
    collector.heal()
    assert client.flush(timeout=10) is True
    assert errors.wait_for(1, timeout=5)
    [(error, batch)] = errors.calls
    assert isinstance(error, MessageTooLarge)
    assert [m["messageId"] for m in batch] == [msg["messageId"]]
    stats = client.stats()
    assert stats["dropped_by_reason"]["too_large"] == 1
    names = [m["event"] for m in collector.messages()]
    assert "grows" not in names and "after" in names


def test_message_ids_do_not_follow_the_callers_random_seed():
    client = analytics.Client(stub=True)
    random.seed(42)
    first = [client.track("u", "A")[1]["messageId"] for _ in range(3)]
    random.seed(42)
    second = [client.track("u", "A")[1]["messageId"] for _ in range(3)]
    assert not set(first) & set(second)
    for mid in first + second:
        parsed = uuid.UUID(mid)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == mid
