"""A local Segment-compatible collector (HTTP + SQLite) for development, tests and demos.

Run it with `python -m analytics.collector` (or `analytics-collector`), or in process:
`with Collector(db="events.db") as c: analytics.host = c.url`.
"""

from __future__ import annotations

from .server import Collector, basic_auth_key, key_hash
from .store import Rejection, Store, StoreClosed, StoreError
from .validate import MESSAGE_TYPES, check, parse_iso8601

__all__ = [
    "MESSAGE_TYPES",
    "Collector",
    "Rejection",
    "Store",
    "StoreClosed",
    "StoreError",
    "basic_auth_key",
    "check",
    "key_hash",
    "parse_iso8601",
]
