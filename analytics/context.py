"""Per-request (per-task) defaults for calls: ids, context and integrations.

Kept in a `contextvars.ContextVar`, so it follows threads' and asyncio tasks' own context.
Explicit arguments of a call always win; the scope's context is deep-merged under the call's.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .errors import ValidationError


@dataclass(frozen=True)
class Scope:
    user_id: str | None = None
    anonymous_id: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    integrations: Mapping[str, Any] = field(default_factory=dict)


_current: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "analytics_scope", default=None
)


def current_scope() -> Scope | None:
    """The innermost open scope of this thread or task, or None."""
    return _current.get()


def deep_merge(under: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: `over` wins; nested mappings present in both are merged the same way."""
    merged = dict(under)
    for key, value in over.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = deep_merge(below, value)
        else:
            merged[key] = value
    return merged


def _mapping(name: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(f"scope {name} must be a mapping, not {type(value).__name__}")
    return value


@contextmanager
def scope(
    user_id: Any = None,
    anonymous_id: Any = None,
    context: Mapping[str, Any] | None = None,
    integrations: Mapping[str, Any] | None = None,
) -> Iterator[Scope]:
    """Open a scope: calls inside it that lack an id get the scope's; nested scopes merge."""
    from .messages import id_or_none  # late: messages imports this module

    parent = _current.get() or Scope()
    uid = id_or_none("user_id", user_id)
    aid = id_or_none("anonymous_id", anonymous_id)
    new = Scope(
        user_id=uid if uid is not None else parent.user_id,
        anonymous_id=aid if aid is not None else parent.anonymous_id,
        context=deep_merge(parent.context, _mapping("context", context)),
        integrations={**parent.integrations, **_mapping("integrations", integrations)},
    )
    token = _current.set(new)
    try:
        yield new
    finally:
        _current.reset(token)
