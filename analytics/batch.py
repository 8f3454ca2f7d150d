"""The batching rule: at most `max_count` messages and `max_bytes` of body per request.

Messages arrive already encoded (bytes); a batch body is their join. The byte limit is
checked before a message is added; `add` says with a `Fit` what it did.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

from .encode import encode
from .ids import now_millis
from .options import DEFAULTS

MAX_BATCH_BYTES = 500_000
MAX_MESSAGE_BYTES = 32_768

_HEAD = b'{"batch":['
_TAIL = b'],"sentAt":"'
# sentAt is always written with milliseconds and an offset, so its length is fixed.
_SENT_AT_LEN = len("2000-01-01T00:00:00.000+00:00")
_OVERHEAD = len(_HEAD) + len(_TAIL) + _SENT_AT_LEN + len(b'"}')


def body(items: Sequence[bytes], sent: str | None = None) -> bytes:
    """The request body for already encoded messages."""
    stamp = (sent or now_millis()).encode("ascii")
    return b"".join((_HEAD, b",".join(items), _TAIL, stamp, b'"}'))


class Fit(enum.Enum):
    """What `Batcher.add` did with a message; only `ADDED` is true."""

    ADDED = "added"
    FULL = "full"  # it would break the count or byte limit: send the batch, then add it
    TOO_LARGE = "too_large"  # over MAX_MESSAGE_BYTES: no batch can take it

    def __bool__(self) -> bool:
        return self is Fit.ADDED


class Batcher:
    """Collects encoded messages into one request body within the count and byte limits."""

    def __init__(
        self, max_count: int = DEFAULTS.batch_size, max_bytes: int = MAX_BATCH_BYTES
    ) -> None:
        if max_count < 1:
            raise ValueError("max_count must be at least 1")
        if max_bytes < _OVERHEAD + MAX_MESSAGE_BYTES:
            raise ValueError(f"max_bytes must be at least {_OVERHEAD + MAX_MESSAGE_BYTES}")
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.items: list[bytes] = []
        self._size = _OVERHEAD

    def __len__(self) -> int:
        return len(self.items)

    def fits(self, item: bytes) -> bool:
        """Whether `item` can join without breaking either limit."""
        extra = len(item) + (1 if self.items else 0)
        return len(self.items) < self.max_count and self._size + extra <= self.max_bytes

    def add(self, item: bytes | Mapping[str, Any]) -> Fit:
        """Add a message (encoded bytes or a dict). Anything but `Fit.ADDED` (the one true
        value) means nothing was added: `FULL` (send this batch first) or `TOO_LARGE`."""
        data = item if isinstance(item, bytes) else encode(item)
        if len(data) > MAX_MESSAGE_BYTES:
            return Fit.TOO_LARGE
        if not self.fits(data):
            return Fit.FULL
        self._size += len(data) + (1 if self.items else 0)
        self.items.append(data)
        return Fit.ADDED

    def add_run(self, items: Sequence[bytes]) -> int:
        """Add encoded messages from the front of `items` while each is `Fit.ADDED`: how
        many were. One check for them all when all fit (the consumer's common case)."""
        count = min(len(items), self.max_count - len(self.items))
        run = items if count == len(items) else items[:count]
        if run:
            extra = sum(map(len, run)) + len(run) - (0 if self.items else 1)
            if self._size + extra <= self.max_bytes and max(map(len, run)) <= MAX_MESSAGE_BYTES:
                self._size += extra
                self.items.extend(run)
                return count
        added = 0
        for item in run:
            if self.add(item) is not Fit.ADDED:
                break
            added += 1
        return added

    @property
    def full(self) -> bool:
        return len(self.items) >= self.max_count

    @property
    def size(self) -> int:
        """Bytes of the body this batch would make."""
        return self._size

    def body(self, sent: str | None = None) -> bytes:
        return body(self.items, sent)

    def take(self) -> list[bytes]:
        """The collected messages; the batcher starts empty again."""
        items, self.items, self._size = self.items, [], _OVERHEAD
        return items
