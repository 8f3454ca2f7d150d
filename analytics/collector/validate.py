"""The collector's check of one wire message, also `analytics import`'s: `check(message)` says
why it is refused, or None. Rules are `analytics.spec`'s; only the size limit and wording here."""

from __future__ import annotations

import json
from typing import Any

from ..batch import MAX_MESSAGE_BYTES
from ..spec import (
    ID_FIELDS,
    IDENTITY,
    KINDS,
    MAPPING_FIELDS,
    MESSAGE_TYPES,
    is_given,
    is_object,
    is_text,
    is_wire_id,
    is_wire_message_id,
    parse_iso8601,
    present,
)

__all__ = [
    "ATRACK_TYPES", "MESSAGE_TYPES", "check", "check_atrack", "encoded_size", "parse_iso8601",
]  # fmt: skip

ATRACK_TYPES = ("init", "attributes", "event")
"""A-Track's requests as the collector stores them: `POST /init`, `/attributes`, `/event`."""

# How a missing required key is named in a reason; an id is just its key.
_NEEDED = {"event": "event (a non-empty string)"}


def encoded_size(message: Any) -> int:
    """Bytes of the message as compact UTF-8 JSON: the measure the library's limit uses."""
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    return len(text.encode("utf-8", "replace"))


def _not_unicode(message: Any) -> str | None:
    """Why a decoded message cannot be stored as UTF-8 text, or None."""
    try:
        json.dumps(message, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(exc.object[exc.start])
        return f"message holds a lone surrogate (\\u{code:04x}), which is not valid Unicode text"
    except (RecursionError, ValueError) as exc:
        return f"message cannot be written as JSON: {exc}"
    return None


def _not_storable(what: str, value: Any) -> str | None:
    """Why `value` cannot be stored at all: not an object, not Unicode, over the size limit."""
    if not isinstance(value, dict):
        return f"{what} must be a JSON object, not {_json_kind(value)}"
    reason = _not_unicode(value)
    if reason is not None:
        return reason
    size = encoded_size(value)
    if size > MAX_MESSAGE_BYTES:
        return f"{what} is {size} bytes of JSON, over the limit of {MAX_MESSAGE_BYTES} bytes"
    return None


def check(message: Any) -> str | None:
    """Why `message` breaks the Segment spec or the size limit; None when it is valid."""
    reason = _not_storable("message", message)
    if reason is not None:
        return reason
    kind = message.get("type")
    if not present(kind):
        return "type is missing"
    if kind not in MESSAGE_TYPES:
        return f"type {kind!r} is not one of {', '.join(MESSAGE_TYPES)}"
    mid = message.get("messageId")
    if mid is not None and not is_wire_message_id(mid):
        return "messageId must be a non-empty string"
    for key in ID_FIELDS:
        value = message.get(key)
        if value is not None and not is_wire_id(value):
            return f"{key} must be a string, not {_json_kind(value)}"
    for key in MAPPING_FIELDS:
        value = message.get(key)
        if value is not None and not is_object(value):
            return f"{key} must be a JSON object, not {_json_kind(value)}"
    reason = _check_kind(kind, message)
    if reason is not None:
        return reason
    stamp = message.get("timestamp")
    if stamp is not None and (not isinstance(stamp, str) or parse_iso8601(stamp) is None):
        return f"timestamp {stamp!r} is not an ISO-8601 date-time"
    return None


def _check_kind(kind: str, message: dict[str, Any]) -> str | None:
    rules = KINDS[kind]
    if rules.identified and not any(present(message.get(key)) for key in IDENTITY):
        return f"{kind} needs {' or '.join(IDENTITY)}"
    if not all(is_given(key, message.get(key)) for key in rules.required):
        return f"{kind} needs {' and '.join(_NEEDED.get(k, k) for k in rules.required)}"
    for key in rules.text:
        value = message.get(key)
        if value is not None and not is_text(value):
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


_ATRACK_REQUIRED = {
    "init": ("uuid", "isNewUser", "attributes"),
    "attributes": ("uuid", "mode", "attributes"),
    "event": ("uuid", "event", "timestamp"),
}


def check_atrack(kind: str, payload: Any) -> str | None:
    """Why an A-Track request body (`kind`: init, attributes or event) is refused; None
    when it is one the library sends (see analytics/atrack/wire.py)."""
    reason = _not_storable("body", payload)
    if reason is not None:
        return reason
    missing = [key for key in _ATRACK_REQUIRED[kind] if key not in payload]
    if missing:
        return f"{kind} needs {' and '.join(missing)}"
    if not is_wire_message_id(payload["uuid"]):
        return "uuid must be a non-empty string"
    for key in ("attributes", "context", "profile"):
        value = payload.get(key)
        if value is not None and not is_object(value):
            return f"{key} must be a JSON object, not {_json_kind(value)}"
    if kind == "init" and not isinstance(payload["isNewUser"], bool):
        return f"isNewUser must be a boolean, not {_json_kind(payload['isNewUser'])}"
    if "mode" in payload and payload["mode"] not in ("merge", "replace"):
        return f'mode must be "merge" or "replace", not {payload["mode"]!r}'
    if kind == "event":
        if not isinstance(payload["event"], str) or not payload["event"]:
            return "event must be a non-empty string"
        stamp = payload["timestamp"]
        if not isinstance(stamp, str) or parse_iso8601(stamp) is None:
            return f"timestamp {stamp!r} is not an ISO-8601 date-time"
    return None
