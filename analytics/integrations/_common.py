"""What the web integrations share: their settings, checked by name, and the client's address.

Framework-free; each integration reads its own configuration and passes it here.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from ..context import context_from_request
from ..errors import ValidationError


class OptionError(ValidationError):
    """A setting of an integration is unknown or has a wrong value; names the setting."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class RequestOptions:
    """The integrations' own settings: how a request becomes a scope."""

    user_id_from_request: bool = True
    trusted_proxy_count: int = 0
    send_ip: bool = True


Check = Callable[[str, Any], Any]  # (label, value) -> value, or raises OptionError


def _bool(label: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise OptionError(label, f"{label} must be True or False, not {value!r}")
    return value


def _int(minimum: int) -> Check:
    def check(label: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise OptionError(label, f"{label} must be an int >= {minimum}, not {value!r}")
        return value

    return check


def _number(minimum: float) -> Check:
    def check(label: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise OptionError(label, f"{label} must be a number >= {minimum}, not {value!r}")
        return value

    return check


def _write_key(label: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise OptionError(label, f"{label} must be a str or None, not {type(value).__name__}")
    return value


def _host(label: str, value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise OptionError(label, f"{label} must be an http(s) URL, not {value!r}")
    return value


def _proxies(label: str, value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise OptionError(label, f"{label} must be a dict (as requests takes it) or None")
    return dict(value)


def _on_error(label: str, value: Any) -> Callable[..., Any] | None:
    """A callable, or the dotted path of one ("myapp.analytics.report")."""
    if isinstance(value, str):
        module, _, name = value.rpartition(".")
        try:
            value = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise OptionError(label, f"{label}: cannot import {value!r} ({exc})") from None
    if value is not None and not callable(value):
        raise OptionError(label, f"{label} must be callable, a dotted path to one, or None")
    return value  # type: ignore[no-any-return]


# Setting name -> (name of the Client argument and facade attribute, check)
CLIENT_OPTIONS: dict[str, tuple[str, Check]] = {
    "WRITE_KEY": ("write_key", _write_key),
    "HOST": ("host", _host),
    "DEBUG": ("debug", _bool),
    "SEND": ("send", _bool),
    "STUB": ("stub", _bool),
    "MAX_QUEUE_SIZE": ("max_queue_size", _int(1)),
    "BATCH_SIZE": ("batch_size", _int(1)),
    "UPLOAD_SIZE": ("upload_size", _int(1)),
    "FLUSH_INTERVAL": ("flush_interval", _number(0)),
    "UPLOAD_INTERVAL": ("upload_interval", _number(0)),
    "GZIP": ("gzip", _bool),
    "TIMEOUT": ("timeout", _number(0.001)),
    "MAX_RETRIES": ("max_retries", _int(0)),
    "SYNC_MODE": ("sync_mode", _bool),
    "SHUTDOWN_TIMEOUT": ("shutdown_timeout", _number(0)),
    "PROXIES": ("proxies", _proxies),
    "ON_ERROR": ("on_error", _on_error),
}
REQUEST_OPTIONS: dict[str, tuple[str, Check]] = {
    "USER_ID_FROM_REQUEST": ("user_id_from_request", _bool),
    "TRUSTED_PROXY_COUNT": ("trusted_proxy_count", _int(0)),
    "SEND_IP": ("send_ip", _bool),
}
# Segment's names -> (the contract's name, conversion)
_ALIASES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "send": ("stub", lambda send: not send),
    "upload_size": ("batch_size", lambda size: size),
    "upload_interval": ("flush_interval", lambda seconds: seconds),
}


def parse_options(
    options: Mapping[str, Any], label: Callable[[str], str]
) -> tuple[dict[str, Any], RequestOptions]:
    """Check upper-case settings; return Client keyword arguments (the contract's names,
    Segment's aliases resolved) and the request options. `label(key)` names a setting in
    errors, as the user wrote it. Raises OptionError."""
    client: dict[str, Any] = {}
    request: dict[str, Any] = {}
    given: dict[str, str] = {}  # contract's name -> label of the setting that gave it
    for key, value in options.items():
        if not isinstance(key, str) or (key not in CLIENT_OPTIONS and key not in REQUEST_OPTIONS):
            known = ", ".join([*CLIENT_OPTIONS, *REQUEST_OPTIONS])
            where = label(str(key))
            raise OptionError(where, f"unknown setting {where} (known: {known})")
        if key in REQUEST_OPTIONS:
            name, check = REQUEST_OPTIONS[key]
            request[name] = check(label(key), value)
            continue
        name, check = CLIENT_OPTIONS[key]
        value = check(label(key), value)
        if name in _ALIASES:
            name, convert = _ALIASES[name]
            value = convert(value)
        if name in client and client[name] != value:
            raise OptionError(
                label(key), f"{label(key)} and {given[name]} disagree; give only one of them"
            )
        client[name] = value
        given[name] = label(key)
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
