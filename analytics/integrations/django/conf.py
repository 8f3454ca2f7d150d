"""Reads and checks `settings.ANALYTICS`; applies it to the module facade."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings  # type: ignore[import-untyped]
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]

from .._common import OptionError, RequestOptions, parse_options

SETTING = "ANALYTICS"


def _label(key: str) -> str:
    return f"{SETTING}[{key!r}]"


def read_settings() -> tuple[dict[str, Any], RequestOptions]:
    """Client options (the facade's attribute names) and request options from
    `settings.ANALYTICS`; raises ImproperlyConfigured naming the wrong key."""
    options = getattr(settings, SETTING, None)
    if options is None:
        return {}, RequestOptions()
    if not isinstance(options, Mapping):
        raise ImproperlyConfigured(
            f"settings.{SETTING} must be a dict, not {type(options).__name__}"
        )
    try:
        return parse_options(options, _label)
    except OptionError as exc:
        raise ImproperlyConfigured(str(exc)) from exc


def configure_facade() -> None:
    """Set the `analytics.<option>` attributes from settings. Idempotent: an option that
    already has its value is left alone, so running twice does not rebuild the client."""
    import analytics

    client_options, _ = read_settings()
    for name, value in client_options.items():
        if getattr(analytics, name) != value:
            setattr(analytics, name, value)
