"""orjson (the `fast` extra) and the json module give the same bytes for the value table."""

from __future__ import annotations

import dataclasses
import enum
import math
import uuid
from collections import OrderedDict
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest

from analytics import encode as enc

orjson = pytest.importorskip("orjson")


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Name(str):
    pass


class Ratio(float):
    pass


@dataclasses.dataclass
class Point:
    x: int


class Thing:
    def __str__(self) -> str:
        return "thing"


IST = timezone(timedelta(hours=5, minutes=30))

VALUES = {
    "str": "plain",
    "unicode": "zażółć 日本 🎉",
    "escapes": 'quote " backslash \\ newline \n tab \t ctrl \x01 del \x7f',
    "int": 42,
    "negative": -7,
    "int64": 2**63 - 1,
    "bigint": 2**80,
    "float": 49.95,
    "float_small": 0.1,
    "float_int": 3.0,
    "nan": math.nan,
    "inf": math.inf,
    "bool": True,
    "none": None,
    "list": [1, "a", None],
    "tuple": (1, 2),
    "set": {7},
    "nested": {"a": {"b": [1, {"c": 2}]}},
    "ordered": OrderedDict([("z", 1), ("a", 2)]),
    "aware": datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc),
    "aware_whole_second": datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
    "offset": datetime(2024, 1, 2, 3, 4, 5, tzinfo=IST),
    "naive": datetime(2024, 1, 2, 3, 4, 5, 6),
    "date": date(2024, 1, 2),
    "time": time(12, 34, 56),
    "decimal": Decimal("1.10"),
    "decimal_nan": Decimal("NaN"),
    "uuid": uuid.UUID("0b7e5b1e-6a4c-4f6e-9a51-3f1f0e2d4c5b"),
    "enum": Color.RED,
    "int_enum": Level.HIGH,
    "str_subclass": Name("n"),
    "float_subclass": Ratio(0.5),
    "bytes": b"raw",
    "dataclass": Point(1),
    "object": Thing(),
    "surrogate": "bad \ud800 text",
    "int_keys": {1: "one", None: "none", 2.5: "half"},
    "bool_keys": {True: "yes"},
    "deep": [[[[[[[[[[1]]]]]]]]]],
}


def both(value: object) -> tuple[bytes, bytes]:
    try:
        enc.use_backend("json")
        plain = enc.encode(value)
        enc.use_backend("orjson")
        fast = enc.encode(value)
    finally:
        enc.use_backend("orjson")
    return plain, fast


@pytest.mark.parametrize("name", sorted(VALUES))
def test_same_bytes_for_each_value(name: str) -> None:
    plain, fast = both({"value": VALUES[name]})
    assert fast == plain


def test_same_bytes_for_a_whole_message() -> None:
    plain, fast = both(VALUES)
    assert fast == plain


def test_too_deep_for_orjson_takes_the_slow_path() -> None:
    value: list[object] = []
    for _ in range(300):  # orjson stops at 254 levels
        value = [value]
    plain, fast = both(value)
    assert fast == plain
    assert fast.startswith(b"[[[[")


def test_cycle_is_sent_as_a_string_by_both() -> None:
    cyclic: dict[str, object] = {"a": 1}
    cyclic["self"] = cyclic
    plain, fast = both(cyclic)
    assert fast == plain
    assert b"circular" in fast


def test_backend_names_what_the_fast_path_uses() -> None:
    enc.use_backend("json")
    try:
        assert enc.BACKEND == "json"
    finally:
        enc.use_backend("orjson")
    assert enc.BACKEND == "orjson"
    with pytest.raises(ValueError):
        enc.use_backend("ujson")


@pytest.mark.parametrize("value", [1e-7, 2.5e-05, 1e16, -0.0, 5e-324, 1.7976931348623157e308])
def test_floats_keep_their_value(value: float) -> None:
    """Exponents may be spelled differently (json: 1e-07, orjson: 1e-7); the value is not."""
    import json

    plain, fast = both(value)
    assert json.loads(fast) == json.loads(plain) == value
