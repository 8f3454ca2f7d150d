"""RudderStack's flavour of Segment's HTTP Tracking API: the same batches, path and auth
(`{data plane}/v1/batch`, Basic write key, `sentAt` per batch), with the fields RudderStack's
own SDK and event spec put on each message. Its `WireProtocol` value is `RUDDERSTACK`;
`dataPlaneUrl=...` (on `Client` or the module) chooses it.

The fields are added on the caller's thread when the message is encoded, to the message
itself, so that what a call returns, what stub mode keeps and what `on_error` is given is
what was sent. Nothing the caller passed is changed: only the message's own dicts are replaced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .encode import encode as encode_json
from .messages import Shared
from .protocols import WireProtocol
from .segment import SegmentSender

CHANNEL = "server"  # RudderStack's event spec: where the event came from
ALL = Shared({"All": True})  # RudderStack's default integrations: every destination


def shape(message: dict[str, Any]) -> dict[str, Any]:
    """Add RudderStack's fields to a Segment-spec message (again: no change)."""
    message["channel"] = CHANNEL
    if not message.get("integrations"):
        message["integrations"] = ALL
    if "timestamp" in message and "originalTimestamp" not in message:
        message["originalTimestamp"] = message["timestamp"]
    if message.get("type") == "identify":
        context = message.get("context") or {}
        given = context.get("traits")  # the caller's own context.traits, kept beneath
        traits = {**(given if isinstance(given, Mapping) else {}), **message.get("traits", {})}
        if context.get("traits") != traits:
            message["context"] = {**context, "traits": traits}
    return message


class RudderStackSender(SegmentSender):
    """Posts batches of RudderStack-flavoured messages to `{data plane}/v1/batch`."""

    def __repr__(self) -> str:
        return f"<RudderStackSender url={self.url!r} gzip={self.gzip}>"

    @staticmethod
    def encode(message: dict[str, Any]) -> bytes:
        return encode_json(shape(message))


# No default host: every RudderStack workspace has a data plane URL of its own.
RUDDERSTACK = WireProtocol("rudderstack", "", RudderStackSender)
