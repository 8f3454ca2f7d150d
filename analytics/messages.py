"""The six Segment-spec message builders: the call side of `spec.py`, whose rules they apply.

Builders run on the caller's thread: they check cheaply, raise `ValidationError` for a
programmer error, and return the message as it goes on the wire (camelCase keys). They
never change the caller's dicts, and keep none of them: the message holds copies of the
dicts and lists it was given (the consumer encodes it later, so a caller reusing its dict
must not change what is sent). What is the same for every message is shared, read-only.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from . import spec
from .context import current_scope, deep_merge
from .encode import (
    CIRCULAR,
    CONSTANT_BOUNDS,
    MAX_DEPTH,
    PLAIN_DICTS,
    TOO_DEEP,
    as_data,
    aware,
    cut,
    reader,
    size_bound,
)
from .errors import ValidationError
from .ids import id_or_none, now_iso8601, uuid4
from .spec import timestamp as _timestamp
from .typing import Fallback, Message
from .version import LIBRARY_NAME, VERSION


class Shared(dict):  # type: ignore[type-arg]
    """A dict that many messages hold (memory per queued message): changing it raises.
    Copies of it (copy, deepcopy, pickle, dict()) are plain, changeable dicts."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("this dict is shared by many messages; change a copy: dict(...)")

    __setitem__ = __delitem__ = _refuse
    clear = pop = popitem = setdefault = update = __ior__ = _refuse

    def copy(self) -> dict[str, Any]:
        return dict(self)

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        import copy

        return {k: copy.deepcopy(v, memo) for k, v in self.items()}

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))


PLAIN_DICTS.add(Shared)  # its items are its own: the size bound reads it as a dict
LIBRARY = Shared(name=LIBRARY_NAME, version=VERSION)
_LIBRARY_ONLY = Shared(library=LIBRARY)  # the context of a call given none
_EMPTY = Shared()  # integrations, properties or traits not given
for _shared in (LIBRARY, _LIBRARY_ONLY, _EMPTY):  # module constants: their ids stay theirs
    CONSTANT_BOUNDS[id(_shared)] = size_bound(_shared, 1 << 20)


def _checked(name: str, value: Any) -> Mapping[str, Any]:
    """A mapping argument as given (None: the shared empty dict); anything else refused."""
    if value is None:
        return _EMPTY
    if type(value) is dict:  # a plain dict passes without a call to the rule
        return value
    return spec.mapping(name, value)


def copy_mapping(name: str, value: Any) -> dict[str, Any]:
    """A copy of a mapping argument: dicts, lists, tuples and sets in it copied all the way
    down, models read as their data (`encode.reader`), tz-aware datetimes made `aware`,
    everything else (str, numbers, naive and UTC datetimes, objects) shared."""
    given = _checked(name, value)
    try:  # as _deepen does, one call less: this is every call's copy
        return _quick(dict(given), 1)
    except _TooDeep:
        return _careful(dict(given), 0, {id(given)})  # type: ignore[no-any-return]


def _optional(name: str, value: Any) -> Mapping[str, Any]:
    return _EMPTY if value is None else copy_mapping(name, value)


def _deepen(copied: dict[Any, Any], given: Any = None) -> dict[Any, Any]:
    """Replace the containers in a new dict (a copy of `given`, if one) by copies of them;
    a cycle, or a nesting deeper than MAX_DEPTH, is cut and sent as a marker string."""
    try:
        return _quick(copied, 1)
    except _TooDeep:  # rare: the careful copy, which tells a cycle from a deep value
        path = set() if given is None else {id(given)}
        return _careful(copied, 0, path)  # type: ignore[no-any-return]


class _TooDeep(Exception):
    """The quick copy went past MAX_DEPTH: a cycle or a deep value."""


def _quick(copied: dict[Any, Any], depth: int) -> dict[Any, Any]:
    """The copy of every call: no bookkeeping but the depth (a dict keeps its size when only
    the values of its keys change, so replacing them while iterating is safe)."""
    for key, item in copied.items():
        kind = type(item)
        if kind in _LEAVES:  # most values: no isinstance() against the ABCs
            continue
        if kind is dt.datetime:
            tz = item.tzinfo
            if tz is not None and tz is not _UTC:
                copied[key] = aware(item)
        else:
            copied[key] = _copy(item, depth)
    return copied


def _copy(value: Any, depth: int) -> Any:
    """A copy of one value that is not a leaf, `depth` containers down."""
    kind = type(value)
    if kind is dict:  # the common containers first, with no isinstance() against the ABCs
        if depth > MAX_DEPTH:
            raise _TooDeep
        return _quick(dict(value), depth + 1)
    if kind is list:
        if depth > MAX_DEPTH:
            raise _TooDeep
        return [v if type(v) in _LEAVES else _copy(v, depth + 1) for v in value]
    if kind is dt.datetime:
        tz = value.tzinfo
        return value if tz is None or tz is _UTC else aware(value)
    read = reader(kind)
    if read is not None:
        data = as_data(value, read)
        if data is value or type(data) in _LEAVES:  # unreadable (sent as str()), or plain
            return data
        # a model's data takes its place (depth + 1 if not a container: no endless chain)
        return _copy(data, depth if type(data) is dict or type(data) is list else depth + 1)
    if not isinstance(value, _CONTAINERS):
        return value
    if depth > MAX_DEPTH:
        raise _TooDeep
    if isinstance(value, Mapping):
        return _quick(dict(value), depth + 1)
    return [v if type(v) in _LEAVES else _copy(v, depth + 1) for v in value]


def _careful(value: Any, depth: int, path: set[int]) -> Any:
    """The copy for a value the quick one gave up on: the ids of the containers above it in
    `path`, a container met again there cut as circular, one deeper than MAX_DEPTH cut."""
    kind = type(value)
    if kind in _LEAVES or kind is dt.datetime:
        return value if kind is not dt.datetime else _copy(value, depth)
    ident = id(value)  # of the model, not of its data: a model that holds itself is a cycle
    if kind is not dict and kind is not list:
        read = reader(kind)
        if read is not None:
            data = as_data(value, read)
            if data is value or type(data) in _LEAVES:
                return data
            if type(data) is not dict and type(data) is not list:
                return _careful(data, depth + 1, path)
            value = data  # the model's id stays in `ident`: one that holds itself is cut
        elif not isinstance(value, _CONTAINERS):
            return value
    if ident in path:
        return cut(CIRCULAR)
    if depth > MAX_DEPTH:
        return cut(TOO_DEEP)
    path.add(ident)
    try:
        if isinstance(value, Mapping):
            return {k: _careful(v, depth + 1, path) for k, v in value.items()}
        return [_careful(v, depth + 1, path) for v in value]
    finally:
        path.discard(ident)


_LEAVES = frozenset({str, int, float, bool, type(None), dt.date, uuid.UUID})
_CONTAINERS = (Mapping, list, tuple, set, frozenset)
_UTC = dt.timezone.utc


def _common(
    kind: str,
    context: Any,
    timestamp: Any,
    integrations: Any,
    message_id: Any,
) -> Message:
    scope = current_scope()
    ctx: dict[str, Any]
    if scope is None:
        if context is None:
            ctx = _LIBRARY_ONLY
        else:
            ctx = copy_mapping("context", context)
            ctx["library"] = LIBRARY
        extra = _EMPTY if integrations is None else copy_mapping("integrations", integrations)
    else:
        # deep_merge and {**...} make new dicts: one copy of the containers in them is enough
        ctx = _deepen(deep_merge(scope.context, _checked("context", context)))
        ctx["library"] = LIBRARY
        extra = _deepen({**scope.integrations, **_checked("integrations", integrations)})
    mid = id_or_none("message_id", message_id)
    return {
        "type": kind,
        "messageId": mid if mid is not None else uuid4(),
        "timestamp": now_iso8601() if timestamp is None else _timestamp(timestamp),
        "context": ctx,
        "integrations": extra,
    }


def _identified(
    kind: str, user_id: Any, anonymous_id: Any, common: Message, fallback: Fallback | None
) -> Message:
    uid = id_or_none("user_id", user_id)
    aid = id_or_none("anonymous_id", anonymous_id)
    if uid is None and aid is None and (scope := current_scope()) is not None:
        uid, aid = scope.user_id, scope.anonymous_id
    if uid is None and aid is None and fallback is not None:
        uid = fallback()
    if uid is None and aid is None:
        raise ValidationError(f"{kind} needs a user_id or an anonymous_id")
    if uid is not None:
        common["userId"] = uid
    if aid is not None:
        common["anonymousId"] = aid
    return common


def track(
    user_id: Any = None,
    event: Any = None,
    properties: Any = None,
    context: Any = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Any = None,
    message_id: Any = None,
    fallback: Fallback | None = None,
) -> Message:
    if type(event) is not str or not event:  # a plain str passes without a call to the rule
        event = spec.event(event)
    msg = _identified(
        "track",
        user_id,
        anonymous_id,
        _common("track", context, timestamp, integrations, message_id),
        fallback,
    )
    msg["event"] = event
    msg["properties"] = _optional("properties", properties)
    return msg


def identify(
    user_id: Any = None,
    traits: Any = None,
    context: Any = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Any = None,
    message_id: Any = None,
    fallback: Fallback | None = None,
) -> Message:
    msg = _identified(
        "identify",
        user_id,
        anonymous_id,
        _common("identify", context, timestamp, integrations, message_id),
        fallback,
    )
    msg["traits"] = _optional("traits", traits)
    return msg


def _screen_or_page(
    kind: str,
    user_id: Any,
    category: Any,
    name: Any,
    properties: Any,
    context: Any,
    timestamp: Any,
    anonymous_id: Any,
    integrations: Any,
    message_id: Any,
    fallback: Fallback | None,
) -> Message:
    msg = _identified(
        kind,
        user_id,
        anonymous_id,
        _common(kind, context, timestamp, integrations, message_id),
        fallback,
    )
    if name is not None:  # a plain str passes without a call to the rule
        msg["name"] = name if type(name) is str else spec.text("name", name)
    if category is not None:
        msg["category"] = category if type(category) is str else spec.text("category", category)
    msg["properties"] = _optional("properties", properties)
    return msg


def page(
    user_id: Any = None,
    category: Any = None,
    name: Any = None,
    properties: Any = None,
    context: Any = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Any = None,
    message_id: Any = None,
    fallback: Fallback | None = None,
) -> Message:
    return _screen_or_page(
        "page", user_id, category, name, properties, context, timestamp, anonymous_id,
        integrations, message_id, fallback,
    )  # fmt: skip


def screen(
    user_id: Any = None,
    category: Any = None,
    name: Any = None,
    properties: Any = None,
    context: Any = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Any = None,
    message_id: Any = None,
    fallback: Fallback | None = None,
) -> Message:
    return _screen_or_page(
        "screen", user_id, category, name, properties, context, timestamp, anonymous_id,
        integrations, message_id, fallback,
    )  # fmt: skip


def group(
    user_id: Any = None,
    group_id: Any = None,
    traits: Any = None,
    context: Any = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Any = None,
    message_id: Any = None,
    fallback: Fallback | None = None,
) -> Message:
    gid = id_or_none("group_id", group_id)
    if gid is None:
        raise ValidationError("group needs a group_id")
    msg = _identified(
        "group",
        user_id,
        anonymous_id,
        _common("group", context, timestamp, integrations, message_id),
        fallback,
    )
    msg["groupId"] = gid
    msg["traits"] = _optional("traits", traits)
    return msg


def alias(
    previous_id: Any = None,
    user_id: Any = None,
    context: Any = None,
    timestamp: Any = None,
    integrations: Any = None,
    message_id: Any = None,
) -> Message:
    pid = id_or_none("previous_id", previous_id)
    uid = id_or_none("user_id", user_id)
    if pid is None or uid is None:
        raise ValidationError("alias needs both previous_id and user_id")
    msg = _common("alias", context, timestamp, integrations, message_id)
    msg["userId"] = uid
    msg["previousId"] = pid
    return msg
