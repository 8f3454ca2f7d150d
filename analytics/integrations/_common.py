"""What the web integrations share: their settings, checked by name, and the client's address.

Framework-free; each integration reads its own configuration and passes it here.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from ..context import context_from_request
from ..errors import OptionError as OptionError  # re-exported: the integrations raise it
from ..options import FACADE_OPTIONS, Check, boolean, checked, integer, resolve


@dataclass(frozen=True)
class RequestOptions:
    """The integrations' own settings: how a request becomes a scope."""

    user_id_from_request: bool = True
    trusted_proxy_count: int = 0
    send_ip: bool = True


def _on_error(label: str, value: Any) -> Any:
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
REQUEST_OPTIONS: dict[str, tuple[str, Check]] = {
    "USER_ID_FROM_REQUEST": ("user_id_from_request", boolean),
    "TRUSTED_PROXY_COUNT": ("trusted_proxy_count", integer(0)),
    "SEND_IP": ("send_ip", boolean),
}


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
            name, check = REQUEST_OPTIONS[key]
            request[name] = check(label(key), value)
            continue
        name = CLIENT_OPTIONS[key]
        given[name] = _on_error(label(key), value) if name == "on_error" else value

    def by_name(name: str) -> str:
        return label(name.upper())

    client = checked(given, by_name)
    resolve(client, by_name, require_write_key=require_write_key)  # the rules across options
    return client, RequestOptions(**request)


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
