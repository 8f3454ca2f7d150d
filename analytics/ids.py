"""Ids and "now": message ids (a private generator, reseeded after fork), id normalisation,
and the timestamps the library stamps. Imports nothing of the library but its errors.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import time
import uuid
from typing import Any, Callable

from .errors import ValidationError
from .typing import Id as Id  # the type of every id argument

# Message ids come from a private generator seeded from os.urandom, reseeded in a forked
# child. os.urandom per call would release the GIL on every call (a syscall), letting any
# other thread take it for up to the switch interval (5 ms) in the middle of a request; the
# ids need to be unique, not secret. A user's random.seed() does not touch this one.
_rng = random.Random()
_rng_pid = os.getpid()
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant


def _reseed() -> None:
    global _rng_pid
    _rng.seed()
    _rng_pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


def uuid4() -> str:
    """A random UUID4 string, as str(uuid.uuid4()) gives, at a third of its cost."""
    if _rng_pid != os.getpid():  # forked without the at-fork hooks (from C)
        _reseed()
    b = (_rng.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET).to_bytes(16, "big")
    # 4-2-2-2-6 bytes: the middle three groups are one hex() with a separator
    return f"{b[:4].hex()}-{b[4:10].hex('-', 2)}-{b[10:].hex()}"


def id_or_none(name: str, value: Any) -> str | None:
    """An id as a string, or None when missing (None or ""); bool, float and other types
    are refused (`name` says which argument)."""
    if type(value) is str:
        return value or None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, uuid.UUID)):
        raise ValidationError(f"{name} must be a str, int or UUID, not {type(value).__name__}")
    try:
        return str(value) or None
    except ValueError:  # an int past the interpreter's int-to-str digit limit
        bits = int.bit_length(value)  # type: ignore[arg-type]  # only an int gets here
        raise ValidationError(f"{name} is an int of {bits} bits: too long for an id") from None


_second: tuple[int, str] = (-1, "")  # the last whole second and its text, shared by calls


def now_iso8601(_now_ns: Callable[[], int] = time.time_ns) -> str:
    """Now in UTC, as ISO-8601 with microseconds; a third of the cost of datetime's."""
    global _second
    whole, ns = divmod(_now_ns(), 1_000_000_000)  # exact: no float rounding of the fraction
    second = _second
    if second[0] != whole:  # one tuple assignment: other threads see the old or the new pair
        second = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{second[1]}.{ns // 1000:06d}+00:00"


def now_millis() -> str:
    """Now in UTC, as ISO-8601 with milliseconds (fixed length: a batch's `sentAt`)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
