"""The `analytics` command: send one message (`track`, `identify`, ...), `import` a JSON
Lines file of wire messages, or run the local `collector`. Exit 0 only if all was delivered."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Protocol, cast

from .client import Client
from .collector.validate import check
from .errors import APIError, QueueFull, RetriesExhausted, ValidationError
from .log import logger
from .options import BY_NAME, DEFAULTS
from .spec import MESSAGE_TYPES
from .typing import Result
from .version import VERSION

EXIT_OK = 0
EXIT_NOT_DELIVERED = 1
EXIT_USAGE = 2
WRITE_KEY_ENV = "ANALYTICS_WRITE_KEY"
HOST_ENV = "ANALYTICS_HOST"
MAX_LISTED = 50  # bad lines named in the summary; --rejects FILE keeps them all
# Sized for a person waiting at a terminal, not for a server that must not lose a message:
# with the collector down, a command gives up after ~7 s of backoff (1 + 2 + 4 s at most)
# instead of the library's ~73 s of 10 retries.
CLI_DEFAULTS: dict[str, Any] = {"max_retries": 3, "timeout": 10.0}


class UsageError(Exception):
    """A mistake in the command line or a call: one line on stderr, exit 2."""


# -- the parser ----------------------------------------------------------------------------


def _help(option: str) -> str:
    """An option's help: its line in the table (analytics.options), with its default."""
    library = BY_NAME[option].default
    if option in CLI_DEFAULTS:
        return f"{BY_NAME[option].doc} (default {CLI_DEFAULTS[option]:g}; the library's: {library})"
    return f"{BY_NAME[option].doc} (default {library})"


def _add_option(p: argparse.ArgumentParser, option: str, kind: type, metavar: str) -> None:
    """`--<option>` for a numeric option of the table, with its default and help."""
    flag = "--" + option.replace("_", "-")
    default = CLI_DEFAULTS.get(option, BY_NAME[option].default)
    p.add_argument(flag, type=kind, default=default, metavar=metavar, help=_help(option))


def _add_connection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--write-key", help=f"the source's write key (default: ${WRITE_KEY_ENV}; prefer the "
        "environment, a command line is visible to other users)",
    )  # fmt: skip
    p.add_argument(
        "--host", help=f"{BY_NAME['host'].doc} (default: ${HOST_ENV}, else {DEFAULTS.host})"
    )
    p.add_argument("--gzip", action="store_true", help=BY_NAME["gzip"].doc)
    _add_option(p, "timeout", float, "SECONDS")
    _add_option(p, "max_retries", int, "N")
    p.add_argument("--debug", action="store_true", help="log what the library does on stderr")


def _add_message(p: argparse.ArgumentParser, kind: str) -> None:
    if kind == "alias":
        p.add_argument("--previous-id", help="the identity being merged (required)")
        p.add_argument("--user-id", help="the identity it merges into (required)")
    else:
        p.add_argument("--user-id", help="the user (this or --anonymous-id is required)")
        p.add_argument("--anonymous-id", help="the anonymous visitor")
    if kind == "track":
        p.add_argument("--event", help="the event name (required)")
    if kind in ("page", "screen"):
        p.add_argument("--name", help=f"the {kind}'s name")
        p.add_argument("--category", help=f"the {kind}'s category")
    if kind == "group":
        p.add_argument("--group-id", help="the group (required)")
    if kind in ("track", "page", "screen"):
        p.add_argument("--properties", metavar="JSON", help="a JSON object")
    if kind in ("identify", "group"):
        p.add_argument("--traits", metavar="JSON", help="a JSON object")
    p.add_argument("--context", metavar="JSON", help="a JSON object")
    p.add_argument("--integrations", metavar="JSON", help="a JSON object")
    p.add_argument("--timestamp", metavar="ISO8601", help="when it happened (default: now)")
    p.add_argument("--message-id", help="the message's id (default: a new UUID)")
    p.add_argument(
        "--wait", type=float, default=30, metavar="SECONDS",
        help="how long to wait for delivery, retries included (default 30)",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The `analytics` command line."""
    parser = argparse.ArgumentParser(
        prog="analytics",
        description="Send analytics messages to a Segment-compatible collector.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {
        "track": "record an action", "identify": "tie a user to traits",
        "page": "record a page view", "screen": "record a screen view",
        "group": "tie a user to a group", "alias": "merge two identities",
    }  # fmt: skip
    for kind in MESSAGE_TYPES:
        p = sub.add_parser(kind, help=helps[kind], description=f"Send one {kind} message.")
        _add_message(p, kind)
        _add_connection(p)
    p = sub.add_parser(
        "import",
        help="send a JSON Lines file of Segment messages",
        description="Send historical messages: one Segment-format wire message (camelCase "
        "JSON) per line. Bad lines are reported and skipped, never stop the import.",
    )
    p.add_argument("file", metavar="FILE", help="a .jsonl file, or - for stdin")
    _add_option(p, "batch_size", int, "N")
    _add_option(p, "max_queue_size", int, "N")
    p.add_argument("--dry-run", action="store_true", help="validate only; send nothing")
    p.add_argument(
        "--rejects", metavar="FILE",
        help="write every bad line, with its line number and reason, to FILE (JSON Lines)",
    )  # fmt: skip
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="show progress on stderr (default: when stderr is a terminal)",
    )  # fmt: skip
    _add_connection(p)
    sub.add_parser(
        "collector",
        help="run the local collector (see: analytics collector --help)",
        add_help=False,
    )
    return parser


# -- shared pieces -------------------------------------------------------------------------


def _json_object(option: str, text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{option} must be a JSON object")
    return value


class RetryLog(logging.Handler):
    """Shows each retry as it happens, from the record delivery.py logs before a backoff
    wait ("attempt N failed (WHAT); retrying in S s"): the attempt, the error, the next
    wait. An error is named the first time only; a repeat says "the same error"."""

    def __init__(self, max_retries: int) -> None:
        super().__init__(logging.DEBUG)
        self.attempts = max_retries + 1
        self._seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if not (str(record.msg).startswith("attempt ") and isinstance(args, tuple)):
            return
        if len(args) != 3:
            return
        attempt, what, wait = cast("tuple[int, str, float]", args)
        key = re.sub(r"0x[0-9a-fA-F]+", "", str(what))  # object addresses differ each time
        said = "the same error" if key in self._seen else " ".join(str(what).split())
        self._seen.add(key)
        try:  # a display must never break the delivery that logs through it
            sys.stderr.write(
                f"\rretrying: attempt {attempt}/{self.attempts} failed ({said}); "
                f"attempt {attempt + 1} in {wait:.1f} s\n"
            )
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def _showing_retries(args: argparse.Namespace) -> Iterator[None]:
    """A `RetryLog` on the library's logger while a command runs (not with --debug, which
    shows the attempts already); the logger as it was afterwards."""
    max_retries = getattr(args, "max_retries", 0)
    if getattr(args, "debug", False) or not max_retries:
        yield
        return
    handler, level = RetryLog(max_retries), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _make_client(
    args: argparse.Namespace, on_error: Callable[..., Any] | None, **kw: Any
) -> Client:
    if args.debug:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
    if args.timeout <= 0 or args.max_retries < 0:
        raise UsageError("--timeout must be > 0 and --max-retries >= 0")
    write_key = args.write_key or os.environ.get(WRITE_KEY_ENV)
    if not write_key:
        raise UsageError(f"no write key: give --write-key or set ${WRITE_KEY_ENV}")
    try:
        return Client(
            write_key,
            host=args.host or os.environ.get(HOST_ENV) or DEFAULTS.host,
            on_error=on_error,
            debug=args.debug,
            gzip=args.gzip,
            timeout=args.timeout,
            max_retries=args.max_retries,
            **kw,
        )
    except ValidationError as exc:
        raise UsageError(str(exc)) from None


def replay(client: Client, message: dict[str, Any]) -> Result:
    """Send a wire-format message (camelCase) through the matching client call, keeping its
    messageId and timestamp. Raises `ValidationError` as the call does."""
    kind = message.get("type")
    common: dict[str, Any] = {
        "context": message.get("context"),
        "timestamp": message.get("timestamp"),
        "integrations": message.get("integrations"),
        "message_id": message.get("messageId"),
    }
    if kind == "alias":
        return client.alias(message.get("previousId"), message.get("userId"), **common)
    common["user_id"] = message.get("userId")
    common["anonymous_id"] = message.get("anonymousId")
    if kind == "track":
        return client.track(
            event=message.get("event"), properties=message.get("properties"), **common
        )
    if kind == "identify":
        return client.identify(traits=message.get("traits"), **common)
    if kind in ("page", "screen"):
        call = client.page if kind == "page" else client.screen
        return call(
            category=message.get("category"),
            name=message.get("name"),
            properties=message.get("properties"),
            **common,
        )
    if kind == "group":
        return client.group(group_id=message.get("groupId"), traits=message.get("traits"), **common)
    raise ValidationError(f"type {kind!r} is not one of {', '.join(MESSAGE_TYPES)}")


# -- one message ---------------------------------------------------------------------------


def _send_one(args: argparse.Namespace) -> int:
    kind: str = args.command
    message: dict[str, Any] = {"type": kind}
    for option, key in (
        ("user_id", "userId"), ("anonymous_id", "anonymousId"), ("event", "event"),
        ("name", "name"), ("category", "category"), ("group_id", "groupId"),
        ("previous_id", "previousId"), ("timestamp", "timestamp"), ("message_id", "messageId"),
    ):  # fmt: skip
        value = getattr(args, option, None)
        if value is not None:
            message[key] = value
    for option in ("properties", "traits", "context", "integrations"):
        if hasattr(args, option):
            message[option] = _json_object(f"--{option}", getattr(args, option))
    if args.wait <= 0:
        raise UsageError("--wait must be > 0")
    errors: list[Exception] = []
    client = _make_client(args, lambda error, batch: errors.append(error), flush_interval=0)
    try:
        try:
            ok, wire = replay(client, message)
        except ValidationError as exc:
            raise UsageError(str(exc)) from None
        settled = ok and client.flush(timeout=args.wait)
        lost = list(errors)  # before shutdown adds its own error
    finally:
        client.shutdown(timeout=0)
    if settled and client.stats()["delivered"] == 1:
        print(f"delivered {kind} {wire['messageId']}")
        return EXIT_OK
    if lost:
        why = " ".join(str(lost[-1]).split())
    else:
        why = f"still retrying after --wait {args.wait:g} s (--debug shows the attempts)"
    print(f"analytics: error: {kind} not delivered: {why}", file=sys.stderr)
    return EXIT_NOT_DELIVERED


# -- import --------------------------------------------------------------------------------


class Progress(Protocol):
    """What the import needs of a progress display (tqdm's bar has it)."""

    def update(self, n: int = 1) -> Any:
        """`n` more lines read."""

    def close(self) -> Any:
        """The import is over."""


class _LineCounter:
    """A progress line on stderr without tqdm: lines, rate and ETA, redrawn twice a second."""

    def __init__(self, total: int | None, stream: IO[str]) -> None:
        self.total = total
        self.stream = stream
        self.n = 0
        self.start = time.monotonic()
        self._next = self.start + 0.5

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now >= self._next:
            self._next = now + 0.5
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.n / max(now - self.start, 1e-9)
        text = f"{self.n:,} lines"
        if self.total:
            eta = (self.total - self.n) / rate if rate else 0.0
            text = f"{self.n:,}/{self.total:,} lines ({100 * self.n / self.total:.0f}%)"
            text += f"  {rate:,.0f} lines/s  ETA {eta:.0f} s"
        else:
            text += f"  {rate:,.0f} lines/s"
        self.stream.write(f"\r{text}   ")
        self.stream.flush()

    def close(self) -> None:
        self._draw(time.monotonic())
        self.stream.write("\n")
        self.stream.flush()


def _progress(total: int | None) -> Progress:
    """tqdm's bar if it is installed (the `cli` extra), else a plain line counter."""
    try:
        tqdm = importlib.import_module("tqdm")
    except ImportError:
        return _LineCounter(total, sys.stderr)
    bar: Progress = tqdm.tqdm(
        total=total, unit=" lines", unit_scale=True, file=sys.stderr, mininterval=0.25
    )
    return bar


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _count_lines(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            count, last = 0, b"\n"
            for block in iter(lambda: f.read(1 << 20), b""):
                count += block.count(b"\n")
                last = block[-1:]
            return count + (last != b"\n")
    except OSError:
        return None


class _Failures:
    """on_error for the import: what was lost and why, and whether delivery broke down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.lost: list[tuple[str, list[str]]] = []
        self.full: list[tuple[str, list[str]]] = []  # refused by a full queue: sent again
        self.fatal: str | None = None

    def __call__(self, error: Exception, batch: list[dict[str, Any]]) -> None:
        ids = [str(m.get("messageId")) for m in batch]
        reason = " ".join(str(error).split())  # one line, even if the server's text is not
        with self._lock:
            if isinstance(error, QueueFull):
                self.full.append((reason, ids))
                return
            self.lost.append((reason, ids))
            if self.fatal is None and isinstance(error, (APIError, RetriesExhausted)):
                self.fatal = reason  # the collector refuses or is down: stop early

    def take(self) -> list[tuple[str, list[str]]]:
        with self._lock:
            lost, self.lost = self.lost, []
        return lost

    def take_full(self) -> bool:
        """Whether a message was refused by a full queue since the last call."""
        with self._lock:
            full, self.full = self.full, []
        return bool(full)

    def lose_full(self) -> None:
        """Count the messages refused by a full queue as lost after all."""
        with self._lock:
            self.lost.extend(self.full)
            self.full = []


@dataclass
class ImportReport:
    """What an import came to; `exit_code` is 0 only if every line was delivered."""

    source: str
    dry_run: bool = False
    lines: int = 0
    blank: int = 0
    valid: int = 0
    sent: int = 0
    delivered: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    failed: dict[str, list[int | None]] = field(default_factory=dict)
    stopped: str | None = None
    seconds: float = 0.0

    @property
    def failed_count(self) -> int:
        """Messages handed to the client that were not delivered."""
        return max(self.sent - self.delivered, 0)

    @property
    def exit_code(self) -> int:
        """0 if every line was delivered (or, in a dry run, valid); else 1."""
        bad = self.rejected or self.stopped or (not self.dry_run and self.failed_count)
        return EXIT_NOT_DELIVERED if bad else EXIT_OK

    def render(self) -> str:
        """The summary printed at the end of an import."""
        rate = self.lines / self.seconds if self.seconds > 0 else 0.0
        verb = "checked" if self.dry_run else "imported"
        out = [f"{verb} {self.source}: {self.lines:,} lines in {self.seconds:.1f} s "
               f"({rate:,.0f} lines/s)"]  # fmt: skip
        if self.dry_run:
            out.append(f"  valid      {self.valid:,}")
        else:
            out.append(f"  sent       {self.sent:,}")
            out.append(f"  delivered  {self.delivered:,}")
        if self.blank:
            out.append(f"  blank      {self.blank:,} (skipped)")
        out.append(f"  rejected   {len(self.rejected):,}")
        for lineno, reason in self.rejected[:MAX_LISTED]:
            out.append(f"    line {lineno}: {reason}")
        if len(self.rejected) > MAX_LISTED:
            out.append(f"    ... and {len(self.rejected) - MAX_LISTED:,} more (see --rejects)")
        if not self.dry_run:
            out.append(f"  failed     {self.failed_count:,}")
            for reason, lines in self.failed.items():
                known = sorted(n for n in lines if n is not None)
                shown = ", ".join(str(n) for n in known[:10])
                more = f", ... ({len(lines):,} in all)" if len(lines) > 10 else ""
                out.append(f"    {reason}: lines {shown}{more}")
        if self.stopped:
            # the reason is said once: under `failed` when the messages it lost are there
            stopped = self.stopped
            for reason in self.failed:
                if stopped.startswith(reason):
                    stopped = STOPPED_SEE_FAILED + stopped[len(reason) :]
                    break
            out.append(f"  stopped early: {stopped}")
        return "\n".join(out)


def _lines(path: str) -> Iterator[bytes]:
    if path == "-":
        yield from sys.stdin.buffer
        return
    with open(path, "rb") as f:
        yield from f


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_line(raw: bytes) -> tuple[Any, str | None]:
    try:
        return json.loads(raw.decode("utf-8-sig"), parse_constant=_reject_constant), None
    except UnicodeDecodeError:
        return None, "line is not UTF-8"
    except ValueError as exc:
        return None, f"invalid JSON: {exc}"


def run_import(
    lines: Iterable[bytes],
    client: Client | None,
    report: ImportReport,
    progress: Progress | None = None,
    rejects: IO[str] | None = None,
    chunk: int = 10000,
) -> ImportReport:
    """Validate and send each line, then shut the client down; `client=None` validates
    only. Takes over `client.on_error`. Fills and returns `report`."""
    started = time.monotonic()
    failures = _Failures()
    if client is not None:
        client.on_error = failures
    if progress is None:
        progress = _NoProgress()
    ids: dict[str, int] = {}  # messageId -> line, for the messages not yet settled
    since_flush = 0

    def reject(lineno: int, reason: str, raw: bytes) -> None:
        report.rejected.append((lineno, reason))
        if rejects is not None:
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            rejects.write(json.dumps({"line": lineno, "reason": reason, "text": text}) + "\n")

    for lineno, raw in enumerate(lines, 1):
        report.lines = lineno
        progress.update()
        if not raw.strip():
            report.blank += 1
            continue
        # The spec's wire rules, once: the builders replay() calls accept every message
        # they pass (tests/test_spec.py), so a dry run and a real one reject the same lines.
        message, reason = _parse_line(raw)
        if reason is None:
            reason = check(message)
        if reason is not None:
            reject(lineno, reason, raw)
            continue
        report.valid += 1
        if client is None:
            continue
        try:
            ok, wire = replay(client, message)
            if not ok and failures.take_full():  # the queue filled up: drain it, try again
                since_flush = 0
                _settle(client, failures, ids, report)
                ok, wire = replay(client, message)
                failures.lose_full()
        except ValidationError as exc:  # not the spec: what the client's protocol can't carry
            reject(lineno, str(exc), raw)
            continue
        ids[wire["messageId"]] = lineno
        report.sent += 1
        since_flush += 1
        if since_flush >= chunk:  # never more than the queue holds: nothing dropped as full
            since_flush = 0
            if not _settle(client, failures, ids, report):
                report.stopped = _stopped_at(failures.fatal, lineno)
                break
        elif failures.fatal is not None:
            _settle(client, failures, ids, report)
            report.stopped = _stopped_at(failures.fatal, lineno)
            break
    if client is not None:
        if report.stopped is None:
            _settle(client, failures, ids, report)
            if failures.fatal is not None:
                report.stopped = failures.fatal
        client.shutdown(timeout=1)
        _collect(failures, ids, report)
        report.delivered = int(client.stats()["delivered"])
    progress.close()
    report.seconds = time.monotonic() - started
    return report


def _stopped_at(reason: str | None, lineno: int) -> str:
    return f"{reason} (nothing read after line {lineno:,})"


STOPPED_SEE_FAILED = "delivery broke down (why: under failed, above)"


def _settle(client: Client, failures: _Failures, ids: dict[str, int], report: ImportReport) -> bool:
    """Wait until every message sent so far is delivered or lost; False, with the client
    shut down, if delivery broke down (the collector refuses or is unreachable)."""
    while not client.flush(timeout=0.25):
        if failures.fatal is not None:
            break
    ok = failures.fatal is None
    if not ok:
        client.shutdown(timeout=0)
    else:  # flush markers may linger a moment after the last delivery: let them go
        deadline = time.monotonic() + 2.0
        while not client.queue.empty() and time.monotonic() < deadline:
            time.sleep(0.001)
    _collect(failures, ids, report)
    ids.clear()
    return ok


def _collect(failures: _Failures, ids: dict[str, int], report: ImportReport) -> None:
    for reason, mids in failures.take():
        report.failed.setdefault(reason, []).extend(ids.get(mid) for mid in mids)


def _import(args: argparse.Namespace) -> int:
    if args.batch_size < 1 or args.max_queue_size < 1:
        raise UsageError("--batch-size and --max-queue-size must be at least 1")
    if args.file != "-" and not os.path.isfile(args.file):
        raise UsageError(f"no such file: {args.file}")
    client = None
    if not args.dry_run:
        client = _make_client(
            args, None, batch_size=args.batch_size, max_queue_size=args.max_queue_size,
            flush_interval=0.2,
        )  # fmt: skip
    show = sys.stderr.isatty() if args.progress is None else args.progress
    total = _count_lines(args.file) if show and args.file != "-" else None
    progress: Progress = _progress(total) if show else _NoProgress()
    source = "stdin" if args.file == "-" else args.file
    report = ImportReport(source, dry_run=args.dry_run)
    try:
        rejects = open(args.rejects, "w", encoding="utf-8") if args.rejects else None  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"cannot write --rejects: {exc}") from None
    try:
        run_import(_lines(args.file), client, report, progress, rejects, args.max_queue_size)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        if client is not None:
            client.shutdown(timeout=0)
            report.delivered = int(client.stats()["delivered"])
        report.stopped = "interrupted"
    finally:
        if rejects is not None:
            rejects.close()
    print(report.render(), flush=True)
    return report.exit_code


# -- entry point ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `analytics` command; the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["collector"]:
        from .collector.__main__ import main as collector_main

        return collector_main(args_list[1:], prog="analytics collector")
    args = build_parser().parse_args(args_list)
    try:
        with _showing_retries(args):
            if args.command == "import":
                return _import(args)
            return _send_one(args)
    except UsageError as exc:
        print(f"analytics: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
