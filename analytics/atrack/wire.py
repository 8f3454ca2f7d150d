"""A-Track's wire format: the hosts, the Segment-spec to A-Track mapping, one POST per message.

`ATrackSender` is a `transport.Sender`. Its `encode` runs on the caller's thread and turns a
message dict into one request item, ``b"<path>\\n<JSON payload>"`` (the JSON made by
`analytics.encode`, so the value table is the library's). Its `send` only splits the item and
posts it; it never raises and knows nothing of retries.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from ..encode import encode as encode_json
from ..errors import ValidationError
from ..protocols import Reply, WireProtocol
from ..spec import parse_iso8601
from ..transport import HttpPoster
from ..version import VERSION

DEFAULT_HOST = "https://api.a-track.io"
GEOS = frozenset({"nyc", "sfo", "ams", "sgp", "lon", "fra", "tor", "blr", "syd", "atl", "ric"})
KEY_HEADER = "x-a-track-key"

INIT = "/init"
ATTRIBUTES = "/attributes"
EVENT = "/event"

_UTC = dt.timezone.utc
_SEP = b"\n"


def host_for(geo: str | None = None) -> str:
    """The A-Track base URL for a geo (None: the global host). Unknown geo: ValidationError."""
    if geo is None:
        return DEFAULT_HOST
    if not isinstance(geo, str) or geo not in GEOS:
        raise ValidationError(f"unknown A-Track geo {geo!r}; one of {', '.join(sorted(GEOS))}")
    return f"https://{geo}.api.a-track.io"


def utc_millis(timestamp: str) -> str:
    """An ISO-8601 timestamp as A-Track wants it: UTC, milliseconds, ``Z``."""
    when = parse_iso8601(timestamp)  # naive is taken as UTC
    if when is not None:
        try:
            when = when.astimezone(_UTC)
        except OverflowError:  # 9999-12-31T23:00-05:00 is past the last instant UTC can write
            when = None
    if when is None:
        raise ValidationError(f"timestamp {timestamp!r} is not ISO-8601")
    return when.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _uuid(message: dict[str, Any]) -> str:
    uid = message.get("userId")
    if uid is None:
        uid = message.get("anonymousId")
    if not isinstance(uid, str) or not uid:
        raise ValidationError(f"{message.get('type')} message has no userId or anonymousId")
    return uid


def _context(message: dict[str, Any]) -> dict[str, Any]:
    """The message's context without `library` (sdkVersion and User-Agent say that)."""
    context = message.get("context") or {}
    if "library" not in context:
        return dict(context)
    return {k: v for k, v in context.items() if k != "library"}


def _event(message: dict[str, Any], name: str, attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        "sdkVersion": VERSION,
        "uuid": _uuid(message),
        "event": name,
        "attributes": attributes,
        "timestamp": utc_millis(message["timestamp"]),
        "context": _context(message),
    }


def _attributes(message: dict[str, Any], mode: str, attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        "sdkVersion": VERSION,
        "uuid": _uuid(message),
        "mode": mode,
        "attributes": attributes,
        "profile": {},
    }


def payload(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The A-Track path and payload of a message; ValidationError for what A-Track can't carry."""
    kind = message.get("type")
    if kind == "track":
        return EVENT, _event(message, message["event"], message.get("properties") or {})
    if kind in ("page", "screen"):
        attributes = dict(message.get("properties") or {})
        for key in ("name", "category"):
            if message.get(key) is not None:
                attributes[key] = message[key]
        return EVENT, _event(message, kind, attributes)
    if kind == "identify":
        return ATTRIBUTES, _attributes(message, "merge", message.get("traits") or {})
    if kind == "group":
        group = {**(message.get("traits") or {}), "id": message["groupId"]}
        return ATTRIBUTES, _attributes(message, "merge", {"group": group})
    if kind == "attributes":  # ATrackClient.set_attributes
        return ATTRIBUTES, _attributes(message, message["mode"], message["attributes"])
    if kind == "init":  # ATrackClient.init
        return INIT, {
            "sdkVersion": VERSION,
            "uuid": _uuid(message),
            "isNewUser": message["isNewUser"],
            "mode": "merge",
            "context": _context(message),
            "attributes": message["attributes"],
            "profile": {},
        }
    if kind == "alias":
        raise ValidationError("the A-Track protocol has no alias")
    raise ValidationError(f"the A-Track protocol cannot carry a {kind!r} message")


class ATrackSender:
    """Posts one message per request to an A-Track host over a kept-alive session."""

    def __init__(
        self,
        public_key: str,
        host: str,
        timeout: float,
        proxies: dict[str, str] | None,
        gzip: bool,
    ) -> None:
        self.base_url = host.rstrip("/")
        self.url = self.base_url  # each message's path (``/event``...) is added to it
        self.gzip = gzip
        self._http = HttpPoster(
            self.base_url, {KEY_HEADER: public_key}, (public_key,), timeout, proxies, gzip
        )

    def __repr__(self) -> str:
        return f"<ATrackSender base_url={self.base_url!r} gzip={self.gzip}>"

    def url_for(self, path: str) -> str:
        """The full URL of an A-Track path such as ``/event``."""
        return self.base_url + path

    def encode(self, message: dict[str, Any]) -> bytes:
        """One request item: the path, a newline, the JSON payload."""
        path, body = payload(message)
        return path.encode("ascii") + _SEP + encode_json(body)

    def send(self, items: Sequence[bytes]) -> Reply:
        """Post the one encoded message; any failure comes back as a Reply."""
        if len(items) != 1:  # the protocol's batch limit is 1; refuse, never half-send
            return Reply(400, detail=f"A-Track takes one message per request, not {len(items)}")
        path, _, body = items[0].partition(_SEP)
        return self._http.post(self.url_for(path.decode("ascii")), body)

    def close(self) -> None:
        """Close the HTTP session."""
        self._http.close()


ATRACK = WireProtocol(
    "atrack",
    DEFAULT_HOST,
    ATrackSender,
    batch_limit=1,  # no batch endpoint: one message per request
    refuses=frozenset({"alias"}),
    key_name="public_key",
    client="analytics.atrack.client:ATrackClient",
)
