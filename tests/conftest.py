"""Shared fixtures: a real loopback collector, a client factory that always shuts its
clients down, an on_error recorder, and a facade fixture that restores module state."""

from __future__ import annotations

from typing import Any

import pytest
from collector import Collector
from helpers import WRITE_KEY, ErrorLog, call_within

import analytics
import analytics.options

# Module-level settings of the facade (and Segment's alias names), saved and restored
# around every facade test: the table's, so that a new option is restored too.
SETTINGS = [option.name for option in analytics.options.FACADE_OPTIONS]
ALIASES = list(analytics.options.ALIASES)


# Backoff waits that are tiny (Retry-After waits are not scaled), injected into every
# client the fixtures build.
FAST_BACKOFF = analytics.Backoff(factor=0.001)


@pytest.fixture(autouse=True)
def no_env_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loopback collector must be reached directly, whatever the environment says."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.stop()


@pytest.fixture
def down_collector():
    """A collector whose port refuses connections until `.start()` is called."""
    c = Collector.reserved()
    yield c
    c.stop()


@pytest.fixture
def errors() -> ErrorLog:
    return ErrorLog()


@pytest.fixture
def make_client(collector: Collector, errors: ErrorLog):
    """Factory for clients aimed at the collector; every client is shut down afterwards."""
    clients: list[Any] = []

    def factory(write_key: Any = WRITE_KEY, **kw: Any) -> Any:
        kw.setdefault("host", collector.url)
        kw.setdefault("on_error", errors)
        if "upload_interval" not in kw:
            kw.setdefault("flush_interval", 0.1)
        kw.setdefault("timeout", 5)
        kw.setdefault("backoff", FAST_BACKOFF)
        client = analytics.Client(write_key, **kw)
        clients.append(client)
        return client

    yield factory
    collector.heal()
    for client in clients:
        call_within(10, client.shutdown, timeout=2)


def _snapshot() -> dict[str, tuple[str, Any]]:
    snap: dict[str, tuple[str, Any]] = {}
    for name in SETTINGS + ALIASES:
        if isinstance(getattr(type(analytics), name, None), property):
            snap[name] = ("prop", getattr(analytics, name))
        elif name in vars(analytics):
            snap[name] = ("attr", vars(analytics)[name])
        else:
            snap[name] = ("missing", None)
    return snap


def _restore(snap: dict[str, tuple[str, Any]]) -> None:
    # aliases first, so that the primary names win if aliases write through
    for name in ALIASES + SETTINGS:
        kind, value = snap[name]
        if kind == "missing":
            vars(analytics).pop(name, None)
        else:
            setattr(analytics, name, value)


@pytest.fixture
def facade(collector: Collector, errors: ErrorLog):
    """The module facade aimed at the collector; module state restored afterwards."""
    snap = _snapshot()
    analytics.write_key = WRITE_KEY
    analytics.host = collector.url
    analytics.on_error = errors
    analytics.flush_interval = 0.1
    analytics.timeout = 5
    analytics.backoff = FAST_BACKOFF
    yield analytics
    collector.heal()
    analytics.shutdown(timeout=2)
    _restore(snap)
    analytics.default_client = None
