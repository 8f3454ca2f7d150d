"""Every error the library raises or reports. None of them ever holds the write key."""

from __future__ import annotations

from typing import ClassVar


class AnalyticsError(Exception):
    """Base of every error of this library."""


class ValidationError(AnalyticsError, ValueError):
    """A call or an option is wrong; raised at once on the caller's thread."""


class OptionError(ValidationError):
    """An option (or a framework setting) is unknown or wrong; `key` names it as written."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class DeliveryError(AnalyticsError):
    """A message will not be delivered. Passed to `on_error`, never raised at a call.
    Each subclass names its `reason`: its key in `stats()["dropped_by_reason"]`."""

    reason: ClassVar[str]


class QueueFull(DeliveryError):
    """The client's queue was full, so the message was dropped."""

    reason = "queue_full"


class MessageTooLarge(DeliveryError):
    """The message's JSON is over the per-message limit."""

    reason = "too_large"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message is {size} bytes of JSON, over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class ClientShutdown(DeliveryError):
    """The client was shut down before the message could be sent."""

    reason = "shutdown"


class SpoolFull(DeliveryError):
    """The spool reached `spool_max_bytes`; its oldest messages were dropped."""

    reason = "spool_full"


class APIError(DeliveryError):
    """The collector refused the batch with a status that is not worth retrying."""

    reason = "rejected"

    def __init__(self, status: int, detail: str = "") -> None:
        text = f"collector rejected the batch with HTTP {status}"
        super().__init__(f"{text}: {detail}" if detail else text)
        self.status = status
        self.detail = detail


class RetriesExhausted(DeliveryError):
    """Every attempt failed with a retryable problem; the batch was given up."""

    reason = "gave_up"

    def __init__(self, attempts: int, status: int | None, cause: str) -> None:
        super().__init__(f"gave up after {attempts} attempts; last: {cause}")
        self.attempts = attempts
        self.status = status
        self.cause = cause
