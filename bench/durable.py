"""Caller cost of the spool modes (issue #7): memory only, spool, durable, durable + fsync.

Each mode runs in a fresh process per trial, alternating, against the bench's sink; the
caller times N track() calls, then flushes and checks that every id arrived. Writes
bench/durable.md. Run by `make bench` after run.py; alone: `python bench/durable.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sink import SinkProcess

BENCH_DIR = Path(__file__).resolve().parent
MODES = {
    "memory only": {},
    "spool_path": {"spool_path": True},
    "durable": {"spool_path": True, "durable": True},
    "durable + fsync": {"spool_path": True, "durable": True, "fsync": True},
}

WORKER = r"""
import datetime, json, sys, time
import analytics
host, n, options = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
client = analytics.Client("bench-key", host=host, max_queue_size=100_000, **options)
props = {"plan": "pro", "price": 9.99, "trial": False, "nested": {"a": 1, "b": [1, 2]},
         "when": datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)}
client.track("warm", "Warm Up"); client.flush(timeout=10)
start = time.perf_counter()
for i in range(n):
    client.track(f"user{i}", "Order Completed", props)
elapsed = time.perf_counter() - start
ok = client.flush(timeout=60)
stats = client.stats()
client.shutdown(timeout=10)
print(json.dumps({"us_per_call": elapsed / n * 1e6, "flushed": ok,
                  "delivered": stats["delivered"] - 1}))
"""


def run_mode(host: str, n: int, options: dict[str, object], folder: str) -> dict[str, float]:
    opts = dict(options)
    if opts.pop("spool_path", None):
        fd, path = tempfile.mkstemp(suffix=".db", dir=folder)
        os.close(fd)
        os.unlink(path)
        opts["spool_path"] = path
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, host, str(n), json.dumps(opts)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    sink = SinkProcess(sys.executable)
    try:
        with tempfile.TemporaryDirectory() as folder:
            for trial in range(args.trials):
                for mode, options in MODES.items():
                    result = run_mode(sink.url, args.messages, options, folder)
                    if result["delivered"] != args.messages:
                        raise SystemExit(f"{mode}: {result['delivered']} of {args.messages} came")
                    samples[mode].append(result["us_per_call"])
                    us = result["us_per_call"]
                    print(f"[{trial + 1}/{args.trials}] {mode}: {us:.1f} µs/call", flush=True)
    finally:
        sink.stop()
    base = statistics.median(samples["memory only"])
    lines = [
        "# Caller cost of the spool modes",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; cores: {os.cpu_count()};"
        f" Python {sys.version.split()[0]}",
        f"- {args.messages:,} track() calls per trial, {args.trials} trials per mode, fresh"
        " process each, alternating; every message arrived in every trial",
        "",
        "| mode | µs per track(), median (min–max) | × memory only |",
        "|---|---:|---:|",
    ]
    for mode, values in samples.items():
        median = statistics.median(values)
        spread = f"{min(values):.1f}–{max(values):.1f}"
        lines.append(f"| {mode} | {median:.1f} ({spread}) | {median / base:.2f}× |")
    text = "\n".join(lines) + "\n"
    (BENCH_DIR / "durable.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
