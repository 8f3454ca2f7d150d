"""Tables and the chart: medians (min–max) over trials and each library's ratio to Segment's.

Imported by run.py (tables, standard library only) and run as a script in the peers' venv
to draw the chart with matplotlib: `python bench/report.py chart results.json ratios.png`.
Our targets are checked for each ours variant (`ours`, `ours-json`: the JSON encoders).
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from typing import Any, Callable

from scenarios import OURS

LIBS = ("ours", "ours-json", "segment", "posthog")
BASELINE = "segment"
NAMES = {
    "ours": "ours", "ours-json": "ours-json", "segment": "Segment", "posthog": "PostHog",
    "floor": "floor",
}  # fmt: skip
BACKEND_NAMES = {"orjson": "orjson", "json": "json module"}


Check = Callable[[dict[str, float], float | None], bool | None]  # (summary, ratio)


@dataclass(frozen=True)
class Metric:
    """One row of the table: which trial value, how to read it, and our target (issue 18's:
    for the default install, `ours-json`; `fast_*` for `ours` with orjson where it differs)."""

    key: str
    label: str
    better: str  # "lower", "higher" or "" (for information)
    digits: int
    target: str = ""
    met: Check | None = None
    chart: bool = False
    goal: float | None = None  # the target as a ratio to Segment's, marked on the chart
    fast_target: str = ""
    fast_met: Check | None = None

    def check_for(self, lib: str) -> tuple[str, Check | None]:
        """The target text and its check for one ours variant."""
        if lib == "ours" and self.fast_met is not None:
            return self.fast_target, self.fast_met
        return self.target, self.met


def _ratio_at_most(limit: float) -> Check:
    return lambda _summary, ratio: None if ratio is None else ratio <= limit


def _ratio_at_least(limit: float) -> Check:
    return lambda _summary, ratio: None if ratio is None else ratio >= limit


def _median_at_least(limit: float) -> Check:
    return lambda summary, _ratio: summary["median"] >= limit


def _every_trial_under(limit: float) -> Check:
    return lambda summary, _ratio: summary["max"] < limit


METRICS: tuple[Metric, ...] = (
    Metric("caller_us", "1. caller cost, µs per track() while delivering", "lower", 1,
           "≤ 0.40×", _ratio_at_most(0.40), chart=True, goal=0.40),
    Metric("caller_delivered_pct", "1. burst delivered (queue 10,000), %", "higher", 1,
           "100 %", _median_at_least(100.0), chart=True),
    Metric("e2e_msgs_per_s", "2. end to end, messages/s", "higher", 0,
           "≥ 3×", _ratio_at_least(3.0), chart=True, goal=3.0,
           fast_target="≥ 5×", fast_met=_ratio_at_least(5.0)),
    Metric("e2e_cpu_per_10k", "2. CPU s per 10,000 messages", "lower", 3,
           "≤ 0.30×", _ratio_at_most(0.30), chart=True, goal=0.30,
           fast_target="≤ 0.15×", fast_met=_ratio_at_most(0.15)),
    Metric("e2e_requests", "2. requests", "lower", 0),
    Metric("e2e_bytes_per_msg", "2. wire bytes per message", "lower", 0),
    Metric("gz_msgs_per_s", "2. gzip: end to end, messages/s", "higher", 0, chart=True),
    Metric("gz_cpu_per_10k", "2. gzip: CPU s per 10,000 messages", "lower", 3, chart=True),
    Metric("gz_bytes_per_msg", "2. gzip: wire bytes per message", "lower", 1),
    Metric("rss_per_msg", "3. RSS per queued message, bytes", "lower", 0,
           "≤ 0.75×", _ratio_at_most(0.75), chart=True, goal=0.75),
    Metric("latency_ms", "4. latency of one event (idle), ms", "lower", 1, chart=True),
    Metric("steady_p50_us", "7. steady 5 calls/ms: p50 of a call, µs", "lower", 1),
    Metric("steady_p99_us", "7. steady 5 calls/ms: p99 of a call, µs", "lower", 1,
           "≤ 0.30×", _ratio_at_most(0.30), chart=True, goal=0.30),
    Metric("steady_p999_us", "7. steady 5 calls/ms: p99.9 of a call, µs", "lower", 1),
    Metric("steady_max_us", "7. steady 5 calls/ms: slowest call, µs", "lower", 0,
           "< 1,000 in every trial", _every_trial_under(1000.0)),
    Metric("sink_cpu_pct", "sink CPU during end to end, % of one core", "", 1),
)  # fmt: skip


def name(lib: str, meta: dict[str, Any]) -> str:
    """A library's name for a reader: an ours variant with the JSON encoder it ran with."""
    backend = meta.get("backends", {}).get(lib) or ("json" if lib == "ours-json" else None)
    if lib in OURS and backend:
        return f"ours ({BACKEND_NAMES.get(backend, backend)})"
    return NAMES[lib]


def summarize(values: list[float]) -> dict[str, float]:
    """Median, min, max and count of one metric's trial values."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def build_summary(trials: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """{metric: {lib: summary}} over the valid trials."""
    values: dict[str, dict[str, list[float]]] = {}
    for trial in trials:
        if not trial.get("valid"):
            continue
        for key, value in trial.get("metrics", {}).items():
            if value is not None:
                values.setdefault(key, {}).setdefault(trial["lib"], []).append(value)
    return {
        key: {lib: summarize(vals) for lib, vals in by_lib.items()}
        for key, by_lib in values.items()
    }


def build_ratios(summary: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """{metric: {lib: median(lib) / median(Segment)}}."""
    ratios: dict[str, dict[str, float]] = {}
    for key, by_lib in summary.items():
        base = by_lib.get(BASELINE, {}).get("median")
        if not base:
            continue
        ratios[key] = {lib: s["median"] / base for lib, s in by_lib.items()}
    return ratios


def build_targets(
    summary: dict[str, dict[str, dict[str, float]]], ratios: dict[str, dict[str, float]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """{metric: {lib: {target, value, ratio, met}}} for each ours variant, where a target is set."""
    targets: dict[str, dict[str, dict[str, Any]]] = {}
    for metric in METRICS:
        for lib in OURS:
            ours = summary.get(metric.key, {}).get(lib)
            text, met = metric.check_for(lib)
            if met is None or ours is None:
                continue
            ratio = ratios.get(metric.key, {}).get(lib)
            targets.setdefault(metric.key, {})[lib] = {
                "target": text,
                "value": ours["median"],
                "ratio": ratio,
                "met": met(ours, ratio),
            }
    return targets


def _by_lib(target: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One metric's targets by ours variant; an older results.json held ours' alone."""
    return {"ours": target} if "met" in target else target


def _verdict(target: dict[str, Any] | None, ours: list[str]) -> str:
    """The target and a mark per ours variant in the table, in column order."""
    if not target:
        return ""
    by_lib = {lib: check for lib, check in _by_lib(target).items() if lib in ours}
    if not by_lib:
        return ""
    mets = [by_lib[lib]["met"] if lib in by_lib else None for lib in ours]
    if all(met is None for met in mets):
        marks = "(no Segment run)"
    else:
        marks = " / ".join({True: "✅", False: "❌", None: "–"}[met] for met in mets)
    texts = list(dict.fromkeys(check["target"] for check in by_lib.values()))
    return f"{' / '.join(texts)} {marks}"


def _cell(summary: dict[str, float] | None, digits: int) -> str:
    if summary is None:
        return "–"
    fmt = f"{{:,.{digits}f}}"
    med, lo, hi = (fmt.format(summary[k]) for k in ("median", "min", "max"))
    return f"{med} ({lo}–{hi})"


def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown: a header of facts, the table, the floor, the notes."""
    meta = results["meta"]
    summary = results["summary"]
    ratios = results["ratios"]
    targets = results["targets"]
    libs = [lib for lib in LIBS if lib in meta["libs"]]
    ours = [lib for lib in libs if lib in OURS]
    versions = meta.get("versions", {})
    heads = [f"{name(lib, meta)} {versions.get(lib, '')}".strip() for lib in libs]
    ratio_libs = [lib for lib in libs if lib != BASELINE] if BASELINE in libs else []
    lines = [
        "# Benchmark results",
        "",
        f"- date: {meta['date']}",
        f"- cores: {meta['cores']} (`os.cpu_count()`); Python {meta['python']}"
        + (f" (peers: {meta['python_peers']})" if meta.get("python_peers") else ""),
        f"- ours: commit {meta.get('ours_commit', 'unknown')}",
        f"- trials: {meta['trials']} per library, fresh process each, alternating; "
        f"messages: {meta['messages']:,} (scenario 3: {meta['memory_messages']:,})",
        "- cells: median (min–max) over the trials; ratio = median ÷ Segment's median",
        "",
        "| metric | better | "
        + " | ".join(heads)
        + "".join(f" | {name(lib, meta)} ÷ Segment" for lib in ratio_libs)
        + " | target (ours) |",
        "|---|---|" + "---:|" * (len(libs) + len(ratio_libs)) + "---|",
    ]
    for metric in METRICS:
        by_lib = summary.get(metric.key)
        if not by_lib:
            continue
        cells = [_cell(by_lib.get(lib), metric.digits) for lib in libs]
        for lib in ratio_libs:
            ratio = ratios.get(metric.key, {}).get(lib) if metric.better else None
            cells.append("–" if ratio is None else f"{ratio:.2f}×")
        verdict = _verdict(targets.get(metric.key), ours)
        lines.append(f"| {metric.label} | {metric.better} | " + " | ".join(cells)
                     + f" | {verdict} |")  # fmt: skip
    if len(ours) > 1:
        lines += ["", "Target marks, in order: "
                  + " / ".join(name(lib, meta) for lib in ours) + "."]  # fmt: skip
    floor = summary.get("floor_us", {}).get("floor")
    if floor:
        lines += ["", f"5. floor (`json` encode + `Queue.put_nowait` of the same message, "
                  f"nothing else): {_cell(floor, 2)} µs per message."]  # fmt: skip
        caller = summary.get("caller_us", {})
        parts = [f"{name(lib, meta)} {caller[lib]['median'] / floor['median']:.1f}×"
                 for lib in libs if lib in caller]  # fmt: skip
        if parts:
            lines.append(f"   Caller cost over the floor: {', '.join(parts)}.")
    steady = [summary.get(f"steady_{q}_us", {}).get("floor") for q in ("p50", "p99", "p999", "max")]
    if all(steady):
        cells = " / ".join(_cell(v, 1) for v in steady)
        lines += ["", f"7. steady floor (the same 5 calls/ms, each the floor's encode + put, no "
                  f"library, no thread): p50 / p99 / p99.9 / max {cells} µs — this machine's "
                  "own tail."]  # fmt: skip
        ratio = ratios.get("steady_p99_us", {}).get("floor")
        if ratio is not None:  # a tail target below the floor cannot be met on this machine
            lines.append(f"   Its p99 ÷ Segment's: {ratio:.2f}×; its slowest trial's slowest "
                         f"call: {steady[3]['max']:,.0f} µs.")  # fmt: skip
    invalid = [t for t in results.get("trials", []) if not t.get("valid")]
    lines += ["", f"Invalid or failed trials (left out of the medians): {len(invalid)}."]
    for trial in invalid:
        lines.append(f"- {trial['scenario']} {trial['lib']} #{trial['trial']}: "
                     f"{trial.get('error', 'invalid')}")  # fmt: skip
    if meta.get("notes"):
        lines += ["", "Notes:"] + [f"- {note}" for note in meta["notes"]]
    return "\n".join(lines) + "\n"


def chart(results_path: str, png_path: str) -> None:
    """Bars of each library's ratio to Segment's (log scale; Segment = 1). Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(results_path) as f:
        results = json.load(f)
    ratios = results["ratios"]
    metrics = [m for m in METRICS if m.chart and m.key in ratios]
    meta = results["meta"]
    libs = [lib for lib in LIBS if lib != BASELINE and lib in meta["libs"]]
    ours = [lib for lib in libs if lib in OURS]
    colors = {"ours": "#2b7bba", "ours-json": "#76b7b2", "posthog": "#f28e2b"}
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    width = 0.8 / max(len(libs), 1)
    for i, lib in enumerate(libs):
        xs = [j + (i - (len(libs) - 1) / 2) * width for j in range(len(metrics))]
        ys = [ratios[m.key].get(lib, float("nan")) for m in metrics]
        bars = ax.bar(xs, ys, width, label=name(lib, meta), color=colors.get(lib))
        ax.bar_label(bars, labels=[f"{y:.2f}" for y in ys], fontsize=6, padding=1)
        if lib in OURS:
            goals = [(x, m.goal) for x, m in zip(xs, metrics) if m.goal is not None]
            ax.scatter(
                [x for x, _ in goals], [g for _, g in goals], marker="_",
                s=300 * (width / 0.4) ** 2, color="#d62728", zorder=3,  # as wide as a bar
                label="our target" if lib == ours[0] else None,
            )  # fmt: skip
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--", label="Segment = 1")
    ax.set_yscale("log")
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom, top * 4)  # headroom for the legend above the bars
    ax.set_xticks(range(len(metrics)))
    short = {
        "caller_us": "µs/call",
        "caller_delivered_pct": "burst\ndelivered",
        "e2e_msgs_per_s": "msgs/s",
        "e2e_cpu_per_10k": "CPU/msg",
        "gz_msgs_per_s": "msgs/s\ngzip",
        "gz_cpu_per_10k": "CPU/msg\ngzip",
        "rss_per_msg": "RSS/msg",
        "latency_ms": "latency",
    }
    arrows = {"lower": "↓", "higher": "↑"}
    ax.set_xticklabels(
        [f"{short.get(m.key, m.key)}\n({arrows.get(m.better, '')} better)" for m in metrics],
        fontsize=7,
    )
    ax.set_ylabel("ratio to Segment's median (log)")
    ax.set_title(
        f"vs segment-analytics-python {meta['versions'].get('segment', '')}: "
        f"{meta['trials']} trial(s), {meta['messages']:,} msgs, {meta['cores']} cores",
        fontsize=9,
    )
    ax.legend(fontsize=7, ncol=(len(libs) + 3) // 2)  # two rows
    fig.tight_layout()
    fig.savefig(png_path)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "chart":
        raise SystemExit("usage: report.py chart RESULTS.json OUT.png")
    chart(sys.argv[2], sys.argv[3])
