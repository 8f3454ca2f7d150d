"""What a wire protocol is, and the table of them by name. A protocol is a value: how its
sender is built, its default host, its batch limit, the calls it cannot carry and the client
class with its own helpers. A protocol other than Segment's is imported only when a client
asks for it: the one place where the package loads a module by name (the lazy protocol load).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from .errors import ValidationError


@dataclass(frozen=True)
class Reply:
    """What one request came to: a status, or an error with no status."""

    status: int | None
    retry_after: float | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status <= 299


class Sender(Protocol):
    """A protocol's sender: encodes one message on the caller's thread (raising
    ValidationError for what the protocol cannot carry), and sends encoded messages in
    one request, saying what came of it; it never raises and knows nothing of retries."""

    url: str  # where requests go (a protocol with a path per message: their base URL)

    def encode(self, message: dict[str, Any]) -> bytes: ...

    def send(self, items: Sequence[bytes]) -> Reply: ...

    def close(self) -> None: ...


# What a sender's optional `start(items)` gives back: `start` sends the request and returns
# at once; this waits for the reply and gives it (never raising). The consumer fills its
# next batch in between, while the collector reads this one. A sender without `start` is
# sent to with `send`.
ReadReply = Callable[[], Reply]


# (key, host, timeout, proxies, gzip) -> a Sender
SenderFactory = Callable[[str, str, float, "dict[str, str] | None", bool], Sender]


@dataclass(frozen=True)
class WireProtocol:
    name: str
    default_host: str
    make_sender: SenderFactory
    batch_limit: int | None = None  # messages per request at most; None: batch_size
    refuses: frozenset[str] = frozenset()  # calls it cannot carry
    key_name: str = "write_key"  # what its docs call the key
    client: str = ""  # "module:Class" of a Client subclass with its own helpers; "": Client


# name -> (module, attribute) of its WireProtocol; imported on first use
_TABLE = {
    "segment": ("analytics.segment", "SEGMENT"),
    "rudderstack": ("analytics.rudderstack", "RUDDERSTACK"),
    "atrack": ("analytics.atrack.wire", "ATRACK"),
}
NAMES = tuple(_TABLE)
_loaded: dict[str, WireProtocol] = {}


def load(name: object) -> WireProtocol:
    """The protocol called `name`; ValidationError if there is none."""
    found = _loaded.get(name) if isinstance(name, str) else None
    if found is not None:
        return found
    if not isinstance(name, str) or name not in _TABLE:
        choices = " or ".join(repr(n) for n in NAMES)
        raise ValidationError(f"unknown protocol {name!r}: {choices}")
    module, attribute = _TABLE[name]
    found = getattr(importlib.import_module(module), attribute)
    assert isinstance(found, WireProtocol)
    _loaded[name] = found
    return found


def client_class(protocol: WireProtocol) -> type[Any] | None:
    """The Client subclass a protocol names, or None for the plain Client."""
    if not protocol.client:
        return None
    module, _, attribute = protocol.client.partition(":")
    kind: type[Any] = getattr(importlib.import_module(module), attribute)
    return kind
