"""Runs a README snippet (or a driver script) as a user would, in the current directory.

The one change to the library: requests that would leave this machine (to Segment's or
A-Track's hosts, or any other) go to the loopback collector named by README_COLLECTOR. The
rewrite sits at the HTTP layer, so everything above it runs exactly as in a user's project.
"""

from __future__ import annotations

import os
import re
import runpy
import sys
from typing import Any

from analytics import transport

_LOOPBACK = os.environ["README_COLLECTOR"].rstrip("/")
_ORIGIN = re.compile(r"^https?://[^/]+")
_start = transport.HttpPoster.start  # `post` is `start(...)()`: this covers both


def _to_loopback(self: transport.HttpPoster, url: str, body: bytes) -> Any:
    return _start(self, _ORIGIN.sub(_LOOPBACK, url, count=1), body)


transport.HttpPoster.start = _to_loopback  # type: ignore[method-assign]
sys.path[0] = os.getcwd()  # the user's project, not this tests directory
runpy.run_path(sys.argv[1], run_name="__main__")
