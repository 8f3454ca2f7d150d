"""Integrations with web frameworks: Django (`.django`), Flask (`.flask`) and any ASGI app, such
as FastAPI or Starlette (`.asgi`)."""
