"""A-Track, the library's second wire protocol: `analytics.Client(key, protocol="atrack")`.

This package owns A-Track's client (`client.py`: geo, identity helpers, the Segment-spec
mapping entry points), its wire format (`wire.py`) and where the current user is kept
(`storage.py`). Queueing, delivery, retries and stats are the core's.
"""

from __future__ import annotations

from .client import ATrackClient
from .storage import FileStorage, MemoryStorage, User, UserStorage
from .wire import DEFAULT_HOST, GEOS, ATrackSender, host_for, utc_millis

__all__ = [
    "DEFAULT_HOST",
    "GEOS",
    "ATrackClient",
    "ATrackSender",
    "FileStorage",
    "MemoryStorage",
    "User",
    "UserStorage",
    "host_for",
    "utc_millis",
]
