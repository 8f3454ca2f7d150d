"""The benchmark (issue #5): ours against segment-analytics-python and posthog, same run.

`python bench/run.py` (make bench): peers' venv if missing, a local sink, every scenario
with every library in a fresh process per trial, alternating; then bench/results.json,
bench/results.md and bench/ratios.png. Ours runs twice: `ours` with the JSON encoder as
installed (orjson with the `fast` extra) and `ours-json` with the json module, as without it.
`--smoke` (make bench-smoke): ours only, one trial, 2,000 messages, no network, no files;
exits 1 unless every message arrived.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import machine
import peers
import report
from scenarios import OURS, RESULT_PREFIX
from sink import SinkProcess

BENCH_DIR = Path(__file__).resolve().parent
LOG_DIR = BENCH_DIR / ".logs"
ALL_LIBS = ("ours", "ours-json", "segment", "posthog")
MEMORY_MESSAGES = 10_000
MEMORY_HOLD_S = 2.0
QUIET_CORES = 0.25  # before a trial, wait (bounded) until other processes use less


@dataclass(frozen=True)
class Scenario:
    """One scenario as run.py schedules it; `worker` is the name scenarios.py knows."""

    key: str
    worker: str
    gzip: bool = False


SCENARIOS = (
    Scenario("caller", "caller"),
    Scenario("e2e", "e2e"),
    Scenario("e2e-gzip", "e2e", gzip=True),
    Scenario("memory", "memory"),
    Scenario("latency", "latency"),
    Scenario("steady", "steady"),
    Scenario("floor", "floor"),
)


@dataclass(frozen=True)
class Plan:
    """What this invocation runs."""

    libs: tuple[str, ...]
    scenarios: tuple[Scenario, ...]
    trials: int
    messages: int
    memory_messages: int
    latency_samples: int
    latency_idle: float
    steady_seconds: float
    profile: bool
    quiet_wait_s: float


def worker_command(plan: Plan, scenario: Scenario, lib: str, host: str, trial: int) -> list[str]:
    """The worker's command line for one trial."""
    python = peers.ours_python() if lib in (*OURS, "floor") else str(peers.peers_python())
    n = plan.memory_messages if scenario.worker == "memory" else plan.messages
    queue_size = 10_000 if scenario.worker == "caller" else max(100_000, n + 1_000)
    cmd = [
        python, str(BENCH_DIR / "scenarios.py"), "--lib", lib, "--scenario", scenario.worker,
        "--host", host, "--messages", str(n), "--queue-size", str(queue_size),
        "--hold", str(MEMORY_HOLD_S), "--samples", str(plan.latency_samples),
        "--idle", str(plan.latency_idle), "--seconds", str(plan.steady_seconds),
    ]  # fmt: skip
    if scenario.gzip:
        cmd.append("--gzip")
    if plan.profile and scenario.worker in ("caller", "e2e"):
        cmd += ["--profile", str(LOG_DIR / f"profile-{scenario.key}-{lib}-{trial}.txt")]
    return cmd


def worker_timeout(plan: Plan, scenario: Scenario) -> float:
    """A generous bound for one worker process; it is killed past it."""
    if scenario.worker == "latency":
        return 60 + plan.latency_samples * (plan.latency_idle + 5)
    if scenario.worker == "memory":
        return 60.0
    if scenario.worker == "steady":
        return 120 + plan.steady_seconds * 5
    return 60 + plan.messages / 200


def worker_env() -> dict[str, str]:
    """The caller's environment, less anything that would change what a library does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTHOG_", "PYTHON"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def where(path: str) -> str:
    """Which checkout a worker imported, without this machine's paths: relative to this
    checkout, or to its site-packages when installed."""
    file = Path(path).resolve()
    if file.is_relative_to(BENCH_DIR.parent):
        return str(file.relative_to(BENCH_DIR.parent))
    parts = file.parts
    if "site-packages" in parts:
        return str(Path(*parts[parts.index("site-packages") :]))
    return file.name


def run_worker(cmd: list[str], timeout: float, log_path: Path) -> tuple[dict[str, Any], str]:
    """Run one worker; its result line, or an error. Its stderr goes to `log_path`."""
    with open(log_path, "w") as log:
        try:
            proc = subprocess.run(
                cmd, stdout=subprocess.PIPE, stderr=log, text=True, timeout=timeout,
                cwd=BENCH_DIR, env=worker_env(),
            )  # fmt: skip
        except subprocess.TimeoutExpired:  # subprocess.run has killed it
            return {}, f"timed out after {timeout:.0f} s (killed)"
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            if "file" in result:
                result["file"] = where(result["file"])
            return result, ""
    return {}, f"exit {proc.returncode}, no result (see {log_path.relative_to(BENCH_DIR)})"


STEADY_QS = ("p50", "p99", "p999", "max")


def trial_metrics(
    scenario: Scenario,
    worker: dict[str, Any],
    stats: dict[str, Any],
    sink: SinkProcess,
    plan: Plan,
) -> tuple[dict[str, float], bool, str, dict[str, Any]]:
    """(metrics, valid, error, extra) of one finished trial."""  # fmt: skip
    extra: dict[str, Any] = {}
    if scenario.worker == "memory":
        # The worker exits while the sink still holds its requests: a cut request is expected.
        return {"rss_per_msg": worker["rss_bytes_per_msg"]}, True, "", extra
    if stats["bad_requests"]:
        return {}, False, f"{stats['bad_requests']} request(s) the sink could not read", extra
    if scenario.worker == "floor":
        return {"floor_us": worker["us_per_msg"]}, True, "", extra
    if scenario.worker == "steady" and worker["lib"] == "floor":
        return {f"steady_{q}_us": worker[f"{q}_us"] for q in STEADY_QS}, True, "", extra
    if scenario.worker == "latency":
        calls = worker["calls"]
        arrived = sink.arrivals([message_id for message_id, _ in calls])
        missing = [m for m, _ in calls if arrived.get(m) is None]
        if missing:
            return {}, False, f"{len(missing)} of {len(calls)} events never arrived", extra
        samples = [(arrived[m] - t) * 1000 for m, t in calls]
        extra["latency_samples_ms"] = samples
        return {"latency_ms": statistics.median(samples)}, True, "", extra
    mark = worker["sink_mark"]
    n = plan.messages
    delivered = stats["unique"] - mark["unique"]
    extra["duplicates"] = stats["messages"] - stats["unique"]
    extra["sink_cpu_s"] = stats["cpu_s"] - mark["cpu_s"]
    if scenario.worker == "steady":
        metrics = {f"steady_{q}_us": worker[f"{q}_us"] for q in STEADY_QS}
        if stats["unique"] != worker["calls_made"]:
            got = f"{stats['unique']:,} of {worker['calls_made']:,}"
            return metrics, False, f"{got} ids arrived", extra
        return metrics, True, "", extra
    if scenario.worker == "caller":
        extra["delivered"] = delivered
        return (
            {
                "caller_us": worker["us_per_call"],
                "caller_delivered_pct": delivered / n * 100,
            },
            True,
            "",
            extra,
        )
    prefix = "gz_" if scenario.gzip else "e2e_"
    metrics = {
        prefix + "msgs_per_s": worker["msgs_per_s"],
        prefix + "cpu_per_10k": worker["cpu_s_per_10k"],
        prefix + "requests": float(stats["requests"] - mark["requests"]),
        prefix + "bytes_per_msg": (stats["wire_bytes"] - mark["wire_bytes"]) / max(delivered, 1),
        "sink_cpu_pct": extra["sink_cpu_s"] / worker["elapsed_s"] * 100,
    }
    if scenario.gzip:
        del metrics["sink_cpu_pct"]
    if stats["unique"] != worker["calls_made"]:
        return metrics, False, f"{stats['unique']:,} of {worker['calls_made']:,} ids arrived", extra
    return metrics, True, "", extra


def describe(metrics: dict[str, float]) -> str:
    """A short progress line for a trial."""
    return ", ".join(f"{k}={v:,.2f}" for k, v in metrics.items())


def run_plan(plan: Plan, sink: SinkProcess) -> list[dict[str, Any]]:
    """Every scenario; within it, the trials; within a trial, each library in turn."""
    LOG_DIR.mkdir(exist_ok=True)
    trials: list[dict[str, Any]] = []
    for scenario in plan.scenarios:
        libs = ("floor",) if scenario.worker == "floor" else plan.libs
        if scenario.worker == "steady":
            libs = (*plan.libs, "floor")  # the same load with no library: the machine's tail
        for trial in range(1, plan.trials + 1):
            for lib in libs:
                waited = 0.0
                if plan.quiet_wait_s > 0:
                    waited = machine.wait_for_quiet(QUIET_CORES, plan.quiet_wait_s)
                sink.reset()
                cmd = worker_command(plan, scenario, lib, sink.url, trial)
                log_path = LOG_DIR / f"{scenario.key}-{lib}-{trial}.log"
                watch = machine.CpuWatch()
                worker, error = run_worker(cmd, worker_timeout(plan, scenario), log_path)
                wall = time.monotonic() - watch.start
                stats = sink.stats()
                record: dict[str, Any] = {
                    "scenario": scenario.key, "lib": lib, "trial": trial,
                    "process_wall_s": wall, "quiet_wait_s": waited,
                    "others_cores": watch.others_cores(stats["cpu_s"]), "worker": worker,
                }  # fmt: skip
                if error:
                    record.update(valid=False, error=error)
                else:
                    metrics, valid, error, extra = trial_metrics(
                        scenario, worker, stats, sink, plan
                    )
                    record.update(metrics=metrics, valid=valid, sink=stats, **extra)
                    if error:
                        record["error"] = error
                    worker.pop("calls", None)
                trials.append(record)
                status = "ok" if record["valid"] else f"INVALID: {record['error']}"
                print(
                    f"[{scenario.key} {trial}/{plan.trials}] {lib}: "
                    f"{describe(record.get('metrics', {}))} ({status}, {wall:.1f} s, "
                    f"others {record['others_cores']:.2f} cores)",
                    flush=True,
                )
    return trials


def git_state() -> str:
    """The project's commit, and whether its work tree differs from it (others edit it)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
            cwd=BENCH_DIR, timeout=30, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "analytics"], capture_output=True,
            text=True, cwd=BENCH_DIR.parent, timeout=30, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" + uncommitted changes in analytics/" if dirty else "")


def build_results(
    plan: Plan, trials: list[dict[str, Any]], peers_py: str | None, commit_at_start: str
) -> dict[str, Any]:
    """The whole record: facts about the run, every trial, the summary, ratios, targets."""
    versions: dict[str, str] = {}
    backends: dict[str, str] = {}  # ours variants: the JSON encoder the workers used
    for trial in trials:
        worker = trial.get("worker", {})
        if worker.get("version"):
            versions[trial["lib"]] = worker["version"]
        if worker.get("backend"):
            backends[trial["lib"]] = worker["backend"]
    notes = [
        "every library at its defaults (batch of 100; flush interval 0.5 s for ours and "
        "Segment's, 5 s for PostHog's) except max_queue_size (10,000 in scenario 1, "
        "100,000 elsewhere), gzip (scenario 2 runs off and on) and the host.",
        "one warm-up message, flushed, before anything is timed (thread started, "
        "connection open); it is left out of the counts.",
        "library loggers set to ERROR in the worker (Segment's logs a warning per "
        "dropped message).",
        f"scenario 3: the sink holds each response {MEMORY_HOLD_S:.0f} s; RSS from "
        "/proc/self/status after gc.collect(), before and after the calls.",
        f"scenario 4: {plan.latency_samples} calls per trial, each after "
        f"{plan.latency_idle} s idle; call to arrival at the sink (time.time(), one "
        "machine); the trial's value is the median of its calls.",
        "wire bytes: request line + headers + body as sent (gzipped when on).",
        f"scenario 7 (steady): 5 track() calls per millisecond for {plan.steady_seconds:g} s, "
        "each timed on its own (perf_counter), the caller sleeping between ticks while the "
        "consumer delivers; p50/p99/p99.9/max of all calls of a trial.",
    ]
    commit_at_end = git_state()
    if commit_at_end != commit_at_start:
        notes.insert(0, f"the package changed during the run (others were editing it): "
                     f"{commit_at_start} at the start, {commit_at_end} at the end.")  # fmt: skip
    others = [t["others_cores"] for t in trials]
    if others:
        disturbed = sum(1 for o in others if o > QUIET_CORES)
        notes.append(
            f"other processes on the machine used {statistics.median(others):.2f} cores "
            f"(median; max {max(others):.2f}) during the trials; {disturbed} of "
            f"{len(others)} trials ran with more than {QUIET_CORES} cores in use by others."
        )
    if "ours-json" in plan.libs:
        notes.insert(0, f"ours: our library as installed here, JSON encoder "
                     f"{backends.get('ours', 'unknown')} (orjson comes with the `fast` "
                     'extra); ours-json: the same with analytics.encode.use_backend("json") '
                     "called before the client is built, as a user without the extra gets "
                     "it.")  # fmt: skip
    if "posthog" in plan.libs:
        notes.insert(0, "posthog is pinned to 7.91.1: 7.91.0 does not exist on the registry "
                     "(7.79.0 is followed by 7.91.1).")  # fmt: skip
    sink_pct = [
        t["metrics"]["sink_cpu_pct"] for t in trials
        if t.get("metrics", {}).get("sink_cpu_pct") is not None
    ]  # fmt: skip
    if sink_pct:
        notes.append(
            f"the sink (own process) used at most {max(sink_pct):.0f} % of one core "
            "during any end-to-end run: not the bottleneck."
        )
    meta: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu": machine.cpu_model(),
        "platform": platform.platform(),
        "ours_commit": commit_at_start,
        "python": platform.python_version(),
        "python_peers": peers.python_version(peers_py) if peers_py else None,
        "trials": plan.trials,
        "messages": plan.messages,
        "memory_messages": plan.memory_messages,
        "libs": list(plan.libs),
        "scenarios": [s.key for s in plan.scenarios],
        "versions": versions,
        "backends": backends,
        "requirements_peers": list(peers.REQUIREMENTS) if peers_py else [],
        "notes": notes,
    }
    summary = report.build_summary(trials)
    ratios = report.build_ratios(summary)
    return {
        "meta": meta,
        "summary": summary,
        "ratios": ratios,
        "targets": report.build_targets(summary, ratios),
        "trials": trials,
    }


def parse_plan() -> tuple[Plan, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--smoke", action="store_true", help="ours, 1 trial, 2,000 messages")
    parser.add_argument("--libs", default=",".join(ALL_LIBS), help="a subset, comma-separated")
    parser.add_argument("--scenarios", default=",".join(s.key for s in SCENARIOS))
    parser.add_argument(
        "--profile", action="store_true",
        help="cProfile the workers (distorts the numbers; writes no results)",
    )  # fmt: skip
    parser.add_argument(
        "--quiet-wait", type=float, default=10.0,
        help=f"before each trial, wait up to this many s for others to use < {QUIET_CORES} cores",
    )  # fmt: skip
    args = parser.parse_args()
    keys = args.scenarios.split(",")
    unknown = set(keys) - {s.key for s in SCENARIOS} | set(args.libs.split(",")) - set(ALL_LIBS)
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    if args.smoke:
        args.trials, args.messages, args.libs = 1, 2_000, "ours"
    if args.trials < 1 or args.messages < 1:
        parser.error("--trials and --messages must be at least 1")
    plan = Plan(
        libs=tuple(lib for lib in ALL_LIBS if lib in args.libs.split(",")),
        scenarios=tuple(s for s in SCENARIOS if s.key in keys),
        trials=args.trials,
        messages=args.messages,
        memory_messages=min(MEMORY_MESSAGES, args.messages),
        latency_samples=3 if args.smoke else 7,
        latency_idle=0.1 if args.smoke else 0.3,
        steady_seconds=1.0 if args.smoke else 6.0,
        profile=args.profile,
        quiet_wait_s=0.0 if args.smoke else args.quiet_wait,
    )
    return plan, args


def main() -> int:
    """Run the plan; write the outputs of a full run; the exit status says if all was valid."""
    plan, args = parse_plan()
    needs_peers = any(lib not in OURS for lib in plan.libs)
    peers_py = str(peers.ensure_peers()) if needs_peers else None
    started = time.monotonic()
    commit_at_start = git_state()
    sink = SinkProcess(peers.ours_python())
    try:
        trials = run_plan(plan, sink)
    finally:
        sink.stop()
    results = build_results(plan, trials, peers_py, commit_at_start)
    table = report.markdown(results)
    full = (
        not args.smoke and not plan.profile and plan.libs == ALL_LIBS
        and len(plan.scenarios) == len(SCENARIOS)
    )  # fmt: skip
    if full:
        (BENCH_DIR / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        (BENCH_DIR / "results.md").write_text(table)
        assert peers_py is not None
        subprocess.run(
            [peers_py, str(BENCH_DIR / "report.py"), "chart",
             str(BENCH_DIR / "results.json"), str(BENCH_DIR / "ratios.png")],
            check=True, timeout=180, cwd=BENCH_DIR,
        )  # fmt: skip
    print()
    print(table)
    invalid = [t for t in trials if not t["valid"]]
    if args.smoke:
        delivered = [t for t in trials if t.get("metrics", {}).get("caller_delivered_pct")]
        invalid += [t for t in delivered if t["metrics"]["caller_delivered_pct"] < 100.0]
    where = "bench/results.{json,md}, bench/ratios.png" if full else "nothing written"
    print(f"bench: {len(trials)} trials in {time.monotonic() - started:.0f} s; {where}; "
          f"{len(invalid)} invalid")  # fmt: skip
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
