"""The Segment-spec check of one wire message (camelCase JSON), shared by the collector
and `analytics import`: `check(message)` says why a message is refused, or None."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from ..batch import MAX_MESSAGE_BYTES

MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")
_OBJECT_FIELDS = ("context", "integrations", "properties", "traits")
_ID_FIELDS = ("userId", "anonymousId", "groupId", "previousId")
_TEXT_FIELDS = ("name", "category")

_ISO8601 = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})"
    r"(?:[Tt ](?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<f>\d{1,9}))?)?"
    r"(?P<tz>[Zz]|[+-]\d{2}(?::?\d{2})?)?)?"
)


def parse_iso8601(text: str) -> dt.datetime | None:
    """The instant an ISO-8601 date or date-time string names (UTC when it has no offset),
    or None if it is not one."""
    m = _ISO8601.fullmatch(text)
    if m is None:
        return None
    tz = dt.timezone.utc
    offset = m["tz"]
    if offset and offset not in "Zz":
        digits = offset[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:] or 0)
        if hours > 23 or minutes > 59:
            return None
        delta = dt.timedelta(hours=hours, minutes=minutes)
        tz = dt.timezone(-delta if offset[0] == "-" else delta)
    try:
        return dt.datetime(
            int(m["y"]), int(m["mo"]), int(m["d"]),
            int(m["h"] or 0), int(m["mi"] or 0), int(m["s"] or 0),
            int((m["f"] or "0")[:6].ljust(6, "0")), tzinfo=tz,
        )  # fmt: skip
    except ValueError:  # month 13, hour 25, February 30 ...
        return None


def encoded_size(message: Any) -> int:
    """Bytes of the message as compact UTF-8 JSON: the measure the library's limit uses."""
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    return len(text.encode("utf-8", "replace"))


def _present(value: Any) -> bool:
    return value is not None and value != ""


def check(message: Any) -> str | None:
    """Why `message` breaks the Segment spec or the size limit; None when it is valid."""
    if not isinstance(message, dict):
        return f"message must be a JSON object, not {_json_kind(message)}"
    size = encoded_size(message)
    if size > MAX_MESSAGE_BYTES:
        return f"message is {size} bytes of JSON, over the limit of {MAX_MESSAGE_BYTES} bytes"
    kind = message.get("type")
    if not _present(kind):
        return "type is missing"
    if kind not in MESSAGE_TYPES:
        return f"type {kind!r} is not one of {', '.join(MESSAGE_TYPES)}"
    mid = message.get("messageId")
    if mid is not None and (not isinstance(mid, str) or not mid):
        return "messageId must be a non-empty string"
    for key in _ID_FIELDS:
        value = message.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
            return f"{key} must be a string, not {_json_kind(value)}"
    for key in _OBJECT_FIELDS:
        value = message.get(key)
        if value is not None and not isinstance(value, dict):
            return f"{key} must be a JSON object, not {_json_kind(value)}"
    reason = _check_kind(kind, message)
    if reason is not None:
        return reason
    stamp = message.get("timestamp")
    if stamp is not None and (not isinstance(stamp, str) or parse_iso8601(stamp) is None):
        return f"timestamp {stamp!r} is not an ISO-8601 date-time"
    return None


def _check_kind(kind: str, message: dict[str, Any]) -> str | None:
    if kind == "alias":
        if not (_present(message.get("previousId")) and _present(message.get("userId"))):
            return "alias needs previousId and userId"
        return None
    if not (_present(message.get("userId")) or _present(message.get("anonymousId"))):
        return f"{kind} needs userId or anonymousId"
    if kind == "track":
        event = message.get("event")
        if not isinstance(event, str) or not event:
            return "track needs event (a non-empty string)"
    elif kind == "group":
        if not _present(message.get("groupId")):
            return "group needs groupId"
    elif kind in ("page", "screen"):
        for key in _TEXT_FIELDS:
            value = message.get(key)
            if value is not None and not isinstance(value, str):
                return f"{key} must be a string, not {_json_kind(value)}"
    return None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__
