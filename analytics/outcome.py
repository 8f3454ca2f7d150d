"""The small immutable values that flow down the pipeline: a batch on its way, what came of
sending it (`Outcome`), and what became of its messages once settled (`Fate`)."""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from .errors import DeliveryError
from .typing import Message


class Origin(enum.Enum):
    """Where a batch's messages come from, which says how settling them is counted."""

    QUEUE = "queue"  # taken off the queue: counted in `queued`, so `flush` waits for them
    CALL = "call"  # sent by the call itself (sync mode, or no thread could start)
    SPOOL = "spool"  # rows of the spool file, replayed


@dataclass(frozen=True)
class Batch:
    """Messages sent in one request: their encoded `items` and, except for spooled rows
    (which hold only bytes), their dicts. `rows` are the spool rows a replay claimed."""

    items: Sequence[bytes]
    messages: Sequence[Message] = ()
    origin: Origin = Origin.QUEUE
    rows: Sequence[int] = field(default=())

    def dicts(self) -> list[Message]:
        """The messages as dicts (decoded from their JSON for spooled rows)."""
        if self.messages or not self.items:
            return list(self.messages)
        return [json.loads(item) for item in self.items]

    @property
    def queued(self) -> bool:
        return self.origin is Origin.QUEUE


@dataclass(frozen=True)
class Outcome:
    """What came of delivering a batch: delivered (`error` None), or not and why. `taken`
    means a shutdown out of time took the batch from its sender and settled it already."""

    error: DeliveryError | None = None
    taken: bool = False

    @property
    def delivered(self) -> bool:
        return self.error is None and not self.taken


DELIVERED = Outcome()
TAKEN = Outcome(taken=True)


class Fate(enum.Enum):
    """What became of a settled batch."""

    DELIVERED = "delivered"
    KEPT = "kept"  # in the spool, for a later replay
    DROPPED = "dropped"  # reported to on_error and counted
    SETTLED = "settled"  # nothing left to do: settled elsewhere already
