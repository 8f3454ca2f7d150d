"""`python -m analytics.collector` / `analytics-collector`: options, start, run until
SIGINT or SIGTERM, then a clean stop (exit 0)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from ..version import VERSION
from .server import DEFAULT_REQUEST_TIMEOUT, Collector

DEFAULT_PORT = 8787
DEFAULT_DB = "analytics-collector.db"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def build_parser(prog: str = "analytics-collector") -> argparse.ArgumentParser:
    """The collector's command-line options."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="A local Segment-compatible collector: POST /v1/batch (and /v1/<type>) "
        "stores events in SQLite, and so do A-Track's POST /init, /attributes and /event; "
        "GET /v1/events, /v1/rejected and /v1/stats read them, "
        "and GET / is a live page of them.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT,
        help=f"port to listen on; 0 picks a free one (default {DEFAULT_PORT})",
    )  # fmt: skip
    p.add_argument(
        "--db", default=DEFAULT_DB,
        help=f"SQLite database file, or :memory: (default ./{DEFAULT_DB})",
    )  # fmt: skip
    p.add_argument(
        "--write-key", action="append", default=[], metavar="KEY", dest="write_keys",
        help="accept only this write key (repeat for several); default: any non-empty key",
    )  # fmt: skip
    p.add_argument(
        "--fail-first", type=int, default=0, metavar="N",
        help="fault injection: answer the first N POSTs with --fail-status, storing nothing",
    )  # fmt: skip
    p.add_argument(
        "--fail-status", type=int, default=503, metavar="S",
        help="status of the injected failures (default 503)",
    )  # fmt: skip
    p.add_argument(
        "--retry-after", type=float, default=None, metavar="SECONDS",
        help="send this Retry-After header with the injected failures",
    )  # fmt: skip
    p.add_argument(
        "--delay-ms", type=float, default=0, metavar="D",
        help="fault injection: wait D milliseconds before answering each POST",
    )  # fmt: skip
    p.add_argument(
        "--request-timeout", type=float, default=DEFAULT_REQUEST_TIMEOUT, metavar="SECONDS",
        help="a whole request (line, headers, body) must arrive within this many seconds of"
        f" its first byte, else the connection is closed (default {DEFAULT_REQUEST_TIMEOUT:g})",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no request log on stderr")
    p.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "analytics-collector") -> int:
    """Run the collector until SIGINT/SIGTERM; 0 after a clean stop."""
    args = build_parser(prog).parse_args(argv)
    bad_retry_after = args.retry_after is not None and args.retry_after < 0
    if (
        args.fail_first < 0
        or args.delay_ms < 0
        or bad_retry_after
        or not (100 <= args.fail_status <= 599)
        or not args.request_timeout > 0
    ):
        print(f"{prog}: error: bad fault-injection or timeout options", file=sys.stderr)
        return 2
    if args.host not in _LOOPBACK:
        print(f"{prog}: warning: {args.host} is not loopback; the collector is reachable "
              "from the network", file=sys.stderr)  # fmt: skip
    try:
        collector = Collector(
            db=args.db, host=args.host, port=args.port, write_keys=args.write_keys,
            fail_first=args.fail_first, fail_status=args.fail_status,
            retry_after=args.retry_after, delay_ms=args.delay_ms, quiet=args.quiet,
            request_timeout=args.request_timeout,
        ).start()  # fmt: skip
    except Exception as exc:  # port in use, unwritable database ...
        print(f"{prog}: error: cannot start: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"listening on {collector.url}", flush=True)
        keys = f"{len(args.write_keys)} write key(s)" if args.write_keys else "any write key"
        print(f"database {args.db}; accepting {keys}; Ctrl-C to stop", flush=True)
        print(f"open {collector.url}/ to see the events", flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        collector.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("collector stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
