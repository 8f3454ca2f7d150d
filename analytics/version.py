"""The library's name and version, as sent in `context.library` and `User-Agent`.

The version is declared once, in pyproject.toml; this reads it from the installed metadata.
"""

from __future__ import annotations

from importlib import metadata

LIBRARY_NAME = "analytics-client"

try:
    VERSION: str = metadata.version(LIBRARY_NAME)
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0.0.0+unknown"
