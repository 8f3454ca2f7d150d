"""Models as data (issue 16): pydantic v2 and v1, dataclasses, attrs, NamedTuple and numpy
values arrive as their data, with the value table applied to their fields, in the same bytes
from the json and the orjson encoders; the library never imports those libraries itself."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, NamedTuple, Optional

import pytest

from analytics import encode as enc
from analytics import messages
from analytics.collector import check

BACKENDS = ["json", "orjson"] if enc.orjson is not None else ["json"]
WHEN = datetime(2024, 5, 17, 12, 30, 15, tzinfo=timezone.utc)
WHEN_TEXT = "2024-05-17T12:30:15+00:00"
UID = uuid.UUID("0b7e5b1e-6a4c-4f6e-9a51-3f1f0e2d4c5b")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest):
    enc.use_backend(request.param)
    yield request.param
    enc.use_backend(BACKENDS[-1])


def send(make_client: Any, collector: Any, props: dict[str, Any]) -> dict[str, Any]:
    client = make_client()
    assert client.track("u1", "Model", props)[0]
    assert client.flush(timeout=5)
    [msg] = collector.wait_for_messages(1)
    assert check(msg) is None, check(msg)
    return msg["properties"]  # type: ignore[no-any-return]


def same_bytes(props: dict[str, Any]) -> bytes:
    """The message for `props` encoded by each backend: the bytes, once checked equal."""
    msg = messages.track("u1", "Model", props, message_id="m1", timestamp=WHEN)
    out = set()
    try:
        for name in BACKENDS:
            enc.use_backend(name)
            out.add(enc.encode(msg))
    finally:
        enc.use_backend(BACKENDS[-1])
    assert len(out) == 1, out
    return out.pop()


# -- dataclasses, NamedTuple (the standard library) --------------------------------------


@dataclasses.dataclass
class Line:
    sku: str
    price: Decimal
    added: datetime


@dataclasses.dataclass
class Cart:
    id: int
    lines: list[Line]
    tags: frozenset[str] = frozenset()
    parent: Optional[Cart] = None  # noqa: UP045 - evaluated at run time on 3.9


class Point(NamedTuple):
    x: int
    y: float


CART = Cart(1, [Line("B-42", Decimal("9.90"), WHEN)], frozenset({"gift"}))
CART_DATA = {
    "id": 1,
    "lines": [{"sku": "B-42", "price": "9.90", "added": WHEN_TEXT}],
    "tags": ["gift"],
    "parent": None,
}


def test_dataclass_arrives_as_an_object_of_its_fields(make_client, collector, backend):
    assert send(make_client, collector, {"cart": CART})["cart"] == CART_DATA


def test_dataclass_is_read_at_the_call(make_client, collector):
    """As for dicts: a caller changing its object after the call does not change what is sent."""
    cart = Cart(2, [])
    client = make_client()
    assert client.track("u1", "Model", {"cart": cart})[0]
    cart.id = 99
    cart.lines.append(Line("late", Decimal(1), WHEN))
    assert client.flush(timeout=5)
    [msg] = collector.wait_for_messages(1)
    assert msg["properties"]["cart"]["id"] == 2
    assert msg["properties"]["cart"]["lines"] == []


def test_dataclass_that_holds_itself_is_cut(make_client, collector):
    cart = Cart(3, [])
    cart.parent = cart
    props = send(make_client, collector, {"cart": cart})
    assert props["cart"]["parent"] == enc.CIRCULAR


def test_namedtuple_arrives_as_an_object(make_client, collector, backend):
    props = send(make_client, collector, {"p": Point(1, 2.5), "ps": [Point(0, 0.0)]})
    assert props["p"] == {"x": 1, "y": 2.5}
    assert props["ps"] == [{"x": 0, "y": 0.0}]


def test_plain_tuple_is_still_a_list(make_client, collector):
    assert send(make_client, collector, {"t": (1, 2)})["t"] == [1, 2]


# -- pydantic ----------------------------------------------------------------------------


def test_pydantic_v2_model_arrives_as_its_json_dump(make_client, collector, backend):
    pydantic = pytest.importorskip("pydantic")

    class Address(pydantic.BaseModel):
        city: str

    class User(pydantic.BaseModel):
        id: uuid.UUID
        joined: datetime
        address: Address
        score: Decimal

    user = User(id=UID, joined=WHEN, address=Address(city="Oslo"), score=Decimal("1.5"))
    props = send(make_client, collector, {"user": user})
    assert props["user"] == user.model_dump(mode="json")
    assert props["user"]["address"] == {"city": "Oslo"}


def test_pydantic_v1_model_arrives_as_its_dict(make_client, collector, backend):
    pytest.importorskip("pydantic")
    from pydantic import v1

    class Order(v1.BaseModel):
        id: int
        placed: datetime
        total: Decimal

    props = send(make_client, collector, {"o": Order(id=7, placed=WHEN, total=Decimal("3.10"))})
    assert props["o"] == {"id": 7, "placed": WHEN_TEXT, "total": "3.10"}


def test_model_that_cannot_be_read_is_sent_as_its_str(make_client, collector):
    pydantic = pytest.importorskip("pydantic")

    class Broken(pydantic.BaseModel):
        x: int

        def model_dump(self, **kw: Any) -> Any:
            raise RuntimeError("no dump")

        def __str__(self) -> str:
            return "broken model"

    props = send(make_client, collector, {"m": Broken(x=1), "sibling": "kept"})
    assert props == {"m": "broken model", "sibling": "kept"}


# -- attrs ---------------------------------------------------------------------------------


def test_attrs_class_arrives_as_an_object_of_its_fields(make_client, collector, backend):
    attrs = pytest.importorskip("attrs")

    @attrs.define
    class Plan:
        name: str
        since: datetime
        seats: tuple[int, ...]

    @attrs.frozen
    class Account:
        plan: Plan
        owner: str

    props = send(make_client, collector, {"a": Account(Plan("pro", WHEN, (1, 2)), "ann")})
    assert props["a"] == {
        "plan": {"name": "pro", "since": WHEN_TEXT, "seats": [1, 2]},
        "owner": "ann",
    }


# -- numpy ---------------------------------------------------------------------------------


def test_numpy_scalars_and_arrays_arrive_as_numbers_and_lists(make_client, collector, backend):
    np = pytest.importorskip("numpy")
    props = send(
        make_client,
        collector,
        {
            "i": np.int64(3),
            "f": np.float32(0.5),
            "b": np.bool_(True),
            "a": np.arange(6).reshape(2, 3),
            "nan": np.float64("nan"),
            "empty": np.array([]),
        },
    )
    assert props == {
        "i": 3,
        "f": 0.5,
        "b": True,
        "a": [[0, 1, 2], [3, 4, 5]],
        "nan": None,
        "empty": [],
    }


# -- both encoders, the same bytes --------------------------------------------------------


def test_models_are_encoded_to_the_same_bytes_by_both_backends():
    props: dict[str, Any] = {"cart": CART, "p": Point(1, 2.5)}
    pydantic = sys.modules.get("pydantic") or pytest.importorskip("pydantic")

    class M(pydantic.BaseModel):
        at: datetime
        n: int

    props["m"] = M(at=WHEN, n=1)
    try:
        import attrs

        @attrs.define
        class A:
            d: Decimal

        props["a"] = A(Decimal("0.1"))
    except ImportError:
        pass
    try:
        import numpy as np

        props["np"] = [np.int32(1), np.float64(2.5), np.array([[1.5], [2.0]])]
    except ImportError:
        pass
    body = json.loads(same_bytes(props))
    assert body["properties"]["cart"] == CART_DATA
    assert body["properties"]["m"] == {"at": "2024-05-17T12:30:15Z", "n": 1}


@pytest.mark.parametrize("name", BACKENDS)
def test_encoder_alone_reads_models_the_same_way(name):
    """A message that skipped the builders' copy: the encoder reads the models itself."""
    np = pytest.importorskip("numpy")
    attrs = pytest.importorskip("attrs")

    @attrs.define
    class A:
        v: int

    enc.use_backend(name)
    try:
        body = json.loads(enc.encode({"c": CART, "a": A(1), "n": np.int16(4), "x": np.ones(2)}))
    finally:
        enc.use_backend(BACKENDS[-1])
    assert body == {"c": CART_DATA, "a": {"v": 1}, "n": 4, "x": [1.0, 1.0]}


# -- never imported by the library ---------------------------------------------------------


def test_tracking_a_plain_dict_imports_none_of_the_model_libraries():
    script = textwrap.dedent(
        """
        import sys
        import analytics
        client = analytics.Client("k", stub=True)
        ok, msg = client.track("u1", "Plain", {"a": 1, "b": [1, {"c": 2}], "d": (1,)})
        assert ok
        analytics.encode.encode(msg)
        loaded = [m for m in ("pydantic", "attrs", "attr", "numpy") if m in sys.modules]
        print(",".join(loaded) or "none")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "none"
