"""The Django app: configures the module facade from `settings.ANALYTICS` when Django starts."""

from __future__ import annotations

from django.apps import AppConfig  # type: ignore[import-untyped]

from .conf import configure_facade


class AnalyticsConfig(AppConfig):  # type: ignore[misc]
    """Found by Django through INSTALLED_APPS = [..., "analytics.integrations.django"]."""

    name = "analytics.integrations.django"
    label = "analytics_django"
    verbose_name = "Analytics"

    def ready(self) -> None:
        """Apply `settings.ANALYTICS` to the facade (safe to run more than once)."""
        configure_facade()
