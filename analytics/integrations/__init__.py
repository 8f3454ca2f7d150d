"""Integrations with web frameworks: Django (`.django`) and Flask (`.flask`)."""
