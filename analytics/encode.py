"""Values to JSON bytes: the one place for the value table of the wire format.

datetime/date -> ISO-8601 (naive taken as UTC), Decimal -> str, UUID -> str, set/tuple -> list,
Enum -> its value, bytes -> UTF-8 text, NaN/Infinity -> null, models (pydantic, dataclasses,
attrs, numpy) -> their data, ints too long for str() -> str, anything else -> str() with a
warning. Encoding never raises: one odd value never drops its siblings; a cycle or a nesting
deeper than MAX_DEPTH is cut and sent as a marker string.

With the `fast` extra installed (orjson), the fast path is orjson: ~0.8 us instead of ~6 us
for a typical track. Whatever it refuses (ints over 64 bits, lone surrogates, non-str keys,
nesting over 254, cycles) goes to the json module's encoder, then to the slow path, exactly
as with the json backend alone: both give the same bytes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .log import Throttle

try:
    import orjson
except ImportError:  # the `fast` extra is optional
    orjson = None  # type: ignore[assignment]

_odd_value = Throttle()
_UTC = dt.timezone.utc
_MINUTE = dt.timedelta(minutes=1)

MAX_DEPTH = 100  # dicts and lists nested deeper than this inside a field are cut
CIRCULAR = "<circular reference>"  # what a dict or list that contains itself is sent as
TOO_DEEP = "<nested too deep>"  # what a dict or list nested deeper than MAX_DEPTH is sent as


def cut(marker: str) -> str:
    """The marker for a cut value, with the (rate-limited) warning that says why."""
    if marker is CIRCULAR:
        _odd_value.warn("circular reference in a message; sent as a string", key=CIRCULAR)
    else:
        _odd_value.warn(
            "dict or list nested deeper than %d levels; sent as a string", MAX_DEPTH, key=TOO_DEEP
        )
    return marker


def aware(value: dt.datetime) -> dt.datetime:
    """A datetime whose tzinfo the encoders write without calling user code: None, UTC or a
    `datetime.timezone` of whole minutes. A tzinfo whose utcoffset() fails or answers None is
    taken as UTC (with a warning); an offset with seconds (Amsterdam before 1937: +00:19:32)
    is converted to UTC, since ISO-8601 offsets have minutes at most."""
    tz = value.tzinfo
    if tz is None or tz is _UTC:
        return value
    try:
        offset = value.utcoffset()
        if offset is not None:
            if offset % _MINUTE:
                return (value.replace(tzinfo=None) - offset).replace(tzinfo=_UTC)
            return value if type(tz) is dt.timezone else value.replace(tzinfo=dt.timezone(offset))
    except Exception:  # a broken tzinfo, or an instant out of datetime's range
        pass
    _odd_value.warn(
        "tzinfo %s gives no UTC offset; datetime taken as UTC", type(tz).__name__, key=aware
    )
    return value.replace(tzinfo=_UTC)


def iso8601(value: dt.datetime) -> str:
    """ISO-8601 text of a datetime; a naive one is taken as UTC (see `aware` for the rest)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=_UTC).isoformat()
    return aware(value).isoformat()


def _int_text(value: int) -> str:
    """An int's digits, also past Python's int -> str limit (sys.set_int_max_str_digits)."""
    try:
        return int.__repr__(value)
    except ValueError:
        return str(decimal.Decimal(value))  # Decimal has no such limit


# -- models as data: read by duck-typing, never importing pydantic, attrs or numpy --------


def _namedtuple(o: Any) -> Any:
    return dict(zip(type(o)._fields, o))


def _dataclass(o: Any) -> Any:
    return {f.name: getattr(o, f.name) for f in dataclasses.fields(o)}


def _attrs(o: Any) -> Any:
    return {a.name: getattr(o, a.name) for a in type(o).__attrs_attrs__}


def _pydantic(o: Any) -> Any:
    return o.model_dump(mode="json")


def _pydantic_v1(o: Any) -> Any:
    return o.dict()


def _numpy_scalar(o: Any) -> Any:
    return o.item()


def _numpy_array(o: Any) -> Any:
    return o.tolist()


def _find_reader(kind: type) -> Callable[[Any], Any] | None:
    if issubclass(kind, tuple):
        return _namedtuple if isinstance(getattr(kind, "_fields", None), tuple) else None
    if hasattr(kind, "__pydantic_serializer__") and hasattr(kind, "model_dump"):
        return _pydantic
    if hasattr(kind, "__dataclass_fields__"):
        return _dataclass
    if hasattr(kind, "__attrs_attrs__"):
        return _attrs
    if hasattr(kind, "__fields__") and hasattr(kind, "__config__") and hasattr(kind, "dict"):
        return _pydantic_v1
    numpy = sys.modules.get("numpy")  # a numpy value exists only once numpy is imported
    if numpy is not None:
        if issubclass(kind, numpy.generic):
            return _numpy_scalar
        if issubclass(kind, numpy.ndarray):
            return _numpy_array
    return None


_readers: dict[type, Callable[[Any], Any] | None] = {}


def reader(kind: type) -> Callable[[Any], Any] | None:
    """How to read the data of a model of this type (pydantic v2 and v1, dataclass, attrs,
    NamedTuple, numpy scalar or array): a function giving a new dict, list or plain value,
    or None for any other type. Looked up once per type."""
    try:
        return _readers[kind]
    except KeyError:
        pass
    if len(_readers) > 1000:  # types made at run time must not grow it without bound
        _readers.clear()
    found = _readers[kind] = _find_reader(kind)
    return found


def as_data(o: Any, read: Callable[[Any], Any]) -> Any:
    """A model's data; if reading it fails, the model itself (sent as its str())."""
    try:
        return read(o)
    except Exception:
        _odd_value.warn(
            "could not read the data of a %s; sent as its str()", type(o).__name__, key=read
        )
        return o


def _default(o: Any, _datetime: Any = dt.datetime, _utc: Any = _UTC) -> Any:
    """Called by the json encoder for values it cannot hold itself; never raises. (The
    defaults are bound once: no global lookups on the common path.)"""
    if type(o) is _datetime and o.tzinfo is _utc:  # the common one: no isinstance() chain
        return o.isoformat()
    try:
        return _convert(o)
    except Exception:  # a broken isoformat(), __iter__, ... must not cost the message
        return _text(o)


def _convert(o: Any) -> Any:
    if isinstance(o, dt.datetime):
        return iso8601(o)
    if isinstance(o, (dt.date, dt.time)):
        return o.isoformat()
    if isinstance(o, decimal.Decimal):
        return None if not o.is_finite() else str(o)
    if isinstance(o, uuid.UUID):
        return str(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, enum.Enum):
        return o.value
    if isinstance(o, (bytes, bytearray, memoryview)):
        return bytes(o).decode("utf-8", "replace")
    if isinstance(o, Mapping):
        return dict(o)
    if isinstance(o, float):  # a float subclass: orjson hands those over, json does not
        return float(o)
    read = reader(type(o))
    if read is not None:
        data = as_data(o, read)
        if data is not o:
            return data
    return _text(o)


def _text(o: Any) -> str:
    try:
        text = str(o)
    except Exception:  # a broken __str__ must not cost the message
        text = f"<unprintable {type(o).__name__}>"
    _odd_value.warn(
        "value of type %s is not JSON; sent as its str()", type(o).__name__, key=type(o)
    )
    return text


_slow_encoder = json.JSONEncoder(
    default=_default, allow_nan=False, ensure_ascii=False, separators=(",", ":")
)
# The C encoder made once, not per call as JSONEncoder.encode does; no circular check
# (a cycle ends in RecursionError and takes the slow path). PyPy has no C encoder.
_c_encoder = getattr(json.encoder, "c_make_encoder", None)
if _c_encoder is not None:
    _c_encoder = _c_encoder(
        None, _default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )


def _json_fast(message: Any) -> bytes:
    if _c_encoder is None:
        return _slow_encoder.encode(message).encode("utf-8", "replace")
    return "".join(_c_encoder(message, 0)).encode("utf-8", "replace")


def _json_many(messages: Sequence[Any]) -> list[bytes]:
    if _c_encoder is None:
        return [_json_fast(m) for m in messages]
    join, c_encoder = "".join, _c_encoder
    return [join(c_encoder(m, 0)).encode("utf-8", "replace") for m in messages]


_BACKENDS: dict[str, Callable[[Any], bytes]] = {"json": _json_fast}
_MANY: dict[str, Callable[[Sequence[Any]], list[bytes]]] = {"json": _json_many}
if orjson is not None:
    # orjson writes datetimes itself: the builders' copy hands it only `aware` ones (orjson
    # 3.13 rounds +00:19:32 to +00:20, and crashes the process when utcoffset() raises).
    _ORJSON_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_PASSTHROUGH_DATACLASS

    def _orjson_fast(message: Any) -> bytes:
        try:
            return orjson.dumps(message, default=_default, option=_ORJSON_OPTIONS)
        except (TypeError, RecursionError):  # as the json module has it, if it can
            return _json_fast(message)

    def _orjson_many(messages: Sequence[Any]) -> list[bytes]:
        dumps, default, option = orjson.dumps, _default, _ORJSON_OPTIONS
        try:
            return [dumps(m, default=default, option=option) for m in messages]
        except (TypeError, RecursionError):
            return [_orjson_fast(m) for m in messages]

    _BACKENDS["orjson"] = _orjson_fast
    _MANY["orjson"] = _orjson_many

BACKEND = "orjson" if orjson is not None else "json"  # what the fast path uses
_fast = _BACKENDS[BACKEND]
_fast_many = _MANY[BACKEND]
# Whether a call checks its size by `size_bound` (~half the json module's encoding; orjson
# encodes in less time than the bound takes, so with it the call encodes).
BOUND_PAYS = BACKEND == "json"


def _clean(o: Any, seen: set[int], depth: int) -> Any:
    """A JSON-safe copy: the slow path, taken only when the fast encoder refused a value.
    `depth` counts from the message's fields (the message itself is -1)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, int) and not isinstance(o, bool):
        try:
            int.__repr__(o)
        except ValueError:  # over the int -> str digit limit: its digits as a string
            return _int_text(o)
        return o
    if isinstance(o, (str, bool)) or o is None:
        return o
    if isinstance(o, (dict, list)):
        if id(o) in seen:
            return cut(CIRCULAR)
        if depth > MAX_DEPTH:
            return cut(TOO_DEEP)
        seen.add(id(o))
        try:
            if isinstance(o, dict):
                return {_key(k): _clean(v, seen, depth + 1) for k, v in o.items()}
            return [_clean(v, seen, depth + 1) for v in o]
        finally:
            seen.discard(id(o))
    return _clean(_default(o), seen, depth)


def _key(k: Any) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, float) and not math.isfinite(k):
        return "null"
    if isinstance(k, int) and not isinstance(k, bool):
        return _int_text(k)
    if isinstance(k, (float, bool)) or k is None:
        return json.dumps(k)
    cleaned = _default(k)
    if isinstance(cleaned, str):
        return cleaned
    return json.dumps(_clean(cleaned, set(), 0))  # a tuple key: its JSON text


def encode(message: Any) -> bytes:
    """The message as compact UTF-8 JSON. Never raises for a value inside it."""
    try:
        return _fast(message)
    except (ValueError, TypeError, RecursionError):
        return _slow_encoder.encode(_clean(message, set(), -1)).encode("utf-8", "replace")


def encode_many(messages: Sequence[Any]) -> list[bytes]:
    """`[encode(m) for m in messages]`, with one call for them all: the consumer's encoding
    of a batch (a call per message was a fifth of the consumer's time)."""
    try:
        return _fast_many(messages)
    except (ValueError, TypeError, RecursionError):  # one odd message: each on its own
        return [encode(m) for m in messages]


def many(encode_one: Callable[[Any], bytes]) -> Callable[[Sequence[Any]], list[bytes]]:
    """The batch form of a sender's encoder: `encode_many` for the library's own, else a
    call per message."""
    if encode_one is encode:
        return encode_many
    return lambda messages: [encode_one(m) for m in messages]


def use_backend(name: str) -> None:
    """Pick the fast path: "orjson" (if installed) or "json". For tests and benchmarks."""
    global _fast, _fast_many, BACKEND, BOUND_PAYS
    if name not in _BACKENDS:
        raise ValueError(f"encoder backend {name!r} is not available")
    _fast, _fast_many, BACKEND, BOUND_PAYS = _BACKENDS[name], _MANY[name], name, name == "json"


# -- an upper bound of the encoding's size, without encoding ------------------------------
# The call checks a message against the size limit; the consumer encodes it for the wire.
# Encoding it twice costs the caller most of its time, so the call sums this bound instead
# and encodes only when the bound cannot tell (a value of another type, or near the limit).
# A str takes at most 6 bytes a character (a control character is written \u00XX; UTF-8
# needs 4 at most), plus its quotes; the others at most as below.
LEAF_BOUNDS: dict[type, int] = {
    bool: 5,  # false
    type(None): 4,  # null
    float: 24,  # -2.2250738585072014e-308; NaN and infinities are null
    dt.date: 12,  # "2024-05-17"
    uuid.UUID: 38,
}
INT_MIN, INT_MAX, INT_BOUND = -(2**63), 2**64, 20  # within them, 20 digits and a sign at most
DATETIME_BOUND = 37  # naive, UTC or a datetime.timezone: "2024-05-17T12:30:15.250000+05:30"
# dict subclasses encoded as plain dicts without calling their methods (messages.Shared)
PLAIN_DICTS: set[type] = {dict}
# id -> bound of read-only dicts that live as long as the process (messages' shared ones)
CONSTANT_BOUNDS: dict[int, int] = {}


def size_bound(value: Any, budget: int) -> int:
    """An upper bound of len(encode(value)), if it is at most `budget`; -1 when the bound is
    over `budget`, or a value's type or a datetime's tzinfo is not one it knows (encode then).
    Walks dicts and lists of str keys and leaf values; never calls user code."""
    left = _bound(value, budget, 0)
    return budget - left if left >= 0 else -1


def _bound(value: Any, left: int, depth: int) -> int:
    """`left` less the bound of `value`; negative when out of budget or unknown."""
    kind = type(value)
    if kind is dict or kind in PLAIN_DICTS:
        if depth > MAX_DEPTH:
            return -1
        left -= 2 + 2 * len(value)  # braces, and a colon and a comma for each key
        for key, item in value.items():  # the common leaves inline: no call for them
            if type(key) is not str:
                return -1
            kind = type(item)
            if kind is str:
                left -= 6 * (len(key) + len(item)) + 4
                continue
            left -= 6 * len(key) + 2
            size = LEAF_BOUNDS.get(kind)
            if size is not None:
                left -= size
            elif kind is int and INT_MIN <= item < INT_MAX:
                left -= INT_BOUND
            elif kind is dt.datetime and (item.tzinfo is None or item.tzinfo is _UTC):
                left -= DATETIME_BOUND
            elif kind is not dict and id(item) in CONSTANT_BOUNDS:  # known: no walk
                left -= CONSTANT_BOUNDS[id(item)]
            else:
                left = _bound(item, left, depth + 1)
                if left < 0:
                    return left
        return left
    if kind is str:
        return left - 6 * len(value) - 2
    if kind is list:
        if depth > MAX_DEPTH:
            return -1
        left -= 2 + len(value)  # brackets and commas
        for item in value:
            left = _bound(item, left, depth + 1)
            if left < 0:
                return left
        return left
    if kind is int:
        return left - INT_BOUND if INT_MIN <= value < INT_MAX else -1
    if kind is dt.datetime:
        tz = value.tzinfo
        if tz is not None and tz is not _UTC and type(tz) is not dt.timezone:
            return -1  # a tzinfo whose offset the encoders ask it for: user code
        return left - DATETIME_BOUND
    size = LEAF_BOUNDS.get(kind)
    return -1 if size is None else left - size
