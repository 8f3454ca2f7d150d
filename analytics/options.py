"""Every option of a client, declared once: name, default, check, Segment's alias, meaning.

`resolve` checks what a user gave (Client arguments, Django or Flask settings) and returns
the `Settings`; the facade, the integrations and the command line read names and defaults here.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, TypeVar

from . import messages, protocols
from .errors import OptionError
from .retry import Backoff
from .typing import BeforeSend, OnError

Check = Callable[[str, Any], Any]  # (label, value) -> the value to use; raises OptionError
Label = Callable[[str], str]  # option name -> that option as the user wrote it

T = TypeVar("T")


# -- the checks ----------------------------------------------------------------------------


def boolean(label: str, value: Any) -> bool:
    """True or False, nothing else."""
    # Strict: "false" from a config file would otherwise silently mean True.
    if not isinstance(value, bool):
        raise OptionError(label, f"{label} must be True or False, not {value!r}")
    return value


def integer(minimum: int) -> Check:
    """The check of an int (not a bool) of at least `minimum`."""

    def check(label: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise OptionError(label, f"{label} must be an int >= {minimum}, not {value!r}")
        return value

    return check


def number(minimum: float) -> Check:
    """The check of an int or float (not a bool) of at least `minimum`."""

    def check(label: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise OptionError(label, f"{label} must be a number >= {minimum}, not {value!r}")
        return value

    return check


def _write_key(label: str, value: Any) -> str | None:
    # The value itself is never shown: it may be the key.
    if value is not None and not isinstance(value, str):
        raise OptionError(label, f"{label} must be a str or None, not {type(value).__name__}")
    return value


def _host(label: str, value: Any) -> str:
    if value == "":  # the default of a protocol with none: RudderStack's
        why = "this protocol has no default (RudderStack's: your data plane's URL)"
        raise OptionError(label, f"{label} is required: {why}")
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise OptionError(label, f"{label} must be an http(s) URL, not {value!r}")
    return value


def _on_error(label: str, value: Any) -> OnError | None:
    # A callable is a callback even when it is falsy (one with a __len__ of 0, say).
    if callable(value):
        return value  # type: ignore[no-any-return]
    # Segment's library tests `if on_error:`, so any falsy value (False, 0, "") means none.
    try:
        falsy = not value
    except Exception:  # a truth value that cannot be told is no callback either
        falsy = False
    if falsy:
        return None
    raise OptionError(label, f"{label} must be callable or None, not {type(value).__name__}")


def _proxies(label: str, value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise OptionError(label, f"{label} must be a dict, as requests takes them, or None")
    return dict(value)


def _protocol(label: str, value: Any) -> str:
    if value not in protocols.NAMES:
        choices = ", ".join(repr(n) for n in protocols.NAMES)
        raise OptionError(label, f"{label} must be one of {choices}, not {value!r}")
    return str(value)


def _path(label: str, value: Any) -> str | None:
    if value is None or value == "":  # "" has always meant: no spool
        return None
    path = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(path, str):
        raise OptionError(label, f"{label} must be a file path (str) or None, not {value!r}")
    return path


def _log_handler(label: str, value: Any) -> logging.Handler | None:
    if value is not None and not isinstance(value, logging.Handler):
        raise OptionError(label, f"{label} must be a logging.Handler or None, not {value!r}")
    return value


def _backoff(label: str, value: Any) -> Backoff:
    if not isinstance(value, Backoff):
        raise OptionError(label, f"{label} must be an analytics.Backoff, not {value!r}")
    if not value.factor > 0 or not value.max_wait > 0:
        raise OptionError(label, f"{label}: factor and max_wait must be > 0, not {value!r}")
    return value


def _before_send(label: str, value: Any) -> tuple[BeforeSend, ...] | None:
    if value is None:
        return None
    if callable(value):
        value = (value,)
    if not isinstance(value, (list, tuple)):
        raise OptionError(
            label, f"{label} must be a callable, a list of callables or None, not {value!r}"
        )
    for hook in value:
        if not callable(hook):
            raise OptionError(label, f"{label}: {hook!r} is not callable")
        if inspect.iscoroutinefunction(hook):  # it runs on the caller's thread: no await
            raise OptionError(label, f"{label}: {hook!r} is async; a hook must be a plain def")
    return tuple(value) or None


def _properties(label: str, value: Any) -> dict[str, Any] | None:
    # A copy all the way down: the caller changing its dict later changes nothing sent.
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise OptionError(label, f"{label} must be a dict or None, not {type(value).__name__}")
    return messages.copy_mapping(label, value) or None  # and the value table, once


def _context(label: str, value: Any) -> dict[str, Any] | None:
    kept = _properties(label, value)
    if kept is not None:
        kept.pop("library", None)  # context.library is always the library's own
    return kept or None


def _anything(label: str, value: Any) -> Any:
    return value


# -- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One option: how it is named, what it is worth by default, how its value is checked."""

    name: str
    default: Any
    check: Check
    doc: str
    alias: str | None = None  # Segment's (and Ruby's) name for it; RudderStack's for host
    inverted: bool = False  # the alias means the opposite: send = not stub
    # None means "not given": the default applies, or the alias if that is given.
    none_is_unset: bool = False
    client_only: bool = False  # Segment's extras: a Client takes them, the facade does not
    # What giving the alias also means: (option, value) pairs. RudderStack's dataPlaneUrl
    # names its wire protocol as well as the host.
    implies: tuple[tuple[str, Any], ...] = ()

    def from_alias(self, value: Any) -> Any:
        """The option's value for a value of its alias (the same conversion both ways)."""
        return not value if self.inverted else value

    to_alias = from_alias


def _option(default: T, check: Check, doc: str, *, secret: bool = False, **more: Any) -> T:
    """A field of `Settings` that carries its `Option` (the field's name is the option's)."""
    about = {"check": check, "doc": doc, **more}
    return field(default=default, repr=not secret, metadata={"option": about})


@dataclass(frozen=True)
class Settings:
    """Every option of one client, checked: what `resolve` returns (the write key hidden)."""

    write_key: str | None = _option(
        None, _write_key, "the source's write key; required unless stub", secret=True
    )
    host: str = _option(
        "https://api.segment.io", _host, "collector base URL",
        alias="dataPlaneUrl", implies=(("protocol", "rudderstack"),), none_is_unset=True,
    )  # fmt: skip
    debug: bool = _option(False, boolean, "set the analytics logger to DEBUG")
    max_queue_size: int = _option(10000, integer(1), "messages waiting in memory at most")
    on_error: OnError | None = _option(
        None, _on_error, "on_error(error, batch) for every message that will not be delivered"
    )
    gzip: bool = _option(False, boolean, "gzip request bodies")
    max_retries: int = _option(10, integer(0), "retries of a batch after the first try")
    sync_mode: bool = _option(False, boolean, "every call posts in the caller's thread")
    timeout: float = _option(15, number(0.001), "seconds per HTTP request")
    proxies: dict[str, str] | None = _option(None, _proxies, "proxies, as requests takes them")
    thread: int = _option(
        1, _anything, "Segment's; ignored: one consumer thread per client", client_only=True
    )
    log_handler: logging.Handler | None = _option(
        None, _log_handler, "a handler added to the analytics logger"
    )
    stub: bool = _option(
        False, boolean, "send nothing; keep messages in client.sent",
        alias="send", inverted=True, none_is_unset=True,
    )  # fmt: skip
    batch_size: int = _option(
        100, integer(1), "messages per request at most", alias="upload_size", none_is_unset=True
    )
    flush_interval: float = _option(
        0.5, number(0), "seconds the consumer waits to fill a batch",
        alias="upload_interval", none_is_unset=True,
    )  # fmt: skip
    shutdown_timeout: float = _option(5, number(0), "seconds the exit-time drain may take")
    protocol: str = _option(
        "segment", _protocol, "the wire protocol: 'segment', 'rudderstack' or 'atrack'"
    )
    spool_path: str | None = _option(
        None, _path, "a SQLite file keeping what cannot be delivered yet"
    )
    durable: bool = _option(False, boolean, "with spool_path: write every message ahead")
    spool_max_bytes: int = _option(100 * 1024 * 1024, integer(1), "the spool's size at most")
    fsync: bool = _option(False, boolean, "with spool_path: fsync each spool write")
    backoff: Backoff = _option(
        Backoff(), _backoff, "the waits between retries: analytics.Backoff(factor, max_wait)"
    )
    max_total_backoff_duration: float = _option(
        43200, number(0), "seconds a batch's backoff retries may go on, from its first failure"
    )
    max_rate_limit_duration: float = _option(
        1800, number(0), "seconds a batch may spend honouring Retry-After waits, from the first"
    )
    before_send: tuple[BeforeSend, ...] | None = _option(
        None, _before_send, "a callable (or a list) given each message: returns it or None"
    )
    context: dict[str, Any] | None = _option(
        None, _context, "a context deep-merged under every call's (the call's wins)"
    )
    properties: dict[str, Any] | None = _option(
        None, _properties, "properties under every track/page/screen's (the call's win)"
    )

    def value(self, name: str) -> Any:
        """An option's value by its name or by Segment's alias for it (`send`...)."""
        option = ALIASES.get(name)
        if option is not None:
            return option.to_alias(getattr(self, option.name))
        return getattr(self, BY_NAME[name].name)


OPTIONS: tuple[Option, ...] = tuple(
    Option(f.name, f.default, **f.metadata["option"]) for f in fields(Settings)
)
BY_NAME: Mapping[str, Option] = {option.name: option for option in OPTIONS}
ALIASES: Mapping[str, Option] = {o.alias: o for o in OPTIONS if o.alias is not None}
# What the module facade and the framework settings take: all but a Client's extras.
FACADE_OPTIONS: tuple[Option, ...] = tuple(o for o in OPTIONS if not o.client_only)
DEFAULTS = Settings()


# -- checking what was given ----------------------------------------------------------------


def _as_given(name: str) -> str:
    return name


def checked(given: Mapping[str, Any], label: Label = _as_given) -> dict[str, Any]:
    """Check each given value (by option or alias name); return them by option name,
    aliases resolved (and what they imply). An alias and its option that disagree are
    refused."""
    given = implied(given, label)
    values: dict[str, Any] = {}
    written: dict[str, dict[str, Any]] = {}  # option name -> {name given: value given}
    for name, value in given.items():
        option = ALIASES.get(name) or BY_NAME.get(name)
        if option is None:
            raise OptionError(label(name), f"unknown option {label(name)}")
        if value is None and option.none_is_unset:
            continue
        checked_value = option.check(label(name), value)
        if name != option.name:
            checked_value = option.from_alias(checked_value)
        if option.name in values and values[option.name] != checked_value:
            both = {name: value, **written[option.name]}  # the option's and its alias's
            main, alias = option.name, str(option.alias)
            raise OptionError(
                label(name),
                f"{label(main)}={both[main]!r} and its alias {label(alias)}={both[alias]!r} "
                "disagree",
            )
        values[option.name] = checked_value
        written[option.name] = {name: value}
    return values


def implied(given: Mapping[str, Any], label: Label = _as_given) -> dict[str, Any]:
    """`given` with what its aliases imply: `dataPlaneUrl=url` also means RudderStack's
    protocol, unless another one than the default is named (then: refused)."""
    out = dict(given)
    for alias, option in ALIASES.items():
        value = out.get(alias)
        if value is None or value == "" or not option.implies:
            continue
        for name, wanted in option.implies:
            now = out.get(name, BY_NAME[name].default)
            if now == BY_NAME[name].default:
                out[name] = wanted
            elif now != wanted:
                raise OptionError(
                    label(alias), f"{label(alias)} means {label(name)}={wanted!r}; with "
                    f"{label(name)}={now!r} give {label(option.name)} instead",
                )  # fmt: skip
    return out


def resolve(
    given: Mapping[str, Any], label: Label = _as_given, *, require_write_key: bool = True
) -> Settings:
    """Every option of a client from what was given (the rest: defaults), checked one by
    one and against each other. Raises `OptionError` (a `ValidationError`) naming the
    option as the user wrote it. `require_write_key=False` where the key may come later."""
    settings = replace(DEFAULTS, **checked(given, label))
    if require_write_key and not settings.stub and not settings.write_key:
        raise OptionError(
            label("write_key"),
            f"{label('write_key')} is required (a non-empty str) unless {label('stub')} is "
            f"True (or {label('send')} is False)",
        )
    if settings.durable and settings.spool_path is None:
        raise OptionError(
            label("durable"), f"{label('durable')}=True needs {label('spool_path')} to be set"
        )
    # batch_size > max_queue_size is legal: a batch is whatever is queued when it is sent.
    return settings
