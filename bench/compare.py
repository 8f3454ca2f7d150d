"""Before and after, in one run: our library from this checkout against the same library
from another checkout (`--baseline DIR`, e.g. a `git worktree` of an older commit), with
Segment's beside both, alternating trial by trial in fresh processes.

    python bench/compare.py --baseline ../before --trials 7

Scenarios: `idle` (µs per `track()` with nothing being sent), `caller` (µs per `track()` in
a 50,000-call burst while delivering), `e2e` (messages/s, first call to flush) and `steady`
(p99 of a call at 5 calls/ms while delivering). Prints a table of medians; writes nothing.
The peers' venv is the one `make bench` builds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import peers
from scenarios import RESULT_PREFIX
from sink import SinkProcess

BENCH_DIR = Path(__file__).resolve().parent
TREE = BENCH_DIR.parent
SCENARIOS = {  # name -> (queue size, the result's number, its unit)
    "idle": (0, "us_per_call", "µs/call"),
    "caller": (10_000, "us_per_call", "µs/call"),
    "e2e": (100_000, "msgs_per_s", "msgs/s"),
    "steady": (100_000, "p99_us", "p99 µs/call"),
}


def run(python: str, lib: str, scenario: str, host: str, n: int, tree: Path | None) -> float:
    """One worker process; the scenario's number."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    if tree is not None:  # our library from this checkout, not the installed one
        env["PYTHONPATH"] = str(tree)
    queue_size, key, _ = SCENARIOS[scenario]
    cmd = [python, str(BENCH_DIR / "scenarios.py"), "--lib", lib, "--scenario", scenario,
           "--host", host, "--messages", str(n), "--queue-size", str(queue_size or n)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=BENCH_DIR)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            if tree is not None and not str(result.get("file", tree)).startswith(str(tree)):
                raise SystemExit(f"{lib} did not run from {tree}")
            return float(result[key])
    raise SystemExit(f"{lib} {scenario}: no result\n{done.stderr[-2000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, type=Path, help="a checkout to compare")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument(
        "--lib", default="ours", choices=["ours", "ours-json"], help="ours-json: json module"
    )
    args = parser.parse_args()
    baseline = args.baseline.resolve()
    if not (baseline / "analytics" / "__init__.py").exists():
        raise SystemExit(f"{baseline} holds no analytics package")
    segment = str(peers.ensure_peers())
    names = [s for s in args.scenarios.split(",") if s]
    columns = {
        "before": (sys.executable, args.lib, baseline),
        "after": (sys.executable, args.lib, TREE),
        "Segment": (segment, "segment", None),
    }
    found: dict[tuple[str, str], list[float]] = {}
    sink = SinkProcess(sys.executable)
    try:
        for _ in range(args.trials):
            for scenario in names:
                for column, (python, lib, tree) in columns.items():
                    value = run(python, lib, scenario, sink.url, args.messages, tree)
                    found.setdefault((column, scenario), []).append(value)
    finally:
        sink.stop()
    print(f"medians of {args.trials} trials, {args.messages:,} messages; baseline {baseline.name}")
    print("| scenario | before | after | after ÷ before | Segment |")
    print("|---|---:|---:|---:|---:|")
    for scenario in names:
        unit = SCENARIOS[scenario][2]
        b, a, s = (statistics.median(found[(c, scenario)]) for c in columns)
        print(f"| {scenario} ({unit}) | {b:,.2f} | {a:,.2f} | {a / b:.2f} | {s:,.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
