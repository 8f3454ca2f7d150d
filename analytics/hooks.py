"""What a client does to each built message before its size check, on the caller's thread:
its default context and properties merged under the call's, then its `before_send` hooks.

Built once per client (`Shaper.of`); a client with none of these options has no shaper at all,
so the call path pays one `is None` check. Never raises for a hook's fault: a hook that raises
is skipped (logged, rate-limited) and the message goes on as that hook was given it.
"""

from __future__ import annotations

from typing import Any

from .context import deep_merge
from .log import Throttle
from .messages import copy_mapping
from .typing import BeforeSend, Message

# The messages whose `properties` take the client's default properties (super properties).
WITH_PROPERTIES = frozenset({"track", "page", "screen"})
# The parts of a message a hook may want to change in place: given to it as plain dicts.
_SECTIONS = ("context", "properties", "traits", "integrations")


def _fresh(value: Any) -> Any:
    """A copy of a default's containers (dicts and lists, as the options' copy made them):
    no two messages share one."""
    kind = type(value)
    if kind is dict:
        return {key: _fresh(item) for key, item in value.items()}
    if kind is list:
        return [_fresh(item) for item in value]
    return value


def _name(hook: object) -> str:
    return str(getattr(hook, "__qualname__", None) or type(hook).__name__)


class Shaper:
    """A client's defaults and hooks, applied to one message at a time."""

    __slots__ = ("context", "properties", "hooks", "_throttle")

    def __init__(
        self,
        context: dict[str, Any] | None,
        properties: dict[str, Any] | None,
        hooks: tuple[BeforeSend, ...],
    ) -> None:
        self.context = context
        self.properties = properties
        self.hooks = hooks
        self._throttle = Throttle()  # this client's: its hooks' warnings, by their place

    @classmethod
    def of(
        cls,
        context: dict[str, Any] | None,
        properties: dict[str, Any] | None,
        hooks: tuple[BeforeSend, ...] | None,
    ) -> Shaper | None:
        """The shaper of a client's checked options; None when there is nothing to do."""
        if not context and not properties and not hooks:
            return None
        return cls(context or None, properties or None, hooks or ())

    def __call__(self, msg: Message) -> Message | None:
        """The message to send (the same dict or another), or None: a hook dropped it."""
        default = self.context
        if default is not None and (ctx := msg.get("context")) is not None:
            msg["context"] = deep_merge(_fresh(default), ctx)  # the call's wins
        default = self.properties
        if default is not None and msg.get("type") in WITH_PROPERTIES:
            props = msg.get("properties") or {}
            # Shallow: a property the call gives replaces the default's whole (PostHog's rule).
            merged = {k: _fresh(v) for k, v in default.items() if k not in props}
            merged.update(props)
            msg["properties"] = merged
        if not self.hooks:
            return msg
        for section in _SECTIONS:  # shared read-only dicts (no context given): a copy
            part = msg.get(section)
            if part is not None and type(part) is not dict:
                msg[section] = dict(part)
        for place, hook in enumerate(self.hooks):
            try:
                out = hook(msg)
            except Exception as exc:
                self._throttle.warn(
                    "before_send hook %s raised %s: %s; the message goes on as it was given "
                    "to it", _name(hook), type(exc).__name__, exc, key=("raised", place),
                )  # fmt: skip
                continue
            if out is None:
                return None
            if not isinstance(out, dict):
                self._throttle.warn(
                    "before_send hook %s returned a %s, not a dict or None; ignored",
                    _name(hook), type(out).__name__, key=("returned", place),
                )  # fmt: skip
                continue
            msg = out
        # What a hook put in goes through the value table, as the call's own values did.
        return copy_mapping("before_send's message", msg)
