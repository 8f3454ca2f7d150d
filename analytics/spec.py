"""The Segment spec, once: the message types, what each needs and carries, the field rules at
the call and on the wire, the one ISO-8601 parser. Imports only errors, ids and encode."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from dateutil.parser import isoparse

from .encode import iso8601
from .errors import ValidationError
from .ids import id_or_none, now_iso8601

__all__ = [
    "IDENTITY",
    "ID_FIELDS",
    "KINDS",
    "MAPPING_FIELDS",
    "MESSAGE_TYPES",
    "TEXT_FIELDS",
    "Kind",
    "event",
    "id_or_none",
    "is_event",
    "is_given",
    "is_object",
    "is_text",
    "is_wire_id",
    "is_wire_message_id",
    "mapping",
    "parse_iso8601",
    "present",
    "text",
    "timestamp",
]

MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")
ID_FIELDS = ("userId", "anonymousId", "groupId", "previousId")
MAPPING_FIELDS = ("context", "integrations", "properties", "traits")
TEXT_FIELDS = ("name", "category")
IDENTITY = ("userId", "anonymousId")  # one of them, for every type that is `identified`


class Kind(NamedTuple):
    """What one message type needs and carries, in wire (camelCase) keys."""

    identified: bool  # needs userId or anonymousId
    required: tuple[str, ...]  # keys it cannot go without: the event, or ids
    fields: tuple[str, ...]  # its own keys, besides the ones every message has
    text: tuple[str, ...] = ()  # optional keys that must be strings when given


KINDS: dict[str, Kind] = {
    "identify": Kind(True, (), ("traits",)),
    "track": Kind(True, ("event",), ("event", "properties")),
    "page": Kind(True, (), ("name", "category", "properties"), TEXT_FIELDS),
    "screen": Kind(True, (), ("name", "category", "properties"), TEXT_FIELDS),
    "group": Kind(True, ("groupId",), ("groupId", "traits")),
    "alias": Kind(False, ("previousId", "userId"), ("previousId",)),
}


# -- predicates: cheap, never raise --------------------------------------------------------
# The call side (the builders, on the caller's thread) accepts all the wire side (the
# collector's check, also `analytics import`) accepts, and the Python values JSON has no
# room for: UUID ids, any Mapping, datetime and date timestamps.


def present(value: Any) -> bool:
    """Whether a value counts as given: None and "" are missing (0 is not)."""
    return value is not None and value != ""


def is_given(key: str, value: Any) -> bool:
    """Whether a required key (`Kind.required`) is there: an event, or an id present."""
    return is_event(value) if key == "event" else present(value)


def is_event(value: Any) -> bool:
    """A track's event: a non-empty str."""
    return isinstance(value, str) and value != ""


def is_text(value: Any) -> bool:
    """A page's or screen's name or category, when given: a str."""
    return isinstance(value, str)


def is_wire_id(value: Any) -> bool:
    """An id in JSON: a string or an integer (sent on as a string), never a boolean. At the
    call a UUID is one too: `ids.id_or_none` is that side's rule."""
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def is_wire_message_id(value: Any) -> bool:
    """A messageId in JSON: a non-empty string (the call takes any id and sends a string)."""
    return isinstance(value, str) and value != ""


def is_object(value: Any) -> bool:
    """A mapping field (context, integrations, properties, traits) in JSON: an object. At the
    call any `Mapping` is one (see `mapping`)."""
    return isinstance(value, dict)


# -- the call side: the value as sent, or ValidationError ----------------------------------


def mapping(name: str, value: Any) -> Mapping[str, Any]:
    """A mapping argument as given; anything else (None included) refused."""
    if isinstance(value, Mapping):
        return value
    raise ValidationError(f"{name} must be a mapping (dict), not {type(value).__name__}")


def event(value: Any) -> str:
    """A track's event as given, if it is a non-empty str."""
    if is_event(value):
        return value  # type: ignore[no-any-return]
    raise ValidationError("track needs an event name (a non-empty str)")


def text(name: str, value: Any) -> str:
    """A name or category as given, if it is a str."""
    if is_text(value):
        return value  # type: ignore[no-any-return]
    raise ValidationError(f"{name} must be a str, not {type(value).__name__}")


_UTC = dt.timezone.utc


def timestamp(value: Any) -> str:
    """A timestamp argument as the wire has it (ISO-8601 with an offset); None is now."""
    if value is None:
        return now_iso8601()
    if isinstance(value, dt.datetime):
        return iso8601(value)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=_UTC).isoformat()
    if isinstance(value, str):
        when = parse_iso8601(value)
        if when is None:
            raise ValidationError(f"timestamp {value!r} is not an ISO-8601 date-time")
        return when.isoformat()
    raise ValidationError(
        f"timestamp must be a datetime, date or ISO-8601 string, not {type(value).__name__}"
    )


# -- ISO-8601 --------------------------------------------------------------------------------

# The forms the bundled collector always took, and so now the call too (they disagreed): a
# calendar date, optionally a time (T, t or a space; hh:mm, then :ss and a fraction of up to
# 9 digits optional) and an offset (Z, ±hh, ±hhmm, ±hh:mm). dateutil reads more (2024,
# 20240301, 2024-W09-5, T0930, 24:00, any separator); those stay refused on both sides.
# ASCII digits only: \d takes any script's digits, which dateutil refuses.
_ISO8601 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[Tt ](?:[01][0-9]|2[0-3]):[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]{1,9})?)?"
    r"(?:[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?)?"
)
# What Python's isoformat() and JavaScript's toISOString() write: every timestamp the library
# makes itself. datetime.fromisoformat reads these exactly as dateutil does (tests check it)
# in 0.2 µs instead of 8: A-Track converts every message's timestamp on the caller's thread.
_COMMON = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{3}(?:[0-9]{3})?)?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?"
)


def parse_iso8601(text: str) -> dt.datetime | None:
    """The instant an ISO-8601 date or date-time string names, with a `datetime.timezone`
    (UTC when it has no offset), or None if it is not one. Read by python-dateutil's isoparse
    (the common forms above by datetime.fromisoformat, which reads them the same)."""
    try:
        if _COMMON.fullmatch(text):
            when = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] == "Z" else text)
        elif _ISO8601.fullmatch(text):
            when = isoparse(text)
            offset = when.utcoffset()
            if offset is not None:  # dateutil's tz classes: the standard library's instead
                return when.replace(tzinfo=dt.timezone(offset) if offset else _UTC)
        else:
            return None
    except (ValueError, OverflowError):  # February 30, an offset of 24 hours ...
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=_UTC)
