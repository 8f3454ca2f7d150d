"""The six Segment-spec message builders: the call side of `spec.py`, whose rules they apply.

Builders run on the caller's thread: they check cheaply, raise `ValidationError` for a
programmer error, and return the message as it goes on the wire (camelCase keys). They
never change the caller's dicts, and keep none of them: the message holds copies of the
dicts and lists it was given (the consumer encodes it later, so a caller reusing its dict
must not change what is sent). What is the same for every message is shared, read-only.

Each builder also returns an upper bound of the length of the message's JSON, summed as it
copies (the size check of the call, without a second walk over the message): by the same
rule as `encode.size_bound`, -1 where that rule cannot tell (the call then walks or encodes).
"""

from __future__ import annotations

import datetime as dt
import functools
import sys
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable

from . import encode as _encoding
from . import spec
from .context import current_scope, deep_merge
from .encode import (
    CIRCULAR,
    CONSTANT_BOUNDS,
    DATETIME_BOUND,
    INT_BOUND,
    INT_MAX,
    INT_MIN,
    LEAF_BOUNDS,
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

Sized = tuple[Message, int]  # a message and the bound of its JSON's length (-1: not known)
if TYPE_CHECKING:  # ParamSpec is 3.10's; the checker alone needs it (no runtime dependency)
    if sys.version_info >= (3, 10):
        from typing import ParamSpec
    else:
        from typing_extensions import ParamSpec
    _P = ParamSpec("_P")


def _entry(size: int, key: str, bound: int) -> int:
    """The bound of a dict of bound `size` with one more entry (`key`, a value of `bound`),
    as `encode.size_bound` counts it: the quoted key, a colon and a comma."""
    return -1 if size < 0 or bound < 0 else size + 6 * len(key) + 4 + bound


def _text_bound(value: Any) -> int:
    return 6 * len(value) + 2 if type(value) is str else -1


def _unsized(build: Callable[_P, Sized]) -> Callable[_P, Message]:
    """The builder without the bound: the message alone."""

    @functools.wraps(build)
    def message(*args: _P.args, **kwargs: _P.kwargs) -> Message:
        return build(*args, **kwargs)[0]

    return message


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
    return copy_mapping_sized(name, value, False)[0]


def copy_mapping_sized(name: str, value: Any, sized: bool) -> tuple[dict[str, Any], int]:
    """`copy_mapping`, and with `sized` the bound of the copy's JSON (-1: not known, or not
    `sized`). The builders ask for it where the call uses it (`encode.BOUND_PAYS`)."""
    given = _checked(name, value)
    copied = dict(given)
    try:  # as _deepen does, one call less: this is every call's copy
        if sized:
            return copied, _quick_sized(copied, 1)
        return _quick(copied, 1), -1
    except _TooDeep:
        return _careful(dict(given), 0, {id(given)}), -1


_EMPTY_BOUND = CONSTANT_BOUNDS[id(_EMPTY)]
_LIBRARY_BOUND = CONSTANT_BOUNDS[id(LIBRARY)]
_LIBRARY_ONLY_BOUND = CONSTANT_BOUNDS[id(_LIBRARY_ONLY)]


def _optional(name: str, value: Any) -> tuple[Mapping[str, Any], int]:
    if value is None:
        return _EMPTY, _EMPTY_BOUND
    return copy_mapping_sized(name, value, _encoding.BOUND_PAYS)


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


def _quick_sized(
    copied: dict[Any, Any],
    depth: int,
    _str: Any = str,
    _int: Any = int,
    _dict: Any = dict,
    _leaves: Any = LEAF_BOUNDS,
    _datetime: Any = dt.datetime,
) -> int:
    """`_quick`, and the bound of the copy's JSON by `encode.size_bound`'s rule, summed in
    the same loop (-1 where the rule cannot tell; the copy is made all the same). Only where
    the call uses the bound (the json module's encoding): it costs ~0.1 µs an entry more."""
    size = 2 + 2 * len(copied)  # braces, and a colon and a comma for each key
    known = True
    for key, item in copied.items():
        if type(key) is _str:
            size += 6 * len(key) + 2
        else:
            known = False
        kind = type(item)
        if kind is _str:
            size += 6 * len(item) + 2
            continue
        bound = _leaves.get(kind)
        if bound is not None:
            size += bound
        elif kind is _int:
            if INT_MIN <= item < INT_MAX:
                size += INT_BOUND
            else:
                known = False
        elif kind is _datetime:
            tz = item.tzinfo
            if tz is not None and tz is not _UTC:
                copied[key] = aware(item)  # UTC or a datetime.timezone: bounded as those
            size += DATETIME_BOUND
        elif kind is _dict:
            if depth > MAX_DEPTH:
                raise _TooDeep
            inner = dict(item)
            bound = _quick_sized(inner, depth + 1)
            copied[key] = inner  # after: a cycle cut short leaves the original, for _careful
            known = known and bound >= 0
            size += bound
        else:
            inner = copied[key] = _copy(item, depth)
            if known:  # a list, a model's data, ...: its copy walked by the rule itself
                bound = size_bound(inner, 1 << 30)
                known = bound >= 0
                size += bound
    return size if known else -1


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


_COMMON_KEYS = ("type", "messageId", "timestamp", "context", "integrations")
_COMMON_BOUND = 2 + sum(6 * len(key) + 4 for key in _COMMON_KEYS)  # braces, keys, colons
_USER_ID_KEY = 6 * len("userId") + 4  # the entry's key, as _entry counts it


def _common(
    kind: str,
    context: Any,
    timestamp: Any,
    integrations: Any,
    message_id: Any,
) -> Sized:
    scope = current_scope()
    ctx: dict[str, Any]
    extra: Mapping[str, Any]
    if scope is None:
        if context is None:
            ctx, size = _LIBRARY_ONLY, _LIBRARY_ONLY_BOUND
        else:
            ctx, size = copy_mapping_sized("context", context, _encoding.BOUND_PAYS)
            ctx["library"] = LIBRARY  # bounded as one entry more (it may replace one)
            size = _entry(size, "library", _LIBRARY_BOUND)
        if integrations is None:
            extra, bound = _EMPTY, _EMPTY_BOUND
        else:
            extra, bound = copy_mapping_sized("integrations", integrations, _encoding.BOUND_PAYS)
        size = -1 if bound < 0 or size < 0 else size + bound
    else:
        # deep_merge and {**...} make new dicts: one copy of the containers in them is enough
        ctx = _deepen(deep_merge(scope.context, _checked("context", context)))
        ctx["library"] = LIBRARY
        extra = _deepen({**scope.integrations, **_checked("integrations", integrations)})
        size = -1  # the call walks the message
    mid = id_or_none("message_id", message_id)
    if mid is None:
        mid = uuid4()
    stamp = now_iso8601() if timestamp is None else _timestamp(timestamp)
    if size >= 0 and _encoding.BOUND_PAYS:
        size += _COMMON_BOUND + 6 * (len(kind) + len(mid) + len(stamp)) + 6
    else:
        size = -1  # not known, or not used: the call encodes (orjson)
    msg = {
        "type": kind,
        "messageId": mid,
        "timestamp": stamp,
        "context": ctx,
        "integrations": extra,
    }
    return msg, size


def _identified(
    kind: str, user_id: Any, anonymous_id: Any, common: Sized, fallback: Fallback | None
) -> Sized:
    uid = id_or_none("user_id", user_id)
    aid = id_or_none("anonymous_id", anonymous_id)
    if uid is None and aid is None and (scope := current_scope()) is not None:
        uid, aid = scope.user_id, scope.anonymous_id
    if uid is None and aid is None and fallback is not None:
        uid = fallback()
    if uid is None and aid is None:
        raise ValidationError(f"{kind} needs a user_id or an anonymous_id")
    msg, size = common
    if uid is not None:
        msg["userId"] = uid
        # _entry(size, "userId", _text_bound(uid)) inline: this is nearly every call
        size = size + _USER_ID_KEY + 6 * len(uid) + 2 if size >= 0 and type(uid) is str else -1
    if aid is not None:
        msg["anonymousId"] = aid
        size = _entry(size, "anonymousId", _text_bound(aid))
    return msg, size


_TRACK_KEYS = 6 * len("event") + 4 + 6 * len("properties") + 4


def track_sized(
    user_id: Any = None,
    event: Any = None,
    properties: Any = None,
    context: Any = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Any = None,
    message_id: Any = None,
    fallback: Fallback | None = None,
) -> Sized:
    if type(event) is not str or not event:  # a plain str passes without a call to the rule
        event = spec.event(event)
    msg, size = _identified(
        "track",
        user_id,
        anonymous_id,
        _common("track", context, timestamp, integrations, message_id),
        fallback,
    )
    msg["event"] = event
    msg["properties"], bound = _optional("properties", properties)
    if size < 0 or bound < 0:
        return msg, -1
    return msg, size + _TRACK_KEYS + 6 * len(event) + 2 + bound  # event is a str


def identify_sized(
    user_id: Any = None,
    traits: Any = None,
    context: Any = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Any = None,
    message_id: Any = None,
    fallback: Fallback | None = None,
) -> Sized:
    msg, size = _identified(
        "identify",
        user_id,
        anonymous_id,
        _common("identify", context, timestamp, integrations, message_id),
        fallback,
    )
    msg["traits"], bound = _optional("traits", traits)
    return msg, _entry(size, "traits", bound)


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
) -> Sized:
    msg, size = _identified(
        kind,
        user_id,
        anonymous_id,
        _common(kind, context, timestamp, integrations, message_id),
        fallback,
    )
    if name is not None:  # a plain str passes without a call to the rule
        msg["name"] = name = name if type(name) is str else spec.text("name", name)
        size = _entry(size, "name", _text_bound(name))
    if category is not None:
        category = category if type(category) is str else spec.text("category", category)
        msg["category"] = category
        size = _entry(size, "category", _text_bound(category))
    msg["properties"], bound = _optional("properties", properties)
    return msg, _entry(size, "properties", bound)


def page_sized(
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
) -> Sized:
    return _screen_or_page(
        "page", user_id, category, name, properties, context, timestamp, anonymous_id,
        integrations, message_id, fallback,
    )  # fmt: skip


def screen_sized(
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
) -> Sized:
    return _screen_or_page(
        "screen", user_id, category, name, properties, context, timestamp, anonymous_id,
        integrations, message_id, fallback,
    )  # fmt: skip


def group_sized(
    user_id: Any = None,
    group_id: Any = None,
    traits: Any = None,
    context: Any = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Any = None,
    message_id: Any = None,
    fallback: Fallback | None = None,
) -> Sized:
    gid = id_or_none("group_id", group_id)
    if gid is None:
        raise ValidationError("group needs a group_id")
    msg, size = _identified(
        "group",
        user_id,
        anonymous_id,
        _common("group", context, timestamp, integrations, message_id),
        fallback,
    )
    msg["groupId"] = gid
    msg["traits"], bound = _optional("traits", traits)
    return msg, _entry(_entry(size, "groupId", _text_bound(gid)), "traits", bound)


def alias_sized(
    previous_id: Any = None,
    user_id: Any = None,
    context: Any = None,
    timestamp: Any = None,
    integrations: Any = None,
    message_id: Any = None,
) -> Sized:
    pid = id_or_none("previous_id", previous_id)
    uid = id_or_none("user_id", user_id)
    if pid is None or uid is None:
        raise ValidationError("alias needs both previous_id and user_id")
    msg, size = _common("alias", context, timestamp, integrations, message_id)
    msg["userId"] = uid
    msg["previousId"] = pid
    return msg, _entry(_entry(size, "userId", _text_bound(uid)), "previousId", _text_bound(pid))


# The builders without the bound (the message alone), for everything but the call's path.
track = _unsized(track_sized)
identify = _unsized(identify_sized)
page = _unsized(page_sized)
screen = _unsized(screen_sized)
group = _unsized(group_sized)
alias = _unsized(alias_sized)
