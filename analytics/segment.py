"""Segment's HTTP Tracking API (also RudderStack's and the bundled collector's): batches of
Segment-spec messages posted to `{host}/v1/batch` with Basic auth. Its `WireProtocol` value
is `SEGMENT`.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from . import batch as batching
from .encode import encode
from .options import DEFAULTS
from .protocols import ReadReply, Reply, WireProtocol
from .transport import HttpPoster

DEFAULT_HOST = DEFAULTS.host
PATH = "/v1/batch"


def batch_url(host: str) -> str:
    """Where batches go: `{host}/v1/batch`. A host given with the path or part of it
    (`.../v1`, `.../v1/batch`, trailing `/`s) is taken as the base it stands for, so the
    path is never doubled: `https://events.eu1.segmentapis.com/v1` posts to `/v1/batch`."""
    base = host.rstrip("/")
    for tail in (PATH, "/v1"):
        if base.endswith(tail):
            base = base[: -len(tail)]
            break
    return base + PATH


class SegmentSender:
    """Posts batches of Segment-spec messages to `{host}/v1/batch`."""

    def __init__(
        self,
        write_key: str,
        host: str,
        timeout: float,
        proxies: dict[str, str] | None,
        gzip: bool,
    ) -> None:
        self.url = batch_url(host)
        self.gzip = gzip
        token = base64.b64encode(f"{write_key}:".encode()).decode("ascii")
        self._http = HttpPoster(
            self.url,
            {"Authorization": f"Basic {token}"},
            (write_key, token),
            timeout,
            proxies,
            gzip,
        )

    def __repr__(self) -> str:
        return f"<SegmentSender url={self.url!r} gzip={self.gzip}>"

    encode = staticmethod(encode)

    def send(self, items: Sequence[bytes]) -> Reply:
        """Send encoded messages as one batch, `sentAt` now."""
        return self._http.post(self.url, batching.body(items))

    def start(self, items: Sequence[bytes]) -> ReadReply:
        """As `send`, the reply read by the function returned (see `protocols.ReadReply`)."""
        return self._http.start(self.url, batching.body(items))

    def close(self) -> None:
        self._http.close()


SEGMENT = WireProtocol("segment", DEFAULT_HOST, SegmentSender)
