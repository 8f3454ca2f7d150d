"""Request context: `context_from_request` builds a Segment context from a web request;
`scope` sets per-request (per-task) defaults for calls: ids, context and integrations.

Kept in a `contextvars.ContextVar`, so it follows threads' and asyncio tasks' own context.
Explicit arguments of a call always win; the scope's context is deep-merged under the call's.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .errors import ValidationError
from .ids import id_or_none


@dataclass(frozen=True)
class Scope:
    user_id: str | None = None
    anonymous_id: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    integrations: Mapping[str, Any] = field(default_factory=dict)


_current: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "analytics_scope", default=None
)


def current_scope() -> Scope | None:
    """The innermost open scope of this thread or task, or None."""
    return _current.get()


def deep_merge(under: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: `over` wins; nested mappings present in both are merged the same way."""
    merged = dict(under)
    for key, value in over.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = deep_merge(below, value)
        else:
            merged[key] = value
    return merged


def _mapping(name: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(f"scope {name} must be a mapping, not {type(value).__name__}")
    return value


@contextmanager
def scope(
    user_id: Any = None,
    anonymous_id: Any = None,
    context: Mapping[str, Any] | None = None,
    integrations: Mapping[str, Any] | None = None,
) -> Iterator[Scope]:
    """Open a scope: calls inside it that lack an id get the scope's; nested scopes merge."""
    parent = _current.get() or Scope()
    uid = id_or_none("user_id", user_id)
    aid = id_or_none("anonymous_id", anonymous_id)
    new = Scope(
        user_id=uid if uid is not None else parent.user_id,
        anonymous_id=aid if aid is not None else parent.anonymous_id,
        context=deep_merge(parent.context, _mapping("context", context)),
        integrations={**parent.integrations, **_mapping("integrations", integrations)},
    )
    token = _current.set(new)
    try:
        yield new
    finally:
        _current.reset(token)


# -- the request's part of a context ---------------------------------------------------------

_UTM = "utm_"


def _text(name: str, value: Any) -> str | None:
    """A stripped str, or None when missing; refuses other types."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a str, not {type(value).__name__}")
    return value.strip() or None


def _first_language(accept_language: str) -> str | None:
    """The preferred tag of an Accept-Language value ("en-US,en;q=0.8" -> "en-US")."""
    best: str | None = None
    best_q = 0.0
    for part in accept_language.split(","):
        tag, _, params = part.partition(";")
        tag = tag.strip()
        if not tag or tag == "*":
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > best_q:
            best, best_q = tag, q
    return best


def _campaign(query: str) -> dict[str, str]:
    """Segment's `context.campaign` from `utm_*` parameters (utm_campaign -> name)."""
    campaign: dict[str, str] = {}
    for key, value in parse_qsl(query):
        if key.startswith(_UTM) and len(key) > len(_UTM) and value:
            name = key[len(_UTM) :]
            campaign.setdefault("name" if name == "campaign" else name, value)
    return campaign


def context_from_request(
    url: str | None = None,
    referrer: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    locale: str | None = None,
    timezone: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Segment `context` for one HTTP request: ip, userAgent, locale, timezone, page, campaign.

    `headers` (any mapping, matched case-insensitively) fills what is not given: User-Agent,
    Referer and Accept-Language (reduced to its preferred tag). The ip is never read from
    headers: pass the one you trust. Only keys that have a value are set.
    """
    given = {k.lower(): v for k, v in headers.items()} if headers is not None else {}
    url = _text("url", url)
    referrer = _text("referrer", referrer if referrer is not None else given.get("referer"))
    agent = _text("user_agent", user_agent if user_agent is not None else given.get("user-agent"))
    language = _text("locale", locale if locale is not None else given.get("accept-language"))
    context: dict[str, Any] = {}
    if (address := _text("ip", ip)) is not None:
        context["ip"] = address
    if agent is not None:
        context["userAgent"] = agent
    if language is not None and (tag := _first_language(language)) is not None:
        context["locale"] = tag
    if (zone := _text("timezone", timezone)) is not None:
        context["timezone"] = zone
    page: dict[str, str] = {}
    if url is not None:
        page["url"] = url
        try:
            parts = urlsplit(url)
        except ValueError:  # e.g. a broken IPv6 host: keep the url, derive nothing
            parts = None
        if parts is not None:
            path = parts.path or ("/" if parts.netloc else "")
            if path:
                page["path"] = path
            if parts.query:
                page["search"] = "?" + parts.query
                if campaign := _campaign(parts.query):
                    context["campaign"] = campaign
    if referrer is not None:
        page["referrer"] = referrer
    if page:
        context["page"] = page
    return context
