"""Django integration: add "analytics.integrations.django" to INSTALLED_APPS, configure with
`settings.ANALYTICS`, and add `AnalyticsMiddleware` for a per-request scope."""

from __future__ import annotations

from typing import Any

__all__ = ["AnalyticsMiddleware"]


def __getattr__(name: str) -> Any:
    """`AnalyticsMiddleware`, imported on first use (the app package itself stays light)."""
    if name == "AnalyticsMiddleware":
        from .middleware import AnalyticsMiddleware

        return AnalyticsMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
