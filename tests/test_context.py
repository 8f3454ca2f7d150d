"""context_from_request, request scopes on threads and asyncio tasks, and flush_after."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import analytics
from analytics.context import context_from_request, current_scope, scope
from analytics.serverless import flush_after

SHOP = (
    "https://shop.example/sale/shoes?utm_source=newsletter&utm_medium=email"
    "&utm_campaign=spring&utm_term=red+shoes&utm_content=hero&color=red"
)


def test_every_field_from_its_argument():
    ctx = context_from_request(
        url=SHOP,
        referrer="https://mail.example/inbox",
        ip="203.0.113.9",
        user_agent="Mozilla/5.0 (X11)",
        locale="fr-CH, fr;q=0.9, en;q=0.8",
        timezone="Europe/Zurich",
    )
    assert ctx == {
        "ip": "203.0.113.9",
        "userAgent": "Mozilla/5.0 (X11)",
        "locale": "fr-CH",
        "timezone": "Europe/Zurich",
        "page": {
            "url": SHOP,
            "path": "/sale/shoes",
            "search": SHOP[SHOP.index("?") :],
            "referrer": "https://mail.example/inbox",
        },
        "campaign": {
            "source": "newsletter",
            "medium": "email",
            "name": "spring",
            "term": "red shoes",
            "content": "hero",
        },
    }


def test_only_keys_that_have_values():
    assert context_from_request() == {}
    assert context_from_request(url="", ip="", user_agent=" ", headers={}) == {}
    assert context_from_request(url="https://shop.example/cart") == {
        "page": {"url": "https://shop.example/cart", "path": "/cart"}
    }
    assert context_from_request(url="https://shop.example")["page"]["path"] == "/"
    no_utm = context_from_request(url="/search?q=shoes&utm_source=")
    assert no_utm == {"page": {"url": "/search?q=shoes&utm_source=", "path": "/search",
                               "search": "?q=shoes&utm_source="}}  # fmt: skip


def test_headers_fill_what_is_not_given_case_insensitively():
    headers = {
        "USER-AGENT": "curl/8",
        "referer": "https://a.example/",
        "Accept-Language": "de;q=0.5, *, en-GB;q=0.9",
        "X-Forwarded-For": "198.51.100.1",  # never read: the caller decides which ip to trust
    }
    ctx = context_from_request(headers=headers)
    assert ctx == {
        "userAgent": "curl/8",
        "locale": "en-GB",
        "page": {"referrer": "https://a.example/"},
    }
    explicit = context_from_request(user_agent="app/1", locale="nl", headers=headers)
    assert (explicit["userAgent"], explicit["locale"]) == ("app/1", "nl")


def test_a_url_that_cannot_be_split_is_kept_as_it_is():
    assert context_from_request(url="http://[::1/x?utm_source=a") == {
        "page": {"url": "http://[::1/x?utm_source=a"}
    }


def test_campaign_first_value_wins_and_other_utm_keys_kept():
    ctx = context_from_request(url="/?utm_campaign=a&utm_campaign=b&utm_id=7&utm_=x")
    assert ctx["campaign"] == {"name": "a", "id": "7"}


@pytest.mark.parametrize("name", ["url", "referrer", "ip", "user_agent", "locale", "timezone"])
def test_a_value_that_is_not_text_is_refused_by_name(name):
    with pytest.raises(analytics.ValidationError, match=name):
        context_from_request(**{name: 42})


def test_request_context_arrives_on_the_wire(make_client, collector):
    client = make_client()
    ctx = context_from_request(url=SHOP, ip="203.0.113.9", user_agent="UA/1")
    with scope(user_id=7, context=ctx):
        client.track(event="Viewed", context={"page": {"title": "Sale"}})
    assert client.flush(timeout=5)
    [msg] = collector.messages()
    assert msg["userId"] == "7"
    assert msg["context"]["ip"] == "203.0.113.9"
    assert msg["context"]["userAgent"] == "UA/1"
    assert msg["context"]["page"] == {**ctx["page"], "title": "Sale"}  # deep-merged under
    assert msg["context"]["campaign"]["name"] == "spring"
    assert msg["context"]["library"]["name"] == analytics.LIBRARY_NAME


def test_scopes_of_two_threads_do_not_mix(make_client, collector):
    client = make_client()
    both_inside = threading.Barrier(2, timeout=5)
    failures: list[BaseException] = []

    def request(n: int) -> None:
        try:
            with scope(user_id=f"user-{n}", context=context_from_request(ip=f"10.0.0.{n}")):
                both_inside.wait()
                client.track(event="Threaded", properties={"n": n})
            assert current_scope() is None
        except BaseException as exc:  # reported on the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=request, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not failures and not any(t.is_alive() for t in threads)
    assert client.flush(timeout=5)
    seen = {(m["userId"], m["context"]["ip"], m["properties"]["n"]) for m in collector.messages()}
    assert seen == {("user-1", "10.0.0.1", 1), ("user-2", "10.0.0.2", 2)}


def test_scopes_of_two_asyncio_tasks_do_not_mix(make_client, collector):
    client = make_client()

    async def main() -> None:
        arrived: list[int] = []
        everyone_in = asyncio.Event()

        async def request(n: int) -> None:
            with scope(user_id=f"user-{n}", context=context_from_request(ip=f"10.0.0.{n}")):
                arrived.append(n)
                if len(arrived) == 2:
                    everyone_in.set()
                await asyncio.wait_for(everyone_in.wait(), 5)
                client.track(event="Task", properties={"n": n})

        await asyncio.gather(request(1), request(2))
        assert current_scope() is None

    asyncio.run(main())
    assert client.flush(timeout=5)
    seen = {(m["userId"], m["context"]["ip"], m["properties"]["n"]) for m in collector.messages()}
    assert seen == {("user-1", "10.0.0.1", 1), ("user-2", "10.0.0.2", 2)}


# -- flush_after ----------------------------------------------------------------------------


def test_flush_after_sends_before_a_sync_handler_returns(make_client, collector):
    client = make_client(flush_interval=30)  # only a flush sends before 30 s

    @flush_after(client=client, timeout=5)
    def handler(event: dict, context: object) -> dict:
        """A Lambda handler."""
        client.track("u", "Invoked", {"id": event["id"]})
        return {"statusCode": 200}

    assert handler({"id": 1}, None) == {"statusCode": 200}
    assert [m["properties"] for m in collector.messages()] == [{"id": 1}]
    assert handler.__name__ == "handler" and handler.__doc__ == "A Lambda handler."


def test_flush_after_flushes_when_the_handler_raises(make_client, collector):
    client = make_client(flush_interval=30)

    @flush_after(client=client)
    def handler() -> None:
        client.track("u", "Failed")
        raise KeyError("boom")

    with pytest.raises(KeyError):
        handler()
    assert [m["event"] for m in collector.messages()] == ["Failed"]


def test_flush_after_on_an_async_handler(make_client, collector):
    client = make_client(flush_interval=30)

    @flush_after(client=client, timeout=5)
    async def handler(n: int) -> int:
        await asyncio.sleep(0)
        client.track("u", "Async", {"n": n})
        return n * 2

    assert asyncio.iscoroutinefunction(handler)
    assert asyncio.run(handler(21)) == 42
    assert [m["properties"] for m in collector.messages()] == [{"n": 21}]


def test_bare_flush_after_flushes_the_facade(facade, collector):
    analytics.flush_interval = 30

    @flush_after
    def handler() -> str:
        analytics.track("u", "Facade")
        return "done"

    assert handler() == "done"
    assert [m["event"] for m in collector.messages()] == ["Facade"]


def test_flush_after_is_bounded_by_its_timeout(make_client, collector):
    client = make_client(flush_interval=30, max_retries=0, timeout=5)
    collector.hang()  # the request is accepted and never answered until released

    @flush_after(client=client, timeout=0.2)
    def handler() -> str:
        client.track("u", "Stuck")
        return "returned"

    started = time.monotonic()
    assert handler() == "returned"  # the flush gave up after 0.2 s, quietly
    assert time.monotonic() - started < 2
    collector.release()
