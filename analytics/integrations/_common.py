"""What the web integrations share: their settings, checked by name, the client's address and
the rule that gives every request an id. Framework-free; each integration passes its request here.
"""

from __future__ import annotations

import importlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import unquote

from ..context import context_from_request
from ..errors import OptionError as OptionError  # re-exported: the integrations raise it
from ..ids import id_or_none
from ..log import logger
from ..options import FACADE_OPTIONS, Check, boolean, checked, integer, resolve

AnonymousIdGetter = Callable[[Any], Any]  # the request -> an id (str, int, UUID) or None


@dataclass(frozen=True)
class RequestOptions:
    """The integrations' own settings: how a request becomes a scope."""

    user_id_from_request: bool = True
    trusted_proxy_count: int = 0
    send_ip: bool = True
    anonymous_id_getter: AnonymousIdGetter | None = None


def _imported(label: str, value: Any) -> Any:
    """A dotted path ("myapp.analytics.report") becomes what it names; the option's own
    check then takes it (a callable or None)."""
    if isinstance(value, str):
        module, _, name = value.rpartition(".")
        try:
            value = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise OptionError(label, f"{label}: cannot import {value!r} ({exc})") from None
    return value


# Setting key -> name of the option (or Segment's alias): every option the facade takes,
# from the table, so that none can be missing here.
CLIENT_OPTIONS: dict[str, str] = {
    name.upper(): name
    for option in FACADE_OPTIONS
    for name in (option.name, option.alias)
    if name is not None
}


def getter(label: str, value: Any) -> Any:
    """None, a callable, or the dotted path of one ("myapp.analytics.visitor_id")."""
    value = _imported(label, value)
    if value is not None and not callable(value):
        raise OptionError(label, f"{label} must be a callable or None, not {value!r}")
    return value


REQUEST_OPTIONS: dict[str, tuple[str, Check]] = {
    "USER_ID_FROM_REQUEST": ("user_id_from_request", boolean),
    "TRUSTED_PROXY_COUNT": ("trusted_proxy_count", integer(0)),
    "SEND_IP": ("send_ip", boolean),
    "ANONYMOUS_ID_FROM_REQUEST": ("anonymous_id_getter", getter),
}


def request_options(options: Mapping[str, Any], label: Callable[[str], str]) -> RequestOptions:
    """RequestOptions from upper-case request settings only; raises OptionError naming a wrong
    or unknown one."""
    values: dict[str, Any] = {}
    for key, value in options.items():
        if key not in REQUEST_OPTIONS:
            where, known = label(str(key)), ", ".join(REQUEST_OPTIONS)
            raise OptionError(where, f"unknown setting {where} (known: {known})")
        name, check = REQUEST_OPTIONS[key]
        values[name] = check(label(key), value)
    return RequestOptions(**values)


def parse_options(
    options: Mapping[str, Any], label: Callable[[str], str], *, require_write_key: bool = False
) -> tuple[dict[str, Any], RequestOptions]:
    """Check upper-case settings; return the options given (by the contract's names,
    Segment's aliases resolved) and the request options. `label(key)` names a setting in
    errors, as the user wrote it. Raises OptionError."""
    given: dict[str, Any] = {}
    request: dict[str, Any] = {}
    for key, value in options.items():
        if not isinstance(key, str) or (key not in CLIENT_OPTIONS and key not in REQUEST_OPTIONS):
            known = ", ".join([*CLIENT_OPTIONS, *REQUEST_OPTIONS])
            where = label(str(key))
            raise OptionError(where, f"unknown setting {where} (known: {known})")
        if key in REQUEST_OPTIONS:
            request[key] = value
            continue
        name = CLIENT_OPTIONS[key]
        if name == "on_error":
            value = _imported(label(key), value)
        elif name == "before_send" and value is not None:  # dotted paths too
            hooks = value if isinstance(value, (list, tuple)) else [value]
            value = [_imported(label(key), hook) for hook in hooks]
        given[name] = value

    def by_name(name: str) -> str:
        return label(name.upper())

    client = checked(given, by_name)
    resolve(client, by_name, require_write_key=require_write_key)  # the rules across options
    return client, request_options(request, label)


def client_ip(
    remote_addr: str | None, forwarded_for: str | None, trusted_proxies: int
) -> str | None:
    """The client's address. `REMOTE_ADDR` unless `trusted_proxies` > 0: then the address
    that many entries from the right of X-Forwarded-For (entries further left are forgeable)."""
    if trusted_proxies > 0 and forwarded_for:
        hops = [hop.strip() for hop in forwarded_for.split(",")]
        if len(hops) >= trusted_proxies and hops[-trusted_proxies]:
            return hops[-trusted_proxies]
    return remote_addr or None


def request_context(
    options: RequestOptions,
    *,
    url: str | None,
    referrer: str | None,
    user_agent: str | None,
    accept_language: str | None,
    remote_addr: str | None,
    forwarded_for: str | None,
) -> dict[str, Any]:
    """The scope context for one request, following the request options."""
    ip = client_ip(remote_addr, forwarded_for, options.trusted_proxy_count)
    return context_from_request(
        url=url,
        referrer=referrer,
        ip=ip if options.send_ip else None,
        user_agent=user_agent,
        locale=accept_language,
    )


# -- the ids of a request ----------------------------------------------------------------------

AJS_COOKIE = "ajs_anonymous_id"
_COOKIE_SEPARATORS = re.compile("[;,]")
_MAX_ID = 512  # a cookie is the visitor's to write: a longer value is not an id of ours
_warned: set[tuple[str, type[BaseException]]] = set()


def warn_once(what: str, exc: BaseException) -> None:
    """WARNING, with the traceback, the first time `what` fails with this exception type;
    DEBUG after that (a getter that always fails must not flood the logs)."""
    key = (what, type(exc))
    if key in _warned:
        logger.debug("analytics: %s failed again", what, exc_info=exc)
        return
    _warned.add(key)
    logger.warning(
        "analytics: %s failed (%s); the request goes on with an anonymous id",
        what,
        type(exc).__name__,
        exc_info=exc,
    )


def guarded_id(what: str, get: Callable[[], Any]) -> str | None:
    """`get()` as an id, or None: whatever it raises or a wrong type is logged, never raised."""
    try:
        return id_or_none(what, get())
    except Exception as exc:
        warn_once(what, exc)
        return None


def cookie_anonymous_id(cookie_header: str | None) -> str | None:
    """The anonymous id analytics.js keeps in its `ajs_anonymous_id` cookie: JSON-quoted, then
    URL-encoded (`%22abc-123%22`); an unquoted value is taken as is. None when absent or bad."""
    if not cookie_header:
        return None
    # "," too: no cookie value holds one (RFC 6265), and servers join split headers with it
    for part in _COOKIE_SEPARATORS.split(cookie_header):
        name, sep, raw = part.partition("=")
        if not sep or name.strip() != AJS_COOKIE:
            continue
        value = unquote(raw.strip())
        if len(value) >= 2 and value[0] == value[-1] == '"':
            try:
                value = json.loads(value)
            except ValueError:
                value = value[1:-1]
        if isinstance(value, str) and 0 < len(value.strip()) <= _MAX_ID:
            return value.strip()
        return None
    return None


def anonymous_id(
    options: RequestOptions, user_id: str | None, cookie_header: str | None, request: Any
) -> str | None:
    """The request's anonymous id, the one rule of every integration: analytics.js's cookie,
    else the `anonymous_id_getter`'s, else (no user id either) a fresh UUID4. A signed-in user
    with neither keeps only the user id."""
    found = cookie_anonymous_id(cookie_header)
    get = options.anonymous_id_getter
    if found is None and get is not None:
        found = guarded_id("anonymous_id_getter", lambda: get(request))
    if found is None and user_id is None:
        found = str(uuid.uuid4())  # so that a call without ids never fails a request
    return found
