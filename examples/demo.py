"""`make demo`: start a local collector, send a realistic session through `analytics` (and a
short one over A-Track), then show what the collector stored. Offline; takes about a second.

    python examples/demo.py               # run the tour, stop the collector
    python examples/demo.py --keep-open   # ... and leave it running until Ctrl-C (DEMO_KEEP=1)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
import tempfile
import threading
import uuid
from decimal import Decimal
from typing import Any

import analytics
from analytics.collector import MESSAGE_TYPES, Collector
from analytics.collector.validate import ATRACK_TYPES

WRITE_KEY = "demo-write-key"


def session() -> None:
    """One visitor: lands on the pricing page, signs up, buys, opens the app."""
    visitor = str(uuid.uuid4())
    analytics.page(
        anonymous_id=visitor, category="Marketing", name="Pricing",
        properties={"path": "/pricing", "referrer": "https://www.google.com/"},
        context={"ip": "203.0.113.7", "userAgent": "Mozilla/5.0 (demo)"},
    )  # fmt: skip
    analytics.track(anonymous_id=visitor, event="Signup Started", properties={"plan": "pro"})
    analytics.alias(previous_id=visitor, user_id="user-42")
    analytics.identify(
        "user-42",
        {"email": "ada@example.com", "name": "Ada Lovelace", "plan": "pro",
         "createdAt": dt.datetime(2024, 3, 1, 9, 30, tzinfo=dt.timezone.utc)},
    )  # fmt: skip
    analytics.group(
        "user-42", "acme-inc", {"name": "Acme Inc", "industry": "Manufacturing", "employees": 120}
    )
    analytics.track(
        "user-42", "Product Viewed",
        {"product_id": "sku-123", "name": "Analytical Engine", "price": Decimal("49.99")},
    )  # fmt: skip
    analytics.track("user-42", "Product Added", {"product_id": "sku-123", "quantity": 2})
    analytics.track(
        "user-42", "Order Completed",
        {"order_id": "order-1001", "revenue": Decimal("99.98"), "currency": "USD",
         "products": [{"product_id": "sku-123", "quantity": 2, "price": Decimal("49.99")}]},
    )  # fmt: skip
    analytics.screen(
        "user-42", "Onboarding", "Welcome", {"step": 1},
        context={"app": {"name": "Acme Mobile", "version": "3.2.1"}, "os": {"name": "iOS"}},
    )  # fmt: skip
    try:
        analytics.track("user-42")  # a programmer error: no event name
    except analytics.ValidationError as exc:
        print(f"input check works: track() without an event name is refused in the caller with"
              f" ValidationError, as designed ({exc})")  # fmt: skip


def atrack_session(host: str, errors: list[Exception]) -> bool:
    """The same visitor's app over A-Track: init, an event, attributes. True if delivered."""
    client = analytics.Client(
        WRITE_KEY, protocol="atrack", host=host, flush_interval=0.1,
        on_error=lambda error, batch: errors.append(error),
    )  # fmt: skip
    try:
        client.init("user-42", attributes={"plan": "pro"})
        client.track(event="Project Created", properties={"template": "blank"})
        client.set_attributes({"projects": 1})
        return client.flush(timeout=10)
    finally:
        client.shutdown(timeout=5)


def show(collector: Collector) -> None:
    """A table of stored counts by type, then two stored messages in full."""
    stats = collector.stats()
    print("\nwhat the collector stored, by Segment's protocol (POST /v1/batch):\n")
    print(f"  {'type':<10}{'count':>6}")
    print(f"  {'-' * 10}{'-' * 6}")
    for kind in MESSAGE_TYPES:
        print(f"  {kind:<10}{stats['by_type'][kind]:>6}")
    print(f"  {'-' * 10}{'-' * 6}")
    print(f"  {'total':<10}{sum(stats['by_type'].values()):>6}")
    print(f"  {'rejected':<10}{stats['rejected']:>6}")
    print("\nand by A-Track's (POST /init, /event, /attributes):\n")
    for kind in ATRACK_TYPES:
        print(f"  {kind:<10}{stats['atrack_by_type'][kind]:>6}")
    requests = stats["requests"]["total"]
    print(f"\n  ({requests} HTTP requests to {collector.url}: one Segment batch, and one per")
    print("   A-Track message)")
    for title, found in (
        ("the identify call", collector.events(type="identify", limit=1)),
        ("the Order Completed event", collector.events(event="Order Completed", limit=1)),
        ("the A-Track event", collector.events(protocol="atrack", type="event", limit=1)),
    ):
        print(f"\n{title}, as stored:\n")
        print(json.dumps(found[0], indent=2))


def wait_for_ctrl_c(collector: Collector) -> None:
    """Print how to poke the running collector, then wait for Ctrl-C or SIGTERM."""
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    url = collector.url
    print(f"\nthe collector is still running at {url}")
    print(f"open {url}/ to see the events (a live page), or try:")
    print(f"  curl {url}/v1/stats")
    print(f"  curl '{url}/v1/events?type=track&limit=2'")
    print(f"  ANALYTICS_WRITE_KEY={WRITE_KEY} ANALYTICS_HOST={url} \\")
    print("    python -m analytics track --user-id user-42 --event 'Demo Clicked'")
    print("Ctrl-C to stop.", flush=True)
    while not stop.wait(1.0):
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the tour; 0 if every message was delivered."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep-open", action="store_true", default=os.environ.get("DEMO_KEEP") == "1",
        help="leave the collector running until Ctrl-C (also: DEMO_KEEP=1)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    errors: list[Exception] = []
    with tempfile.TemporaryDirectory(prefix="analytics-demo-") as tmp:
        collector = Collector(db=os.path.join(tmp, "demo.db")).start()
        try:
            print(f"collector listening on {collector.url} (database in {tmp})")
            analytics.write_key = WRITE_KEY
            analytics.host = collector.url
            analytics.on_error = lambda error, batch: errors.append(error)
            analytics.flush_interval = 0.1
            session()
            delivered = analytics.flush(timeout=10)
            analytics.shutdown(timeout=5)
            delivered = atrack_session(collector.url, errors) and delivered
            print(f"flushed: {'everything delivered' if delivered and not errors else errors}")
            show(collector)
            if args.keep_open:
                wait_for_ctrl_c(collector)
            else:
                print(f"\nlive page: {collector.url}/ (DEMO_KEEP=1 keeps it open)")
        finally:
            collector.stop()
    print("\ncollector stopped.")
    return 0 if delivered and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
