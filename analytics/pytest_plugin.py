"""The `analytics_events` pytest fixture: for one test, every message that any client of the
process sends is captured instead, with assertion helpers. Loaded by pytest only (the
`pytest11` entry point, or `-p analytics.pytest_plugin`); until a test asks for the fixture
it changes nothing, and it imports nothing at load but pytest.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

# A placeholder for the module's write key while a test captures (tests seldom have one):
# nothing is sent, so no collector ever sees it.
PLACEHOLDER_KEY = "analytics-events-fixture"

# Shown for each message in a failure, when sent: what tells messages apart.
_SHOWN = (
    "event", "name", "category", "userId", "anonymousId", "groupId", "previousId",
    "properties", "traits",
)  # fmt: skip


def _wire_name(name: str) -> str:
    """`user_id` -> `userId`: the keyword of a call to the key of its message."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


_IDS = ("userId", "anonymousId", "groupId", "previousId", "messageId")


def _wanted(fields: dict[str, Any]) -> dict[str, Any]:
    """The keywords given, as message keys and values; an id given as an int or a UUID is
    sent as a string, so it is looked for as one."""
    wanted = {_wire_name(k): v for k, v in fields.items() if v is not None}
    for key in _IDS:
        value = wanted.get(key)
        if isinstance(value, (int, uuid.UUID)) and not isinstance(value, bool):
            wanted[key] = str(value)
    return wanted


def _matches(expected: Any, sent: Any) -> bool:
    """Equal, but a mapping matches a sent mapping that holds at least its keys (recursively)."""
    if isinstance(expected, Mapping):
        return isinstance(sent, Mapping) and all(
            key in sent and _matches(value, sent[key]) for key, value in expected.items()
        )
    return bool(sent == expected)


class AnalyticsEvents:
    """The messages sent during one test, as the calls returned them (camelCase keys, values
    as given), oldest first; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[dict[str, Any]] = []

    def record(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._messages.append(message)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every message sent so far in this test (a copy of the list)."""
        with self._lock:
            return list(self._messages)

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.messages)

    def __repr__(self) -> str:
        return f"<analytics_events: {len(self)} messages>"

    def clear(self) -> None:
        """Forget what was sent so far (say, by the test's setup)."""
        with self._lock:
            self._messages.clear()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """The messages of one type: "track", "identify", "page", "screen", "group", "alias"."""
        return [m for m in self.messages if m.get("type") == kind]

    # -- assertions: each returns the first message that matches, or fails saying what was sent

    def tracked(self, event: str | None = None, **fields: Any) -> dict[str, Any]:
        """Assert a track of `event` was sent with these fields (`user_id="u1"`,
        `properties={"plan": "pro"}`: a dict matches one holding at least its keys)."""
        __tracebackhide__ = True  # pytest: the failure points at the test
        return self._expect("track", {"event": event, **fields})

    def identified(self, **fields: Any) -> dict[str, Any]:
        """Assert an identify was sent with these fields (`user_id=`, `traits=`...)."""
        __tracebackhide__ = True  # pytest: the failure points at the test
        return self._expect("identify", fields)

    def paged(self, name: str | None = None, **fields: Any) -> dict[str, Any]:
        """Assert a page view was sent with this name and fields."""
        __tracebackhide__ = True  # pytest: the failure points at the test
        return self._expect("page", {"name": name, **fields})

    def screened(self, name: str | None = None, **fields: Any) -> dict[str, Any]:
        """Assert a screen view was sent with this name and fields."""
        __tracebackhide__ = True  # pytest: the failure points at the test
        return self._expect("screen", {"name": name, **fields})

    def grouped(self, group_id: Any = None, **fields: Any) -> dict[str, Any]:
        """Assert a group call was sent for this group and fields."""
        __tracebackhide__ = True  # pytest: the failure points at the test
        return self._expect("group", {"group_id": group_id, **fields})

    def aliased(self, previous_id: Any = None, **fields: Any) -> dict[str, Any]:
        """Assert an alias was sent from this previous id, with these fields."""
        __tracebackhide__ = True  # pytest: the failure points at the test
        return self._expect("alias", {"previous_id": previous_id, **fields})

    def _expect(self, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        wanted = _wanted(fields)
        sent = self.messages
        for message in sent:
            if message.get("type") == kind and all(
                key in message and _matches(value, message[key]) for key, value in wanted.items()
            ):
                return message
        __tracebackhide__ = True
        raise AssertionError(_missing(kind, wanted, sent))


def _missing(kind: str, wanted: dict[str, Any], sent: list[dict[str, Any]]) -> str:
    what = ", ".join(f"{k}={v!r}" for k, v in wanted.items())
    head = f"no {kind} message{' with ' + what if what else ''} was sent"
    if not sent:
        return f"{head}; nothing was sent in this test"
    shown = [*_SHOWN, *(k for k in wanted if k not in _SHOWN)]
    lines = [f"{head}; {len(sent)} message{'s' if len(sent) > 1 else ''} sent instead:"]
    for n, message in enumerate(sent, 1):
        parts = [f"{k}={message[k]!r}" for k in shown if k in message and message[k] != {}]
        lines.append(f"  {n}. {message.get('type')}: {', '.join(parts)}")
    return "\n".join(lines)


@pytest.fixture
def analytics_events(monkeypatch: pytest.MonkeyPatch) -> AnalyticsEvents:
    """Capture, for this test, every message of the module and of every `Client` (built
    before or during it), sending nothing; afterwards clients send again."""
    import analytics
    from analytics.client import Client
    from analytics.pipeline import Pipeline

    events = AnalyticsEvents()

    # Every accepted message of a client that sends (queued or sync) passes through its
    # pipeline's put, after every check of the call: it stops here, sends nothing, counts
    # nowhere (flush has nothing to wait for).
    def put(pipeline: Pipeline, msg: dict[str, Any], data: bytes) -> bool:
        events.record(msg)
        return True

    # A stub client keeps its messages in `client.sent`, short of put: captured here too.
    enqueue = Client._enqueue

    def stub_enqueue(
        client: Client, msg: dict[str, Any], bound: int = -1
    ) -> tuple[bool, dict[str, Any]]:
        ok, sent = enqueue(client, msg, bound)
        if ok and client.stub:
            events.record(sent)
        return ok, sent

    monkeypatch.setattr(Pipeline, "put", put)
    monkeypatch.setattr(Client, "_enqueue", stub_enqueue)
    if not analytics.write_key and not analytics.stub:
        monkeypatch.setattr(analytics, "write_key", PLACEHOLDER_KEY)
    return events
